"""NTU RGB+D 60/120: the raw ``.skeleton`` format, the standard sample selection, names, splits and preparation.

Reading a sample follows the standard preprocessing of SGN (github.com/microsoft/SGN, ``data/ntu/``), which CTR-GCN
uses unchanged: ``get_raw_skes_data.py`` (parse), ``get_raw_denoised_data.py`` (denoise, pick two actors) and
``seq_transformation.py`` (translate). :func:`read_skeleton` returns a sample as those scripts leave it just before
padding to 300 frames:

1. Frames without any body are dropped; the remaining ("valid") frames are numbered 0..F-1.
2. Bodies are grouped by bodyID, in order of first appearance. Each body keeps its rows stacked and an interval that
   starts at the valid frame of its first appearance and grows by one per appearance (the reference's bookkeeping:
   a body that disappears and reappears gets its later rows shifted earlier).
3. With a single bodyID that body is actor 1. With several: motion = sum over x, y, z of the variance of all its joints
   over all its rows (float32, as numpy computes it on the stacked (rows*25, 3) array); bodies seen in <= 11 rows are
   dropped; then, while more than one body is left, each body (in order of appearance) whose rows are noisy
   (x-spread > 0.8 * y-spread of its 25 joints) in a fraction >= 0.69754 of them is dropped, and a body with some
   noisy rows gets motion = min(motion, motion of its non-noisy rows). The comparison is done in float64, as numpy 1.x
   did when the standard data were made (numpy 2 would multiply in float32).
4. Bodies are ordered by motion (largest first, ties in order of appearance). The first is actor 1. Each next body
   whose interval does not overlap actor 1's (``min(ends) - max(starts) <= 0``, so touching by one frame counts as
   not overlapping) is written into actor 1's rows and extends actor 1's interval; otherwise, if it does not overlap
   actor 2's interval (which starts as [0, 0] and whose start stays 0), into actor 2's; otherwise it is dropped.
   Writing overwrites rows already written.
5. With several bodyIDs in the file, rows where both actors are all zero are removed.
6. Every row is translated by actor 1's spine-mid joint (0-based joint 1) of the first row where actor 1 is non-zero;
   rows where an actor was zero before translation are set back to zero. A single actor gets an all-zero actor 2.

:func:`read_sample` also returns the colour-pixel coordinates (colorX, colorY) that went through the same selection
(NaN where an actor is absent, as in SGN's colour output) and, for every kept row, the frame of the recording it came
from. The ``.skeleton`` file has one frame per RGB video frame, so these are video frame indices.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from contextlib import closing
from dataclasses import dataclass
from functools import cached_property
from multiprocessing import Pool
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
from tqdm import tqdm

from mmcl.data.ntu_classes import MISSING_SKELETONS, NTU60_CLASSES, NTU120_CLASSES
from mmcl.data.prepared import PreparedInfo, PreparedWriter
from mmcl.errors import DataError
from mmcl.io import atomic_write_text

NUM_JOINTS = 25
JOINT_COLUMNS = (
    "x", "y", "z", "depthX", "depthY", "colorX", "colorY",
    "orientationW", "orientationX", "orientationY", "orientationZ", "trackingState",
)
BODY_INFO_FIELDS = (
    "bodyID", "clippedEdges", "handLeftConfidence", "handLeftState", "handRightConfidence", "handRightState",
    "isRestricted", "leanX", "leanY", "trackingState",
)

# SGN's denoising thresholds (get_raw_denoised_data.py).
NOISE_LENGTH = 11
NOISE_SPREAD_RATIO = 0.8
NOISE_SPREAD_FRACTION = 0.69754


class SkeletonFormatError(DataError):
    """A ``.skeleton`` file does not follow the format; names the file and the 1-based line."""

    def __init__(self, path: str | os.PathLike, line: int, message: str):
        self.path = Path(path)
        self.line = line
        super().__init__(f"{path}:{line}: {message}")


class NoBodyError(ValueError):
    """A ``.skeleton`` file has no body the standard selection keeps (callers skip and report it)."""

    def __init__(self, path: str | os.PathLike, detail: str = "no body in any frame"):
        self.path = Path(path)
        super().__init__(f"{path}: {detail}")


# ----------------------------------------------------------------------------------------------------------------------
# Raw format
# ----------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BodyInfo:
    """The info line of one body in one frame. ``body_id`` is kept as written: it is the body's identity."""

    body_id: str
    clipped_edges: int = 0
    hand_left_confidence: int = 0
    hand_left_state: int = 0
    hand_right_confidence: int = 0
    hand_right_state: int = 0
    is_restricted: int = 0
    lean_x: float = 0.0
    lean_y: float = 0.0
    tracking_state: int = 2


