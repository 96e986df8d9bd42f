"""Share of a training step spent waiting for the next batch: the main job, and an NTU-size prepared set.

Each case runs CTR-GCN training steps (forward, backward, SGD; bf16 autocast) fed by the trainer's own loader
(:func:`mmcl.engine.data.build_loader`, shuffled) and times, per step, the wait in ``next(loader)`` and the compute.
The share is wait / (wait + compute), over the steps after the first; the first batch (it includes starting the
workers, once per epoch) is reported on its own, with the share it has over a whole epoch.

- ``main job``: the synthetic set as ``configs/synthetic/ctrgcn_joint.yaml`` reads it (32-frame window, crop
  p ~ U[0.9, 1], rotation, batch 16, no worker processes), one epoch;
- ``NTU-size``: the filler set of ``benchmarks/prepared_memory.py`` (300 frames x 2 persons x 25 joints per sample,
  built once; ``--ntu-samples``), NTU settings (64-frame window, p ~ U[0.5, 1], rotation, 120 classes), batch 64,
  2 worker processes, ``--ntu-steps`` steps.

Usage: ``python benchmarks/loader_wait.py [--ntu-samples 20000] [--ntu-steps 8] [--threads 2]`` (JSON, Markdown and
PNG into ``benchmarks/results/``)
"""

from __future__ import annotations

from mmcl.cpu import passive_wait_policy

passive_wait_policy()  # as the mmcl command does, before torch loads

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_name  # noqa: E402
from plotting import grouped_bars  # noqa: E402
from prepared_memory import build  # noqa: E402

from mmcl.data.dataset import SkeletonDataset  # noqa: E402
from mmcl.data.prepared import PreparedData  # noqa: E402
from mmcl.engine.data import build_loader  # noqa: E402
from mmcl.engine.demo import ensure_synthetic  # noqa: E402
from mmcl.io import atomic_write_text  # noqa: E402
from mmcl.models import create_model  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def measure(dataset: SkeletonDataset, batch: int, workers: int, steps: int | None) -> dict:
    """Wait and compute seconds of each step over ``steps`` batches (None: one epoch)."""
    torch.manual_seed(0)
    model = create_model("ctrgcn", num_classes=dataset.num_classes, layout=dataset.layout.name,
                         num_person=dataset.data.info.num_person).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=4e-4)
    loader = build_loader(dataset, batch, workers, shuffle_seed=0)
    waits, computes = [], []
    it = iter(loader)
    total = len(loader) if steps is None else min(steps, len(loader))
    for _ in range(total):
        start = time.perf_counter()
        data = next(it)
        ready = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = F.cross_entropy(model(data["skeleton"]), data["label"])
        loss.backward()
        opt.step()
        waits.append(ready - start)
        computes.append(time.perf_counter() - ready)
    del it
    steady_wait, steady_compute = sum(waits[1:]), sum(computes[1:])
    steps_per_epoch = len(loader)
    epoch_wait = waits[0] + steady_wait / max(total - 1, 1) * (steps_per_epoch - 1)
    epoch_compute = sum(computes) / total * steps_per_epoch
    return {
        "batch": batch, "workers": workers, "steps": total, "steps_per_epoch": steps_per_epoch,
        "wait_s": waits, "compute_s": computes,
        "wait_share": steady_wait / (steady_wait + steady_compute),
        "first_batch_wait_s": waits[0],
        "epoch_wait_share": epoch_wait / (epoch_wait + epoch_compute),
    }


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        "# Loader wait: share of a training step spent waiting for the next batch",
        "",
        f"{m['cpu']}, {report['threads']} torch thread(s), OpenMP wait policy {m['omp_wait_policy']}; 1-minute load "
        f"average {m['load_average_start'][0]:.1f} at the start, {m['load_average_end'][0]:.1f} at the end (shared "
        "machine). CTR-GCN training steps in bf16 autocast fed by the trainer's loader.",
        "",
        "| case | batch | workers | steps timed | wait per step (ms) | compute per step (s) | **wait share** | "
        "first batch (s) | share over an epoch |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in report["cases"].items():
        n = r["steps"] - 1
        lines.append(f"| {name} | {r['batch']} | {r['workers']} | {n} | {1000 * sum(r['wait_s'][1:]) / n:.1f} | "
                     f"{sum(r['compute_s'][1:]) / n:.2f} | **{100 * r['wait_share']:.2f}%** | "
                     f"{r['first_batch_wait_s']:.2f} | {100 * r['epoch_wait_share']:.2f}% |")
    lines += ["", "Wait share: over the steps after the first; the first batch (worker start-up included) is spread "
                  f"over a whole epoch in the last column. NTU-size set: {report['ntu_samples']:,} filler samples of "
                  "300 frames x 2 persons x 25 joints.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--ntu-samples", type=int, default=20_000)
    parser.add_argument("--ntu-steps", type=int, default=8)
    parser.add_argument("--ntu-dir", type=Path, default=None,
                        help="where the NTU-size set is built (default: <tmp>/mmcl_prepared_memory_<samples>)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "loader_wait.json")
    args = parser.parse_args(argv)
    if args.ntu_steps < 2:
        parser.error("--ntu-steps must be at least 2 (the first step is reported apart)")
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()
    main_set = SkeletonDataset(ensure_synthetic(0), "train", window=32, train=True,
                               p_interval=(0.9, 1.0), random_rotation=True)
    ntu_dir = args.ntu_dir or Path(tempfile.gettempdir()) / f"mmcl_prepared_memory_{args.ntu_samples}"
    build(ntu_dir, args.ntu_samples, 300)
    ntu_set = SkeletonDataset(PreparedData(ntu_dir), "train", window=64, train=True, p_interval=(0.5, 1.0),
                              random_rotation=True)
    cases = {"main job (synthetic)": measure(main_set, 16, 0, None),
             "NTU-size": measure(ntu_set, 64, 2, args.ntu_steps)}
    report = {
        "threads": args.threads, "ntu_samples": args.ntu_samples, "cases": cases,
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "torch": torch.__version__,
                    "python": platform.python_version(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
                    "load_average_start": load_start, "load_average_end": os.getloadavg()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    md = markdown(report)
    atomic_write_text(args.out.with_suffix(".md"), md)
    cases = list(report["cases"].values())
    grouped_bars(args.out.with_suffix(".png"), list(report["cases"]),
                 {"after the first batch": [100 * r["wait_share"] for r in cases],
                  "over an epoch (first batch included)": [100 * r["epoch_wait_share"] for r in cases]},
                 "% of the step waiting for the batch", "Loader wait: share of a training step", line=(5.0, "target"))
    print(md)
    return 0



if __name__ == "__main__":
    sys.exit(main())
