"""SkeletonDataset: items, reference equivalence, determinism per (seed, epoch, index), per-sample reads."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import ctrgcn_feeder_reference as ref
from mmcl.data.dataset import SkeletonDataset
from mmcl.data.prepared import PreparedData, PreparedDataError, PreparedInfo, write_prepared
from mmcl.data.transforms import ClipTransform, Draws

LENGTHS = [30, 64, 80, 103, 150, 200, 45, 90, 120, 300]


def sgn_like_clip(rng: np.random.Generator, t: int, two_actors: bool) -> np.ndarray:
    """(T, 2, 25, 3) as SGN leaves a sample: translated by actor 1's spine-mid in frame 0, actor 2 zero where absent."""
    x = rng.normal(0, 0.3, size=(t, 2, 25, 3)).astype(np.float32) + np.float32(1.5)
    if two_actors:
        x[: t // 3, 1] = 0  # actor 2 enters late
    else:
        x[:, 1] = 0
    x[:, 0] -= x[0, 0, 1]
    x[:, 1] -= x[0, 0, 1] * (x[:, 1] != 0)
    return x


@pytest.fixture(scope="module")
def clips() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [sgn_like_clip(rng, t, two_actors=i % 2 == 0) for i, t in enumerate(LENGTHS)]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, clips) -> PreparedData:
    out = tmp_path_factory.mktemp("ds") / "ntu_tiny"
    info = PreparedInfo(dataset="tiny", layout="ntu25", num_person=2, class_names=[f"c{i}" for i in range(5)])
    samples = [(f"s{i:02d}", i % 5, c) for i, c in enumerate(clips)]
    write_prepared(out, info, samples, {"train": list(range(7)), "val": [7], "test": [8, 9]})
    return PreparedData(out)


def padded(clip: np.ndarray) -> np.ndarray:
    """The reference's view of a prepared sample: zero-padded to 300 frames, (C, T, V, M)."""
    x = np.zeros((3, 300, 25, 2), dtype=np.float32)
    x[:, : len(clip)] = clip.transpose(3, 0, 2, 1)
    return x


def test_length_from_offsets_is_reference_valid_count(prepared, clips):
    for i, clip in enumerate(clips):
        assert prepared.lengths[i] == ref.valid_frame_num(padded(clip)) == len(clip)


@pytest.mark.parametrize("stream", ["joint", "bone", "joint_motion", "bone_motion"])
def test_eval_items_match_reference(prepared, clips, stream):
    ds = SkeletonDataset(prepared, "train", stream=stream)
    assert len(ds) == 7
    for k in range(len(ds)):
        item = ds[k]
        i = item["index"]
        assert item["skeleton"].dtype == torch.float32 and item["skeleton"].shape == (3, 64, 25, 2)
        assert item["label"] == i % 5 and item["name"] == f"s{i:02d}" and isinstance(item["label"], int)
        expected = ref.feeder_item(padded(clips[i]), ref.NTU_PAIRS, 64, train=False,
                                   bone=stream.startswith("bone"), vel=stream.endswith("motion"))
        np.testing.assert_allclose(item["skeleton"].numpy(), expected, rtol=0, atol=1e-6)


def test_train_items_match_reference_with_their_draws(prepared, clips):
    ds = SkeletonDataset(prepared, "train", stream="bone_motion", train=True, seed=3)
    ds.set_epoch(2)
    t = ClipTransform(stream="bone_motion", bones=prepared.layout.bones, train=True)
    for k in range(len(ds)):
        item = ds[k]
        i = item["index"]
        draws = t.draw(LENGTHS[i], np.random.default_rng([3, 2, i, 0]))
        expected = ref.feeder_item(padded(clips[i]), ref.NTU_PAIRS, 64, train=True, p=draws.p, bias=draws.start,
                                   angles=draws.angles, bone=True, vel=True)
        np.testing.assert_allclose(item["skeleton"].numpy(), expected, rtol=0, atol=2e-6)
        np.testing.assert_array_equal(item["skeleton"].numpy(), t(padded(clips[i]), LENGTHS[i], draws=Draws(
            draws.p, draws.start, draws.angles)))


