"""OpenMP threads that sleep when they wait: the guard of training on a shared CPU.

PyTorch's CPU kernels run on an OpenMP thread pool, one thread per core by default. GNU OpenMP's default wait policy
spins: a thread that reaches the end of a parallel region busy-waits for the others. When another process keeps a
core busy, the pool's thread on that core runs only part of the time, every parallel region waits for it, and the
spinning threads take CPU time from the very thread they wait for; a training step then slows by an order of
magnitude. With ``OMP_WAIT_POLICY=PASSIVE`` waiting threads sleep instead (``benchmarks/oversubscription.py``
measures both, and choosing the thread count from the cores left free, against one competing process).

OpenMP reads the policy once, when torch loads it, so :func:`passive_wait_policy` must run before ``import torch``:
the ``mmcl`` command (and through it ``mmcl/train.py``) calls it first thing.
"""

from __future__ import annotations

import os
import sys

WAIT_POLICY_ENV = "OMP_WAIT_POLICY"


def passive_wait_policy() -> bool:
    """Let idle OpenMP threads sleep (unless the user chose a policy); True when it can still take effect (torch
    not imported yet)."""
    os.environ.setdefault(WAIT_POLICY_ENV, "PASSIVE")
    return "torch" not in sys.modules
