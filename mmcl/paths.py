"""Where mmcl finds its configs and puts generated data.

mmcl is installed from its repository (``pip install -e .``), so the repository's ``configs/`` and ``cache/`` sit next
to the package. ``MMCL_CACHE`` moves the cache elsewhere (a scratch disk, a shared filesystem).
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def configs_dir() -> Path:
    """The repository's ``configs/`` directory."""
    path = PROJECT_ROOT / "configs"
    if not path.is_dir():
        raise FileNotFoundError(
            f"configs directory not found at {path}; install mmcl from its repository with `pip install -e .`")
    return path


def cache_dir() -> Path:
    """Default place for generated datasets and teacher features: ``$MMCL_CACHE`` or the repository's ``cache/``."""
    return Path(os.environ.get("MMCL_CACHE", PROJECT_ROOT / "cache"))