def test_determinism_per_seed_epoch_index(prepared):
    a = SkeletonDataset(prepared, "train", train=True, seed=1)
    b = SkeletonDataset(prepared, "train", train=True, seed=1)
    for k in range(len(a)):
        assert torch.equal(a[k]["skeleton"], b[k]["skeleton"])
    first = a[0]["skeleton"]
    a.set_epoch(1)
    assert not torch.equal(a[0]["skeleton"], first)
    a.set_epoch(0)
    assert torch.equal(a[0]["skeleton"], first)
    assert not torch.equal(SkeletonDataset(prepared, "train", train=True, seed=2)[0]["skeleton"], first)


def _batches(ds: SkeletonDataset, workers: int) -> list[dict]:
    loader = DataLoader(ds, batch_size=3, shuffle=False, num_workers=workers)
    return list(loader)


def test_same_batches_with_0_and_2_workers(prepared):
    ds = SkeletonDataset(prepared, "train", stream="joint_motion", train=True, seed=5, repeat=2)
    ds.set_epoch(4)
    serial, parallel = _batches(ds, 0), _batches(ds, 2)
    assert len(serial) == len(parallel) == 5
    for x, y in zip(serial, parallel, strict=True):
        assert torch.equal(x["skeleton"], y["skeleton"])
        assert torch.equal(x["label"], y["label"]) and torch.equal(x["index"], y["index"])
        assert x["name"] == y["name"]


def test_repeat_copies_get_their_own_draws(prepared):
    ds = SkeletonDataset(prepared, "train", train=True, repeat=3)
    assert len(ds) == 21
    assert ds[0]["index"] == ds[7]["index"] == ds[14]["index"]
    assert not torch.equal(ds[0]["skeleton"], ds[7]["skeleton"])
    np.testing.assert_array_equal(ds.labels, np.tile(prepared.labels[:7], 3))
    with pytest.raises(IndexError):
        ds[21]


def test_eval_mode_has_no_randomness(prepared):
    ds = SkeletonDataset(prepared, "test", stream="bone")
    first = ds[0]["skeleton"]
    ds.set_epoch(9)
    assert torch.equal(ds[0]["skeleton"], first)
    assert [ds[k]["index"] for k in range(len(ds))] == [8, 9]


def test_reads_one_sample_at_a_time(prepared, monkeypatch):
    import os

    ds = SkeletonDataset(prepared.root, "val", train=True)
    reads = []
    pread = os.pread

    def recording(fd, n, offset):
        reads.append((n, offset))
        return pread(fd, n, offset)

    def forbidden(*args, **kwargs):
        raise AssertionError("the dataset must not map or load the whole joints array")

    monkeypatch.setattr(os, "pread", recording)
    monkeypatch.setattr(PreparedData, "joints_memmap", forbidden)
    monkeypatch.setattr(np, "memmap", forbidden)
    monkeypatch.setattr(np, "fromfile", forbidden)
    monkeypatch.setattr(np, "load", forbidden)
    ds[0]
    frame_bytes = 2 * 25 * 3 * 4
    assert reads == [(LENGTHS[7] * frame_bytes, int(prepared.offsets[7]) * frame_bytes)]


def test_errors_name_the_path(tmp_path, prepared):
    missing = tmp_path / "nowhere"
    with pytest.raises(PreparedDataError, match=str(missing)):
        SkeletonDataset(missing, "train")
    with pytest.raises(PreparedDataError, match="no split 'holdout'"):
        SkeletonDataset(prepared, "holdout")
    out = tmp_path / "no_val"
    info = PreparedInfo(dataset="tiny", layout="kinect_v1_20", num_person=1, class_names=["a"], channels=2)
    write_prepared(out, info, [("x", 0, np.ones((5, 1, 20, 2), np.float32))], {"train": [0], "val": []})
    with pytest.raises(PreparedDataError, match=f"split 'val' of {out} is empty"):
        SkeletonDataset(out, "val")
    with pytest.raises(ValueError, match="2 channels per joint; random rotation needs 3"):
        SkeletonDataset(out, "train", train=True)
    item = SkeletonDataset(out, "train", train=True, random_rotation=False)[0]
    assert item["skeleton"].shape == (2, 64, 20, 1)
    with pytest.raises(ValueError, match="unknown stream"):
        SkeletonDataset(prepared, "train", stream="velocity")
