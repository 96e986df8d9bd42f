"""mmcl.io: atomic writes leave the old file or the new one, never a partial one."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from mmcl.io import atomic_path, atomic_write_text, replace_dir, write_json


def test_write_replaces_whole_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "sub" / "a.json"
    write_json(path, {"x": 1})
    write_json(path, {"x": 2})
    assert json.loads(path.read_text()) == {"x": 2}
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.json"]


def test_failed_writer_keeps_the_old_file(tmp_path):
    path = tmp_path / "a.txt"
    atomic_write_text(path, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_atomic_path_with_suffix_for_numpy(tmp_path):
    path = tmp_path / "s.npz"
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, a=np.arange(3))
    assert np.load(path)["a"].tolist() == [0, 1, 2]
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def test_replace_dir_swaps_whole_directories(tmp_path):
    dst, new = tmp_path / "state", tmp_path / "state.tmp"
    dst.mkdir()
    (dst / "a").write_text("old")
    new.mkdir()
    (new / "b").write_text("new")
    (tmp_path / "state.old").mkdir()  # left by a run killed between the two renames
    assert replace_dir(new, dst) == dst
    assert sorted(p.name for p in dst.iterdir()) == ["b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
