"""mmcl.data.transforms against an independent port of CTR-GCN's feeder, given the same random draws."""

from __future__ import annotations

import numpy as np
import pytest

import ctrgcn_feeder_reference as ref
from mmcl.data.layouts import get_layout
from mmcl.data.transforms import (STREAMS, ClipTransform, Draws, center_crop_bounds, crop_resize, rotate,
                                  train_crop_length, valid_frame_count)

LAYOUT_PAIRS = {"ntu25": ref.NTU_PAIRS, "kinect_v1_20": ref.UCLA_PAIRS, "nwucla20": ref.UCLA_PAIRS}
CTRGCN_STREAMS = [s for s in STREAMS if not s.startswith("skip")]  # BRL's skip streams: tests/test_longtail.py


def padded_clip(rng: np.random.Generator, valid: int, v: int, m: int, total: int = 300) -> np.ndarray:
    """A (3, total, V, M) clip whose first ``valid`` frames are non-zero, zero-padded like SGN's output."""
    x = np.zeros((3, total, v, m), dtype=np.float32)
    x[:, :valid] = rng.normal(0, 0.5, size=(3, valid, v, m)).astype(np.float32)
    x[:, :valid] += np.linspace(0, 1, valid, dtype=np.float32)[None, :, None, None]
    return x


def stream_flags(stream: str) -> dict[str, bool]:
    return {"bone": stream.startswith("bone"), "vel": stream.endswith("motion")}


@pytest.mark.parametrize("layout_name", ["ntu25", "kinect_v1_20"])
def test_layout_bones_match_ctrgcn_pairs(layout_name):
    pairs = LAYOUT_PAIRS[layout_name]
    assert get_layout(layout_name).bones == tuple((a - 1, b - 1) for a, b in pairs)


@pytest.mark.parametrize("layout_name,m", [("ntu25", 2), ("kinect_v1_20", 1)])
@pytest.mark.parametrize("stream", CTRGCN_STREAMS)
@pytest.mark.parametrize("valid", [23, 64, 103, 300])
def test_eval_matches_reference(layout_name, m, stream, valid):
    layout = get_layout(layout_name)
    x = padded_clip(np.random.default_rng(valid), valid, layout.num_joints, m)
    assert valid_frame_count(x) == ref.valid_frame_num(x) == valid
    expected = ref.feeder_item(x, LAYOUT_PAIRS[layout_name], 64, train=False, **stream_flags(stream))
    got = ClipTransform(window=64, stream=stream, bones=layout.bones, train=False)(x, valid)
    assert got.dtype == np.float32 and got.shape == (3, 64, layout.num_joints, m)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("layout_name,m", [("ntu25", 2), ("kinect_v1_20", 1)])
@pytest.mark.parametrize("stream", CTRGCN_STREAMS)
@pytest.mark.parametrize("valid", [40, 64, 150, 300])
def test_train_matches_reference_given_same_draws(layout_name, m, stream, valid):
    layout = get_layout(layout_name)
    rng = np.random.default_rng(1000 + valid)
    x = padded_clip(rng, valid, layout.num_joints, m)
    transform = ClipTransform(window=64, stream=stream, bones=layout.bones, train=True)
    for _ in range(3):
        draws = transform.draw(valid, rng)
        # torch's uniform_ draws float32 angles; give both sides the same float32 values
        angles = tuple(float(np.float32(a)) for a in draws.angles)
        draws = Draws(draws.p, draws.start, angles)
        expected = ref.feeder_item(x, LAYOUT_PAIRS[layout_name], 64, train=True, p=draws.p,
                                   bias=draws.start, angles=angles, **stream_flags(stream))
        got = transform(x, valid, draws=draws)
        assert got.shape == (3, 64, layout.num_joints, m)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def test_crop_draws_cover_reference_range():
    rng = np.random.default_rng(0)
    t = ClipTransform(window=64, train=True)
    valid = 200
    draws = [t.draw(valid, rng) for _ in range(2000)]
    ps = np.array([d.p for d in draws])
    assert 0.5 <= ps.min() < 0.52 and 0.98 < ps.max() < 1.0
    for d in draws:
        length = train_crop_length(valid, d.p, 64)
        assert 64 <= length <= valid and 0 <= d.start <= valid - length
        assert all(-0.3 <= a <= 0.3 for a in d.angles)
    assert max(d.start for d in draws) > 80


def test_crop_floor_and_short_clips():
    assert train_crop_length(100, 0.5, 64) == 64
    assert train_crop_length(40, 0.9, 64) == 40  # shorter than the floor: the whole clip
    assert train_crop_length(300, 0.5, 64) == 150
    assert train_crop_length(300, 0.5, 200) == 200  # floor follows min_length / window
    assert ClipTransform(window=52).floor_length == 52
    assert ClipTransform(window=52, min_length=64).floor_length == 64
    assert center_crop_bounds(103) == (2, 101)
    assert center_crop_bounds(30) == (0, 30)


def test_same_generator_state_gives_same_output():
    x = padded_clip(np.random.default_rng(3), 120, 25, 2)
    t = ClipTransform(stream="bone_motion", bones=get_layout("ntu25").bones, train=True)
    a = t(x, 120, rng=np.random.default_rng(7))
    b = t(x, 120, rng=np.random.default_rng(7))
    c = t(x, 120, rng=np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_rotation_is_a_rotation():
    x = padded_clip(np.random.default_rng(4), 64, 25, 2, total=64)
    y = rotate(x, (0.2, -0.1, 0.3))
    np.testing.assert_allclose(np.linalg.norm(y, axis=0), np.linalg.norm(x, axis=0), rtol=1e-5)
    np.testing.assert_allclose(rotate(x, (0.0, 0.0, 0.0)), x, atol=0)


def test_resize_identity_at_same_length():
    x = padded_clip(np.random.default_rng(5), 64, 20, 1, total=64)
    np.testing.assert_allclose(crop_resize(x, 0, 64, 64), x, atol=1e-7)


def test_bad_arguments():
    x = padded_clip(np.random.default_rng(6), 50, 25, 2)
    with pytest.raises(ValueError, match="unknown stream"):
        ClipTransform(stream="velocity")
    with pytest.raises(ValueError, match="bone pairs"):
        ClipTransform(stream="bone")
    with pytest.raises(ValueError, match="Generator or explicit draws"):
        ClipTransform(train=True)(x, 50)
    with pytest.raises(ValueError, match="valid length"):
        ClipTransform()(x, 0)
    with pytest.raises(ValueError, match="crop start"):
        ClipTransform(train=True)(x, 50, draws=Draws(1.0, 5, None))
    with pytest.raises(ValueError, match="3 coordinate channels"):
        rotate(x[:2], (0.1, 0.1, 0.1))
