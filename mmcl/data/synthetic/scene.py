"""From a class and its performers to what a sensor records: a clip in scene coordinates, then one camera's view.

:func:`perform` runs a class's motion for its performers (idle frames before and after, a small random time warp),
poses the bodies by forward kinematics and places them in the scene. :func:`capture` looks at the clip through one
camera: camera-space joints with Gaussian noise and occasional Kinect-like glitches (a hand or foot jumping for a few
frames, marked "inferred"), their depth-map and colour-video pixels, and bone orientations as quaternions.

Every random draw comes from a generator seeded by the dataset seed and the sample's identity (see
:func:`rng_for`), so a sample does not depend on which other samples are generated or in which order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mmcl.data.synthetic.actions import ActionClass, ActorTrack, MotionContext, Performer, compose, relaxed_pose
from mmcl.data.synthetic.camera import Camera, Intrinsics
from mmcl.data.synthetic.kinematics import J, LEAF_JOINTS, forward_kinematics, quaternions_wxyz, rot_y

# Kinect tracking states.
TRACKED, INFERRED = 2, 1

# Joints that can glitch (the sensor loses hands and feet first), and the noisier hand-tip / thumb joints.
_GLITCH_JOINTS = np.array([J[n] for n in ("HandLeft", "HandRight", "WristLeft", "WristRight", "HandTipLeft",
                                          "HandTipRight", "FootLeft", "FootRight", "AnkleLeft", "AnkleRight")])
_FINGER_JOINTS = np.array([J[n] for n in ("HandTipLeft", "ThumbLeft", "HandTipRight", "ThumbRight")])


def rng_for(seed: int, *key: int | str) -> np.random.Generator:
    """A generator for one named purpose: ``rng_for(seed, "motion", performer, replication, action)``."""
    words = [int.from_bytes(k.encode(), "little") % (2 ** 32) if isinstance(k, str) else int(k) for k in key]
    return np.random.default_rng(np.random.SeedSequence([int(seed), *words]))


@dataclass
class Clip:
    """One performance in scene coordinates (metres, y up, floor y = 0).

    Attributes:
        joints: (T, M, 25, 3) joint positions.
        rotations: (T, M, 25, 3, 3) global bone rotations.
        tracks: the actors' tracks (held objects, grips).
    """

    joints: np.ndarray
    rotations: np.ndarray
    tracks: list[ActorTrack]

    @property
    def num_frames(self) -> int:
        return self.joints.shape[0]


def clip_length(action: ActionClass, speed: float, rng: np.random.Generator, min_frames: int,
                max_frames: int) -> tuple[int, int, int]:
    """(idle frames before, action frames, total frames) for one performance at ``speed``."""
    before, after = int(rng.integers(3, 11)), int(rng.integers(3, 11))
    active = int(round(action.frames / speed * rng.normal(1.0, 0.05)))
    active = int(np.clip(active, min_frames - before - after, max_frames - before - after))
    return before, active, before + active + after


def perform(action: ActionClass, performers: list[Performer], rng: np.random.Generator, fps: float,
            min_frames: int, max_frames: int, scene_yaw: float) -> Clip:
    """Act ``action`` out: per-frame angles, forward kinematics, placement in the scene (turned by ``scene_yaw``)."""
    expected = 2 if action.two_person else 1
    if len(performers) != expected:
        raise ValueError(f"class {action.name!r} needs {expected} performer(s), got {len(performers)}")
    before, active, total = clip_length(action, performers[0].speed, rng, min_frames, max_frames)
    u = (np.arange(total) - before) / active
    u = u + rng.normal(0.0, 0.02) * np.sin(2.0 * np.pi * np.clip(u, 0.0, 1.0))  # gentle time warp, monotone
    tracks = action.motion(MotionContext(u=u, performers=performers, rng=rng, params=dict(action.params)))
    joints, rotations = [], []
    turn = rot_y(np.array(scene_yaw))
    for track, performer in zip(tracks, performers):
        dof = compose(relaxed_pose(rng, u, fps), track.dof)
        if action.reverse:
            dof = {k: np.asarray(v)[::-1].copy() if np.ndim(v) else v for k, v in dof.items()}
        pos, rot = forward_kinematics(performer.body, dof, total)
        place = rot_y(np.array(track.yaw))
        pos = pos @ place.T + np.array([track.x, 0.0, track.z])
        joints.append(pos @ turn.T)
        rotations.append(turn @ place @ rot)
    return Clip(joints=np.stack(joints, 1), rotations=np.stack(rotations, 1), tracks=tracks)


@dataclass
class CameraView:
    """One camera's record of a clip.

    Attributes:
        joints: (T, M, 25, 3) camera-space joints as the sensor reports them (noisy), metres.
        clean: (T, M, 25, 3) the true camera-space joints (what the renderer draws).
        depth_px: (T, M, 25, 2) depth-map pixels of ``joints``.
        color_px: (T, M, 25, 2) colour-video pixels of ``joints``.
        orientation: (T, M, 25, 4) bone orientations (w, x, y, z); all zero for the chain-end joints, as Kinect
            reports them.
        tracking: (T, M, 25) int: 2 tracked, 1 inferred.
        lean: (T, M, 2) Kinect's leanX (to the right) / leanY (forward) in [-1, 1].
        body_ids: (M,) Kinect-style 64-bit body ids.
    """

    joints: np.ndarray
    clean: np.ndarray
    depth_px: np.ndarray
    color_px: np.ndarray
    orientation: np.ndarray
    tracking: np.ndarray
    lean: np.ndarray
    body_ids: np.ndarray


def capture(clip: Clip, camera: Camera, depth: Intrinsics, color: Intrinsics, rng: np.random.Generator,
            noise: float, glitch_prob: float) -> CameraView:
    """Record ``clip`` with ``camera``: Gaussian joint noise (``noise`` metres; twice that on hand tips and thumbs),
    and with probability ``glitch_prob`` one glitch of 2-6 frames on a hand or foot joint."""
    clean = camera.to_camera(clip.joints)
    t, m = clean.shape[:2]
    sigma = np.full(25, noise)
    sigma[_FINGER_JOINTS] *= 2.0
    joints = clean + rng.normal(size=clean.shape) * sigma[None, None, :, None]
    tracking = np.full((t, m, 25), TRACKED, dtype=np.int64)
    if rng.uniform() < glitch_prob:
        body, joint = int(rng.integers(m)), int(rng.choice(_GLITCH_JOINTS))
        length = int(rng.integers(2, 7))
        start = int(rng.integers(0, t - length))
        joints[start:start + length, body, joint] += rng.normal(0.0, 0.06, size=(length, 3))
        tracking[start:start + length, body, joint] = INFERRED
    rot_cam = camera.rotate_to_camera(clip.rotations)
    orientation = quaternions_wxyz(rot_cam)
    orientation[:, :, list(LEAF_JOINTS)] = 0.0
    spine = clip.joints[:, :, J["SpineShoulder"]] - clip.joints[:, :, J["SpineBase"]]
    spine_body = np.einsum("tmji,tmj->tmi", clip.rotations[:, :, J["SpineBase"]], spine)  # in the actor's frame
    spine_body /= np.linalg.norm(spine_body, axis=-1, keepdims=True)
    lean = np.stack([spine_body[..., 0], -spine_body[..., 2]], -1).clip(-1.0, 1.0)
    body_ids = 72057594037927936 + rng.integers(1000, 60000) + np.arange(m)  # 2**56 + a tracking counter
    return CameraView(joints=joints, clean=clean, depth_px=depth.project(joints), color_px=color.project(joints),
                      orientation=orientation, tracking=tracking, lean=lean, body_ids=body_ids)
