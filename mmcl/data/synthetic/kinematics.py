"""The synthetic performer: an NTU-25 skeleton posed by forward kinematics.

Body frame (one per actor): x = the actor's right, y = up, z = the actor's back (the actor faces -z). When an actor
faces a camera with yaw 0 the body frame and the camera frame (x right in the mirrored image, y up, z depth) have the
same axes, which matches NTU's data: the right shoulder has the larger x.

Every joint except the root owns the bone from its parent to itself. A motion gives, per frame, a handful of named
anatomical angles (:data:`DOFS`); each is turned into the local rotation of one bone, and the global rotation of a
bone is its parent's times its own (so bending the elbow moves wrist, hand, hand tip and thumb). The root (SpineBase)
carries the actor's yaw and translation. After the pose is built, the actor is put on the floor: the lower foot
touches y = 0 in every frame (sitting down lowers the hips by itself), plus an optional lift.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from mmcl.data.layouts import NTU25_JOINTS

J = {name: i for i, name in enumerate(NTU25_JOINTS)}

# Kinematic tree (parent of each joint, by name). This is the body's tree, not CTR-GCN's graph: the hand tip and the
# thumb both hang from the hand here.
PARENT: dict[str, str | None] = {
    "SpineBase": None, "SpineMid": "SpineBase", "SpineShoulder": "SpineMid", "Neck": "SpineShoulder",
    "Head": "Neck",
    "ShoulderLeft": "SpineShoulder", "ElbowLeft": "ShoulderLeft", "WristLeft": "ElbowLeft", "HandLeft": "WristLeft",
    "HandTipLeft": "HandLeft", "ThumbLeft": "HandLeft",
    "ShoulderRight": "SpineShoulder", "ElbowRight": "ShoulderRight", "WristRight": "ElbowRight",
    "HandRight": "WristRight", "HandTipRight": "HandRight", "ThumbRight": "HandRight",
    "HipLeft": "SpineBase", "KneeLeft": "HipLeft", "AnkleLeft": "KneeLeft", "FootLeft": "AnkleLeft",
    "HipRight": "SpineBase", "KneeRight": "HipRight", "AnkleRight": "KneeRight", "FootRight": "AnkleRight",
}
# Parents before children.
FK_ORDER: tuple[int, ...] = tuple(J[n] for n in (
    "SpineBase", "SpineMid", "SpineShoulder", "Neck", "Head",
    "ShoulderLeft", "ElbowLeft", "WristLeft", "HandLeft", "HandTipLeft", "ThumbLeft",
    "ShoulderRight", "ElbowRight", "WristRight", "HandRight", "HandTipRight", "ThumbRight",
    "HipLeft", "KneeLeft", "AnkleLeft", "FootLeft", "HipRight", "KneeRight", "AnkleRight", "FootRight"))
PARENT_INDEX: np.ndarray = np.array([-1 if PARENT[n] is None else J[PARENT[n]] for n in NTU25_JOINTS])
# Joints that end a chain: Kinect v2 reports no orientation for them (all four quaternion numbers are 0).
LEAF_JOINTS: tuple[int, ...] = tuple(J[n] for n in (
    "Head", "HandTipLeft", "ThumbLeft", "HandTipRight", "ThumbRight", "FootLeft", "FootRight"))

# Rest pose of a 1.72 m adult standing upright, arms hanging with the palms forward: bone vectors (parent -> joint)
# in the parent's frame, metres. Left-side bones are the right side's with x negated.
_REST_RIGHT_AND_CENTRE: dict[str, tuple[float, float, float]] = {
    "SpineMid": (0.0, 0.27, 0.01),
    "SpineShoulder": (0.0, 0.21, -0.01),
    "Neck": (0.0, 0.07, 0.0),
    "Head": (0.0, 0.13, -0.01),
    "ShoulderRight": (0.175, -0.03, 0.0),
    "ElbowRight": (0.0, -0.28, 0.0),
    "WristRight": (0.0, -0.25, 0.0),
    "HandRight": (0.0, -0.07, 0.0),
    "HandTipRight": (0.0, -0.08, -0.005),
    "ThumbRight": (-0.02, -0.04, -0.035),
    "HipRight": (0.085, -0.04, 0.0),
    "KneeRight": (0.0, -0.42, 0.0),
    "AnkleRight": (0.0, -0.41, 0.0),
    "FootRight": (0.0, -0.07, -0.12),
}
REFERENCE_HEIGHT = 1.72


def _rest_offsets() -> np.ndarray:
    off = np.zeros((25, 3))
    for name, vec in _REST_RIGHT_AND_CENTRE.items():
        off[J[name]] = vec
        if name.endswith("Right"):
            off[J[name.replace("Right", "Left")]] = (-vec[0], vec[1], vec[2])
    return off


REST_OFFSETS = _rest_offsets()

# The named angles a motion may animate (radians; metres for root_x / root_z / lift). Missing ones are 0.
# Signs: *_flex > 0 bends forward (shoulder/hip: limb forward; elbow: forearm forward/up; knee: shin backward;
# lumbar/chest/neck: lean forward / nod), *_abd > 0 moves the limb away from the body, sh_horiz > 0 swings the arm
# about the vertical axis toward the body's midline (horizontal adduction), *_twist > 0 is internal rotation,
# *_side > 0 bends to the actor's right, *_turn > 0 turns the torso or head to the actor's left (about +y).
SIDED_DOFS = ("clav", "sh_flex", "sh_abd", "sh_horiz", "sh_twist", "elbow", "wrist",
              "hip_flex", "hip_abd", "knee", "ankle")
DOFS: tuple[str, ...] = (
    ("root_x", "root_z", "lift", "yaw", "lumbar_flex", "lumbar_side", "lumbar_turn", "chest_flex",
     "neck_flex", "neck_side", "neck_turn")
    + tuple(f"{s}_{d}" for s in ("r", "l") for d in SIDED_DOFS))


@dataclass(frozen=True)
class Body:
    """One person's proportions: bone vectors of the rest pose (25, 3) in metres, and the standing height."""

    offsets: np.ndarray
    height: float


