"""Damaged teacher caches given to ``mmcl train`` (co-learning): each shard is verified when the cache is opened
(checksum, shapes and dtypes against the manifest, finite features, answers), so a bad one ends in one line naming
the shard, before any run folder exists; precompute records a sample whose features are not finite as failed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file
from test_hostile_inputs import Case, assert_one_line_error, corruptions, run_cli

from conftest import TINY_TRAIN
from teachers.cache import CacheWriter, Chunk, merge_index, open_cache, write_manifest

K, D, P, DT = 3, 4, 2, 5  # frames x visual width, prompts x text width
NAMES = [f"S001C001P{p:03d}R001A{c + 1:03d}" for p in range(1, 5) for c in range(3)]  # conftest.write_tiny_prepared
GOOD: dict[str, Path] = {}


def write_cache(path: Path) -> Path:
    """A finished cache of the tiny prepared set's samples, in two shards (two writer ranks)."""
    rng = np.random.default_rng(0)
    path = CacheWriter.initialise(path, {"format": 1, "test": True}, "name: t\n")
    for rank, names in enumerate((NAMES[:7], NAMES[7:])):
        chunk = Chunk()
        for j, name in enumerate(names):
            chunk.add(name, rng.normal(size=(K, D)), rng.normal(size=(P, DT)), [f"{name} é", ""][: P], short=False,
                      crop_box=(0, 0, 8, 8), num_video_frames=10 + j)
        CacheWriter(path, rank=rank).commit(chunk)
    write_manifest(path, {"num_prompts": P, "num_frames": K, "visual_dim": D, "text_dim": DT, **merge_index(path)})
    return path


@pytest.fixture(autouse=True)
def _good_cache(tiny_prepared, tmp_path_factory):
    if "cache" not in GOOD:
        GOOD["cache"] = write_cache(tmp_path_factory.getbasetemp() / "good-teacher-cache")
    GOOD["prepared"] = tiny_prepared


def train(d: Path) -> list[str]:
    return ["train", f"data.root={GOOD['prepared']}", f"output_dir={d / 'runs'}", *TINY_TRAIN,
            "colearn.fam.enabled=true", f"colearn.teacher.cache={d / 'cache'}"]


def shard(cache: Path, i: int = 0) -> Path:
    return cache / "chunks" / f"{json.loads((cache / 'index.json').read_text())['chunks'][i]}.safetensors"


def corrupt(kind: str) -> Callable[[Path], list[str]]:
    def make(d: Path) -> list[str]:
        cache = Path(shutil.copytree(GOOD["cache"], d / "cache"))
        shard(cache).write_bytes(corruptions(shard(cache).read_bytes())[kind])
        return train(d)
    return make


def rewrite(edit: Callable[[dict], None], i: int = 0) -> Callable[[Path], list[str]]:
    """Shard ``i`` rewritten with ``edit(tensors)`` applied, in a cache without checksums (as written before
    them, or by hand): only the checks of the tensors themselves can notice."""
    def make(d: Path) -> list[str]:
        cache = Path(shutil.copytree(GOOD["cache"], d / "cache"))
        tensors = load_file(shard(cache, i))
        edit(tensors)
        save_file(tensors, shard(cache, i))
        index = json.loads((cache / "index.json").read_text())
        index.pop("sha256")
        (cache / "index.json").write_text(json.dumps(index))
        return train(d)
    return make


def edit_index(edit: Callable[[dict], None]) -> Callable[[Path], list[str]]:
    def make(d: Path) -> list[str]:
        cache = Path(shutil.copytree(GOOD["cache"], d / "cache"))
        index = json.loads((cache / "index.json").read_text())
        edit(index)
        (cache / "index.json").write_text(json.dumps(index))
        return train(d)
    return make


def _set(key: str, value: float, row: int = 1) -> Callable[[dict], None]:
    def edit(t: dict) -> None:
        t[key] = t[key].copy()
        t[key][row].flat[0] = value
    return edit


SHARD = "{tmp}/cache/chunks/r000-c00000-"
CASES = {f"cache-shard-{kind}": Case(corrupt(kind), (SHARD,))
         for kind in ("empty", "truncated", "random", "headerflip", "bitflip")}
