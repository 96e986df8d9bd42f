"""mmcl.data.ntu: raw parsing, the SGN/CTR-GCN selection against an independent port, names, splits, prepare."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

import mmcl.data.ntu as ntu
from mmcl.data.ntu import (JOINT_COLUMNS, Body, BodyInfo, NoBodyError, SkeletonFormatError, parse_name,
                           parse_skeleton_file, prepare_ntu, read_sample, read_skeleton, split_indices,
                           validation_subjects, write_skeleton_file)
from mmcl.data.ntu_classes import MISSING_SKELETONS, NTU60_CLASSES, NTU120_CLASSES
from mmcl.data.prepared import PreparedData, PreparedWriter
from sgn_reference import sgn_joints, sgn_sample

SHARED = Path(__file__).resolve().parents[2] / "shared"
SAMPLE = SHARED / "ntu-sample" / "S001C001P001R001A001.skeleton"
needs_sample = pytest.mark.skipif(not SAMPLE.exists(), reason="real NTU sample not available")

# A standing pose (x, y in metres around the spine base), NTU joint order.
POSE = np.array([
    (0, 0), (0, 0.3), (0, 0.55), (0, 0.7), (-0.18, 0.45), (-0.25, 0.2), (-0.28, 0), (-0.29, -0.07),
    (0.18, 0.45), (0.25, 0.2), (0.28, 0), (0.29, -0.07), (-0.08, -0.02), (-0.09, -0.45), (-0.1, -0.85),
    (-0.1, -0.9), (0.08, -0.02), (0.09, -0.45), (0.1, -0.85), (0.1, -0.9), (0, 0.5), (-0.3, -0.13),
    (-0.27, -0.1), (0.3, -0.13), (0.27, -0.1)], dtype=np.float64)


def make_body(rng: np.random.Generator, body_id: str, t: int, x0: float = 0.0, motion: float = 0.05,
              noisy: bool = False) -> Body:
    """A body at frame ``t``: the pose shifted to ``x0``, arms waving with amplitude ``motion``, all 12 columns."""
    xy = POSE.copy()
    if noisy:  # wide and flat: x-spread > 0.8 * y-spread
        xy = xy * np.array([4.0, 0.2])
    xy[4:12, 1] += motion * np.sin(0.3 * t + np.arange(8))
    xyz = np.column_stack([xy[:, 0] + x0, xy[:, 1], np.full(25, 3.0)]) + rng.normal(0, 0.01, (25, 3))
    joints = np.zeros((25, 12))
    joints[:, 0:3] = xyz
    joints[:, 3:5] = np.column_stack([256 + 120 * xyz[:, 0], 212 - 120 * xyz[:, 1]])
    joints[:, 5:7] = np.column_stack([960 + 450 * xyz[:, 0], 540 - 450 * xyz[:, 1]])
    q = rng.normal(size=(25, 4))
    joints[:, 7:11] = q / np.linalg.norm(q, axis=1, keepdims=True)
    joints[:, 11] = rng.integers(0, 3, 25)
    info = BodyInfo(body_id, int(rng.integers(0, 16)), 1, 1, 0, 2, 0, float(rng.normal()), float(rng.normal()), 2)
    return Body(info, joints.astype(np.float32))


def write_scene(path: Path, num_frames: int, bodies: list[dict], seed: int = 0) -> Path:
    """Write a file where each body dict gives ``id``, ``frames`` (where it appears) and make_body keywords."""
    rng = np.random.default_rng(seed)
    frames: list[list[Body]] = [[] for _ in range(num_frames)]
    for spec in bodies:
        kwargs = {k: v for k, v in spec.items() if k not in ("id", "frames")}
        for t in spec["frames"]:
            frames[t].append(make_body(rng, spec["id"], t, **kwargs))
    write_skeleton_file(path, frames)
    return path


def assert_matches_reference(path: Path) -> ntu.NTUSample:
    """read_sample == the SGN port: joints exactly (float32), colours on the kept rows, and coherent frame indices."""
    sample = read_sample(path)
    np.testing.assert_array_equal(sample.joints, sgn_joints(path))
    ref_joints, ref_colors = sgn_sample(path)
    assert sample.num_actors == ref_joints.shape[1] // 75
    if ref_colors.shape[1] == 1:
        ref_colors = np.concatenate([ref_colors, np.full_like(ref_colors, np.nan)], axis=1)
    kept = ~np.isnan(ref_colors).all(axis=(1, 2, 3))  # SGN leaves removed rows in its colours, as NaN
    np.testing.assert_array_equal(sample.color, ref_colors[kept])
    # every actor's colours in a row are those of a body in the recording frame its source index names
    raw = parse_skeleton_file(path)
    per_frame = raw.frames
    for t, sources in enumerate(sample.source_frames):
        for actor, f in enumerate(sources):
            if f < 0:
                assert np.isnan(sample.color[t, actor]).all() and not sample.joints[t, actor].any()
                continue
            assert any(np.array_equal(b.color_xy, sample.color[t, actor]) for b in per_frame[f])
    np.testing.assert_array_equal(sample.frames, np.where(sample.source_frames[:, 0] >= 0,
                                                          sample.source_frames[:, 0], sample.source_frames[:, 1]))
    return sample


# ---------------------------------------------------------------------------------------------------------------------
# Raw parsing
# ---------------------------------------------------------------------------------------------------------------------


@needs_sample
def test_parse_real_sample_fields():
    raw = parse_skeleton_file(SAMPLE)
    assert raw.num_frames == 103 and raw.joints.shape == (103, 25, 12) and raw.joints.dtype == np.float32
    assert (raw.bodies_per_frame() == 1).all()
    assert raw.infos[0] == BodyInfo("72057594037931101", 0, 1, 1, 1, 1, 0, 0.02764709, 0.05745083, 2)
    first = np.array([0.2181153, 0.1725972, 3.785547, 277.419, 191.8218, 1036.233, 519.1677, -0.2059419,
                      0.05349901, 0.9692109, -0.1239193, 2], dtype=np.float32)
    np.testing.assert_array_equal(raw.joints[0, 0], first)
    body = raw.frames[0][0]
    assert body.line == 3 and body.body_id == "72057594037931101"
    np.testing.assert_array_equal(body.xyz[0], first[:3])
    np.testing.assert_array_equal(body.color_xy[0], first[5:7])
    assert body.joint_tracking_state[0] == 2
    color = raw.joints[:, :, 5:7]
    assert (color[..., 0] > 0).all() and (color[..., 0] < 1920).all()
    assert (color[..., 1] > 0).all() and (color[..., 1] < 1080).all()
    tracks = raw.tracks()
    assert list(tracks) == ["72057594037931101"]
    np.testing.assert_array_equal(tracks["72057594037931101"].frames, np.arange(103))


@needs_sample
def test_real_sample_values_are_the_references_float32():
    raw = parse_skeleton_file(SAMPLE)
    rows = [line.split() for line in SAMPLE.read_text().splitlines() if len(line.split()) == 12]
    np.testing.assert_array_equal(raw.joints.reshape(-1, 12), np.array(rows, dtype=np.float32))


@needs_sample
def test_write_parse_round_trip_real_sample(tmp_path):
    raw = parse_skeleton_file(SAMPLE)
    out = tmp_path / "copy.skeleton"
    write_skeleton_file(out, raw.frames)
    again = parse_skeleton_file(out)
    assert again.infos == raw.infos and again.num_frames == raw.num_frames
    np.testing.assert_array_equal(again.joints, raw.joints)
    # NTU's formatting is kept: the real file is reproduced line for line
    assert out.read_text().splitlines() == SAMPLE.read_text().splitlines()


def test_write_parse_round_trip_crafted(tmp_path):
    path = write_scene(tmp_path / "a.skeleton", 6, [{"id": "1", "frames": range(6)}, {"id": "2", "frames": [1, 4]}])
    raw = parse_skeleton_file(path)
    assert raw.bodies_per_frame().tolist() == [1, 2, 1, 1, 2, 1]
    write_skeleton_file(tmp_path / "b.skeleton", raw.frames)
    again = parse_skeleton_file(tmp_path / "b.skeleton")
    assert again.infos == raw.infos
    np.testing.assert_array_equal(again.joints, raw.joints)


def test_parse_crlf_and_empty_frames(tmp_path):
    path = write_scene(tmp_path / "a.skeleton", 5, [{"id": "7", "frames": [1, 3]}])
    crlf = tmp_path / "crlf.skeleton"
    crlf.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    a, b = parse_skeleton_file(path), parse_skeleton_file(crlf)
    assert b.bodies_per_frame().tolist() == [0, 1, 0, 1, 0]
    assert a.infos == b.infos
    np.testing.assert_array_equal(a.joints, b.joints)
    assert [len(f) for f in b.frames] == [0, 1, 0, 1, 0]


def _lines(path: Path) -> list[str]:
    return path.read_text().split("\n")


@pytest.mark.parametrize("case", ["truncated", "bad_number", "joint_count", "columns", "count_not_int", "info_fields",
                                  "trailing", "blank_joint_line", "non_finite"])
def test_malformed_files_name_file_and_line(tmp_path, case):
    path = write_scene(tmp_path / "S001C001P001R001A001.skeleton", 3, [{"id": "5", "frames": range(3)}])
    lines = _lines(path)
    # layout: 1 frame count, per frame: body count, info, joint count, 25 joint lines (28 lines per frame)
    if case == "truncated":
        lines, line, what = lines[:40], 41, "end of file"
    elif case == "bad_number":
        tokens = lines[33].split()
        tokens[2] = "3.1x"
        lines[33], line, what = " ".join(tokens), 34, "column z is not a number"
    elif case == "joint_count":
        lines[3], line, what = "24", 4, "expected 25 joints, got 24"
    elif case == "columns":
        lines[60], line, what = " ".join(lines[60].split()[:11]), 61, "12 numbers"
    elif case == "count_not_int":
        lines[29], line, what = "1.5", 30, "body count of frame 2"
    elif case == "info_fields":
        lines[2], line, what = " ".join(lines[2].split()[:9]), 3, "10 fields"
    elif case == "trailing":
        lines[-1:], line, what = ["junk", ""], 86, "expected end of file after 3 frames"
    elif case == "blank_joint_line":
        lines[10], line, what = "", 11, "got 0"
    else:
        tokens = lines[20].split()
        tokens[0] = "nan"
        lines[20], line, what = " ".join(tokens), 21, "not finite"
    path.write_text("\n".join(lines))
    with pytest.raises(SkeletonFormatError) as err:
        parse_skeleton_file(path)
    assert err.value.line == line and err.value.path == path
    assert str(err.value).startswith(f"{path}:{line}: ") and what in str(err.value)


def test_non_ascii_file_is_a_format_error(tmp_path):
    path = tmp_path / "x.skeleton"
    path.write_bytes(b"1\n0\n\xff\n")
    with pytest.raises(SkeletonFormatError, match=r"x\.skeleton:3: not an ASCII"):
        parse_skeleton_file(path)


def test_no_body_file(tmp_path):
    path = write_scene(tmp_path / "S001C001P001R001A001.skeleton", 4, [])
    assert path.read_text() == "4\n0\n0\n0\n0\n"
    with pytest.raises(NoBodyError, match="S001C001P001R001A001.skeleton"):
        read_skeleton(path)
    with pytest.raises(AssertionError):  # the reference refuses it too
        sgn_joints(path)


def test_all_bodies_too_short_is_no_body(tmp_path):
    path = write_scene(tmp_path / "a.skeleton", 30, [{"id": "1", "frames": range(0, 11)},
                                                      {"id": "2", "frames": range(15, 26)}])
    with pytest.raises(NoBodyError, match="<= 11 frames"):
        read_skeleton(path)
    with pytest.raises(IndexError):  # the reference crashes on it
        sgn_joints(path)


def test_repeated_body_id_that_cannot_be_placed(tmp_path):
    rng = np.random.default_rng(0)
    frames = [[make_body(rng, "1", t), make_body(rng, "1", t)] for t in range(3)]
    write_skeleton_file(tmp_path / "a.skeleton", frames)
    with pytest.raises(SkeletonFormatError, match="appears more than once in a frame") as err:
        read_skeleton(tmp_path / "a.skeleton")
    assert err.value.line == 30  # the second body "1" of frame 1
    with pytest.raises(ValueError):  # the reference fails to place it too
        sgn_joints(tmp_path / "a.skeleton")


# ---------------------------------------------------------------------------------------------------------------------
# The standard selection against the SGN port
# ---------------------------------------------------------------------------------------------------------------------


@needs_sample
def test_real_sample_matches_reference():
    sample = assert_matches_reference(SAMPLE)
    assert sample.joints.shape == (103, 2, 25, 3) and sample.joints.dtype == np.float32
    assert sample.num_actors == 1 and not sample.joints[:, 1].any()
    np.testing.assert_array_equal(sample.joints[0, 0, 1], 0)  # translated by actor 1's spine-mid of frame 0
    np.testing.assert_array_equal(sample.frames, np.arange(103))
    assert sample.name == "S001C001P001R001A001"


def test_several_bodies_third_overlapping_both_is_dropped(tmp_path):
    path = write_scene(tmp_path / "a.skeleton", 40, [
        {"id": "11", "frames": range(40), "x0": -0.6, "motion": 0.05},
        {"id": "22", "frames": range(40), "x0": 0.6, "motion": 0.2},
        {"id": "33", "frames": range(5, 35), "x0": 1.5, "motion": 0.01},
    ])
    sample = assert_matches_reference(path)
    assert sample.num_actors == 2 and len(sample.joints) == 40
    raw = parse_skeleton_file(path)
    # the most active body (22) is actor 1
    np.testing.assert_array_equal(sample.color[:, 0], raw.tracks()["22"].joints[:, :, 5:7])
    np.testing.assert_array_equal(sample.color[:, 1], raw.tracks()["11"].joints[:, :, 5:7])


def test_actor_2_interval_keeps_start_0(tmp_path):
    # actor 2 takes body 2 (frames 20-39); its interval becomes [0, 39], not [20, 39], so body 3 (frames 0-14)
    # overlaps it and is dropped although actor 2 is empty there
    path = write_scene(tmp_path / "a.skeleton", 40, [
        {"id": "1", "frames": range(40), "motion": 0.4},
        {"id": "2", "frames": range(20, 40), "x0": 1.0, "motion": 0.2},
        {"id": "3", "frames": range(0, 15), "x0": -1.0, "motion": 0.1},
    ])
    sample = assert_matches_reference(path)
    assert not sample.joints[:20, 1].any() and sample.joints[20:, 1].all()
    np.testing.assert_array_equal(sample.source_frames[:, 1], [-1] * 20 + list(range(20, 40)))


def test_noisy_bodies_by_spread(tmp_path):
    path = write_scene(tmp_path / "a.skeleton", 40, [
        {"id": "1", "frames": range(40), "motion": 0.1},
        {"id": "2", "frames": range(40), "x0": 1.0, "noisy": True, "motion": 0.5},  # noisy everywhere: dropped
    ])
    sample = assert_matches_reference(path)
    assert sample.num_actors == 1 and not sample.joints[:, 1].any()

    rng = np.random.default_rng(3)
    frames: list[list[Body]] = [[] for _ in range(40)]
    for t in range(40):
        frames[t].append(make_body(rng, "1", t, x0=-0.8, motion=0.1))
        # body 2 is noisy (and far away) in 10 of 40 frames: kept, but its motion is taken over its clean frames
        frames[t].append(make_body(rng, "2", t, x0=4.0 if t % 4 == 0 else 0.8, motion=0.05, noisy=t % 4 == 0))
    write_skeleton_file(tmp_path / "b.skeleton", frames)
    sample = assert_matches_reference(tmp_path / "b.skeleton")
    raw = parse_skeleton_file(tmp_path / "b.skeleton")
    # with its noisy frames body 2 moves most; with the clean frames only, body 1 does and becomes actor 1
    tracks = raw.tracks()
    assert ntu._motion(tracks["2"].joints[:, :, :3]) > ntu._motion(tracks["1"].joints[:, :, :3])
    np.testing.assert_array_equal(sample.color[:, 0], tracks["1"].joints[:, :, 5:7])


def kept_bodies(sample: ntu.NTUSample, path: Path) -> set[str]:
    """Body ids whose colours fill an actor's first rows (for scenes where every body starts at frame 0)."""
    tracks = parse_skeleton_file(path).tracks()
    return {b for b, track in tracks.items() for a in (0, 1)
            if np.array_equal(sample.color[:len(track.frames), a], track.joints[:, :, 5:7])}


