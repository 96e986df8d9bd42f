"""Bringing stored clips to a model's joint layout and person count (cross-dataset use).

A model trained on NTU-25 with two persons meets UTD-MHAD or SYSU clips recorded by a Kinect v1 (20 joints, one
person). :class:`ClipAdapter` maps the joints by name (:func:`mmcl.data.layouts.layout_mapping`, missing joints
filled by the documented rule and marked in :attr:`ClipAdapter.joint_mask`), adds all-zero persons (or drops extra
ones) and, for data that is not centred yet, translates every present person so that actor 1's centre joint in the
first frame is the origin (the published zero-shot protocol: joint index 1 of frame 0; centring happens before the
mapping, so a joint filled with zeros stays zero).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mmcl.data.layouts import Layout, get_layout, layout_mapping


@dataclass(frozen=True)
class ClipAdapter:
    """A stored clip (T, M, V, C) of ``source_layout`` -> (T, num_person, V', C) of ``target_layout``."""

    source_layout: str
    target_layout: str
    num_person: int
    center: bool = False
    fill: str = "nearest"

    def __post_init__(self) -> None:
        if self.num_person < 1:
            raise ValueError(f"num_person must be at least 1, got {self.num_person}")
        layout_mapping(self.source_layout, self.target_layout)  # fails early, naming both layouts

    @property
    def layout(self) -> Layout:
        return get_layout(self.target_layout)

    @property
    def joint_mask(self) -> np.ndarray:
        """(V',) 1 where the joint is observed in the source layout, 0 where a fill rule made it."""
        return layout_mapping(self.source_layout, self.target_layout).mask

    def __call__(self, joints: np.ndarray) -> np.ndarray:
        if joints.ndim != 4 or joints.shape[2] != get_layout(self.source_layout).num_joints:
            raise ValueError(f"expected a clip (T, M, {get_layout(self.source_layout).num_joints}, C) of layout "
                             f"{self.source_layout!r}, got shape {joints.shape}")
        if self.center:
            absent = ~np.any(joints != 0, axis=(2, 3))  # (T, M): frames where a person is missing stay zero
            joints = joints - joints[0, 0, get_layout(self.source_layout).center]
            joints[absent] = 0
        if self.source_layout != self.target_layout:
            joints = layout_mapping(self.source_layout, self.target_layout).apply(joints, self.fill)
        t, m, v, c = joints.shape
        if m < self.num_person:
            joints = np.concatenate([joints, np.zeros((t, self.num_person - m, v, c), joints.dtype)], axis=1)
        return np.ascontiguousarray(joints[:, :self.num_person], dtype=np.float32)