@dataclass(frozen=True, eq=False)
class Body:
    """One body in one frame: its info and a (25, 12) float32 array with the columns of :data:`JOINT_COLUMNS`.

    ``line`` is the 1-based line of the info line in the file it was read from (0 when built in memory).
    """

    info: BodyInfo
    joints: np.ndarray
    line: int = 0

    @property
    def body_id(self) -> str:
        return self.info.body_id

    @property
    def xyz(self) -> np.ndarray:
        """(25, 3) camera-space position in metres."""
        return self.joints[:, 0:3]

    @property
    def depth_xy(self) -> np.ndarray:
        """(25, 2) pixel position in the 512x424 depth map."""
        return self.joints[:, 3:5]

    @property
    def color_xy(self) -> np.ndarray:
        """(25, 2) pixel position in the 1920x1080 RGB video."""
        return self.joints[:, 5:7]

    @property
    def orientation(self) -> np.ndarray:
        """(25, 4) joint orientation quaternion W, X, Y, Z."""
        return self.joints[:, 7:11]

    @property
    def joint_tracking_state(self) -> np.ndarray:
        """(25,) int: 0 not tracked, 1 inferred, 2 tracked."""
        return self.joints[:, 11].astype(np.int64)


@dataclass(frozen=True, eq=False)
class BodyTrack:
    """All appearances of one bodyID, in file order: ``frames`` (n,) 0-based frame indices, ``joints`` (n, 25, 12)."""

    body_id: str
    frames: np.ndarray
    joints: np.ndarray
    lines: np.ndarray


@dataclass(frozen=True, eq=False)
class RawSkeleton:
    """Everything a ``.skeleton`` file holds.

    Bodies are stored flat, one entry per (frame, body) appearance in file order: ``joints`` (N, 25, 12) float32,
    ``frame_index`` (N,) the 0-based frame of each, ``infos`` their info lines and ``lines`` (N,) the 1-based line of
    each info line. :attr:`frames` and :meth:`tracks` give the per-frame and per-body views.
    """

    path: Path
    num_frames: int
    joints: np.ndarray
    frame_index: np.ndarray
    infos: tuple[BodyInfo, ...]
    lines: np.ndarray

    @cached_property
    def frames(self) -> list[list[Body]]:
        """Per frame (including frames without bodies), its bodies in file order."""
        out: list[list[Body]] = [[] for _ in range(self.num_frames)]
        for k, info in enumerate(self.infos):
            out[self.frame_index[k]].append(Body(info, self.joints[k], int(self.lines[k])))
        return out

    def bodies_per_frame(self) -> np.ndarray:
        """(num_frames,) number of bodies in each frame."""
        return np.bincount(self.frame_index, minlength=self.num_frames)

    def tracks(self) -> dict[str, BodyTrack]:
        """Per bodyID (in order of first appearance), all its appearances."""
        return {body_id: BodyTrack(body_id, self.frame_index[rows], self.joints[rows], self.lines[rows])
                for body_id, rows in _group_by_body(self.infos).items()}


def _group_by_body(infos: Sequence[BodyInfo]) -> dict[str, np.ndarray]:
    groups: dict[str, list[int]] = {}
    for k, info in enumerate(infos):
        groups.setdefault(info.body_id, []).append(k)
    return {body_id: np.asarray(rows, dtype=np.int64) for body_id, rows in groups.items()}


def _int_line(path: Path, lines: list[str], i: int, what: str) -> int:
    if i >= len(lines):
        raise SkeletonFormatError(path, i + 1, f"expected {what}, got end of file")
    try:
        value = int(lines[i])
    except ValueError:
        raise SkeletonFormatError(path, i + 1, f"expected {what} (one integer), got {lines[i].strip()!r}") from None
    if value < 0:
        raise SkeletonFormatError(path, i + 1, f"expected {what}, got negative {value}")
    return value


def _info_line(path: Path, lines: list[str], i: int) -> BodyInfo:
    if i >= len(lines):
        raise SkeletonFormatError(path, i + 1, "expected a body info line, got end of file")
    tokens = lines[i].split()
    if len(tokens) != len(BODY_INFO_FIELDS):
        raise SkeletonFormatError(
            path, i + 1, f"expected a body info line of {len(BODY_INFO_FIELDS)} fields "
                         f"({' '.join(BODY_INFO_FIELDS)}), got {len(tokens)}: {lines[i].strip()!r}")
    values: list[int | float] = []
    for field_name, token, kind in zip(BODY_INFO_FIELDS[1:], tokens[1:], (int,) * 6 + (float, float, int)):
        try:
            values.append(kind(token))
        except ValueError:
            raise SkeletonFormatError(
                path, i + 1, f"body info field {field_name} must be {'an integer' if kind is int else 'a number'}, "
                             f"got {token!r}") from None
    return BodyInfo(tokens[0], *values)