def test_spread_thresholds(tmp_path):
    rng = np.random.default_rng(5)
    frames: list[list[Body]] = [[] for _ in range(43)]
    for t in range(43):
        frames[t].append(make_body(rng, "1", t, motion=0.3))
        frames[t].append(make_body(rng, "2", t, x0=1.0, motion=0.2, noisy=t < 30))  # 30/43 = 0.6977 noisy: dropped
        if t < 42:  # noisy in 29/42 = 0.6905: kept
            frames[t].append(make_body(rng, "3", t, x0=-1.0, motion=0.1, noisy=t < 29))
    write_skeleton_file(tmp_path / "a.skeleton", frames)
    sample = assert_matches_reference(tmp_path / "a.skeleton")
    assert kept_bodies(sample, tmp_path / "a.skeleton") == {"1", "3"}


def boundary_body(rng: np.random.Generator, body_id: str, t: int, x_half: float, y_half: float) -> Body:
    """A body whose x-spread is exactly 2 * float32(x_half) and y-spread exactly 2 * float32(y_half) in every frame."""
    joints = np.zeros((25, 12), dtype=np.float32)
    joints[:, 0] = rng.uniform(-0.6 * x_half, 0.6 * x_half, 25)
    joints[:, 1] = rng.uniform(-0.6 * y_half, 0.6 * y_half, 25)
    joints[:2, 0] = (-x_half, x_half)
    joints[2:4, 1] = (-y_half, y_half)
    joints[:, 2] = 3 + 0.01 * t
    joints[:, 5:7] = rng.uniform(0, 1000, (25, 2))
    return Body(BodyInfo(body_id), joints)


