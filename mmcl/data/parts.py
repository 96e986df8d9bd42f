"""PSUMNet's part streams and their unified-modality input (Trivedi and Sarvadevabhatla, "PSUMNet: Unified Modality
Part Streams are All You Need for Efficient Pose-based Action Recognition", ECCV-W 2022; public code
skelemoa/psumnet: ``graph/ntu_rgb_d.py``, ``feeders/bone_pairs.py``, ``feeders/feeder_ntu.py``).

A part stream sees a subset of the NTU-25 joints, in the global frame (no re-centring on the part):

- ``body``: all 25 joints, CTR-GCN's graph and bone pairs;
- ``hand``: 13 joints ``[20, 4, 5, 6, 7, 21, 22, 8, 9, 10, 11, 23, 24]`` (spine-shoulder, then the left and the
  right arm with hand tip and thumb);
- ``leg``: 9 joints ``[0, 12, ..., 19]`` (spine-base, then the left and the right leg).

Each part has its own graph, whose inward edges are also its bone pairs. The release's leg pairs are off by one:
``(5,1), (6,5)`` (1-based within the leg) tie the left foot to the spine base and the right hip to the left foot,
and leave the right foot without an edge and without a bone. :data:`LEG_GRAPHS` names both versions: ``intended``
(mmcl's default: ``(6,1), (7,6), (8,7), (9,8)`` for the right leg) and ``released`` (the release's pairs, for its
checkpoints and for reproducing it). In the released bone list the left foot appears twice; the release assigns
bones in order, so its bone is foot minus spine base.

The input of a stream (:class:`PartInput`) stacks four 3-channel modalities into 12 channels: joints of the part,
bones of the part's pairs (``x[joint] - x[parent]``, 0 for a joint without a bone), joint-motion and bone-motion
(forward difference ``x[t + 1] - x[t]``, the last frame 0). Like the release's feeder it runs after crop-resize and
rotation (:class:`mmcl.data.transforms.ClipTransform` with the ``joint`` stream; :class:`PartStreamTransform` chains
them). The data pipeline selects a part stream by name (``data.stream: psumnet_body``, :mod:`mmcl.data.streams`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from mmcl.data.layouts import NTU25, Layout
from mmcl.data.transforms import ClipTransform, Draws, to_bone, to_motion
from mmcl.errors import DataError

PART_STREAMS = ("body", "hand", "leg")
LEG_GRAPHS = ("intended", "released")
MODALITIES = ("joint", "bone", "joint_motion", "bone_motion")  # channel blocks of the input, in this order

# NTU-25 joints of each part (0-based), in the part's order.
PART_JOINTS: dict[str, tuple[int, ...]] = {
    "body": tuple(range(25)),
    "hand": (20, 4, 5, 6, 7, 21, 22, 8, 9, 10, 11, 23, 24),
    "leg": (0, 12, 13, 14, 15, 16, 17, 18, 19),
}

# (child, parent) pairs, 1-based within the part: the graph's inward edges and the bone pairs.
_HAND_PAIRS = ((2, 1), (3, 2), (4, 3), (5, 4), (6, 5), (7, 5), (8, 1), (9, 8), (10, 9), (11, 10), (12, 11), (13, 11))
_LEG_PAIRS = {
    "intended": ((2, 1), (3, 2), (4, 3), (5, 4), (6, 1), (7, 6), (8, 7), (9, 8)),
    "released": ((2, 1), (3, 2), (4, 3), (5, 4), (5, 1), (6, 5), (7, 6), (8, 7)),
}


def _check(stream: str, leg_graph: str) -> None:
    if stream not in PART_STREAMS:
        raise ValueError(f"unknown PSUMNet part stream {stream!r}; streams: {', '.join(PART_STREAMS)}")
    if leg_graph not in LEG_GRAPHS:
        raise ValueError(f"unknown leg_graph {leg_graph!r}; choose one of: {', '.join(LEG_GRAPHS)}")


def part_pairs(stream: str, leg_graph: str = "intended") -> tuple[tuple[int, int], ...]:
    """The part's (child, parent) pairs, 0-based within the part, in the release's order (graph edges and bones)."""
    _check(stream, leg_graph)
    if stream == "body":
        return NTU25.inward  # CTR-GCN's graph; its bone pairs are the same edges
    pairs = _HAND_PAIRS if stream == "hand" else _LEG_PAIRS[leg_graph]
    return tuple((i - 1, j - 1) for i, j in pairs)


@cache
def part_layout(stream: str, leg_graph: str = "intended") -> Layout:
    """The part as a joint layout of its own: joint names, graph (``adjacency()``) and bone pairs.

    ``bones`` has one pair per joint that has a bone; where the release lists a joint twice (the released leg), the
    later pair wins, as in its feeder.
    """
    pairs = part_pairs(stream, leg_graph)
    joints = PART_JOINTS[stream]
    return Layout(
        name=f"ntu25-{stream}" + ("-released" if stream == "leg" and leg_graph == "released" else ""),
        joints=tuple(NTU25.joints[j] for j in joints),
        inward=pairs,
        bones=tuple(dict(pairs).items()),
        center=0,
        parts={},
        groups={},
    )


@dataclass(frozen=True)
class PartInput:
    """A ``(3, T, 25, M)`` NTU-25 clip -> the part stream's ``(12, T, V_part, M)`` input: joint | bone |
    joint-motion | bone-motion (see the module docstring). Computed in float64, returned as float32.

    Attributes:
        stream: ``body``, ``hand`` or ``leg``.
        leg_graph: ``intended`` or ``released`` bone pairs for the leg (ignored by the other streams).
    """

    stream: str = "body"
    leg_graph: str = "intended"

    def __post_init__(self) -> None:
        _check(self.stream, self.leg_graph)

    @property
    def layout(self) -> Layout:
        return part_layout(self.stream, self.leg_graph)

    @property
    def channels(self) -> int:
        return 3 * len(MODALITIES)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if x.ndim != 4 or x.shape[0] != 3 or x.shape[2] != NTU25.num_joints:
            raise DataError(f"PSUMNet's {self.stream} input needs an NTU-25 clip (3, T, 25, M), got shape "
                             f"{tuple(x.shape)}")
        joints = np.asarray(x, dtype=np.float64)[:, :, list(PART_JOINTS[self.stream])]
        bones = to_bone(joints, self.layout.bones)
        return np.concatenate([joints, bones, to_motion(joints), to_motion(bones)]).astype(np.float32)


@dataclass(frozen=True)
class PartStreamTransform:
    """A part stream's per-clip transform: crop-resize (+ rotation when training) of the whole NTU-25 clip, then its
    part input, as the release's feeder orders them. Built by :func:`mmcl.data.streams.stream_transform`.

    Attributes:
        stream: the stream's name (``psumnet_hand``, ...).
        clip: the ``joint``-stream :class:`~mmcl.data.transforms.ClipTransform` (window, crop, rotation).
        part: the :class:`PartInput` applied to its output.
    """

    stream: str
    clip: ClipTransform
    part: PartInput

    @property
    def train(self) -> bool:
        return self.clip.train

    @property
    def window(self) -> int:
        return self.clip.window

    def draw(self, valid: int, rng: np.random.Generator) -> Draws:
        """The clip's random numbers (:meth:`ClipTransform.draw`)."""
        return self.clip.draw(valid, rng)

    def __call__(self, x: np.ndarray, valid: int, rng: np.random.Generator | None = None,
                 draws: Draws | None = None) -> np.ndarray:
        """``x`` (3, T, 25, M) whose first ``valid`` frames hold the clip -> (12, window, V_part, M) float32."""
        return self.part(self.clip(x, valid, rng=rng, draws=draws))