def _joint_line_error(path: Path, lines: list[str], info_lines: Sequence[int]) -> SkeletonFormatError:
    """Find the first bad joint line (called only when the bulk conversion failed)."""
    for info_line in info_lines:
        for i in range(info_line + 2, info_line + 2 + NUM_JOINTS):  # 0-based index of the joint line
            tokens = lines[i].split()
            if len(tokens) != len(JOINT_COLUMNS):
                return SkeletonFormatError(
                    path, i + 1, f"expected a joint line of {len(JOINT_COLUMNS)} numbers ({' '.join(JOINT_COLUMNS)}), "
                                 f"got {len(tokens)}: {lines[i].strip()!r}")
            for column, token in zip(JOINT_COLUMNS, tokens):
                try:
                    value = np.float32(token)
                except ValueError:
                    return SkeletonFormatError(path, i + 1, f"joint column {column} is not a number: {token!r}")
                if not np.isfinite(value):
                    return SkeletonFormatError(path, i + 1, f"joint column {column} is not finite: {token!r}")
    raise AssertionError(f"{path}: the joint lines failed to convert, but no bad line was found")


def parse_skeleton_file(path: str | os.PathLike) -> RawSkeleton:
    """Parse every field of an NTU RGB+D ``.skeleton`` file. Raises :class:`SkeletonFormatError` on malformed input.

    Numbers are converted to float32 the way the reference does (decimal -> double -> float32), in one bulk call.
    """
    path = Path(path)
    data = path.read_bytes()
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as e:
        raise SkeletonFormatError(path, data.count(b"\n", 0, e.start) + 1, "not an ASCII text file") from None
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    num_frames = _int_line(path, lines, 0, "the frame count")
    infos: list[BodyInfo] = []
    frame_index: list[int] = []
    info_lines: list[int] = []  # 0-based
    joint_lines: list[str] = []
    i = 1
    for f in range(num_frames):
        num_bodies = _int_line(path, lines, i, f"the body count of frame {f + 1} of {num_frames}")
        i += 1
        for _ in range(num_bodies):
            infos.append(_info_line(path, lines, i))
            info_lines.append(i)
            frame_index.append(f)
            num_joints = _int_line(path, lines, i + 1, "the joint count")
            if num_joints != NUM_JOINTS:
                raise SkeletonFormatError(path, i + 2, f"expected {NUM_JOINTS} joints, got {num_joints}")
            if i + 2 + NUM_JOINTS > len(lines):
                raise SkeletonFormatError(path, len(lines) + 1,
                                          f"expected {NUM_JOINTS} joint lines from line {i + 3}, got end of file")
            joint_lines.extend(lines[i + 2:i + 2 + NUM_JOINTS])
            i += 2 + NUM_JOINTS
    for j in range(i, len(lines)):
        if lines[j].strip():
            raise SkeletonFormatError(path, j + 1, f"expected end of file after {num_frames} frames, "
                                                   f"got {lines[j].strip()!r}")
    joints = np.zeros((0, len(JOINT_COLUMNS)), dtype=np.float32)
    if joint_lines:
        try:
            joints = np.loadtxt(joint_lines, dtype=np.float32, comments=None, ndmin=2)
            ok = joints.shape == (len(joint_lines), len(JOINT_COLUMNS)) and bool(np.isfinite(joints).all())
        except ValueError:
            ok = False
        if not ok:
            raise _joint_line_error(path, lines, info_lines)
    return RawSkeleton(
        path=path,
        num_frames=num_frames,
        joints=joints.reshape(-1, NUM_JOINTS, len(JOINT_COLUMNS)),
        frame_index=np.asarray(frame_index, dtype=np.int64),
        infos=tuple(infos),
        lines=np.asarray(info_lines, dtype=np.int64) + 1,
    )


def _format_float32(values: np.ndarray) -> list[str]:
    """Shortest of 7, 8, 9 significant digits (NTU files use 7) that reads back as the same float32."""
    flat = np.asarray(values, dtype=np.float32).ravel()
    as_float = flat.tolist()
    out = ["%.7g" % v for v in as_float]
    if out:
        for k in np.flatnonzero(np.fromstring(" ".join(out), dtype=np.float32, sep=" ") != flat):
            out[k] = next(s for s in ("%.8g" % as_float[k], "%.9g" % as_float[k]) if np.float32(s) == flat[k])
    return out