def test_spread_comparison_edges(tmp_path):
    # body 2: x-spread float32(1.6) vs 0.8 * 2.0: noisy when compared in float64 (numpy 1.x), not in float32;
    # it moves more than body 3, so keeping it would drop body 3
    # body 3: x-spread 1.0 == 0.8 * 1.25 exactly: not noisy (the test is x <= 0.8 y)
    assert np.float32(0.8) * np.float32(2.0) == np.float32(1.6) and float(np.float32(1.6)) > 0.8 * 2.0
    assert 0.8 * 1.25 == 1.0
    rng = np.random.default_rng(6)
    frames = [[make_body(rng, "1", t, x0=2.0, motion=0.3), boundary_body(rng, "2", t, 0.8, 1.0),
               boundary_body(rng, "3", t, 0.5, 0.625)] for t in range(20)]
    write_skeleton_file(tmp_path / "a.skeleton", frames)
    sample = assert_matches_reference(tmp_path / "a.skeleton")
    assert kept_bodies(sample, tmp_path / "a.skeleton") == {"1", "3"}


def test_spread_stops_at_one_body(tmp_path):
    # both bodies are noise; the first is dropped, and the check stops once one body is left
    path = write_scene(tmp_path / "a.skeleton", 20, [
        {"id": "1", "frames": range(20), "noisy": True, "motion": 0.3},
        {"id": "2", "frames": range(20), "noisy": True, "x0": 1.0},
    ])
    sample = assert_matches_reference(path)
    assert sample.num_actors == 1
    np.testing.assert_array_equal(sample.color[:, 0], parse_skeleton_file(path).tracks()["2"].joints[:, :, 5:7])


