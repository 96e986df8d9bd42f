"""``mmcl precompute`` with the tiny teachers on the fixture videos: results, failures, resume, sharding."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest_teachers import HEIGHT, WIDTH, fixture_set, mmcl_cache, person_frames, tiny_config, write_video
from mmcl.data.prepared import PreparedData, PreparedInfo, write_prepared
from teachers.cache import CacheWriter, cache_key, open_cache, read_records, resolve_cache_dir
from teachers.clip import preprocess_frames
from teachers.config import ConfigError
from teachers.precompute import Teachers, finish, precompute, process_shard, select_indices
from teachers.tiny import ensure_tiny_teachers
from teachers.video import crop, person_box, sample_video, square_box

__all__ = ["fixture_set", "mmcl_cache"]

GOOD = {"avi", "mp4", "short", "gappy", "nojoints"}
FAILED = {"corrupt": "cannot open video", "missing": "no video for sample", "empty": "video file is empty"}


@pytest.fixture(scope="module")
def teachers(mmcl_cache) -> Teachers:
    config = tiny_config()
    ensure_tiny_teachers(config)  # what precompute does before loading them
    return Teachers(config)


def _names(fixture_set, kinds) -> set[str]:
    return {n for n, kind in fixture_set.expected.items() if kind in kinds}


def test_cli_end_to_end(fixture_set, mmcl_cache, teachers, tmp_path):
    from mmcl.cli import main

    rc = main(["precompute", "--config", "tiny", "--data", str(fixture_set.prepared), "--videos",
               str(fixture_set.videos), "--out", str(tmp_path), "--class-descriptions", str(fixture_set.descriptions),
               "runtime.num_workers=1", "runtime.batch_size=3", "runtime.chunk_size=4", "runtime.video_backend=pyav"])
    assert rc == 0
    (path,) = tmp_path.iterdir()
    assert path.name.startswith("teachfix-tiny-")
    cache = open_cache(path)
    m = cache.manifest
    assert (m["visual_dim"], m["text_dim"], m["num_frames"], m["num_prompts"]) == (64, 384, 5, 7)
    assert set(cache.names) == _names(fixture_set, GOOD) and m["num_samples"] == len(GOOD)
    reasons = {f["name"]: f["reason"] for f in m["failures"]}
    assert set(reasons) == _names(fixture_set, FAILED)
    for name, reason in reasons.items():
        assert FAILED[fixture_set.expected[name]] in reason and name in reason
    assert m["short_videos"] == sorted(_names(fixture_set, {"short"}))
    assert [u["name"] for u in m["uncropped"]] == sorted(_names(fixture_set, {"nojoints"}))
    assert m["splits"] == ["test", "train", "val"] and len(m["prompts"]) == 7
    assert m["last_run"]["samples"] == len(GOOD) and m["last_run"]["samples_per_s"] > 0
    assert 0 < m["last_run"]["decode_share"] < 1 and set(m["versions"]) >= {"torch", "transformers", "open_clip"}
    assert m["versions"]["video_backend"] == "pyav"  # decoded by PyAV; the check below samples with the default

    data = fixture_set.data
    for name in cache.names:
        entry = cache[name]
        assert entry["visual"].shape == (5, 64) and entry["text"].shape == (7, 384)
        assert len(entry["answers"]) == 7 and all(isinstance(a, str) for a in entry["answers"])
        assert entry["short_video"] == (fixture_set.expected[name] == "short")
        # the text vectors are the text encoder's embeddings of the stored answers
        np.testing.assert_allclose(entry["text"], teachers.text.encode(entry["answers"]), atol=1e-5)

    # the visual features are CLIP's embeddings of the square person crops of the 5 sampled frames
    name = next(iter(_names(fixture_set, {"avi"})))
    i = data.names.index(name)
    clip = sample_video(fixture_set.videos / f"{name}_rgb.avi", 5)
    box = person_box(data.color(i), data.frames(i), np.concatenate([clip.indices, clip.indices]), clip.image_size,
                     margin=0.15)
    assert tuple(cache[name]["crop_box"]) == box
    pixels = preprocess_frames(teachers.clip.preprocess, crop(clip.frames, square_box(box, clip.image_size)))
    np.testing.assert_allclose(cache[name]["visual"], teachers.clip.encode_images(pixels).numpy(), atol=1e-5)
    uncropped = next(iter(_names(fixture_set, {"nojoints"})))
    assert tuple(cache[uncropped]["crop_box"]) == (0, 0, 96, 64)

    classes = cache.class_embeddings()
    assert classes["names"] == data.class_names and classes["name_embeddings"].shape == (3, 384)
    assert classes["description_embeddings"].shape == (3, 384)
    np.testing.assert_allclose(classes["name_embeddings"], teachers.text.encode(data.class_names), atol=1e-5)


def test_llm_answers_do_not_depend_on_batching(teachers):
    from teachers.llm import LLMTeacher

    images = [np.random.default_rng(s).integers(0, 256, (480, 480, 3), dtype=np.uint8) for s in range(2)]
    batched = teachers.llm.answer(images)  # left-padded batches of runtime.llm_batch_size prompts
    one_by_one = LLMTeacher(teachers.config.llm, batch_size=1).answer(images)
    assert batched == one_by_one and len(batched) == 2 and all(len(a) == 7 for a in batched)


def test_resume_after_a_kill_does_each_sample_once(fixture_set, teachers, tmp_path, monkeypatch):
    config = tiny_config()
    data = fixture_set.data
    real_commit = CacheWriter.commit
    calls = []

    def commit_then_die(self, chunk):
        if calls:
            raise KeyboardInterrupt("simulated kill")
        calls.append(chunk.names + [f["name"] for f in chunk.failed])
        return real_commit(self, chunk)

    monkeypatch.setattr(CacheWriter, "commit", commit_then_die)
    with pytest.raises(KeyboardInterrupt):
        precompute(config, data, fixture_set.videos, root=tmp_path, teachers=teachers, show_progress=False)
    monkeypatch.setattr(CacheWriter, "commit", real_commit)
    path = resolve_cache_dir(config, data.info.dataset, tmp_path)
    assert not (path / "manifest.json").exists()
    first = calls[0]
    assert len(first) == 2 and len(read_records(path)) == 1

    seen = []
    real_encode = Teachers.encode
    monkeypatch.setattr(Teachers, "encode", lambda self, batch, chunk: (seen.extend(s.name for s in batch),
                                                                        real_encode(self, batch, chunk))[1])
    precompute(config, data, fixture_set.videos, root=tmp_path, teachers=teachers, show_progress=False)
    assert not set(seen) & set(first)  # nothing of the committed chunk was done again
    assert sorted(seen + first) == sorted(data.names)
    records = read_records(path)
    cached = [n for r in records for n in r["names"]]
    assert sorted(cached) == sorted(_names(fixture_set, GOOD))  # exactly one entry per sample
    assert len(open_cache(path)) == len(GOOD)


def test_two_ranks_share_the_samples_disjointly(fixture_set, teachers, tmp_path):
    config = tiny_config()
    data = fixture_set.data
    key = cache_key(config, data.info.dataset)
    path = resolve_cache_dir(config, data.info.dataset, tmp_path, key)
    CacheWriter.initialise(path, key, "")
    indices = select_indices(data, ["train", "val", "test"])
    handled = [process_shard(teachers, config, data, fixture_set.videos, path, indices, rank, 2, "run", False, False)
               for rank in (0, 1)]
    assert handled == [4, 4]
    records = read_records(path)
    by_rank = {r: {n for rec in records if rec["rank"] == r for n in rec["names"] + [f["name"] for f in rec["failed"]]}
               for r in (0, 1)}
    assert not by_rank[0] & by_rank[1] and by_rank[0] | by_rank[1] == set(data.names)
    assert by_rank[0] == {data.names[i] for i in indices[0::2]}
    manifest = finish(teachers, config, data, fixture_set.videos, path, key, ["train", "val", "test"], "run", 1.0, 2,
                      None)
    assert manifest["num_samples"] == len(GOOD) and manifest["num_failed"] == len(FAILED)
    assert manifest["last_run"]["world_size"] == 2
    assert set(open_cache(path).names) == _names(fixture_set, GOOD)
    assert "description_embeddings" not in open_cache(path).class_embeddings()


@pytest.mark.slow
def test_torchrun_two_processes_share_the_work(fixture_set, mmcl_cache, teachers, tmp_path):
    """Two processes (torchrun, gloo) each take half of the samples; every sample's features are byte for byte those
    one process computes."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "mmcl.cli",
           "precompute", "--config", "tiny", "--data", str(fixture_set.prepared), "--videos", str(fixture_set.videos),
           "--out", str(tmp_path / "two"), "runtime.num_workers=0", "runtime.batch_size=2", "runtime.chunk_size=2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    (path,) = (tmp_path / "two").iterdir()
    cache = open_cache(path)
    config = tiny_config()
    config.runtime.batch_size = 2  # as the torchrun processes (their batches hold other samples: no matter)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each torchrun process: the thread count changes the features' last bits
    try:
        one = open_cache(precompute(config, fixture_set.data, fixture_set.videos, root=tmp_path / "one",
                                    teachers=teachers, show_progress=False))
    finally:
        torch.set_num_threads(threads)
    assert sorted(one.names) == sorted(cache.names) and one.failures == cache.failures
    for name in one.names:
        a, b = one[name], cache[name]
        for key in ("visual", "text", "crop_box"):
            assert a[key].dtype == b[key].dtype and a[key].tobytes() == b[key].tobytes(), (name, key)
        assert (a["answers"], a["short_video"], a["num_video_frames"]) == (
            b["answers"], b["short_video"], b["num_video_frames"]), name
    assert cache.manifest["last_run"]["world_size"] == 2 and set(cache.names) == _names(fixture_set, GOOD)
    data = fixture_set.data
    indices = select_indices(data, ["train", "val", "test"])
    records = read_records(path)
    for rank in (0, 1):
        handled = [n for r in records if r["rank"] == rank for n in r["names"] + [f["name"] for f in r["failed"]]]
        assert sorted(handled) == sorted(data.names[i] for i in indices[rank::2])


