"""SYSU 3D Human-Object Interaction (SYSU-Action): reader into the prepared format.

The raw release's file layout is unverified, so this reader defines a simple documented one; converting the release
into it (or replacing :func:`read_sysu_file`) is all another layout needs.

Layout: one file per sample under ``raw_dir`` (found recursively), named ``S{subject:02d}_A{action:02d}_V{index:02d}``
(subject 1-40, action 1-12, index = the subject's take of that action) with either suffix

- ``.txt``: T lines of 60 numbers (20 joints x (x, y, z), Kinect v1 joint order), separated by spaces or commas;
  blank lines are ignored;
- ``.npy``: an array of shape (T, 20, 3) or (T, 60).

An optional video of the sample sits next to it as ``<name>.mp4`` or ``<name>.avi`` (:func:`sysu_video_path`).

- Classes: the 12 actions in order (:data:`SYSU_CLASSES`), label = action - 1.
- Split (cross-subject, defined here; the published protocols draw random halves): odd subjects train, even
  subjects test; ``val`` is carved by subject from the training subjects (the highest-numbered 10%: subjects 37 and
  39 of the full 40).
- Layout ``kinect_v1_20``, one person.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from mmcl.data.importers import RawSample, import_samples
from mmcl.data.prepared import PreparedInfo
from mmcl.errors import DataError

SYSU_CLASSES = (
    "drinking", "pouring", "calling phone", "playing phone", "wearing backpacks", "packing backpacks",
    "sitting chair", "moving chair", "taking out wallet", "taking from wallet", "mopping", "sweeping",
)
NAME_PATTERN = re.compile(r"^S(\d{2})_A(\d{2})_V(\d{2})$")
SUFFIXES = (".txt", ".npy")
VIDEO_SUFFIXES = (".mp4", ".avi")
NUM_JOINTS = 20


def read_sysu_file(path: str | os.PathLike) -> np.ndarray:
    """One sample's joints, (T, 20, 3) float32, from a ``.txt`` (T lines of 60 numbers) or ``.npy`` file."""
    path = Path(path)
    if path.suffix == ".npy":
        try:
            joints = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise DataError(f"{path}: cannot read as .npy: {e}") from None
        if not np.issubdtype(joints.dtype, np.number):
            raise DataError(f"{path}: array of dtype {joints.dtype}, expected numbers")
        if joints.ndim == 2 and joints.shape[1] == NUM_JOINTS * 3:
            joints = joints.reshape(-1, NUM_JOINTS, 3)
        if joints.ndim != 3 or joints.shape[1:] != (NUM_JOINTS, 3):
            raise DataError(f"{path}: array of shape {joints.shape}, expected (T, {NUM_JOINTS}, 3) or "
                             f"(T, {NUM_JOINTS * 3})")
        return joints.astype(np.float32)
    if path.suffix != ".txt":
        raise DataError(f"{path}: unsupported suffix {path.suffix!r}; expected {' or '.join(SUFFIXES)}")
    frames = []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.replace(",", " ").split()
        if not fields:
            continue
        if len(fields) != NUM_JOINTS * 3:
            raise DataError(f"{path}, line {lineno}: {len(fields)} numbers, expected {NUM_JOINTS * 3}")
        try:
            frames.append([float(f) for f in fields])
        except ValueError as e:
            raise DataError(f"{path}, line {lineno}: {e}") from None
    return np.asarray(frames, dtype=np.float32).reshape(len(frames), NUM_JOINTS, 3)


def sysu_video_path(path: str | os.PathLike) -> Path | None:
    """The video next to sample file ``path`` (``<name>.mp4`` or ``<name>.avi``), or None when it has none."""
    path = Path(path)
    for suffix in VIDEO_SUFFIXES:
        video = path.with_suffix(suffix)
        if video.is_file():
            return video
    return None


def sysu_sample(path: Path) -> RawSample:
    """The sample record of one SYSU file (label, subject, split) from its name."""
    match = NAME_PATTERN.match(path.stem)
    if match is None:
        raise DataError(f"{path}: name does not follow S{{subject:02d}}_A{{action:02d}}_V{{index:02d}}")
    subject, action, _ = map(int, match.groups())
    if not 1 <= action <= len(SYSU_CLASSES):
        raise DataError(f"{path}: action A{action:02d} outside A01..A{len(SYSU_CLASSES):02d}")
    return RawSample(path.stem, action - 1, subject, subject % 2 == 0, path)


def prepare_sysu(raw_dir: str | os.PathLike, out: str | os.PathLike, overwrite: bool = False,
                 progress: bool = True, dataset_name: str = "sysu") -> Path:
    """Convert SYSU-Action sample files under ``raw_dir`` (layout above) into a prepared dataset at ``out``;
    ``dataset_name`` names it in its metadata (and so keys its teacher caches)."""
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise FileNotFoundError(f"SYSU-Action directory not found: {raw_dir}")
    paths = sorted((p for suffix in SUFFIXES for p in raw_dir.rglob(f"S[0-9][0-9]_A[0-9][0-9]_V[0-9][0-9]{suffix}")),
                   key=lambda p: p.stem)
    if not paths:
        raise FileNotFoundError(f"no S??_A??_V??.txt / .npy files under {raw_dir}")
    info = PreparedInfo(dataset=dataset_name, layout="kinect_v1_20", num_person=1, class_names=list(SYSU_CLASSES),
                        benchmark="xsub", source=str(raw_dir.resolve()))
    return import_samples(out, info, [sysu_sample(p) for p in paths], read_sysu_file,
                          "cross-subject: odd subjects train, even subjects test",
                          overwrite=overwrite, progress=progress)