def test_short_lived_bodies_are_dropped(tmp_path):
    path = write_scene(tmp_path / "a.skeleton", 40, [
        {"id": "1", "frames": range(40), "motion": 0.02},
        {"id": "2", "frames": range(10, 21), "x0": 1.0, "motion": 0.5},  # 11 frames: dropped
        {"id": "3", "frames": range(20, 32), "x0": -1.0, "motion": 0.3},  # 12 frames: kept, the most active
    ])
    sample = assert_matches_reference(path)
    raw = parse_skeleton_file(path)
    assert sample.num_actors == 2 and len(sample.joints) == 40
    np.testing.assert_array_equal(sample.color[20:32, 0], raw.tracks()["3"].joints[:, :, 5:7])
    assert np.isnan(sample.color[:20, 0]).all() and not sample.joints[:20, 0].any()
    np.testing.assert_array_equal(sample.color[:, 1], raw.tracks()["1"].joints[:, :, 5:7])
    dropped = raw.tracks()["2"].joints[:, :, 5:7]
    assert not any(np.array_equal(sample.color[t, a], c) for t in range(40) for a in (0, 1) for c in dropped)


def test_non_overlapping_bodies_merge_into_actor_1(tmp_path):
    path = write_scene(tmp_path / "a.skeleton", 40, [
        {"id": "1", "frames": range(0, 21), "motion": 0.3},
        {"id": "2", "frames": range(20, 40), "x0": 0.5, "motion": 0.1},  # touches frame 20: counts as no overlap
    ])
    sample = assert_matches_reference(path)
    raw = parse_skeleton_file(path)
    assert len(sample.joints) == 40
    assert not sample.joints[:, 1].any()
    # body 2 overwrote body 1 in row 20
    np.testing.assert_array_equal(sample.color[20:, 0], raw.tracks()["2"].joints[:, :, 5:7])
    np.testing.assert_array_equal(sample.source_frames[:, 0], np.arange(40))


