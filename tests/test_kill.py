"""kill -9 of a training run, then --resume: the same model as a run never killed, bit for bit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.numpy import load_file

from conftest import TINY_TRAIN


def _train(*args: str) -> list[str]:
    return [sys.executable, "-m", "mmcl.cli", "train", *args]


@pytest.mark.slow
def test_kill_9_after_an_epoch_then_resume_equals_a_straight_run(tiny_prepared, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    config = [f"data.root={tiny_prepared}", *TINY_TRAIN, "optim.epochs=3", "cpu_threads=1", "name=r"]
    subprocess.run(_train(*config, f"output_dir={tmp_path / 'straight'}"), env=env, check=True, capture_output=True,
                   timeout=300)
    run = tmp_path / "killed" / "r"
    proc = subprocess.Popen(_train(*config, f"output_dir={tmp_path / 'killed'}"), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (run / "state" / "trainer_state.json").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)  # somewhere in epoch 2 (or while epoch 1's state is being replaced)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL and not (run / "metrics.json").exists()
    subprocess.run(_train("--resume", str(run)), env=env, check=True, capture_output=True, timeout=300)
    straight = tmp_path / "straight" / "r"
    for name in ("best.safetensors", "last.safetensors"):
        a, b = load_file(straight / name), load_file(run / name)
        assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a), name
    history = [[{k: v for k, v in h.items() if k != "time_s"} for h in json.loads((r / "history.json").read_text())
                ["history"]] for r in (straight, run)]  # all but the wall times
    assert history[0] == history[1] and [h["epoch"] for h in history[1]] == [1, 2, 3]
    assert json.loads((straight / "metrics.json").read_text())["top1"] == json.loads(
        (run / "metrics.json").read_text())["top1"]
