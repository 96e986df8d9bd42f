"""The skeleton augmentations of CMD / HaLP's contrastive pre-training (anshulbshah/HaLP ``feeder/augmentations.py``,
``feeder/feeder_pretraining_intra.py``) and the two-view dataset that applies them.

One view of a clip ``(C, T, V, M)``, in the release's order:

1. **temporal crop-resize**: ``scale ~ U[crop_lo, crop_hi]`` (release ``l_ratio`` [0.1, 1]), keep
   ``min(max(floor(valid * scale), min_length), valid)`` frames from a random start (the release's floor is its
   window, 64), resize them to ``window`` frames by linear interpolation;
2. one spatial augmentation, each with probability 1/2:

   - **joint corruption**: ``corrupt_fraction`` of the joints (15 of NTU's 25) are either zeroed or, each with
     probability 1/2, all moved by one random linear map (3 x 3, entries ``U[-1, 1]``);
   - **shear**: ``x <- S x`` with ``S = [[1, a, b], [c, 1, d], [e, f, 1]]``, off-diagonal entries
     ``U[-shear, shear]`` (release: 1).

The stream (bone, motion) is computed from the augmented joints, as the release does inside its model. Randomness
comes from one :class:`numpy.random.Generator` per clip (:meth:`SkeletonDataset.rng`: seed, epoch, sample), so a view
is reproducible whatever the worker count or order, and a resumed run draws the same views.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mmcl.data.dataset import SkeletonDataset
from mmcl.data.transforms import crop_resize, to_bone, to_motion, train_crop_length

__all__ = ["ContrastiveAugment", "shear", "corrupt_joints", "TwoViewDataset"]


def shear(x: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a (C, C) matrix to every joint of a (C, T, V, M) clip: ``out[:, t, v, m] = matrix @ x[:, t, v, m]``."""
    c = x.shape[0]
    return (matrix.astype(np.float32) @ x.reshape(c, -1)).reshape(x.shape)


def corrupt_joints(x: np.ndarray, joints: np.ndarray, matrix: np.ndarray | None) -> np.ndarray:
    """Zero the given joints (``matrix`` None) or move them all by ``matrix`` (C, C)."""
    out = x.copy()
    out[:, :, joints] = 0 if matrix is None else shear(x[:, :, joints], matrix)
    return out


@dataclass(frozen=True)
class ContrastiveAugment:
    """One random view of a clip (see the module docstring); defaults are the release's NTU settings.

    Attributes:
        window: output frames.
        crop: range of the crop fraction (release ``l_ratio``).
        min_length: floor of the crop length; ``None`` means ``window`` (the release: 64 = its window).
        shear: range of the shear's off-diagonal entries.
        corrupt_fraction: fraction of the joints that joint corruption touches (release: 15 of 25).
        p_shear: probability of shear (else joint corruption).
    """

    window: int = 64
    crop: tuple[float, float] = (0.1, 1.0)
    min_length: int | None = None
    shear: float = 1.0
    corrupt_fraction: float = 0.6
    p_shear: float = 0.5

    def __post_init__(self) -> None:
        lo, hi = self.crop
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"crop must satisfy 0 < lo <= hi <= 1, got {self.crop}")
        if not 0 <= self.corrupt_fraction <= 1 or not 0 <= self.p_shear <= 1:
            raise ValueError("corrupt_fraction and p_shear must lie in [0, 1]")

    def __call__(self, x: np.ndarray, valid: int, rng: np.random.Generator) -> np.ndarray:
        """A view of the clip ``x`` (C, T, V, M) whose first ``valid`` frames hold the sample; (C, window, V, M)."""
        c, _, v, _ = x.shape
        lo, hi = self.crop
        length = train_crop_length(valid, float(rng.uniform(lo, hi)),
                                   self.window if self.min_length is None else self.min_length)
        start = int(rng.integers(0, valid - length + 1))
        out = crop_resize(x, start, start + length, self.window)
        if rng.random() < self.p_shear:
            matrix = rng.uniform(-self.shear, self.shear, size=(c, c))
            np.fill_diagonal(matrix, 1.0)
            return shear(out, matrix)
        joints = rng.choice(v, size=int(round(self.corrupt_fraction * v)), replace=False)
        return corrupt_joints(out, joints, rng.uniform(-1, 1, size=(c, c)) if rng.random() >= 0.5 else None)


class TwoViewDataset(SkeletonDataset):
    """A split of a prepared dataset as pairs of augmented views of each clip, for contrastive pre-training.

    Items: ``query`` and ``key`` (C, window, V, M) float32 tensors of the configured stream, ``label`` (not used by
    the pre-training; kept for monitoring), ``name`` and ``index``. Other arguments as :class:`SkeletonDataset`.
    """

    def __init__(self, data, split: str, augment: ContrastiveAugment, stream: str = "joint", repeat: int = 1,
                 seed: int = 0, adapter=None):
        super().__init__(data, split, stream=stream, window=augment.window, train=False, repeat=repeat, seed=seed,
                         adapter=adapter)
        self.augment = augment

    def _stream(self, x: np.ndarray) -> np.ndarray:
        if self.stream.startswith("bone"):
            x = to_bone(x, self.layout.bones)
        if self.stream.endswith("motion"):
            x = to_motion(x)
        return x

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not 0 <= i < len(self):
            raise IndexError(f"item {i} outside 0..{len(self) - 1}")
        copy, position = divmod(int(i), len(self.indices))
        index = int(self.indices[position])
        joints = self.data.joints(index)
        if self.adapter is not None:
            joints = self.adapter(joints)
        clip = np.ascontiguousarray(joints.transpose(3, 0, 2, 1))  # (T, M, V, C) -> (C, T, V, M)
        rng = self.rng(index, copy)
        views = [torch.from_numpy(self._stream(self.augment(clip, clip.shape[1], rng))) for _ in range(2)]
        return {"query": views[0], "key": views[1], "label": int(self.data.labels[index]),
                "name": self.data.names[index], "index": index}