def test_frames_without_bodies(tmp_path):
    frames = [t for t in range(30) if t not in (0, 1, 7, 8, 9, 29)]
    path = write_scene(tmp_path / "a.skeleton", 30, [{"id": "1", "frames": frames}])
    sample = assert_matches_reference(path)
    np.testing.assert_array_equal(sample.frames, frames)
    path = write_scene(tmp_path / "b.skeleton", 30, [{"id": "1", "frames": frames, "motion": 0.2},
                                                     {"id": "2", "frames": frames[:15], "x0": 1.0}])
    sample = assert_matches_reference(path)
    np.testing.assert_array_equal(sample.frames, frames)


def test_body_that_disappears_and_reappears(tmp_path):
    # actor 2 is absent in frames 10-19: the reference stacks its 20 rows from its first frame (rows 0-19)
    path = write_scene(tmp_path / "a.skeleton", 30, [
        {"id": "1", "frames": range(30), "motion": 0.3},
        {"id": "2", "frames": list(range(10)) + list(range(20, 30)), "x0": 1.0},
    ])
    sample = assert_matches_reference(path)
    assert len(sample.joints) == 30
    np.testing.assert_array_equal(sample.source_frames[:, 1], list(range(10)) + list(range(20, 30)) + [-1] * 10)
    assert not sample.joints[20:, 1].any()
    # the only body of frames 10-14 is short-lived and dropped; actor 1's rows after its gap shift by five
    path = write_scene(tmp_path / "b.skeleton", 30, [
        {"id": "1", "frames": list(range(10)) + list(range(15, 30)), "motion": 0.3},
        {"id": "9", "frames": range(10, 15), "x0": 1.0},
    ])
    sample = assert_matches_reference(path)
    assert len(sample.joints) == 25
    np.testing.assert_array_equal(sample.frames, list(range(10)) + list(range(15, 30)))