def test_retry_failed_picks_up_a_fixed_video(fixture_set, teachers, tmp_path):
    config = tiny_config()
    videos = tmp_path / "videos"
    shutil.copytree(fixture_set.videos, videos)
    data = fixture_set.data
    path = precompute(config, data, videos, root=tmp_path / "out", splits=["val"], teachers=teachers,
                      show_progress=False)
    (missing,) = _names(fixture_set, {"missing"})
    assert missing in open_cache(path).failures and len(open_cache(path)) == 0
    write_video(videos / f"{missing}_rgb.avi", person_frames(16)[0])
    precompute(config, data, videos, root=tmp_path / "out", splits=["val"], teachers=teachers, show_progress=False)
    assert missing not in open_cache(path)  # failures are not retried by default
    precompute(config, data, videos, root=tmp_path / "out", splits=["val", "test"], teachers=teachers,
               retry_failed=True, show_progress=False)
    cache = open_cache(path)
    assert missing in cache and missing not in cache.failures
    assert cache.manifest["splits"] == ["test", "val"]


def test_bad_inputs_are_clear_errors(fixture_set, teachers, tmp_path):
    config = tiny_config()
    info = PreparedInfo(dataset="nocolour", layout="ntu25", num_person=2, class_names=["a"])
    plain = write_prepared(tmp_path / "plain", info, [("S1", 0, np.ones((4, 2, 25, 3), np.float32))],
                           {"train": [0]})
    with pytest.raises(ConfigError, match="no colour coordinates .*video.crop.enabled=false"):
        precompute(config, PreparedData(plain), fixture_set.videos, root=tmp_path, teachers=teachers)
    with pytest.raises(FileNotFoundError, match="videos directory not found"):
        precompute(config, fixture_set.data, tmp_path / "nowhere", root=tmp_path, teachers=teachers)
    bad = tmp_path / "classes.json"
    bad.write_text(json.dumps([{"name": "drink water", "description": "x"}]))
    with pytest.raises(ConfigError, match="no description for class.*'eat meal'"):
        precompute(config, fixture_set.data, fixture_set.videos, root=tmp_path, teachers=teachers,
                   descriptions_path=bad)
    with pytest.raises(ValueError, match="loaded for another configuration"):
        precompute(tiny_config("llm.max_new_tokens=3"), fixture_set.data, fixture_set.videos, root=tmp_path,
                   teachers=teachers)


