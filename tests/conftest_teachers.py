"""Fixtures for the teacher-stage tests: tiny videos written with PyAV, a small prepared dataset, the tiny teachers.

Imported by the ``test_teachers_*`` / ``test_precompute`` modules (not a conftest.py: pytest does not load it alone).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import pytest

from mmcl.data.prepared import PreparedData, PreparedInfo, PreparedWriter

NTU_SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "ntu-sample"
WIDTH, HEIGHT = 96, 64
BACKGROUND = 90
PERSON_COLOUR = (220, 40, 40)
CLASS_NAMES = ["drink water", "eat meal", "brush teeth"]


def write_video(path: Path, frames: np.ndarray, codec: str = "mpeg4", fps: int = 30) -> Path:
    """Encode frames (T, H, W, 3) uint8 with PyAV (``mpeg4`` in .avi like NTU's DivX, ``libx264`` in .mp4)."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"qscale": "1"} if codec == "mpeg4" else {"crf": "1"}
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def flat_colour_frames(num: int, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """Frame t is one flat colour, distinct per t (see :func:`frame_colour`)."""
    return np.stack([np.broadcast_to(frame_colour(t), (height, width, 3)) for t in range(num)]).astype(np.uint8)


def frame_colour(t: int) -> np.ndarray:
    return np.array([(37 * t + 20) % 256, (80 + 53 * t) % 256, (200 - 29 * t) % 256], dtype=np.uint8)


def person_x(t: int) -> int:
    """Left edge of the fixture person (a rectangle moving right by one pixel per frame)."""
    return 20 + t


def person_frames(num: int) -> tuple[np.ndarray, np.ndarray]:
    """Frames with a coloured rectangle 'person' on a grey background and its joints' pixel coordinates (T, 25, 2)."""
    frames = np.full((num, HEIGHT, WIDTH, 3), BACKGROUND, dtype=np.uint8)
    joints = np.zeros((num, 25, 2), dtype=np.float32)
    for t in range(num):
        x0 = person_x(t)
        frames[t, 10:54, x0:x0 + 16] = PERSON_COLOUR
        joints[t, :, 0] = x0 + 2 + 12 * (np.arange(25) % 5) / 4
        joints[t, :, 1] = 12 + 40 * (np.arange(25) // 5) / 4
    return frames, joints


@dataclass
class FixtureSet:
    """A prepared dataset and its video directory; ``expected`` maps sample name -> what the stage should find."""

    prepared: Path
    videos: Path
    descriptions: Path
    expected: dict[str, str]

    @property
    def data(self) -> PreparedData:
        return PreparedData(self.prepared)


def make_fixture_set(root: Path) -> FixtureSet:
    """Eight samples: three good (.avi, .mp4, one whose skeleton misses frames), one 3-frame (short) video, one
    without any valid colour joint (no person box), one corrupt (random bytes), one empty and one missing video.
    Actor 2 is all zeros (missing)."""
    root.mkdir(parents=True, exist_ok=True)
    videos = root / "videos"
    videos.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    specs = [  # name, label, kind, video frames
        ("S001C001P001R001A001", 0, "avi", 16),
        ("S001C002P001R001A002", 1, "mp4", 16),
        ("S001C003P002R001A003", 2, "short", 3),
        ("S002C001P003R002A001", 0, "corrupt", 16),
        ("S002C002P003R002A002", 1, "missing", 16),
        ("S002C003P004R002A003", 2, "gappy", 16),
        ("S003C001P005R001A001", 0, "empty", 16),
        ("S003C002P006R001A002", 1, "nojoints", 16),
    ]
    info = PreparedInfo(dataset="teachfix", layout="ntu25", num_person=2, class_names=CLASS_NAMES,
                        has_color=True, has_frames=True, source="tests/conftest_teachers.py")
    expected = {}
    with PreparedWriter(root / "prepared", info, overwrite=True, resume=False) as w:
        for name, label, kind, n in specs:
            frames, joints = person_frames(n)
            stored = np.arange(2, n - 2) if kind == "gappy" else np.arange(n)
            color = np.zeros((len(stored), 2, 25, 2), dtype=np.float32)
            color[:, 0] = 0 if kind == "nojoints" else joints[stored]
            xyz = rng.normal(size=(len(stored), 2, 25, 3)).astype(np.float32)
            xyz[:, 1] = 0
            w.add(name, label, xyz, color=color, frames=stored.astype(np.int32))
            if kind in ("avi", "short", "gappy", "nojoints"):
                write_video(videos / f"{name}_rgb.avi", frames)
            elif kind == "mp4":
                write_video(videos / f"{name}_rgb.mp4", frames, codec="libx264")
            elif kind == "corrupt":
                (videos / f"{name}_rgb.avi").write_bytes(rng.integers(0, 256, 20000, dtype=np.uint8).tobytes())
            elif kind == "empty":
                (videos / f"{name}_rgb.avi").write_bytes(b"")
            expected[name] = kind
        w.finalize({"train": [0, 1, 2, 3], "val": [4], "test": [5, 6, 7]})
    descriptions = root / "classes.json"
    descriptions.write_text(json.dumps([{"name": c, "description": f"a person who is about to {c}"}
                                        for c in CLASS_NAMES]))
    return FixtureSet(root / "prepared", videos, descriptions, expected)


@pytest.fixture(scope="session")
def fixture_set(tmp_path_factory) -> FixtureSet:
    return make_fixture_set(tmp_path_factory.getbasetemp() / "teachers-fixture-set")


@pytest.fixture(scope="module")
def mmcl_cache(tmp_path_factory):
    """MMCL_CACHE pointed at a session-wide directory, so the tiny teachers are built once per test session."""
    with pytest.MonkeyPatch.context() as mp:
        path = tmp_path_factory.getbasetemp() / "mmcl-cache"
        mp.setenv("MMCL_CACHE", str(path))
        yield path


def tiny_config(*overrides: str):
    """configs/teachers/tiny.yaml with data-loading in-process and small batches, plus ``overrides``."""
    from teachers.config import load_config

    return load_config("tiny", ["runtime.num_workers=0", "runtime.batch_size=2", "runtime.chunk_size=2",
                                *overrides])
