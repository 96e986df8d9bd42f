"""Clip transforms of CTR-GCN's NTU feeder (``feeders/feeder_ntu.py`` + ``feeders/tools.py``), numerically identical.

Arrays are ``(C, T, V, M)`` float32, as in the reference. One clip goes through, in the reference's order:

1. **crop-resize** the valid frames ``[0, valid)`` to ``window`` frames. Training: draw ``p ~ U[p_lo, p_hi]``, keep
   ``min(max(floor(valid * p), floor_length), valid)`` frames from a random start; evaluation: centre crop keeping 0.95
   (``int(0.05 * valid / 2)`` frames cut from each end). The crop is resized by linear interpolation over time
   (``align_corners=False``; the reference calls bilinear on a ``(C*V*M, T)`` image, whose height is unchanged, which
   is the same linear interpolation along time).
2. **rotation** (training): one angle per axis ``~ U[-0.3, 0.3]`` rad, ``R = Rz @ Ry @ Rx`` applied to every frame.
3. **bone**: ``x[:, :, j] - x[:, :, parent(j)]`` for the layout's bone pairs (:attr:`Layout.bones`); **skip**
   (BRL's skip modality): ``x[:, :, j] - x[:, :, parent(parent(j))]``, the joint minus its 2-hop ancestor, 0 for the
   root and its children (:func:`skip_pairs`).
4. **motion**: ``x[:, t + 1] - x[:, t]``, last frame 0 (joint-motion on joints, bone-motion on bones, skip-motion on
   skips).

The reference floors the training crop at a hard-coded 64 frames, which is its window; here the floor defaults to the
window (``min_length``), the same number at the default window of 64.

Randomness comes only from an explicit :class:`numpy.random.Generator`, drawn in one place (:meth:`ClipTransform.draw`)
into a :class:`Draws` record that can also be given directly, so a test can feed the reference the very same draws.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from mmcl.data.streams import MODALITY_STREAMS as STREAMS  # the modality streams (CTR-GCN, BRL)


def valid_frame_count(x: np.ndarray) -> int:
    """The reference's valid length of a zero-padded ``(C, T, V, M)`` clip: frames whose values do not sum to 0."""
    return int(np.sum(x.sum(0).sum(-1).sum(-1) != 0))


def train_crop_length(valid: int, p: float, min_length: int) -> int:
    """Frames kept by a training crop of fraction ``p``: ``min(max(floor(valid * p), min_length), valid)``."""
    return int(min(max(int(np.floor(valid * p)), min_length), valid))


def center_crop_bounds(valid: int, keep: float = 0.95) -> tuple[int, int]:
    """(start, stop) of the evaluation crop: ``int((1 - keep) * valid / 2)`` frames cut from each end."""
    bias = int((1 - keep) * valid / 2)
    return bias, valid - bias


def crop_resize(x: np.ndarray, start: int, stop: int, window: int) -> np.ndarray:
    """Frames ``[start, stop)`` of a ``(C, T, V, M)`` clip resized to ``window`` frames (linear interpolation over
    time, ``align_corners=False``)."""
    if not 0 <= start < stop <= x.shape[1]:
        raise ValueError(f"crop [{start}, {stop}) outside a clip of {x.shape[1]} frames")
    clip = torch.from_numpy(np.ascontiguousarray(x[:, start:stop], dtype=np.float32))
    c, t, v, m = clip.shape
    rows = clip.permute(0, 2, 3, 1).reshape(1, c * v * m, t)
    out = F.interpolate(rows, size=window, mode="linear", align_corners=False)
    return out.reshape(c, v, m, window).permute(0, 3, 1, 2).contiguous().numpy()


