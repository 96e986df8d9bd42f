"""The skeleton dataset: one split of a prepared dataset, through CTR-GCN's feeder transforms.

Each item is read on its own with :meth:`PreparedData.joints` (one ``pread`` of the sample's bytes), so iterating
even NTU-120 keeps memory flat; the joints array is never loaded whole.

A sample's valid length is its number of stored frames (from the prepared offsets). For NTU prepared the SGN way this
is exactly the reference's count of non-zero frames: SGN drops the frames where every body is missing, translates
the rest (which leaves them non-zero) and only then pads to 300 frames with zeros, which the prepared format does not
store.

Training randomness is seeded from ``(seed, epoch, index, copy)`` (``index`` into the prepared dataset, ``copy`` the
repeat number), so a sample gets the same crop and rotation whatever the DataLoader worker count or order. Call
:meth:`SkeletonDataset.set_epoch` before each epoch (with ``persistent_workers=False``, DataLoader's default, workers
see the new epoch because they copy the dataset at the start of each epoch).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from mmcl.data.adapt import ClipAdapter
from mmcl.data.layouts import Layout
from mmcl.data.prepared import PreparedData
from mmcl.data.streams import input_channels, stream_joints, stream_transform


class SkeletonDataset(Dataset):
    """One split of a prepared dataset as ``(C, T, V, M)`` clips of one stream.

    Args:
        data: a :class:`PreparedData` or its directory.
        split: ``"train"``, ``"val"`` or ``"test"``.
        stream: a stream of :data:`mmcl.data.streams.STREAMS`: CTR-GCN's ``"joint"``, ``"bone"``, ``"joint_motion"``,
            ``"bone_motion"``, BRL's ``"skip"`` and ``"skip_motion"``, or a PSUMNet part stream (``"psumnet_body"``,
            ...: 12 channels, the part's joints).
        window: frames per clip.
        train: random crop (``p ~ U[p_interval]``) and rotation; otherwise centre crop 0.95, no rotation.
        p_interval: training crop fraction range.
        random_rotation: rotate training clips by up to ``rotation_range`` radians per axis.
        rotation_range: see ``random_rotation``.
        repeat: the split is listed this many times per epoch (NW-UCLA's training set uses 5).
        seed: base seed of the training draws.
        adapter: maps each stored clip to another layout / person count first (cross-dataset use); items then also
            carry ``joint_mask`` (V,), 0 for joints the layout mapping filled in (the part's joints for a part stream).

    Items are dicts: ``skeleton`` float32 tensor (C, window, V, M), ``label`` int, ``name`` str and ``index`` int
    (the sample's index in the prepared dataset).
    """

    def __init__(self, data: PreparedData | str | os.PathLike, split: str, stream: str = "joint", window: int = 64,
                 train: bool = False, p_interval: tuple[float, float] = (0.5, 1.0), random_rotation: bool = True,
                 rotation_range: float = 0.3, repeat: int = 1, seed: int = 0, adapter: ClipAdapter | None = None):
        self.data = data if isinstance(data, PreparedData) else PreparedData(data)
        self.split = split
        self.indices = self.data.split(split)
        if repeat < 1:
            raise ValueError(f"repeat must be at least 1, got {repeat}")
        if seed < 0:
            raise ValueError(f"seed must be non-negative, got {seed}")
        rotate = train and random_rotation
        if rotate and self.data.info.channels != 3:
            raise ValueError(f"{self.data.root} stores {self.data.info.channels} channels per joint; random rotation "
                             "needs 3 (pass random_rotation=False)")
        if adapter is not None and adapter.source_layout != self.data.info.layout:
            raise ValueError(f"the adapter maps layout {adapter.source_layout!r} but {self.data.root} stores "
                             f"{self.data.info.layout!r}")
        self.adapter = adapter
        input_channels(stream, self.data.info.channels)  # a part stream needs xyz joints
        self.transform = stream_transform(stream, window, self.layout, train=train, p_interval=tuple(p_interval),
                                          random_rotation=rotate, rotation_range=rotation_range)
        self.stream_joints = stream_joints(stream)
        self.repeat = repeat
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Use the draws of ``epoch`` from now on."""
        if epoch < 0:
            raise ValueError(f"epoch must be non-negative, got {epoch}")
        self.epoch = epoch

    @property
    def train(self) -> bool:
        return self.transform.train

    @property
    def stream(self) -> str:
        return self.transform.stream

    @property
    def layout(self) -> Layout:
        """The layout of the items (the adapter's, when there is one)."""
        return self.adapter.layout if self.adapter is not None else self.data.layout

    @property
    def num_classes(self) -> int:
        return self.data.num_classes

    @property
    def class_names(self) -> list[str]:
        return self.data.class_names

    @property
    def labels(self) -> np.ndarray:
        """Labels of the items, in item order (repeats included)."""
        return np.tile(self.data.labels[self.indices], self.repeat)

    def __len__(self) -> int:
        return len(self.indices) * self.repeat

    def __repr__(self) -> str:
        return (f"SkeletonDataset({self.data.root}, split={self.split!r}, stream={self.stream!r}, "
                f"window={self.transform.window}, train={self.train}, items={len(self)})")

    def rng(self, index: int, copy: int = 0) -> np.random.Generator:
        """The generator of sample ``index``'s draws in the current epoch (repeat ``copy``)."""
        return np.random.default_rng([self.seed, self.epoch, index, copy])

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not 0 <= i < len(self):
            raise IndexError(f"item {i} outside 0..{len(self) - 1}")
        copy, position = divmod(int(i), len(self.indices))
        index = int(self.indices[position])
        joints = self.data.joints(index)
        if self.adapter is not None:
            joints = self.adapter(joints)
        clip = joints.transpose(3, 0, 2, 1)  # (T, M, V, C) -> (C, T, V, M)
        rng = self.rng(index, copy) if self.train else None
        skeleton = self.transform(clip, clip.shape[1], rng=rng)
        item = {"skeleton": torch.from_numpy(skeleton), "label": int(self.data.labels[index]),
                "name": self.data.names[index], "index": index}
        if self.adapter is not None:
            mask = self.adapter.joint_mask
            item["joint_mask"] = torch.from_numpy(mask[list(self.stream_joints)] if self.stream_joints else mask)
        return item