def test_two_actor_interaction(tmp_path):
    path = write_scene(tmp_path / "S001C001P001R001A058.skeleton", 50, [
        {"id": "100", "frames": range(2, 50), "x0": -0.4, "motion": 0.15},
        {"id": "200", "frames": range(0, 45), "x0": 0.4, "motion": 0.1},
    ])
    sample = assert_matches_reference(path)
    assert sample.num_actors == 2 and len(sample.joints) == 50
    assert not sample.joints[:2, 0].any() and sample.joints[2:, 0].any()
    assert not sample.joints[45:, 1].any() and sample.joints[:45, 1].any()
    # origin: actor 1's spine-mid in its first non-zero row (row 2)
    np.testing.assert_array_equal(sample.joints[2, 0, 1], 0)


def test_random_scenes_match_reference(tmp_path):
    rng = np.random.default_rng(1234)
    for case in range(40):
        num_frames = int(rng.integers(20, 60))
        bodies = []
        for b in range(int(rng.integers(1, 5))):
            start = int(rng.integers(0, num_frames - 3))
            stop = int(rng.integers(start + 1, num_frames + 1))
            frames = list(range(start, stop))
            if rng.random() < 0.3 and len(frames) > 6:  # a gap
                gap = int(rng.integers(1, len(frames) - 3))
                del frames[gap:gap + int(rng.integers(1, 4))]
            bodies.append({"id": str(72057594037930000 + 100 * case + b), "frames": frames,
                           "x0": float(rng.normal(0, 1)), "motion": float(rng.uniform(0, 0.4)),
                           "noisy": bool(rng.random() < 0.2)})
        path = write_scene(tmp_path / f"{case}.skeleton", num_frames, bodies, seed=case)
        try:
            sgn_joints(path)
        except (AssertionError, IndexError):
            with pytest.raises(NoBodyError):
                read_sample(path)
            continue
        assert_matches_reference(path)


# ---------------------------------------------------------------------------------------------------------------------
# Names, classes, splits
# ---------------------------------------------------------------------------------------------------------------------


def test_parse_name():
    n = parse_name("S001C002P003R002A013")
    assert (n.setup, n.camera, n.performer, n.replication, n.action, n.label) == (1, 2, 3, 2, 13, 12)
    assert str(n) == "S001C002P003R002A013"
    for bad in ("S001C002P003R002A13", "s001C002P003R002A013", "S001C002P003R002A013.skeleton", ""):
        with pytest.raises(ValueError, match=re.escape(repr(bad))):
            parse_name(bad)


def test_class_names():
    assert len(NTU60_CLASSES) == 60 and len(NTU120_CLASSES) == 120
    assert NTU120_CLASSES[:60] == NTU60_CLASSES
    assert NTU120_CLASSES[0] == "drink water"
    assert NTU60_CLASSES[parse_name("S001C002P003R002A013").label] == "tear up paper"
    assert NTU120_CLASSES[119] == "finger-guessing game (playing rock-paper-scissors)"
    assert len(set(NTU120_CLASSES)) == 120


def test_missing_skeleton_list():
    assert len(MISSING_SKELETONS) == 535
    assert sum(parse_name(n).setup <= 17 for n in MISSING_SKELETONS) == 302


NTU60_XSUB = [1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38]


def test_xsub_subjects_match_reference():
    assert list(ntu.XSUB_TRAIN_SUBJECTS["ntu60"]) == NTU60_XSUB
    assert len(ntu.XSUB_TRAIN_SUBJECTS["ntu120"]) == 53
    reference = SHARED / "REFERENCE.md"
    if not reference.exists():
        pytest.skip("REFERENCE.md not available")
    text = reference.read_text()
    ntu60 = re.search(r"X-Sub training subjects, NTU-60: ([\d ]+);", text).group(1).split()
    added = re.search(r"NTU-120 adds\s+([\d\s]+)\.", text).group(1).split()
    assert [int(s) for s in ntu60] == list(ntu.XSUB_TRAIN_SUBJECTS["ntu60"])
    assert [int(s) for s in ntu60 + added] == list(ntu.XSUB_TRAIN_SUBJECTS["ntu120"])
    assert sorted(ntu.VAL_SUBJECT_ORDER["ntu60"]) == NTU60_XSUB
    assert sorted(ntu.VAL_SUBJECT_ORDER["ntu120"]) == sorted(ntu.XSUB_TRAIN_SUBJECTS["ntu120"])


def grid(setups, performers, cameras=(1, 2, 3), actions=(1, 2)) -> list[str]:
    return [f"S{s:03d}C{c:03d}P{p:03d}R{r:03d}A{a:03d}"
            for s in setups for c in cameras for p in performers for r in (1, 2) for a in actions]


