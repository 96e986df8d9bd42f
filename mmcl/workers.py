"""Data-loader workers that die with the process that started them.

A worker busy decoding when its parent is killed (``kill -9``, the OOM killer) can outlive it: PyTorch's workers
notice a dead parent only between items, and one blocked writing a finished batch to a pipe nobody reads never does.
On Linux, :class:`DieWithParent` as a ``DataLoader``'s ``worker_init_fn`` asks the kernel to send the worker SIGKILL
when its parent dies (``prctl(PR_SET_PDEATHSIG)``); elsewhere it does nothing.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class DieWithParent:
    """``worker_init_fn``: the worker gets SIGKILL when the process that built this object dies."""

    def __init__(self) -> None:
        self.parent = os.getpid()

    def __call__(self, worker_id: int) -> None:
        if not sys.platform.startswith("linux"):
            return
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != self.parent:  # the parent died before the request took effect
            os._exit(1)
