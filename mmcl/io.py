"""Atomic file writes: every output mmcl writes appears whole or not at all.

A writer fills ``<name>.tmp`` (same directory, so the final rename stays on one filesystem), flushes it to disk and
renames it over ``path``; a reader never sees a half-written file, and a killed job leaves at most a ``.tmp`` behind.
Files are created with the usual permissions (``0o666`` less the umask), like any other output. A whole directory
built beside its destination (a prepared dataset's ``.partial``, a training state) is swapped in by
:func:`replace_dir`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "replace_dir", "write_json"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without an error, it replaces ``path``.

    For writers that take a file name (``np.savez``, ``safetensors.save_file``, PyAV): ``suffix`` is appended to the
    temporary name for writers that insist on an extension (``.npz``). On an error the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{suffix}")
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # some writers (safetensors) create files private
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the path."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 1) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically; returns the path."""
    return atomic_write_text(path, json.dumps(obj, indent=indent) + "\n")


def replace_dir(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Move the complete directory ``src`` to ``dst``, replacing what ``dst`` held; returns ``dst``.

    The old ``dst`` is first renamed to ``<dst>.old`` and deleted after the swap, so at every moment either the old
    or the new directory is complete (a kill between the two renames leaves the old one as ``<dst>.old``).
    """
    src, dst = Path(src), Path(dst)
    old = dst.with_name(dst.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if dst.exists():
        os.replace(dst, old)
    os.replace(src, dst)
    if old.exists():
        shutil.rmtree(old)
    return dst