def write_skeleton_file(path: str | os.PathLike, frames: Sequence[Sequence[Body]]) -> None:
    """Write frames of bodies as an NTU ``.skeleton`` file (all 12 joint columns), atomically.

    The inverse of :func:`parse_skeleton_file`: ``write_skeleton_file(p, parse_skeleton_file(q).frames)`` reproduces
    every value. Floats are written with 7 significant digits like NTU's files, or more where float32 needs them.
    """
    path = Path(path)
    bodies = [(f, body) for f, frame in enumerate(frames) for body in frame]
    for f, body in bodies:
        joints = np.asarray(body.joints)
        where = f"frame {f}, body {body.info.body_id!r}"
        if not body.info.body_id or any(c.isspace() for c in body.info.body_id):
            raise ValueError(f"{where}: invalid body id")
        if joints.shape != (NUM_JOINTS, len(JOINT_COLUMNS)):
            raise ValueError(f"{where}: joints of shape {joints.shape}, expected ({NUM_JOINTS}, {len(JOINT_COLUMNS)})")
        if not np.isfinite(joints).all():
            raise ValueError(f"{where}: joints contain NaN or inf")
        if not np.array_equal(joints[:, 11], np.round(joints[:, 11])):
            raise ValueError(f"{where}: joint trackingState (column 12) must be integers")
    all_joints = np.stack([np.asarray(b.joints) for _, b in bodies]) if bodies else np.zeros((0, NUM_JOINTS, 12))
    numbers = _format_float32(all_joints[:, :, :11])
    tracking = all_joints[:, :, 11].astype(np.int64).tolist()
    out = [str(len(frames))]
    k = 0
    for frame in frames:
        out.append(str(len(frame)))
        for body in frame:
            info = body.info
            out.append(" ".join([
                info.body_id, str(int(info.clipped_edges)), str(int(info.hand_left_confidence)),
                str(int(info.hand_left_state)), str(int(info.hand_right_confidence)), str(int(info.hand_right_state)),
                str(int(info.is_restricted)), repr(float(info.lean_x)), repr(float(info.lean_y)),
                str(int(info.tracking_state))]))
            out.append(str(NUM_JOINTS))
            for j in range(NUM_JOINTS):
                first = (k * NUM_JOINTS + j) * 11
                out.append(" ".join(numbers[first:first + 11]) + f" {tracking[k][j]}")
            k += 1
    atomic_write_text(path, "\n".join(out) + "\n")


# ----------------------------------------------------------------------------------------------------------------------
# The standard (SGN / CTR-GCN) sample selection
# ----------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class NTUSample:
    """One sample after the standard selection, before padding.

    Attributes:
        name: the file name without ``.skeleton``.
        joints: (T, 2, 25, 3) float32, translated; an absent actor is all zero.
        color: (T, 2, 25, 2) float32 colour-pixel coordinates (colorX, colorY), untranslated; NaN where the actor is
            absent (no body was written into that row for it).
        frames: (T,) int32, the 0-based recording (video) frame of each row: the frame actor 1's data in that row was
            read from, or actor 2's where actor 1 is absent. These are real frames, not the reference's row numbers:
            after a body disappears and reappears, the reference shifts its later appearances earlier (its interval
            grows by one per appearance), so a row can hold data of a later frame than its position says, and the two
            actors of one row can come from different frames; ``source_frames`` tells each actor's.
        source_frames: (T, 2) int32, per actor the frame its data in that row came from; -1 where absent.
        num_actors: 1 when the reference's result is a single actor (one bodyID, or one left after denoising), else 2.
            CTR-GCN's NTU-120 script copies actor 1 into actor 2 of single-actor samples when padding; NTU-60 keeps
            zeros; here actor 2 is always zero when absent.
    """

    name: str
    joints: np.ndarray
    color: np.ndarray
    frames: np.ndarray
    source_frames: np.ndarray
    num_actors: int


@dataclass(eq=False)
class _Candidate:
    """One bodyID as the reference keeps it: its appearances (rows of the raw arrays) and its interval start."""

    body_id: str
    rows: np.ndarray
    start: int
    motion: np.float32 | None = None

    @property
    def end(self) -> int:
        return self.start + len(self.rows) - 1


def _motion(xyz: np.ndarray) -> np.float32:
    """Sum of the per-axis variances of all joints of all rows, on a contiguous (rows * 25, 3) float32 array."""
    return np.sum(np.var(np.ascontiguousarray(xyz).reshape(-1, 3), axis=0))