def _precompute_under(policy: str, fixture_set, teachers, videos: Path, root: Path):
    """The fixture set's cache made with ``video.on_truncated = policy`` from ``videos``, opened."""
    config = tiny_config()
    config.video.on_truncated = policy
    return open_cache(precompute(config, fixture_set.data, videos, root=root, teachers=teachers, show_progress=False))


def test_a_video_shorter_than_its_skeleton_follows_the_policy(fixture_set, teachers, tmp_path):
    """A video cut to 8 of its skeleton's 16 frames is never encoded silently: skip (the default) records it as
    failed with both counts, use encodes what decodes and lists it in the manifest, fail stops precompute naming it."""
    from mmcl.errors import MmclError

    videos = Path(shutil.copytree(fixture_set.videos, tmp_path / "videos"))
    (cut,) = _names(fixture_set, {"avi"})
    write_video(videos / f"{cut}_rgb.avi", person_frames(16)[0][:8])

    def run(policy: str):
        return _precompute_under(policy, fixture_set, teachers, videos, tmp_path / policy)

    skipped = run("skip")
    assert cut not in skipped and set(skipped.names) == _names(fixture_set, GOOD) - {cut}
    assert skipped.failures[cut] == (f"{videos / cut}_rgb.avi: the video decodes 8 frames, its skeleton covers 16 "
                                     f"(cut short or corrupt)")
    used = run("use")
    assert set(used.names) == _names(fixture_set, GOOD) and used[cut]["num_video_frames"] == 8
    assert used.manifest["truncated_videos"] == [{"name": cut, "reason": skipped.failures[cut]}]
    with pytest.raises(MmclError, match=rf"{cut}_rgb.avi: the video decodes 8 frames.*on_truncated=fail"):
        run("fail")


