"""The synthetic Kinect: a camera pose in the scene and two pinhole projections (depth map and colour video).

Camera coordinates follow Kinect / NTU: metres, x to the right in the (mirrored) image, y up, z the depth in front
of the camera (z > 0). Pixel coordinates: ``u = cx + f * x / z``, ``v = cy - f * y / z``.

- Depth map: 512 x 424 pixels, f = 365 px, centre (256, 212): Kinect v2's depth camera, rounded.
- Colour video: the rendered video's own pixel grid. Kinect v2's colour camera (1920 x 1080, f ~ 1081 px) scaled to
  the video width for NTU-style sets (16:9, e.g. 480 x 270: f = 270.25 px); Kinect v1's (640 x 480, f ~ 525 px) scaled
  to the video width for the UTD-MHAD-style set (4:3, e.g. 320 x 240: f = 262.5 px).

Both projections share the camera centre (the real sensor's few-centimetre offset between its depth and colour
cameras is left out), and the renderer draws with :meth:`Intrinsics.project` of the colour projection, so a joint's
colorX / colorY lands on the pixels drawn for it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Intrinsics:
    """A pinhole projection onto a ``width`` x ``height`` pixel grid."""

    width: int
    height: int
    focal: float
    cx: float
    cy: float

    def project(self, points: np.ndarray) -> np.ndarray:
        """Pixel coordinates (..., 2) of camera-space points (..., 3) with z > 0."""
        z = points[..., 2]
        if np.any(z <= 0):
            raise ValueError("cannot project a point at or behind the camera (z <= 0)")
        return np.stack([self.cx + self.focal * points[..., 0] / z, self.cy - self.focal * points[..., 1] / z], -1)


DEPTH_INTRINSICS = Intrinsics(width=512, height=424, focal=365.0, cx=256.0, cy=212.0)

# (full width, focal at full width) of the two colour cameras.
KINECT_V2_COLOR = (1920, 1081.0)
KINECT_V1_COLOR = (640, 525.0)


def color_intrinsics(width: int, height: int, sensor: tuple[int, float] = KINECT_V2_COLOR) -> Intrinsics:
    """The colour camera of ``sensor`` scaled to a ``width`` x ``height`` video, principal point at the centre."""
    if width % 2 or height % 2:
        raise ValueError(f"video size must be even (yuv420p), got {width}x{height}")
    full_width, full_focal = sensor
    return Intrinsics(width=width, height=height, focal=full_focal * width / full_width,
                      cx=width / 2.0, cy=height / 2.0)


@dataclass(frozen=True)
class Camera:
    """A camera pose: ``position`` (3,) in the scene and ``rotation`` (3, 3) whose columns are the camera's x, y and z
    axes in scene coordinates (scene y is up; the floor is y = 0)."""

    position: np.ndarray
    rotation: np.ndarray

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        """Scene points (..., 3) in camera coordinates."""
        return (points - self.position) @ self.rotation

    def rotate_to_camera(self, rotations: np.ndarray) -> np.ndarray:
        """Scene-frame rotations (..., 3, 3) expressed in camera coordinates."""
        return self.rotation.T @ rotations


def look_at(position: np.ndarray, target: np.ndarray) -> Camera:
    """A level camera (no roll) at ``position`` looking at ``target``."""
    position = np.asarray(position, dtype=np.float64)
    z = np.asarray(target, dtype=np.float64) - position
    z /= np.linalg.norm(z)
    x = np.cross([0.0, 1.0, 0.0], z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    return Camera(position=position, rotation=np.stack([x, y, z], axis=1))


def orbit_camera(angle: float, distance: float, height: float, target_height: float) -> Camera:
    """A camera ``distance`` metres from the scene's vertical axis at ``height``, looking at (0, target_height, 0).

    ``angle`` 0 puts it in front of an actor with yaw 0 (who faces -z); a positive angle moves it toward the actor's
    right (+x).
    """
    position = np.array([distance * np.sin(angle), height, -distance * np.cos(angle)])
    return look_at(position, np.array([0.0, target_height, 0.0]))
