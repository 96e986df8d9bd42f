"""Killing a process with kill -9 leaves none of its data-loader workers behind (mmcl.workers.DieWithParent)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")

# A loader from mmcl.engine.data.build_loader whose two workers each write their pid, then sleep in __getitem__
# (a long decode): a worker busy there does not look for its parent until the item is done.
SCRIPT = """
import os, sys, time
from pathlib import Path
from torch.utils.data import Dataset
from mmcl.engine.data import build_loader

class Slow(Dataset):
    def __len__(self):
        return 8
    def __getitem__(self, i):
        Path(sys.argv[1], str(os.getpid())).touch()
        time.sleep(120)
        return i

for batch in build_loader(Slow(), batch_size=1, num_workers=2):
    pass
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"  # a zombie has exited (nobody may reap it in a container)


def test_kill_9_of_the_parent_kills_its_loader_workers(tmp_path):
    pids = tmp_path / "pids"
    pids.mkdir()
    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent(SCRIPT), str(pids)],
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 60
        while len(list(pids.iterdir())) < 2 and time.monotonic() < deadline and parent.poll() is None:
            time.sleep(0.1)
        workers = [int(p.name) for p in pids.iterdir()]
        assert len(workers) == 2 and all(map(_alive, workers)), workers
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    deadline = time.monotonic() + 10
    while any(map(_alive, workers)) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [pid for pid in workers if _alive(pid)]
    for pid in left:  # the test's own cleanup when the behaviour is broken
        os.kill(pid, signal.SIGKILL)
    assert not left, f"workers {left} outlived their killed parent"
