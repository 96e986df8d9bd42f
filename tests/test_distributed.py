"""The main job on two CPU processes (torchrun, gloo): one run, trained by both processes together."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TINY_TRAIN


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