def sample_body(rng: np.random.Generator, height: float) -> Body:
    """A body of the given height with per-bone length jitter (+-4 %) and shoulder / hip width jitter."""
    scale = height / REFERENCE_HEIGHT
    off = REST_OFFSETS * scale
    jitter = rng.normal(1.0, 0.025, size=25).clip(0.94, 1.06)
    for right in ("ElbowRight", "WristRight", "KneeRight", "AnkleRight", "ShoulderRight", "HipRight"):
        left = right.replace("Right", "Left")
        off[J[right]] *= jitter[J[right]]
        off[J[left]] *= jitter[J[right]] * rng.normal(1.0, 0.01)  # near-symmetric
    for name in ("SpineMid", "SpineShoulder", "Neck", "Head"):
        off[J[name]] *= jitter[J[name]]
    return Body(offsets=off, height=float(height))


def rot_x(a: np.ndarray) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([o, z, z], -1), np.stack([z, c, -s], -1), np.stack([z, s, c], -1)], -2)


def rot_y(a: np.ndarray) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([c, z, s], -1), np.stack([z, o, z], -1), np.stack([-s, z, c], -1)], -2)


def rot_z(a: np.ndarray) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1), np.stack([z, z, o], -1)], -2)


def _local_rotations(dof: dict[str, np.ndarray], t: int) -> np.ndarray:
    """Per-bone local rotations (T, 25, 3, 3) from the named angles."""
    unknown = set(dof) - set(DOFS)
    if unknown:
        raise KeyError(f"unknown motion channels {sorted(unknown)}; known: {', '.join(DOFS)}")

    def g(name: str) -> np.ndarray:
        return np.broadcast_to(np.asarray(dof.get(name, 0.0), dtype=np.float64), (t,))

    local = np.repeat(np.eye(3)[None, None], t, axis=0).repeat(25, axis=1)
    local[:, J["SpineBase"]] = rot_y(g("yaw"))
    local[:, J["SpineMid"]] = rot_y(g("lumbar_turn")) @ rot_z(-g("lumbar_side")) @ rot_x(-g("lumbar_flex"))
    local[:, J["SpineShoulder"]] = rot_x(-g("chest_flex"))
    local[:, J["Neck"]] = rot_x(-0.5 * g("neck_flex")) @ rot_z(-0.5 * g("neck_side"))
    local[:, J["Head"]] = rot_y(g("neck_turn")) @ rot_x(-0.5 * g("neck_flex")) @ rot_z(-0.5 * g("neck_side"))
    for side, name, sign in (("r", "Right", 1.0), ("l", "Left", -1.0)):
        local[:, J[f"Shoulder{name}"]] = rot_z(sign * g(f"{side}_clav"))
        # Horizontal swing about y, abduction about z, flexion about x, then the twist about the upper arm's axis.
        local[:, J[f"Elbow{name}"]] = (rot_y(sign * g(f"{side}_sh_horiz")) @ rot_z(sign * g(f"{side}_sh_abd"))
                                       @ rot_x(g(f"{side}_sh_flex")) @ rot_y(sign * g(f"{side}_sh_twist")))
        local[:, J[f"Wrist{name}"]] = rot_x(g(f"{side}_elbow"))
        local[:, J[f"Hand{name}"]] = rot_x(g(f"{side}_wrist"))
        local[:, J[f"Knee{name}"]] = rot_z(sign * g(f"{side}_hip_abd")) @ rot_x(g(f"{side}_hip_flex"))
        local[:, J[f"Ankle{name}"]] = rot_x(-g(f"{side}_knee"))
        local[:, J[f"Foot{name}"]] = rot_x(g(f"{side}_ankle"))
    return local