def _denoise_by_spread(bodies: list[_Candidate], xyz: np.ndarray) -> list[_Candidate]:
    kept = list(bodies)
    for body in bodies:
        if len(kept) == 1:
            break
        points = np.ascontiguousarray(xyz[body.rows])
        x_spread = points[:, :, 0].max(axis=1) - points[:, :, 0].min(axis=1)
        y_spread = points[:, :, 1].max(axis=1) - points[:, :, 1].min(axis=1)
        valid = x_spread.astype(np.float64) <= NOISE_SPREAD_RATIO * y_spread.astype(np.float64)
        num_noise = len(body.rows) - int(valid.sum())
        if num_noise == 0:
            continue
        if num_noise / float(len(body.rows)) >= NOISE_SPREAD_FRACTION:
            kept = [b for b in kept if b is not body]
        else:
            body.motion = min(body.motion, _motion(points[valid]))
    return kept


def _check_fits(raw: RawSkeleton, body: _Candidate, num_valid: int) -> None:
    """The reference places a body's rows from its start; more rows than frames left means a repeated bodyID."""
    if body.end < num_valid:
        return
    frames = raw.frame_index[body.rows]
    repeated = np.flatnonzero(frames[1:] == frames[:-1])
    line = int(raw.lines[body.rows[repeated[0] + 1]]) if len(repeated) else int(raw.lines[body.rows[0]])
    raise SkeletonFormatError(raw.path, line, f"body {body.body_id} appears more than once in a frame: its "
                                              f"{len(body.rows)} appearances do not fit the frames from its first one")


def select_sample(raw: RawSkeleton) -> NTUSample:
    """Apply the standard selection (module docstring) to a parsed file."""
    path = raw.path
    name = path.name[:-len(".skeleton")] if path.name.endswith(".skeleton") else path.stem
    has_body = raw.bodies_per_frame() > 0
    if not has_body.any():
        raise NoBodyError(path)
    num_valid = int(has_body.sum())
    valid_index = np.cumsum(has_body) - 1  # recording frame -> valid-frame index
    xyz = raw.joints[:, :, 0:3]
    color = raw.joints[:, :, 5:7]

    bodies = [_Candidate(body_id, rows, int(valid_index[raw.frame_index[rows[0]]]))
              for body_id, rows in _group_by_body(raw.infos).items()]
    for body in bodies:
        _check_fits(raw, body, num_valid)
    several = len(bodies) > 1
    if several:
        for body in bodies:
            body.motion = _motion(xyz[body.rows])
        count = len(bodies)
        bodies = [b for b in bodies if len(b.rows) > NOISE_LENGTH]
        if not bodies:
            raise NoBodyError(path, f"all {count} bodies are seen in <= {NOISE_LENGTH} frames")
        if len(bodies) > 1:
            bodies = _denoise_by_spread(bodies, xyz)
        bodies = sorted(bodies, key=lambda b: b.motion, reverse=True)

    num_slots = 1 if len(bodies) == 1 else 2
    width = 75 * num_slots
    joints = np.zeros((num_valid, width), dtype=np.float32)
    colors = np.full((num_valid, 2, NUM_JOINTS, 2), np.nan, dtype=np.float32)
    source = np.full((num_valid, 2), -1, dtype=np.int32)

    def place(body: _Candidate, actor: int) -> None:
        rows = slice(body.start, body.end + 1)
        joints[rows, 75 * actor:75 * (actor + 1)] = xyz[body.rows].reshape(-1, 75)
        colors[rows, actor] = color[body.rows]
        source[rows, actor] = raw.frame_index[body.rows]

    actor1 = bodies[0]
    place(actor1, 0)
    start1, end1 = actor1.start, actor1.end
    start2, end2 = 0, 0
    for body in bodies[1:]:
        if min(end1, body.end) - max(start1, body.start) <= 0:
            place(body, 0)
            start1, end1 = min(body.start, start1), max(body.end, end1)
        elif min(end2, body.end) - max(start2, body.start) <= 0:
            place(body, 1)
            start2, end2 = min(body.start, start2), max(body.end, end2)

    if several:
        keep = joints.sum(axis=1) != 0
        joints, colors, source = joints[keep], colors[keep], source[keep]

    if num_slots == 2:
        missing1 = joints[:, :75].sum(axis=1) == 0
        missing2 = joints[:, 75:].sum(axis=1) == 0
    first = np.flatnonzero((joints[:, :75] != 0).any(axis=1))
    if len(first) == 0:
        raise NoBodyError(path, "actor 1 has only zero coordinates")
    origin = joints[first[0], 3:6].copy()
    joints -= np.tile(origin, 25 * num_slots)
    if num_slots == 2:
        joints[missing1, :75] = 0
        joints[missing2, 75:] = 0

    out = np.zeros((len(joints), 2, NUM_JOINTS, 3), dtype=np.float32)
    out[:, :num_slots] = joints.reshape(len(joints), num_slots, NUM_JOINTS, 3)
    frames = np.where(source[:, 0] >= 0, source[:, 0], source[:, 1]).astype(np.int32)
    return NTUSample(name=name, joints=out, color=colors, frames=frames, source_frames=source, num_actors=num_slots)


