"""Joint layouts as data: names, graph edges, bone pairs, centre joint and body parts.

A :class:`Layout` describes one skeleton format. Three are built in:

- ``ntu25``: Kinect v2, NTU RGB+D 60/120 (25 joints).
- ``kinect_v1_20``: Kinect v1, UTD-MHAD and SYSU-Action (20 joints).
- ``nwucla20``: NW-UCLA (the Kinect v1 joint set, with CTR-GCN's NW-UCLA bone pairs).

Mapping between layouts is by joint name (:func:`layout_mapping`). A target joint is either observed (taken from the
source joint of the same or an equivalent name) or filled by the documented rule in :data:`FILL_RULES` and marked
missing in the mask. Kinect v1 -> NTU-25 follows the published zero-shot protocol, which lines up Kinect v1's 20 joints
with NTU's first 20 indices; Kinect v1's ShoulderCenter therefore fills NTU's Neck slot (index 2), and:

=================  =================  =====================================
NTU-25 joint       filled from        why
=================  =================  =====================================
SpineShoulder      ShoulderCenter     the same place on the torso
HandTipLeft        HandLeft           nearest joint on the same hand
ThumbLeft          HandLeft           nearest joint on the same hand
HandTipRight       HandRight          nearest joint on the same hand
ThumbRight         HandRight          nearest joint on the same hand
=================  =================  =====================================

The reverse direction (NTU-25 -> Kinect v1) needs no fill: every Kinect v1 joint has an NTU counterpart.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

NTU25_JOINTS = (
    "SpineBase", "SpineMid", "Neck", "Head",
    "ShoulderLeft", "ElbowLeft", "WristLeft", "HandLeft",
    "ShoulderRight", "ElbowRight", "WristRight", "HandRight",
    "HipLeft", "KneeLeft", "AnkleLeft", "FootLeft",
    "HipRight", "KneeRight", "AnkleRight", "FootRight",
    "SpineShoulder", "HandTipLeft", "ThumbLeft", "HandTipRight", "ThumbRight",
)

KINECT_V1_JOINTS = (
    "HipCenter", "Spine", "ShoulderCenter", "Head",
    "ShoulderLeft", "ElbowLeft", "WristLeft", "HandLeft",
    "ShoulderRight", "ElbowRight", "WristRight", "HandRight",
    "HipLeft", "KneeLeft", "AnkleLeft", "FootLeft",
    "HipRight", "KneeRight", "AnkleRight", "FootRight",
)

# CTR-GCN's graphs, 1-based inward edges (child, parent).
_NTU25_INWARD = (
    (1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7), (9, 21), (10, 9), (11, 10), (12, 11),
    (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18), (20, 19), (22, 23), (23, 8), (24, 25),
    (25, 12),
)
_KINECT_V1_INWARD = (
    (1, 2), (2, 3), (4, 3), (5, 3), (6, 5), (7, 6), (8, 7), (9, 3), (10, 9), (11, 10), (12, 11),
    (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18), (20, 19),
)
# CTR-GCN's bone streams (feeders/bone_pairs.py), 1-based (joint, parent); bone = x[joint] - x[parent].
_NTU25_BONES = (
    (1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7), (9, 21), (10, 9), (11, 10), (12, 11),
    (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18), (20, 19), (22, 23), (21, 21), (23, 8),
    (24, 25), (25, 12),
)
_KINECT_V1_BONES = (
    (1, 2), (2, 3), (3, 3), (4, 3), (5, 3), (6, 5), (7, 6), (8, 7), (9, 3), (10, 9), (11, 10), (12, 11),
    (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18), (20, 19),
)


@dataclass(frozen=True)
class Layout:
    """One skeleton format.

    Attributes:
        name: registry name.
        joints: joint names, in storage order.
        inward: 0-based graph edges (child, parent), as CTR-GCN's ``inward``.
        bones: 0-based (joint, parent) pairs of the bone stream, one per joint.
        center: 0-based index of the joint used for centring.
        parts: overlapping body parts (PSUMNet style): name -> 0-based joint indices.
        groups: a partition of the joints into body-part groups (for part-local attention).
        aliases: other names of this layout's joints (name -> canonical name), used when mapping layouts.
    """

    name: str
    joints: tuple[str, ...]
    inward: tuple[tuple[int, int], ...]
    bones: tuple[tuple[int, int], ...]
    center: int
    parts: dict[str, tuple[int, ...]]
    groups: dict[str, tuple[int, ...]]
    aliases: dict[str, str] = field(default_factory=dict)

    @property
    def num_joints(self) -> int:
        return len(self.joints)

    @property
    def outward(self) -> tuple[tuple[int, int], ...]:
        return tuple((j, i) for i, j in self.inward)

    def index(self, joint: str) -> int:
        """0-based index of a joint by name (or alias)."""
        canonical = {self.aliases.get(n, n): i for i, n in enumerate(self.joints)}
        key = self.aliases.get(joint, joint)
        if key not in canonical:
            raise KeyError(f"layout {self.name!r} has no joint {joint!r}; joints: {', '.join(self.joints)}")
        return canonical[key]

    def adjacency(self) -> np.ndarray:
        """CTR-GCN's spatial graph: stack[I, norm(In), norm(Out)] of shape (3, V, V), float32.

        Edge (i, j) sets ``A[j, i] = 1``; ``norm(A) = A @ D^-1`` with D the column sums.
        """
        v = self.num_joints
        return np.stack([
            _edge_matrix([(i, i) for i in range(v)], v),
            _normalize_columns(_edge_matrix(self.inward, v)),
            _normalize_columns(_edge_matrix(self.outward, v)),
        ]).astype(np.float32)


def _edge_matrix(edges, num_joints: int) -> np.ndarray:
    a = np.zeros((num_joints, num_joints))
    for i, j in edges:
        a[j, i] = 1
    return a


def _normalize_columns(a: np.ndarray) -> np.ndarray:
    col = a.sum(0)
    inv = np.zeros_like(col)
    inv[col > 0] = 1.0 / col[col > 0]
    return a @ np.diag(inv)


def _zero_based(pairs) -> tuple[tuple[int, int], ...]:
    return tuple((i - 1, j - 1) for i, j in pairs)


NTU25 = Layout(
    name="ntu25",
    joints=NTU25_JOINTS,
    inward=_zero_based(_NTU25_INWARD),
    bones=_zero_based(_NTU25_BONES),
    center=1,
    parts={
        "body": tuple(range(25)),
        "hands": (20, 4, 5, 6, 7, 21, 22, 8, 9, 10, 11, 23, 24),
        "legs": (0, 12, 13, 14, 15, 16, 17, 18, 19),
    },
    groups={
        "torso": (0, 1, 2, 3, 20),
        "left_arm": (4, 5, 6, 7, 21, 22),
        "right_arm": (8, 9, 10, 11, 23, 24),
        "left_leg": (12, 13, 14, 15),
        "right_leg": (16, 17, 18, 19),
    },
)

_KINECT_V1_PARTS = {
    "body": tuple(range(20)),
    "hands": (2, 4, 5, 6, 7, 8, 9, 10, 11),
    "legs": (0, 12, 13, 14, 15, 16, 17, 18, 19),
}
_KINECT_V1_GROUPS = {
    "torso": (0, 1, 2, 3),
    "left_arm": (4, 5, 6, 7),
    "right_arm": (8, 9, 10, 11),
    "left_leg": (12, 13, 14, 15),
    "right_leg": (16, 17, 18, 19),
}
# Kinect v1 names that mean the same joint as an NTU-25 name (SpineBase is the hip centre, SpineMid the spine).
_KINECT_V1_ALIASES = {"HipCenter": "SpineBase", "Spine": "SpineMid"}

KINECT_V1_20 = Layout(
    name="kinect_v1_20",
    joints=KINECT_V1_JOINTS,
    inward=_zero_based(_KINECT_V1_INWARD),
    bones=_zero_based(_KINECT_V1_BONES),
    center=1,
    parts=_KINECT_V1_PARTS,
    groups=_KINECT_V1_GROUPS,
    aliases=_KINECT_V1_ALIASES,
)

NWUCLA20 = Layout(
    name="nwucla20",
    joints=KINECT_V1_JOINTS,
    inward=_zero_based(_KINECT_V1_INWARD),
    bones=_zero_based(_KINECT_V1_BONES),
    center=1,
    parts=_KINECT_V1_PARTS,
    groups=_KINECT_V1_GROUPS,
    aliases=_KINECT_V1_ALIASES,
)

LAYOUTS: dict[str, Layout] = {layout.name: layout for layout in (NTU25, KINECT_V1_20, NWUCLA20)}

# Target joints a source layout lacks: target layout -> source layout -> {target joint: source joint}.
# Joints listed here are filled from the named source joint and marked missing in the mask.
FILL_RULES: dict[str, dict[str, dict[str, str]]] = {
    "ntu25": {
        "kinect_v1_20": {
            "SpineShoulder": "ShoulderCenter",
            "HandTipLeft": "HandLeft",
            "ThumbLeft": "HandLeft",
            "HandTipRight": "HandRight",
            "ThumbRight": "HandRight",
        },
    },
}
FILL_RULES["ntu25"]["nwucla20"] = FILL_RULES["ntu25"]["kinect_v1_20"]

# Joints taken as direct counterparts although their names differ (target -> source -> {target: source}).
# Kinect v1's ShoulderCenter takes NTU's Neck slot, as in the published UTD-MHAD/SYSU zero-shot protocol.
COUNTERPARTS: dict[str, dict[str, dict[str, str]]] = {
    "ntu25": {"kinect_v1_20": {"Neck": "ShoulderCenter"}, "nwucla20": {"Neck": "ShoulderCenter"}},
    "kinect_v1_20": {"ntu25": {"ShoulderCenter": "Neck"}},
    "nwucla20": {"ntu25": {"ShoulderCenter": "Neck"}},
}


def get_layout(name: str) -> Layout:
    """Look up a layout by name."""
    if name not in LAYOUTS:
        raise KeyError(f"unknown layout {name!r}; known layouts: {', '.join(sorted(LAYOUTS))}")
    return LAYOUTS[name]


@dataclass(frozen=True)
class LayoutMapping:
    """How to build target-layout joints from source-layout joints.

    Attributes:
        source, target: layout names.
        index: (V_target,) source joint index for each target joint.
        mask: (V_target,) 1.0 where the joint is observed, 0.0 where it was filled by a rule.
    """

    source: str
    target: str
    index: np.ndarray
    mask: np.ndarray

    def apply(self, joints: np.ndarray, fill: str = "nearest") -> np.ndarray:
        """Map an array whose joint axis is -2 (``(..., V_source, C)``) to the target layout.

        ``fill="nearest"`` copies the rule's source joint into a missing joint; ``fill="zero"`` leaves it at zero.
        """
        if fill not in ("nearest", "zero"):
            raise ValueError(f"fill must be 'nearest' or 'zero', got {fill!r}")
        src_v = get_layout(self.source).num_joints
        if joints.shape[-2] != src_v:
            raise ValueError(
                f"expected {src_v} joints of layout {self.source!r} on axis -2, got shape {tuple(joints.shape)}")
        out = joints[..., self.index, :].copy()
        if fill == "zero":
            out[..., self.mask == 0, :] = 0
        return out


def layout_mapping(source: str, target: str) -> LayoutMapping:
    """The joint mapping from ``source`` to ``target`` layout, by joint name plus the documented rules."""
    src, tgt = get_layout(source), get_layout(target)
    counterparts = COUNTERPARTS.get(target, {}).get(source, {})
    fills = FILL_RULES.get(target, {}).get(source, {})
    index, mask = [], []
    for joint in tgt.joints:
        if joint in counterparts:
            index.append(src.index(counterparts[joint]))
            mask.append(1.0)
            continue
        try:
            index.append(src.index(tgt.aliases.get(joint, joint)))
            mask.append(1.0)
        except KeyError:
            if joint not in fills:
                raise KeyError(
                    f"no mapping from layout {source!r} to {target!r}: target joint {joint!r} has no counterpart "
                    f"and no fill rule") from None
            index.append(src.index(fills[joint]))
            mask.append(0.0)
    return LayoutMapping(source, target, np.asarray(index, dtype=np.int64), np.asarray(mask, dtype=np.float32))