def rest_positions(body: Body) -> np.ndarray:
    """Joint positions (25, 3) of the rest pose, root at the origin."""
    pos = np.zeros((25, 3))
    for j in FK_ORDER[1:]:
        pos[j] = pos[PARENT_INDEX[j]] + body.offsets[j]
    return pos


def forward_kinematics(body: Body, dof: dict[str, np.ndarray], num_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Joint positions (T, 25, 3) and bone rotations (T, 25, 3, 3) in the actor's start frame, feet on the floor.

    The actor's start frame has its origin on the floor below the root at rest; ``root_x`` / ``root_z`` move the actor
    in it (metres), ``yaw`` turns the whole body about the vertical axis, ``lift`` raises it off the floor. The mean
    of the two feet keeps its rest place on the floor (sitting down moves the hips back, not the feet forward) before
    ``root_x`` / ``root_z`` apply.
    """
    t = num_frames
    local = _local_rotations(dof, t)
    glob = np.empty_like(local)
    pos = np.zeros((t, 25, 3))
    for j in FK_ORDER:
        p = PARENT_INDEX[j]
        if p < 0:
            glob[:, j] = local[:, j]
            continue
        glob[:, j] = glob[:, p] @ local[:, j]
        pos[:, j] = pos[:, p] + glob[:, j] @ body.offsets[j]
    feet = pos[:, [J["FootLeft"], J["FootRight"]]]

    def channel(name: str) -> np.ndarray:
        return np.broadcast_to(np.asarray(dof.get(name, 0.0), dtype=np.float64), (t,))

    shift = np.stack([channel("root_x"), channel("lift") - feet[:, :, 1].min(axis=1), channel("root_z")], -1)
    rest_feet = rest_positions(body)[[J["FootLeft"], J["FootRight"]]].mean(axis=0)
    target = rot_y(channel("yaw")) @ rest_feet
    shift[:, [0, 2]] += target[:, [0, 2]] - feet[:, :, [0, 2]].mean(axis=1)
    return pos + shift[:, None, :], glob


def quaternions_wxyz(rot: np.ndarray) -> np.ndarray:
    """Unit quaternions (..., 4) as (w, x, y, z) from rotation matrices (..., 3, 3), with w >= 0."""
    shape = rot.shape[:-2]
    q = Rotation.from_matrix(rot.reshape(-1, 3, 3)).as_quat()  # x, y, z, w
    q = np.concatenate([q[:, 3:], q[:, :3]], axis=1)
    q *= np.where(q[:, :1] < 0, -1.0, 1.0)
    return q.reshape(*shape, 4)