def read_sample(path: str | os.PathLike) -> NTUSample:
    """Parse a ``.skeleton`` file and apply the standard selection (joints, colour coordinates, frame indices)."""
    return select_sample(parse_skeleton_file(path))


def read_skeleton(path: str | os.PathLike) -> np.ndarray:
    """The sample as SGN/CTR-GCN's preprocessing leaves it before padding: (T, 2, 25, 3) float32."""
    return read_sample(path).joints


# ----------------------------------------------------------------------------------------------------------------------
# Names and splits
# ----------------------------------------------------------------------------------------------------------------------

_NAME = re.compile(r"S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})")


@dataclass(frozen=True, order=True)
class NTUName:
    """The parts of a sample name ``SsssCcccPpppRrrrAaaa`` (all 1-based ids)."""

    setup: int
    camera: int
    performer: int
    replication: int
    action: int

    def __str__(self) -> str:
        return (f"S{self.setup:03d}C{self.camera:03d}P{self.performer:03d}"
                f"R{self.replication:03d}A{self.action:03d}")

    @property
    def label(self) -> int:
        """0-based class label (action id - 1)."""
        return self.action - 1


def parse_name(name: str) -> NTUName:
    """Split an NTU sample name such as ``S001C002P003R002A013``."""
    match = _NAME.fullmatch(name)
    if match is None:
        raise ValueError(f"not an NTU sample name: {name!r} (expected SsssCcccPpppRrrrAaaa, e.g. S001C002P003R002A013)")
    return NTUName(*(int(g) for g in match.groups()))


DATASETS = ("ntu60", "ntu120")
BENCHMARKS: dict[str, tuple[str, ...]] = {"ntu60": ("xsub", "xview"), "ntu120": ("xsub", "xset")}
NUM_SETUPS = {"ntu60": 17, "ntu120": 32}
NUM_PERFORMERS = {"ntu60": 40, "ntu120": 106}
CLASSES = {"ntu60": NTU60_CLASSES, "ntu120": NTU120_CLASSES}

# Cross-subject training subjects (SGN / CTR-GCN seq_transformation.py); every other subject is a test subject.
_NTU60_XSUB_TRAIN = (1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38)
XSUB_TRAIN_SUBJECTS: dict[str, tuple[int, ...]] = {
    "ntu60": _NTU60_XSUB_TRAIN,
    "ntu120": _NTU60_XSUB_TRAIN + (45, 46, 47, 49, 50, 52, 53, 54, 55, 56, 57, 58, 59, 70, 74, 78, 80, 81, 82, 83, 84,
                                   85, 86, 89, 91, 92, 93, 94, 95, 97, 98, 100, 103),
}
XVIEW_TRAIN_CAMERAS = (2, 3)  # camera 1 is the test view

# Validation subjects are taken from the X-Sub training subjects in this fixed order (numpy.random.default_rng(0)
# .permutation of each list above, written out): the prefix (at least one subject, never all) whose X-Sub training
# samples are closest to VAL_FRACTION of all X-Sub training samples; subjects without samples are passed over. On a
# complete dataset that is one fixed set, recorded in the prepared dataset's split_protocol.
VAL_SUBJECT_ORDER: dict[str, tuple[int, ...]] = {
    "ntu60": (8, 38, 13, 4, 25, 31, 5, 18, 17, 15, 1, 19, 14, 9, 35, 34, 27, 16, 2, 28),
    "ntu120": (82, 18, 35, 17, 49, 55, 8, 80, 74, 54, 78, 50, 46, 4, 45, 5, 2, 98, 91, 13, 47, 97, 38, 93, 31, 34, 53,
               81, 57, 1, 15, 95, 86, 100, 59, 52, 94, 16, 89, 92, 84, 25, 19, 14, 83, 103, 9, 27, 56, 85, 70, 28, 58),
}
VAL_FRACTION = 0.1


