"""The main job on two CPU processes (torchrun, gloo): one run, trained by both processes together."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

import distributed_losses
import distributed_steps
from conftest import TINY_TRAIN
from mmcl.engine.data import GlobalBatchSampler


@pytest.mark.slow
def test_torchrun_two_cpu_processes_train_one_run(tiny_prepared, tmp_path):
    """Without a GPU, accelerate would start each torchrun process as a run of its own (both writing the same
    folder); mmcl joins them over gloo: one run folder, the batches split between two processes."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "mmcl.cli",
           "train", f"data.root={tiny_prepared}", f"output_dir={tmp_path}", "name=two", *TINY_TRAIN,
           "data.batch_size=2", "optim.epochs=2"]
    result = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                            timeout=600)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    assert out.count("2 process(es) on cpu") == 1 and "1 process(es)" not in out, out[-3000:]
    assert [p.name for p in tmp_path.iterdir()] == ["two"]
    run = Path(tmp_path / "two")
    assert [h["epoch"] for h in json.loads((run / "history.json").read_text())["history"]] == [1, 2]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["num_samples"] == 3  # every test sample once, not padded


def test_global_batches_are_shared_between_processes_as_one_process_batches_them():
    """Each step's shares, over the processes, are the one-process batch of that step: nothing repeated; an uneven
    last batch is shared as evenly as possible; a last batch smaller than the process count is left out."""
    one = list(GlobalBatchSampler(11, 4, seed=3))
    assert [len(b) for b in one] == [4, 4, 3] and sorted(sum(one, [])) == list(range(11))
    shares = [list(GlobalBatchSampler(11, 2, seed=3, num_processes=2, rank=r)) for r in (0, 1)]
    assert [a + b for a, b in zip(*shares)] == one and [len(b) for b in shares[1]] == [2, 2, 1]
    three = GlobalBatchSampler(11, 3, seed=3, num_processes=3, rank=2)
    assert three.global_sizes() == [9] and len(list(three)) == 1  # 2 samples left for 3 processes
    sampler = GlobalBatchSampler(11, 4, seed=3)
    sampler.set_epoch(1)
    assert list(sampler) != one


@pytest.mark.slow
def test_two_processes_train_as_one_with_the_same_global_batch(tiny_prepared, tmp_path):
    """The same seed on 2 gloo processes trains as 1 process with the same global batch, up to float rounding: the
    same samples and augmentations per step, BatchNorm over the global batch (sync_bn), an uneven last batch weighted
    by each process's share. ``even``: 6 samples, batches of 4 then 2 (2 + 2, 1 + 1); ``uneven``: 5 samples in one
    batch (3 + 2). Without sync_bn the runs part. (More steps than these few would let CTR-GCN's sensitivity to
    rounding grow: on one process, torch's BatchNorm and this one already differ by as much after a few steps.)"""
    common = ["--", f"data.root={tiny_prepared}", *TINY_TRAIN, "optim.lr=0.01"]
    distributed_steps.main([str(tmp_path / "one"), "even:data.batch_size=4",
                            "uneven:data.batch_size=6,data.label_fraction=0.8", *common])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(Path(distributed_steps.__file__)), str(tmp_path / "two"), "even:data.batch_size=2",
           "uneven:data.batch_size=3,data.label_fraction=0.8", "nosync:data.batch_size=2,sync_bn=false", *common]
    result = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]

    def differences(one: str, two: str) -> tuple[float, float]:
        """(relative loss difference, largest parameter or buffer difference relative to 1 + |value|)."""
        losses = [json.loads((tmp_path / d / f"{n}.json").read_text())["train_loss"] for d, n in
                  (("one", one), ("two", two))]
        a, b = load_file(tmp_path / "one" / f"{one}.safetensors"), load_file(tmp_path / "two" / f"{two}.safetensors")
        assert a.keys() == b.keys()
        weights = max(((a[k].double() - b[k].double()).abs() / (1 + a[k].double().abs())).max().item() for k in a)
        return abs(losses[0] - losses[1]) / losses[0], weights

    for name in ("even", "uneven"):
        loss, weights = differences(name, name)
        assert loss < 1e-5 and weights < 1e-3, (name, loss, weights)
    loss, weights = differences("even", "nosync")
    assert loss > 1e-3 and weights > 1e-1, (loss, weights)


def test_batch_level_losses_see_the_global_batch_under_two_processes(tmp_path):
    """FAM's contrastive loss (negatives: the other samples; mean over the samples with teacher features) and BRL's
    class-weighted mixed cross-entropy (a weighted mean) on a batch of 7 split 4 + 3 over 2 gloo processes, weighted
    and averaged as the trainer and DDP do, give the one-process loss and gradients, also when one process holds no
    sample with teacher features. Per process, as before, the contrastive loss would see 3 and 2 samples."""
    distributed_losses.main(tmp_path / "one")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(Path(distributed_losses.__file__)), str(tmp_path / "two")]
    result = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    for case in ("fam", "fam_one_process_without_teacher", "brl"):
        one, two = (json.loads((tmp_path / d / f"{case}.json").read_text()) for d in ("one", "two"))
        assert one["loss"] > 0 and abs(one["loss"] - two["loss"]) < 1e-5 * one["loss"], (case, one["loss"], two["loss"])
        for name, grad in one["grads"].items():
            assert max(abs(a - b) for a, b in zip(grad, two["grads"][name])) < 1e-5, (case, name)
        assert any(any(g) for g in one["grads"].values()), case