@pytest.mark.parametrize("dataset,benchmark", [("ntu60", "xsub"), ("ntu60", "xview"), ("ntu120", "xsub"),
                                               ("ntu120", "xset")])
def test_split_rules_and_validation_by_subject(dataset, benchmark):
    names = grid(range(1, ntu.NUM_SETUPS[dataset] + 1), range(1, ntu.NUM_PERFORMERS[dataset] + 1), actions=(1,))
    parsed = [parse_name(n) for n in names]
    splits = split_indices(names, benchmark, dataset)
    train, val, test = (set(splits[k]) for k in ("train", "val", "test"))
    assert not (train & val or train & test or val & test) and len(train | val | test) == len(names)
    rule = {
        "xsub": lambda n: n.performer in ntu.XSUB_TRAIN_SUBJECTS[dataset],
        "xview": lambda n: n.camera in (2, 3),
        "xset": lambda n: n.setup % 2 == 0,
    }[benchmark]
    assert train | val == {i for i, n in enumerate(parsed) if rule(n)}
    # counts per rule on the full grid: 20/40 or 53/106 subjects, 2/3 cameras, 16/32 setups
    expected_train = {"xsub": len(ntu.XSUB_TRAIN_SUBJECTS[dataset]) / ntu.NUM_PERFORMERS[dataset],
                      "xview": 2 / 3, "xset": 16 / 32}[benchmark]
    assert len(train | val) == round(expected_train * len(names))
    val_subjects = set(validation_subjects(names, dataset))
    assert val_subjects <= set(ntu.XSUB_TRAIN_SUBJECTS[dataset])
    assert {parsed[i].performer for i in val} == val_subjects
    assert not val_subjects & {parsed[i].performer for i in train}
    if benchmark == "xsub":  # every subject has as many samples here: the closest prefix to 10% of the subjects
        assert len(val_subjects) == round(0.1 * len(ntu.XSUB_TRAIN_SUBJECTS[dataset]))
        assert abs(len(val) / len(train | val) - 0.1) < 0.01
    assert split_indices(list(reversed(names)), benchmark, dataset)["val"] == sorted(
        len(names) - 1 - i for i in val)


def test_validation_subjects_follow_the_fixed_order():
    # subject 8 comes first in the NTU-60 order; with 8 holding 10% of the training samples it alone is chosen
    names = grid([1], [8], actions=range(1, 3)) + grid([1], [1, 2, 4], actions=range(1, 7))
    assert validation_subjects(names, "ntu60") == (8,)
    with pytest.raises(ValueError, match="at least 2"):
        validation_subjects(grid([1], [1, 3]), "ntu60")