def _check_dataset(dataset: str, benchmark: str | None = None) -> None:
    if dataset not in DATASETS:
        raise ValueError(f"unknown NTU dataset {dataset!r}; expected one of {DATASETS}")
    if benchmark is not None and benchmark not in BENCHMARKS[dataset]:
        raise ValueError(f"benchmark {benchmark!r} is not defined for {dataset}; expected one of {BENCHMARKS[dataset]}")


def _parse_names(names: Iterable[str], dataset: str) -> list[NTUName]:
    parsed = []
    for name in names:
        n = parse_name(name)
        if not 1 <= n.setup <= NUM_SETUPS[dataset]:
            raise ValueError(f"sample {name}: setup {n.setup} is not part of {dataset} "
                             f"(S001-S{NUM_SETUPS[dataset]:03d})")
        if not 1 <= n.performer <= NUM_PERFORMERS[dataset]:
            raise ValueError(f"sample {name}: performer {n.performer} is not part of {dataset} "
                             f"(P001-P{NUM_PERFORMERS[dataset]:03d})")
        if not 1 <= n.camera <= 3:
            raise ValueError(f"sample {name}: camera {n.camera} is not one of NTU's cameras 1-3")
        parsed.append(n)
    return parsed


def _in_training_set(n: NTUName, benchmark: str, dataset: str) -> bool:
    if benchmark == "xsub":
        return n.performer in XSUB_TRAIN_SUBJECTS[dataset]
    if benchmark == "xview":
        return n.camera in XVIEW_TRAIN_CAMERAS
    return n.setup % 2 == 0  # xset: even setups train, odd setups test


def validation_subjects(names: Sequence[str], dataset: str) -> tuple[int, ...]:
    """The subjects whose training-set samples form the validation split (see :data:`VAL_SUBJECT_ORDER`)."""
    _check_dataset(dataset)
    return _choose_validation_subjects(_parse_names(names, dataset), dataset)


def _choose_validation_subjects(parsed: Sequence[NTUName], dataset: str) -> tuple[int, ...]:
    train = set(XSUB_TRAIN_SUBJECTS[dataset])
    counts = Counter(n.performer for n in parsed if n.performer in train)
    present = [s for s in VAL_SUBJECT_ORDER[dataset] if counts[s] > 0]
    if len(present) < 2:
        raise ValueError(f"a validation split by subject needs samples of at least 2 X-Sub training subjects of "
                         f"{dataset}; found {sorted(present)}")
    total = sum(counts.values())
    cumulative = np.cumsum([counts[s] for s in present[:-1]])
    k = int(np.argmin(np.abs(cumulative / total - VAL_FRACTION))) + 1
    return tuple(sorted(present[:k]))


def split_indices(names: Sequence[str], benchmark: str, dataset: str) -> dict[str, list[int]]:
    """Train / val / test sample indices for an NTU benchmark.

    ``benchmark``: ``xsub`` (ntu60, ntu120), ``xview`` (ntu60: cameras 2, 3 train, camera 1 test) or ``xset``
    (ntu120: even setups train, odd test). ``val`` holds the training-set samples of :func:`validation_subjects`;
    ``train`` the rest of the standard training set, ``test`` is the standard test set.
    """
    _check_dataset(dataset, benchmark)
    parsed = _parse_names(names, dataset)
    val_subjects = set(_choose_validation_subjects(parsed, dataset))
    splits: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for i, n in enumerate(parsed):
        if not _in_training_set(n, benchmark, dataset):
            splits["test"].append(i)
        elif n.performer in val_subjects:
            splits["val"].append(i)
        else:
            splits["train"].append(i)
    for split, idx in splits.items():
        if not idx:
            raise ValueError(f"{dataset} {benchmark}: the {split} split of these {len(parsed)} samples is empty")
    return splits


def split_protocol(names: Sequence[str], benchmark: str, dataset: str) -> str:
    """A one-line description of :func:`split_indices` for these names (stored in the prepared dataset's meta)."""
    _check_dataset(dataset, benchmark)
    rule = {
        "xsub": f"X-Sub: training subjects {list(XSUB_TRAIN_SUBJECTS[dataset])}, all others test",
        "xview": f"X-View: cameras {list(XVIEW_TRAIN_CAMERAS)} train, camera 1 test",
        "xset": "X-Set: even setups train, odd setups test",
    }[benchmark]
    val = validation_subjects(names, dataset)
    return (f"{dataset} {rule}; validation: the training-set samples of subjects {list(val)} (the prefix of "
            f"VAL_SUBJECT_ORDER['{dataset}'] whose X-Sub training samples are closest to {VAL_FRACTION:.0%})")