CASES["cache-shard-bitflip"] = Case(corrupt("bitflip"), (SHARD, "checksum"))
CASES.update({
    "cache-visual-nan": Case(rewrite(_set("visual", np.nan)), (SHARD, "visual features", "NaN or inf", "[1]")),
    "cache-visual-inf": Case(rewrite(_set("visual", np.inf, 0)), (SHARD, "visual features", "NaN or inf")),
    "cache-text-nan": Case(rewrite(_set("text", np.nan), 1), ("{tmp}/cache/chunks/r001-c00000-", "text features")),
    "cache-visual-wide": Case(rewrite(lambda t: t.update(visual=np.zeros((7, K, D + 1), np.float32))),
                              (SHARD, "visual (7, 3, 5)", "expected (7, 3, 4)")),
    "cache-visual-frames": Case(rewrite(lambda t: t.update(visual=np.zeros((7, K + 1, D), np.float32))),
                                (SHARD, "visual (7, 4, 4)")),
    "cache-text-wide": Case(rewrite(lambda t: t.update(text=np.zeros((7, P, DT + 3), np.float32))),
                            (SHARD, "text (7, 2, 8)")),
    "cache-visual-float64": Case(rewrite(lambda t: t.update(visual=t["visual"].astype(np.float64))),
                                 (SHARD, "float64", "float32")),
    "cache-visual-missing": Case(rewrite(lambda t: t.pop("visual")), (SHARD, "visual missing")),
    "cache-extra-tensor": Case(rewrite(lambda t: t.update(extra=np.zeros(2, np.float32))), (SHARD, "unexpected extra")),
    "cache-fewer-rows": Case(rewrite(lambda t: t.update({k: v[:3] for k, v in t.items() if k != "answer_bytes"})),
                             (SHARD,)),
    "cache-answers-not-utf8": Case(rewrite(lambda t: t.update(answer_bytes=np.full_like(t["answer_bytes"], 0xFF))),
                                   (SHARD, "UTF-8")),
    "cache-answer-offsets-beyond": Case(rewrite(lambda t: t.update(answer_offsets=t["answer_offsets"] * 2)),
                                        (SHARD, "answer offsets")),
    "cache-shard-deleted": Case(lambda d: shard(Path(shutil.copytree(GOOD["cache"], d / "cache"))).unlink()
                                or train(d), (SHARD, "missing")),
    "cache-index-row-outside": Case(edit_index(lambda i: i["rows"].update({NAMES[0]: [0, 99]})),
                                    ("{tmp}/cache", "rows")),
    "cache-index-chunk-outside": Case(edit_index(lambda i: i["rows"].update({NAMES[0]: [5, 0]})),
                                      ("{tmp}/cache", "outside its chunks")),
    "cache-index-rows-missing": Case(edit_index(lambda i: i.pop("rows")), ("{tmp}/cache", "lacks its fields")),
})


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_damaged_teacher_cache_is_a_one_line_error_naming_the_shard(name, tmp_path, capsys):
    assert_one_line_error(CASES[name], tmp_path, capsys)


def test_the_undamaged_cache_trains(tmp_path, capsys):
    """The corpus's base is a cache that works: the errors above come from the damage."""
    (tmp_path / "cache").symlink_to(GOOD["cache"])
    code, err = run_cli(train(tmp_path), capsys)
    assert code == 0, err
    assert len(open_cache(GOOD["cache"])) == len(NAMES)


def test_precompute_records_non_finite_features_as_failed(tmp_path):
    chunk = Chunk()
    chunk.add("ok", np.ones((K, D)), np.ones((P, DT)), ["a", "b"], short=False, crop_box=(0, 0, 1, 1),
              num_video_frames=3)
    chunk.add("bad", np.full((K, D), np.nan), np.ones((P, DT)), ["a", "b"], short=False, crop_box=(0, 0, 1, 1),
              num_video_frames=3)
    assert chunk.names == ["ok"] and chunk.failed == [{"name": "bad", "reason": "the teachers' features hold NaN or inf"}]