def rotation_matrix(angles: Sequence[float]) -> np.ndarray:
    """``Rz @ Ry @ Rx`` (3, 3) for angles (x, y, z) in radians, with the reference's sign convention."""
    cx, cy, cz = np.cos(np.asarray(angles, dtype=np.float64))
    sx, sy, sz = np.sin(np.asarray(angles, dtype=np.float64))
    rx = np.array([[1, 0, 0], [0, cx, sx], [0, -sx, cx]])
    ry = np.array([[cy, 0, -sy], [0, 1, 0], [sy, 0, cy]])
    rz = np.array([[cz, sz, 0], [-sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def rotate(x: np.ndarray, angles: Sequence[float]) -> np.ndarray:
    """Rotate every frame of a ``(3, T, V, M)`` clip by :func:`rotation_matrix` of ``angles``."""
    if x.shape[0] != 3:
        raise ValueError(f"rotation needs 3 coordinate channels, got a clip of shape {x.shape}")
    r = rotation_matrix(angles).astype(np.float32)
    return (r @ x.reshape(3, -1)).reshape(x.shape)


def to_bone(x: np.ndarray, bones: Sequence[tuple[int, int]]) -> np.ndarray:
    """Bone stream: ``out[:, :, j] = x[:, :, j] - x[:, :, parent]`` for each 0-based (j, parent); other joints 0."""
    joint, parent = np.asarray(bones, dtype=np.int64).T
    out = np.zeros_like(x)
    out[:, :, joint] = x[:, :, joint] - x[:, :, parent]
    return out


def skip_pairs(bones: Sequence[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """BRL's skip pairs from a layout's bone pairs: (j, parent(parent(j))) for every joint at least two hops from the
    root (the joint that is its own parent); the root and its children have no 2-hop ancestor and are left out."""
    parent = dict(bones)
    pairs = []
    for j, p in bones:
        if p != j and parent.get(p, p) != p:
            pairs.append((j, parent[p]))
    return tuple(pairs)


def to_skip(x: np.ndarray, bones: Sequence[tuple[int, int]]) -> np.ndarray:
    """Skip stream: ``x[:, :, j] - x[:, :, parent(parent(j))]`` (:func:`skip_pairs`); other joints 0."""
    pairs = skip_pairs(bones)
    return to_bone(x, pairs) if pairs else np.zeros_like(x)


def to_motion(x: np.ndarray) -> np.ndarray:
    """Motion stream: ``x[:, t + 1] - x[:, t]``, the last frame 0."""
    out = np.zeros_like(x)
    out[:, :-1] = x[:, 1:] - x[:, :-1]
    return out


@dataclass(frozen=True)
class Draws:
    """The random numbers of one training clip: crop fraction ``p``, crop ``start`` frame, rotation ``angles``."""

    p: float
    start: int
    angles: tuple[float, float, float] | None = None


@dataclass(frozen=True)
class ClipTransform:
    """CTR-GCN's feeder pipeline for one stream; call it on a ``(C, T, V, M)`` clip and its valid length.

    Attributes:
        window: output frames.
        stream: one of :data:`STREAMS`.
        bones: 0-based (joint, parent) pairs, needed by the bone and skip streams (``Layout.bones``).
        train: random crop (+ rotation) when true; centre crop otherwise.
        p_interval: range of the training crop fraction.
        min_length: floor of the training crop length; ``None`` means ``window``.
        random_rotation: rotate training clips.
        rotation_range: rotation angles are drawn from ``U[-rotation_range, rotation_range]``.
        test_keep: fraction kept by the evaluation centre crop.
    """

    window: int = 64
    stream: str = "joint"
    bones: tuple[tuple[int, int], ...] = ()
    train: bool = False
    p_interval: tuple[float, float] = (0.5, 1.0)
    min_length: int | None = None
    random_rotation: bool = True
    rotation_range: float = 0.3
    test_keep: float = 0.95

    def __post_init__(self) -> None:
        if self.stream not in STREAMS:
            raise ValueError(f"unknown stream {self.stream!r}; streams: {', '.join(STREAMS)}")
        if self.stream.startswith(("bone", "skip")) and not self.bones:
            raise ValueError(f"stream {self.stream!r} needs the layout's bone pairs")
        if self.window < 1:
            raise ValueError(f"window must be positive, got {self.window}")
        lo, hi = self.p_interval
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"p_interval must satisfy 0 < lo <= hi <= 1, got {self.p_interval}")

    @property
    def floor_length(self) -> int:
        return self.window if self.min_length is None else self.min_length

    def draw(self, valid: int, rng: np.random.Generator) -> Draws:
        """Draw a training clip's random numbers, in the reference's order: p, start, angles."""
        lo, hi = self.p_interval
        p = float(rng.uniform(lo, hi))
        length = train_crop_length(valid, p, self.floor_length)
        start = int(rng.integers(0, valid - length + 1))
        angles = None
        if self.random_rotation:
            a = rng.uniform(-self.rotation_range, self.rotation_range, size=3)
            angles = (float(a[0]), float(a[1]), float(a[2]))
        return Draws(p, start, angles)

    def __call__(self, x: np.ndarray, valid: int, rng: np.random.Generator | None = None,
                 draws: Draws | None = None) -> np.ndarray:
        """Transform ``x`` (C, T, V, M) whose first ``valid`` frames hold the clip; returns (C, window, V, M) float32.

        Training needs ``rng`` or ``draws`` (``draws`` wins); evaluation needs neither.
        """
        if not 0 < valid <= x.shape[1]:
            raise ValueError(f"valid length {valid} outside 1..{x.shape[1]} for a clip of shape {x.shape}")
        if self.train:
            if draws is None:
                if rng is None:
                    raise ValueError("a training transform needs a numpy Generator or explicit draws")
                draws = self.draw(valid, rng)
            length = train_crop_length(valid, draws.p, self.floor_length)
            if not 0 <= draws.start <= valid - length:
                raise ValueError(
                    f"crop start {draws.start} outside 0..{valid - length} (valid {valid}, length {length})")
            out = crop_resize(x, draws.start, draws.start + length, self.window)
            if draws.angles is not None:
                out = rotate(out, draws.angles)
        else:
            out = crop_resize(x, *center_crop_bounds(valid, self.test_keep), self.window)
        if self.stream.startswith("bone"):
            out = to_bone(out, self.bones)
        elif self.stream.startswith("skip"):
            out = to_skip(out, self.bones)
        if self.stream.endswith("motion"):
            out = to_motion(out)
        return out