def test_split_errors():
    names = grid([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="xview"):
        split_indices(names, "xview", "ntu120")
    with pytest.raises(ValueError, match="xset"):
        split_indices(names, "xset", "ntu60")
    with pytest.raises(ValueError, match="S018C001P001R001A001: setup 18"):
        split_indices(names + ["S018C001P001R001A001"], "xsub", "ntu60")
    with pytest.raises(ValueError, match="'bad'"):
        split_indices(names + ["bad"], "xsub", "ntu60")
    with pytest.raises(ValueError, match="test split"):
        split_indices(grid([1], [1, 2, 4]), "xsub", "ntu60")


# ---------------------------------------------------------------------------------------------------------------------
# prepare_ntu
# ---------------------------------------------------------------------------------------------------------------------


def raw_dir_with_samples(root: Path) -> tuple[Path, list[str]]:
    """Crafted files: training subjects 1, 2, 8 (8 becomes validation), test subject 3, plus special cases."""
    raw = root / "raw"
    raw.mkdir()
    names = []
    for k, (performer, action) in enumerate([(1, 1), (1, 2), (2, 1), (2, 58), (8, 3), (3, 1), (3, 60), (1, 5),
                                             (2, 7), (3, 9)]):
        name = f"S001C001P{performer:03d}R001A{action:03d}"
        bodies = [{"id": "1", "frames": range(14 + k), "motion": 0.2}]
        if action >= 50:
            bodies.append({"id": "2", "frames": range(2, 14 + k), "x0": 1.0})
        write_scene(raw / f"{name}.skeleton", 14 + k, bodies, seed=k)
        names.append(name)
    write_scene(raw / "S001C002P001R002A001.skeleton", 5, [])  # no body
    path = write_scene(raw / "S001C003P002R002A002.skeleton", 3, [{"id": "1", "frames": range(3)}])
    path.write_text("\n".join(_lines(path)[:50]))  # truncated
    write_scene(raw / "S001C002P005R002A008.skeleton", 20, [{"id": "1", "frames": range(20)}])  # official missing
    return raw, names


def test_prepare_ntu_skips_and_resumes(tmp_path, monkeypatch):
    raw, names = raw_dir_with_samples(tmp_path)
    out = tmp_path / "prepared"

    calls = {"add": 0, "read": 0}
    real_add = PreparedWriter.add

    def dying_add(self, *args, **kwargs):
        if calls["add"] == 4:
            raise RuntimeError("killed")
        calls["add"] += 1
        return real_add(self, *args, **kwargs)

    monkeypatch.setattr(PreparedWriter, "add", dying_add)
    with pytest.raises(RuntimeError, match="killed"):
        prepare_ntu(raw, out, workers=0, progress=False)
    assert not out.exists() and (tmp_path / "prepared.partial").exists()
    monkeypatch.setattr(PreparedWriter, "add", real_add)

    real_read = ntu.read_sample

    def counting_read(path):
        calls["read"] += 1
        return real_read(path)

    monkeypatch.setattr(ntu, "read_sample", counting_read)
    prepare_ntu(raw, out, workers=0, progress=False)
    data = PreparedData(out)
    skipped = {s["name"]: s["reason"] for s in data.skipped()}
    # the first run wrote 4 samples and skipped the missing-list one; the rerun read only the 8 others
    assert calls["read"] == len(names) + 2 - 4
    assert sorted(data.names) == sorted(names)
    assert sorted(data.names + list(skipped)) == sorted(p.name[:-9] for p in raw.glob("*.skeleton"))
    assert "no body" in skipped["S001C002P001R002A001"]
    assert "malformed" in skipped["S001C003P002R002A002"] and "S001C003P002R002A002.skeleton:51:" in \
        skipped["S001C003P002R002A002"]
    assert "missing skeletons" in skipped["S001C002P005R002A008"]
    assert data.info.dataset == "ntu60" and data.info.class_names == list(NTU60_CLASSES)
    assert data.info.has_color and data.info.has_frames and data.info.layout == "ntu25"
    assert "[8]" in data.info.split_protocol
    for i, name in enumerate(data.names):
        sample = read_sample(raw / f"{name}.skeleton")
        np.testing.assert_array_equal(data.joints(i), sample.joints)
        np.testing.assert_array_equal(data.color(i), sample.color)
        np.testing.assert_array_equal(data.frames(i), sample.frames)
        assert data.labels[i] == parse_name(name).action - 1
    split_of = {data.names[i]: k for k, idx in data.splits.items() for i in idx}
    assert split_of["S001C001P008R001A003"] == "val" and split_of["S001C001P003R001A001"] == "test"
    assert split_of["S001C001P001R001A001"] == "train"
    assert json.loads((out / "meta.json").read_text())["num_skipped"] == 3


def test_prepare_ntu_pool_and_class_names(tmp_path):
    raw, names = raw_dir_with_samples(tmp_path)
    classes = [f"class {k}" for k in range(60)]
    out = prepare_ntu(raw, tmp_path / "p", class_names=classes, workers=2, progress=False)
    data = PreparedData(out)
    assert data.class_names == classes
    # with its own class list the official missing-skeleton list does not apply
    assert "S001C002P005R002A008" in data.names
    with pytest.raises(ValueError, match="S001C001P003R001A060: action 60"):
        prepare_ntu(raw, tmp_path / "q", class_names=classes[:59], workers=0, progress=False)


def test_prepare_ntu_dataset_auto(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    for name in ("S001C001P001R001A001", "S002C001P003R001A001", "S017C001P008R001A002", "S018C001P002R001A061",
                 "S018C002P003R001A001"):
        write_scene(raw / f"{name}.skeleton", 14, [{"id": "1", "frames": range(14)}])
    data = PreparedData(prepare_ntu(raw, tmp_path / "p120", workers=0, progress=False))
    assert data.info.dataset == "ntu120" and data.num_classes == 120 and len(data) == 5
    data = PreparedData(prepare_ntu(raw, tmp_path / "p60", dataset="ntu60", workers=0, progress=False))
    assert data.info.dataset == "ntu60" and data.num_classes == 60
    assert sorted(data.names) == ["S001C001P001R001A001", "S002C001P003R001A001", "S017C001P008R001A002"]


def test_prepare_ntu_rejects_foreign_file_names(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    write_scene(raw / "walking.skeleton", 14, [{"id": "1", "frames": range(14)}])
    with pytest.raises(ValueError, match=r"walking\.skeleton: not an NTU sample name: 'walking'"):
        prepare_ntu(raw, tmp_path / "p", workers=0, progress=False)
    with pytest.raises(FileNotFoundError, match="no \\*.skeleton file"):
        prepare_ntu(tmp_path / "p", tmp_path / "q", workers=0, progress=False)