def test_a_video_with_a_zeroed_third_follows_the_policy(fixture_set, teachers, tmp_path):
    """A video whose middle third of bytes is zeroed still decodes more frames (19 of its 32) than its skeleton
    covers (14), the lost blocks concealed: the decoder's report puts it under video.on_truncated with its frame
    count (skip: failed; use: encoded and listed in the manifest; fail: stops), and no intact video is flagged."""
    from mmcl.errors import MmclError

    videos = Path(shutil.copytree(fixture_set.videos, tmp_path / "videos"))
    (damaged,) = _names(fixture_set, {"gappy"})
    path = write_video(videos / f"{damaged}_rgb.avi",
                       np.random.default_rng(1).integers(0, 256, (32, HEIGHT, WIDTH, 3), dtype=np.uint8))
    raw = bytearray(path.read_bytes())
    third = len(raw) // 3
    raw[third:2 * third] = bytes(third)
    path.write_bytes(bytes(raw))

    def run(policy: str):
        return _precompute_under(policy, fixture_set, teachers, videos, tmp_path / policy)

    skipped = run("skip")
    assert set(skipped.names) == _names(fixture_set, GOOD) - {damaged}
    reason = skipped.failures[damaged]
    assert re.fullmatch(rf"{re.escape(str(path))}: the video decodes 19 frames with damage: .*decoder error.*", reason)
    used = run("use")
    assert set(used.names) == _names(fixture_set, GOOD) and used[damaged]["num_video_frames"] == 19
    assert used.manifest["truncated_videos"] == [{"name": damaged, "reason": reason}]
    with pytest.raises(MmclError, match=rf"{damaged}_rgb.avi: the video decodes 19 frames with damage.*on_truncated"):
        run("fail")
