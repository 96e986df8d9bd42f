"""Frame sampling, decoding errors, the skeleton person crop and the splice/grid canvas geometry."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from conftest_teachers import (BACKGROUND, HEIGHT, NTU_SAMPLE, PERSON_COLOUR, WIDTH, fixture_set, flat_colour_frames,
                               frame_colour, person_x, write_video)
from teachers.video import (VideoError, check_decode, crop, find_video, grid, make_canvas, nearest_skeleton_frames,
                            open_video, person_box, read_frames, sample_frames, sample_video, splice, square_box,
                            uniform_indices, video_backend)

__all__ = ["fixture_set"]

HAS_DECORD = importlib.util.find_spec("decord") is not None
# decord where it installs (x86-64 wheels), PyAV everywhere
BACKENDS = [pytest.param("decord", marks=pytest.mark.skipif(not HAS_DECORD, reason="decord is not installed")), "pyav"]


def test_uniform_indices_are_segment_centres():
    assert uniform_indices(100, 5).tolist() == [10, 30, 50, 70, 90]
    assert uniform_indices(103, 5).tolist() == [10, 30, 51, 72, 92]
    assert uniform_indices(1, 3).tolist() == [0, 0, 0]
    assert uniform_indices(3, 5).tolist() == [0, 0, 1, 2, 2]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("suffix,codec", [(".avi", "mpeg4"), (".mp4", "libx264")])
def test_sample_frames_returns_the_right_frames(tmp_path, suffix, codec, backend):
    path = write_video(tmp_path / f"flat{suffix}", flat_colour_frames(20), codec=codec)
    frames = sample_frames(path, 4, backend)
    assert frames.shape == (4, HEIGHT, WIDTH, 3) and frames.dtype == np.uint8
    for frame, t in zip(frames, uniform_indices(20, 4)):
        assert np.abs(frame.astype(int) - frame_colour(int(t))).max() <= 8, f"frame {t}"


@pytest.mark.parametrize("backend", BACKENDS)
def test_short_video_is_sampled_with_repeats_and_flagged(tmp_path, backend):
    path = write_video(tmp_path / "short.avi", flat_colour_frames(3))
    clip = sample_video(path, 5, backend)
    assert clip.short and clip.num_video_frames == 3
    assert clip.indices.tolist() == [0, 0, 1, 2, 2]
    assert np.array_equal(clip.frames[0], clip.frames[1])
    assert not sample_video(path, 3, backend).short


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_videos_raise_video_error_naming_the_path(tmp_path, backend):
    with pytest.raises(VideoError, match="missing.avi: video not found"):
        sample_frames(tmp_path / "missing.avi", 5, backend)
    (tmp_path / "empty.avi").write_bytes(b"")
    with pytest.raises(VideoError, match="empty.avi: video file is empty"):
        sample_frames(tmp_path / "empty.avi", 5, backend)
    (tmp_path / "noise.avi").write_bytes(np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(VideoError, match="noise.avi: cannot open video"):
        sample_frames(tmp_path / "noise.avi", 5, backend)
    with pytest.raises(VideoError, match=r"no video for sample 'S1'.*S1_rgb.avi.*S1_rgb.mp4"):
        find_video(tmp_path, "S1", ["{name}_rgb.avi", "{name}_rgb.mp4"])


def _colours(n: int) -> np.ndarray:
    return np.stack([frame_colour(t) for t in range(n)])


def test_splice_letterbox_geometry():
    colours = _colours(5)
    frames = np.stack([np.broadcast_to(c, (200, 100, 3)) for c in colours]).astype(np.uint8)
    canvas = splice(frames, size=480, fit="letterbox", fill=7)
    assert canvas.shape == (480, 480, 3)
    # each 100x200 frame scales by min(96/100, 480/200) = 0.96 -> 96x192, centred vertically at y 144..336
    for j, c in enumerate(colours):
        assert (canvas[144:336, 96 * j:96 * (j + 1)] == c).all(), f"column {j}"
        assert (canvas[:144, 96 * j:96 * (j + 1)] == 7).all() and (canvas[336:, 96 * j:96 * (j + 1)] == 7).all()


def test_splice_stretch_and_uneven_columns():
    colours = _colours(3)
    frames = np.stack([np.broadcast_to(c, (50, 80, 3)) for c in colours]).astype(np.uint8)
    canvas = splice(frames, size=100, fit="stretch")
    for j, (x0, x1) in enumerate([(0, 33), (33, 67), (67, 100)]):  # edges round(j * 100 / 3)
        assert (canvas[:, x0:x1] == colours[j]).all()


def test_grid_geometry():
    colours = _colours(5)
    frames = np.stack([np.broadcast_to(c, (100, 200, 3)) for c in colours]).astype(np.uint8)
    canvas = grid(frames, size=480, fit="letterbox", fill=0)
    # 5 frames -> 3x3 grid of 160x160 cells; each 200x100 frame -> 160x80 at y 40..120 inside its cell
    for j, c in enumerate(colours):
        r, k = divmod(j, 3)
        cell = canvas[160 * r:160 * (r + 1), 160 * k:160 * (k + 1)]
        assert (cell[40:120] == c).all() and (cell[:40] == 0).all() and (cell[120:] == 0).all(), f"cell {j}"
    assert (canvas[320:, 320:] == 0).all() and (canvas[160:320, 320:] == 0).all()
    two_by_two = grid(frames[:4], size=480, fit="stretch")
    assert (two_by_two[240:, 240:] == colours[3]).all() and (two_by_two[:240, 240:] == colours[1]).all()


def test_single_frame_canvas_and_bad_layout():
    frame = np.broadcast_to(frame_colour(1), (60, 120, 3)).astype(np.uint8)
    canvas = make_canvas(frame[None], "frame", 240)
    assert (canvas[60:180] == frame_colour(1)).all() and (canvas[:60] == 0).all()
    with pytest.raises(ValueError, match="unknown canvas layout"):
        make_canvas(frame[None], "mosaic", 240)


def test_nearest_skeleton_frames():
    stored = np.array([2, 3, 4, 7, 8])
    assert nearest_skeleton_frames(stored, np.array([0, 2, 5, 6, 10])).tolist() == [0, 0, 2, 3, 4]
    assert nearest_skeleton_frames(np.array([5]), np.array([0, 9])).tolist() == [0, 0]


def test_person_box_union_margin_zero_joints_and_clipping():
    color = np.zeros((4, 2, 25, 2), np.float32)  # actor 2 all zeros: missing, ignored
    color[:, 0, :, 0] = np.linspace(100, 140, 25)
    color[:, 0, :, 1] = np.linspace(50, 130, 25)
    color[2, 0, 0] = (300, 40)  # only in skeleton frame 2, i.e. video frame 20
    frames = np.array([0, 10, 20, 30])
    assert person_box(color, frames, np.array([0, 11]), (400, 300), margin=0) == (100, 50, 140, 130)
    assert person_box(color, frames, np.array([0, 19]), (400, 300), margin=0) == (100, 40, 300, 130)
    assert person_box(color, frames, np.array([1]), (400, 300), margin=0.25) == (90, 30, 150, 150)
    assert person_box(color, frames, np.array([19]), (310, 300), margin=0.1) == (81, 31, 310, 139)
    assert person_box(color, frames, np.array([1]), (200, 150), margin=0, color_size=(400, 300)) == (50, 25, 70, 65)
    assert person_box(np.zeros_like(color), frames, np.array([1]), (400, 300)) is None


def test_square_box_grows_short_side_shifts_inside_and_clips():
    assert square_box((100, 50, 140, 130), (400, 300)) == (80, 50, 160, 130)
    assert square_box((0, 50, 40, 130), (400, 300)) == (0, 50, 80, 130)  # shifted right rather than cut
    assert square_box((350, 100, 400, 200), (400, 300)) == (300, 100, 400, 200)  # shifted left
    assert square_box((380, 280, 400, 300), (400, 300)) == (380, 280, 400, 300)
    assert square_box((10, 0, 390, 40), (400, 300)) == (10, 0, 390, 210)  # taller than the image: clipped


def test_crop_of_fixture_video_contains_the_person(fixture_set):
    data = fixture_set.data
    i = data.names.index("S002C003P004R002A003")  # skeleton frames 2..13 of a 16-frame video
    clip = sample_video(fixture_set.videos / f"{data.names[i]}_rgb.avi", 5)
    box = person_box(data.color(i), data.frames(i), clip.indices, clip.image_size, margin=0)
    # video frames 1 and 14 map to skeleton frames of video frames 2 and 13; joints span x0 + 2 .. x0 + 14
    assert box == (person_x(2) + 2, 12, person_x(13) + 14, 52)
    cut = crop(clip.frames, box)
    assert np.abs(cut[2, 4:36, 6:14].mean((0, 1)) - PERSON_COLOUR).max() < 25  # video frame 8: person at x 28..44
    assert np.abs(clip.frames[:, :, :10].astype(int) - BACKGROUND).max() < 30


@pytest.mark.skipif(not NTU_SAMPLE.is_dir(), reason="the real NTU sample (../shared/ntu-sample) is absent")
def test_person_crop_on_the_real_ntu_sample():
    ntu = pytest.importorskip("mmcl.data.ntu")
    name = "S001C001P001R001A001"
    sample = ntu.read_sample(NTU_SAMPLE / f"{name}.skeleton")  # colorX/colorY; NaN for the absent second actor
    clip = sample_video(NTU_SAMPLE / f"{name}_rgb.avi", 5)
    assert clip.image_size == (1920, 1080) and clip.num_video_frames == len(sample.color) == 103
    assert np.array_equal(sample.frames, np.arange(103))  # every frame has a body: row t is video frame t
    box = person_box(sample.color, sample.frames, clip.indices, clip.image_size, margin=0.15)
    x0, y0, x1, y1 = box
    joints = sample.color[clip.indices].reshape(-1, 2)
    joints = joints[np.isfinite(joints).all(1)]
    assert len(joints) == 5 * 25
    assert (joints[:, 0] >= x0).all() and (joints[:, 0] <= x1).all()
    assert (joints[:, 1] >= y0).all() and (joints[:, 1] <= y1).all()
    assert (x1 - x0) * (y1 - y0) < 0.1 * 1920 * 1080
    # the person is what moves: most of the change between the first and last sampled frames lies in the box
    motion = np.abs(clip.frames[-1].astype(np.int16) - clip.frames[0].astype(np.int16)).sum(-1)
    motion = np.where(motion > 60, motion, 0)
    assert motion[y0:y1, x0:x1].sum() > 0.8 * motion.sum()
    # a square crop for CLIP still holds the whole tight box
    sx0, sy0, sx1, sy1 = square_box(box, clip.image_size)
    assert sx1 - sx0 == sy1 - sy0 and sx0 <= x0 and sy0 <= y0 and sx1 >= x1 and sy1 >= y1


def _both_read_the_same(path, indices=None) -> int:
    """decord and PyAV count the same frames of ``path`` and decode the same pixels at ``indices`` (all frames by
    default); returns the frame count."""
    decord_reader, pyav_reader = open_video(path, "decord"), open_video(path, "pyav")
    assert len(decord_reader) == len(pyav_reader), path
    indices = list(range(len(pyav_reader))) if indices is None else indices
    a, b = read_frames(decord_reader, indices, path), read_frames(pyav_reader, indices, path)
    assert a.shape == b.shape and a.dtype == b.dtype == np.uint8, path
    assert np.array_equal(a, b), f"{path}: max difference {np.abs(a.astype(int) - b.astype(int)).max()}"
    return len(pyav_reader)


@pytest.mark.skipif(not HAS_DECORD, reason="decord is not installed")
def test_decord_and_pyav_return_the_same_frames(fixture_set, small_synthetic):
    """Measured: the same frame count and identical pixels (difference 0) on every file below."""
    for kind in ("avi", "mp4", "short"):  # MPEG-4 in AVI like NTU's, H.264 in MP4, a 3-frame video
        name = next(n for n, k in fixture_set.expected.items() if k == kind)
        path = next(fixture_set.videos.glob(f"{name}_rgb.*"))
        assert _both_read_the_same(path, [2, 0, 2, 1]) >= 3
    for path in sorted((small_synthetic / "videos").glob("*.avi"))[:2] + sorted((small_synthetic / "utd").glob(
            "*.avi"))[:1]:
        _both_read_the_same(path)
    if NTU_SAMPLE.is_dir():  # the real Kinect-v2 RGB video, 1920x1080: the frames of its first second
        assert _both_read_the_same(NTU_SAMPLE / "S001C001P001R001A001_rgb.avi", [0, 1, 17, 29, 28]) == 103


def zero_middle_third(path, out):
    """A copy of the video ``path`` at ``out`` with the middle third of its bytes zeroed."""
    raw = bytearray(path.read_bytes())
    third = len(raw) // 3
    raw[third:2 * third] = bytes(third)
    out.write_bytes(bytes(raw))
    return out


def test_decode_check_reports_concealed_damage_and_passes_intact_videos(fixture_set, small_synthetic, tmp_path):
    """Intact videos (the fixture's MPEG-4 and H.264, synthetic ones, the real NTU sample when present) decode
    without a report; a middle third zeroed opens, decodes and is concealed, and the check reports it."""
    intact = [next(fixture_set.videos.glob(f"{n}_rgb.*")) for n, k in fixture_set.expected.items()
              if k in ("avi", "mp4", "short")] + sorted((small_synthetic / "videos").glob("*.avi"))[:2]
    frames = np.random.default_rng(1).integers(0, 256, (24, HEIGHT, WIDTH, 3), dtype=np.uint8)
    damaged = [zero_middle_third(write_video(tmp_path / "noise.avi", frames), tmp_path / "zeroed.avi")]
    if NTU_SAMPLE.is_dir():
        intact.append(NTU_SAMPLE / "S001C001P001R001A001_rgb.avi")
        damaged.append(zero_middle_third(intact[-1], tmp_path / "ntu-zeroed.avi"))
    for path in intact:
        report = check_decode(path)
        assert not report.damaged and report.frames == len(open_video(path, "pyav")), (path, report)
    for path in damaged:
        report = check_decode(path)
        assert report.damaged and report.errors and report.frames == len(open_video(path, "pyav")) > 0, report
        assert report.describe(path).startswith(f"{path}: the video decodes {report.frames} frames with damage: ")


def test_the_backend_is_decord_when_installed_else_pyav_unless_chosen(monkeypatch):
    monkeypatch.delenv("MMCL_VIDEO_BACKEND", raising=False)
    assert video_backend() == ("decord" if HAS_DECORD else "pyav")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "decord" else object())
    assert video_backend() == "pyav"  # an ARM machine: no decord wheel
    monkeypatch.setenv("MMCL_VIDEO_BACKEND", "decord")
    assert video_backend() == "decord" and video_backend("pyav") == "pyav"
    with pytest.raises(ValueError, match="unknown video backend 'opencv'"):
        video_backend("opencv")
