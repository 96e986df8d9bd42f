"""Helper of tests/test_distributed.py: the batch-level losses on one global batch, split over processes.

    python tests/distributed_losses.py OUT        (one process: the reference)
    torchrun --nproc_per_node 2 tests/distributed_losses.py OUT

A small model (two linear maps, the same seed everywhere) computes the FAM contrastive loss and BRL's class-weighted
mixed cross-entropy on a global batch of 7 samples; under P processes, rank r takes its rows of it (4 + 3) and
weights its loss as the trainer does (``n_r * P / N``), and the gradients are averaged over the processes as DDP
averages them. Process 0 writes ``OUT/<case>.json``: the loss as the trainer reports it (the batch-weighted mean of
the processes' values) and the parameters' gradients.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from mmcl.brl.losses import mixed_cross_entropy
from mmcl.colearn.fam import contrastive_loss

N, D_IN, D, C = 7, 6, 5, 4
SHARES = {1: [(0, 7)], 2: [(0, 4), (4, 7)]}
MASKS = {"fam": [1, 0, 1, 1, 0, 1, 1], "fam_one_process_without_teacher": [1, 1, 0, 1, 0, 0, 0]}


def global_batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"x": torch.randn(N, D_IN, generator=g), "visual": torch.randn(N, D, generator=g),
            "label": torch.randint(0, C, (N,), generator=g), "label_b": torch.randint(0, C, (N,), generator=g),
            "weight_a": torch.rand(N, generator=g), "class_weights": torch.rand(C, generator=g) + 0.5}


def run_case(case: str, rank: int, procs: int) -> dict:
    torch.manual_seed(0)
    skeleton, teacher, classifier = torch.nn.Linear(D_IN, D), torch.nn.Linear(D, D), torch.nn.Linear(D_IN, C)
    lo, hi = SHARES[procs][rank]
    b = {k: (v[lo:hi] if k != "class_weights" else v) for k, v in global_batch().items()}
    if case.startswith("fam"):
        mask = torch.tensor(MASKS[case], dtype=torch.bool)[lo:hi]
        loss = contrastive_loss(skeleton(b["x"]), teacher(b["visual"]), 0.4, mask)
    else:
        loss = mixed_cross_entropy(classifier(b["x"]), b["label"], b["label_b"], b["weight_a"], b["class_weights"])
    n = hi - lo
    (loss * (n * procs / N)).backward()  # the trainer's weighting
    params = {f"{m}.{k}": p for m, mod in (("skeleton", skeleton), ("teacher", teacher), ("classifier", classifier))
              for k, p in mod.named_parameters()}
    grads = {k: (p.grad if p.grad is not None else torch.zeros_like(p)).clone() for k, p in params.items()}
    reported = torch.tensor([loss.item() * n])
    if procs > 1:
        for g in grads.values():  # DDP's average
            dist.all_reduce(g)
            g /= procs
        dist.all_reduce(reported)
    return {"loss": reported.item() / N, "grads": {k: g.flatten().tolist() for k, g in grads.items()}}


def main(out: Path) -> None:
    procs = 1
    if "WORLD_SIZE" in os.environ:
        dist.init_process_group("gloo")
        procs = dist.get_world_size()
    rank = dist.get_rank() if procs > 1 else 0
    out.mkdir(parents=True, exist_ok=True)
    for case in (*MASKS, "brl"):
        result = run_case(case, rank, procs)
        if rank == 0:
            (out / f"{case}.json").write_text(json.dumps(result))
    if procs > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
