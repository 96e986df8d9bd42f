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


def shown_path(path: str | os.PathLike) -> str:
    """``path`` as a results file records it: relative to the working directory when it lies below it, or below its
    parent (``../cache``, ``../shared``: the data beside a checkout) unless that parent is the filesystem root; else
    as given. A committed result then names no machine's directories."""
    target, cwd = Path(path).resolve(), Path.cwd().resolve()
    if target.is_relative_to(cwd):
        return str(target.relative_to(cwd))
    if cwd.parent != cwd.parent.parent and target.is_relative_to(cwd.parent):
        return str(Path("..") / target.relative_to(cwd.parent))
    return str(path)