# ----------------------------------------------------------------------------------------------------------------------
# Preparation
# ----------------------------------------------------------------------------------------------------------------------


def _read_for_prepare(path: Path) -> tuple[Path, NTUSample | None, str]:
    """Worker: the sample, or None and the reason it is skipped."""
    try:
        return path, read_sample(path), ""
    except NoBodyError as e:
        return path, None, f"no body: {e}"
    except SkeletonFormatError as e:
        return path, None, f"malformed: {e}"
    except (OSError, UnicodeDecodeError) as e:
        return path, None, f"unreadable: {type(e).__name__}: {e}"


def _scan(raw_dir: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for path in sorted(raw_dir.rglob("*.skeleton")):
        name = path.name[:-len(".skeleton")]
        if name in files:
            raise ValueError(f"sample {name} found twice: {files[name]} and {path}")
        files[name] = path
    if not files:
        raise FileNotFoundError(f"no *.skeleton file under {raw_dir}")
    return files


def prepare_ntu(raw_dir: str | os.PathLike, out: str | os.PathLike, benchmark: str = "xsub", dataset: str = "auto",
                class_names: Sequence[str] | None = None, workers: int = 2, overwrite: bool = False,
                progress: bool = True, dataset_name: str | None = None) -> Path:
    """Read every ``*.skeleton`` under ``raw_dir`` with :func:`read_sample` and write a prepared dataset to ``out``.

    ``dataset="auto"`` is ntu120 if any setup is above 17, else ntu60; ``dataset="ntu60"`` keeps setups S001-S017 of a
    larger folder. Samples in the authors' missing-skeleton list (:data:`MISSING_SKELETONS`), files without a body the
    selection keeps, and malformed files are recorded in ``skipped.json`` with the reason. ``class_names`` replaces the
    NTU class list (for datasets that use NTU-style names with their own classes; the official missing list is then not
    applied); action ``A00k`` is label ``k - 1``; ``dataset_name`` is then the dataset's name in its metadata (default: the NTU
    version), which keeps such a dataset apart from NTU in teacher caches. A killed run resumes: samples already in the writer's journal are
    not read again. ``workers <= 1`` reads in this process.
    """
    raw_dir = Path(raw_dir)
    files = _scan(raw_dir)
    parsed: dict[str, NTUName] = {}
    for name, path in files.items():
        try:
            parsed[name] = parse_name(name)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
    if dataset == "auto":
        dataset = "ntu120" if any(n.setup > NUM_SETUPS["ntu60"] for n in parsed.values()) else "ntu60"
    _check_dataset(dataset, benchmark)
    names = [name for name, n in parsed.items() if n.setup <= NUM_SETUPS[dataset]]
    _parse_names(names, dataset)
    classes = list(class_names) if class_names is not None else list(CLASSES[dataset])
    for name in names:
        if not 0 <= parsed[name].label < len(classes):
            raise ValueError(f"sample {name}: action {parsed[name].action} has no class among the "
                             f"{len(classes)} class names")
    missing = MISSING_SKELETONS if class_names is None else frozenset()

    info = PreparedInfo(dataset=dataset_name or dataset, layout="ntu25", num_person=2, class_names=classes, benchmark=benchmark,
                        channels=3, has_color=True, has_frames=True, source=str(raw_dir.resolve()))
    with PreparedWriter(out, info, overwrite=overwrite) as writer:
        for name in names:
            if name in missing and not writer.done(name):
                writer.skip(name, "in the dataset authors' list of samples with missing skeletons")
        todo = [files[name] for name in names if not writer.done(name)]
        bar = tqdm(total=len(todo), desc=f"reading {dataset} skeletons", unit="file", disable=not progress)
        with bar, closing(_read_all(todo, workers)) as results:
            for path, sample, reason in results:
                name = path.name[:-len(".skeleton")]
                if sample is None:
                    writer.skip(name, reason)
                else:
                    writer.add(name, parsed[name].label, sample.joints, sample.color, sample.frames)
                bar.update()
        return writer.finalize(split_indices(writer.names, benchmark, dataset),
                               split_protocol(writer.names, benchmark, dataset))


def _read_all(paths: list[Path], workers: int) -> Iterator[tuple[Path, NTUSample | None, str]]:
    if workers <= 1 or len(paths) < 2:
        yield from map(_read_for_prepare, paths)
        return
    chunksize = max(1, min(64, len(paths) // (workers * 16)))
    with Pool(workers) as pool:
        yield from pool.imap(_read_for_prepare, paths, chunksize=chunksize)
