"""RGB rendering of a camera view: a room, people drawn as limbs, joints and a head, and the objects they hold.

Everything is drawn with PIL from the true camera-space joints projected by the colour camera's
:class:`~.camera.Intrinsics` (the same projection that gives the skeleton files' colorX / colorY), with the painter's
algorithm (far parts first). Videos are encoded with PyAV as MPEG-4 Part 2 in AVI (the codec of NTU's own videos;
decord reads it), single-threaded so the bytes are the same on every run for a given PyAV build, with zero-search
motion estimation (the drawings are flat; it saves a third of the encoding time).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable, Iterator

import av
import numpy as np
from PIL import Image, ImageDraw

from mmcl.data.synthetic.camera import Intrinsics
from mmcl.data.synthetic.kinematics import J, PARENT
from mmcl.io import atomic_path

VIDEO_CODEC = "mpeg4"
VIDEO_BITRATE = 900_000


@dataclass(frozen=True)
class Appearance:
    """Colours of one person (RGB tuples)."""

    shirt: tuple[int, int, int]
    trousers: tuple[int, int, int]
    skin: tuple[int, int, int]
    hair: tuple[int, int, int]


_SHIRTS = ((200, 60, 50), (50, 90, 170), (60, 140, 70), (220, 170, 40), (120, 60, 140), (230, 230, 225),
           (40, 40, 45), (230, 120, 40), (70, 160, 170), (150, 150, 150))
_TROUSERS = ((40, 50, 80), (30, 30, 35), (90, 70, 50), (110, 110, 120), (60, 80, 60), (150, 130, 100))
_SKINS = ((240, 200, 170), (220, 170, 130), (180, 130, 90), (130, 90, 60), (90, 60, 40))
_HAIR = ((30, 25, 20), (80, 50, 30), (160, 120, 60), (120, 120, 120), (50, 30, 20))


def sample_appearance(rng: np.random.Generator) -> Appearance:
    def pick(palette):
        return tuple(int(c) for c in palette[int(rng.integers(len(palette)))])

    return Appearance(shirt=pick(_SHIRTS), trousers=pick(_TROUSERS), skin=pick(_SKINS), hair=pick(_HAIR))


@dataclass(frozen=True)
class HeldObject:
    """How an object looks: box size (width, height along its up axis, depth) in metres and colours."""

    size: tuple[float, float, float]
    body: tuple[int, int, int]
    detail: tuple[int, int, int]


OBJECTS: dict[str, HeldObject] = {
    "cup": HeldObject((0.085, 0.1, 0.085), body=(240, 240, 235), detail=(40, 110, 200)),
    "bottle": HeldObject((0.07, 0.26, 0.07), body=(70, 180, 110), detail=(210, 30, 30)),
    "book": HeldObject((0.3, 0.22, 0.035), body=(170, 35, 40), detail=(250, 250, 240)),
    "tablet": HeldObject((0.25, 0.18, 0.012), body=(25, 25, 30), detail=(150, 155, 165)),
}

# (bone end joint, width in metres, part) for every drawn limb; the torso and head are drawn separately.
_LIMBS = (
    [(f"Elbow{s}", 0.09, "shirt") for s in ("Left", "Right")]
    + [(f"Wrist{s}", 0.075, "shirt") for s in ("Left", "Right")]
    + [(f"Hand{s}", 0.05, "skin") for s in ("Left", "Right")]
    + [(f"HandTip{s}", 0.035, "skin") for s in ("Left", "Right")]
    + [(f"Thumb{s}", 0.025, "skin") for s in ("Left", "Right")]
    + [(f"Knee{s}", 0.14, "trousers") for s in ("Left", "Right")]
    + [(f"Ankle{s}", 0.11, "trousers") for s in ("Left", "Right")]
    + [(f"Foot{s}", 0.07, "shoe") for s in ("Left", "Right")]
    + [("Neck", 0.08, "skin")]
)
_SHOE = (35, 30, 30)
_HEAD_RADIUS = 0.11
_HAND_RADIUS = 0.045
_TORSO = ("ShoulderLeft", "ShoulderRight", "HipRight", "HipLeft")


def room_background(rng: np.random.Generator, color: Intrinsics, camera_height: float, distance: float) -> np.ndarray:
    """A room as seen by one camera: a wall with a few posters and a floor, (H, W, 3) uint8."""
    h, w = color.height, color.width
    wall = rng.integers(150, 225, size=3)
    floor = rng.integers(70, 140, size=3)
    # The wall stands 1.8 m behind the actors: the floor line is where the floor meets it.
    horizon = int(np.clip(color.cy + color.focal * camera_height / (distance + 1.8), h * 0.45, h * 0.9))
    img = np.empty((h, w, 3), dtype=np.float64)
    shade = np.linspace(0.9, 1.05, horizon)[:, None, None]
    img[:horizon] = wall[None, None, :] * shade
    img[horizon:] = floor[None, None, :] * np.linspace(0.9, 1.1, h - horizon)[:, None, None]
    pil = Image.fromarray(img.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(pil)
    for _ in range(int(rng.integers(2, 5))):
        x0, y0 = int(rng.integers(0, w - 40)), int(rng.integers(5, max(6, horizon - 60)))
        pw, ph = int(rng.integers(20, 70)), int(rng.integers(20, 50))
        fill = tuple(int(c) for c in rng.integers(0, 255, 3))
        draw.rectangle((x0, y0, x0 + pw, min(y0 + ph, horizon - 2)), fill=fill)
    return np.asarray(pil).copy()


def _object_corners(centre: np.ndarray, axes: np.ndarray, size: tuple[float, float, float]) -> np.ndarray:
    """The 8 corners (8, 3) of a box with centre (3,), axes (3, 3) as columns and full side lengths ``size``."""
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=np.float64)
    return centre + (signs * np.asarray(size) / 2.0) @ axes.T


def _hull(points: np.ndarray) -> list[tuple[float, float]]:
    """Convex hull of 2-D points (monotone chain), counter-clockwise."""
    pts = sorted(map(tuple, points.tolist()))

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower, upper = [], []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return lower[:-1] + upper[:-1]


def object_pose(name: str, joints: np.ndarray, rotations: np.ndarray, grip: str,
                carry: str) -> tuple[np.ndarray, np.ndarray]:
    """Centre (3,) and axes (3, 3; columns: width, up, depth) of a held object, in the joints' frame (y up).

    One hand: the object stands in the hand, its up axis between the hand's palm-forward direction and the vertical.
    Both hands: between the hands, its width along the line through them, its face turned to the head; while the
    hands are further apart than the object is wide, the ``carry`` hand holds it alone.
    """
    left, right = joints[J["HandLeft"]], joints[J["HandRight"]]
    if grip == "both" and np.linalg.norm(right - left) > OBJECTS[name].size[0] + 0.12:
        grip = carry
    if grip == "both":
        centre = (left + right) / 2.0
        width = right - left
        width /= np.linalg.norm(width) + 1e-9
        face = joints[J["Head"]] - centre
        face -= width * (face @ width)
        face /= np.linalg.norm(face) + 1e-9
        up = np.cross(face, width)
        return centre, np.stack([width, up, face], 1)
    hand = J["HandRight" if grip == "r" else "HandLeft"]
    frame = rotations[hand]
    up = -frame[:, 2] + np.array([0.0, 1.0, 0.0])
    up /= np.linalg.norm(up) + 1e-9
    width = frame[:, 0] - up * (frame[:, 0] @ up)
    width /= np.linalg.norm(width) + 1e-9
    return joints[hand] + 0.02 * up, np.stack([width, up, np.cross(width, up)], 1)


_LIMB_START = np.array([J[PARENT[end]] for end, _, _ in _LIMBS])
_LIMB_END = np.array([J[end] for end, _, _ in _LIMBS])
_LIMB_WIDTH = np.array([width for _, width, _ in _LIMBS])
_TORSO_INDEX = [J[n] for n in _TORSO]
_HANDS = (J["HandLeft"], J["HandRight"])


def render_clip(background: np.ndarray, color: Intrinsics, people: list[tuple[np.ndarray, Appearance]],
                objects: list[list[tuple[str, np.ndarray, np.ndarray]]]) -> Iterator[Image.Image]:
    """The video frames of a clip, one PIL image per frame.

    Args:
        background: (H, W, 3) uint8.
        color: the colour camera's projection.
        people: per person (camera-space joints (T, 25, 3), appearance).
        objects: per frame, the held objects (name, centre (3,), axes (3, 3)) in camera space.
    """
    base = Image.fromarray(background)
    per_person = []
    for joints, look in people:
        z = joints[..., 2]
        fills = [{"shirt": look.shirt, "skin": look.skin, "trousers": look.trousers, "shoe": _SHOE}[part]
                 for _, _, part in _LIMBS]
        per_person.append({
            "look": look, "fills": fills,
            "px": color.project(joints).tolist(),
            "z": z.tolist(),
            "limb_z": ((z[:, _LIMB_START] + z[:, _LIMB_END]) / 2.0).tolist(),
            "limb_w": np.maximum(2, np.round(_LIMB_WIDTH * color.focal / z[:, _LIMB_END])).astype(int).tolist(),
            "torso_z": z[:, _TORSO_INDEX].mean(axis=1).tolist(),
            "scale": (color.focal / z).tolist(),
        })
    for t in range(len(objects)):
        img = base.copy()
        draw = ImageDraw.Draw(img)
        items: list[tuple[float, int, tuple]] = []  # (depth, order, primitive): far first, then in insertion order
        for person in per_person:
            px, z, scale, look = person["px"][t], person["z"][t], person["scale"][t], person["look"]
            items.append((person["torso_z"][t], len(items), ("poly", [tuple(px[j]) for j in _TORSO_INDEX], look.shirt)))
            for k, (a, b) in enumerate(zip(_LIMB_START.tolist(), _LIMB_END.tolist())):
                items.append((person["limb_z"][t][k], len(items),
                              ("line", [tuple(px[a]), tuple(px[b])], person["fills"][k], person["limb_w"][t][k])))
            for j in _HANDS:
                items.append((z[j] - 0.01, len(items), ("disc", px[j], max(3.0, _HAND_RADIUS * scale[j]), look.skin)))
            head = J["Head"]
            r = _HEAD_RADIUS * scale[head]
            items.append((z[head], len(items), ("disc", px[head], r, look.skin)))
            items.append((z[head] - 0.005, len(items), ("cap", px[head], r, look.hair)))
            items.extend((z[j] - 0.02, len(items) + j, ("disc", px[j], 2.0, (20, 20, 20))) for j in range(25))
        for name, centre, axes in objects[t]:
            corners = color.project(_object_corners(centre, axes, OBJECTS[name].size))
            items.append((float(centre[2]) - 0.03, len(items), ("object", name, corners, centre, axes)))
        for _, _, prim in sorted(items, key=lambda it: (-it[0], it[1])):
            kind = prim[0]
            if kind == "poly":
                draw.polygon(prim[1], fill=prim[2])
            elif kind == "line":
                draw.line(prim[1], fill=prim[2], width=prim[3], joint="curve")
            elif kind == "disc":
                (x, y), r, fill = prim[1], prim[2], prim[3]
                draw.ellipse((x - r, y - r, x + r, y + r), fill=fill)
            elif kind == "cap":
                (x, y), r, fill = prim[1], prim[2], prim[3]
                draw.chord((x - r, y - r, x + r, y + r), 180, 360, fill=fill)
            else:
                _draw_object(draw, color, *prim[1:])
        yield img


def _draw_object(draw: ImageDraw.ImageDraw, color: Intrinsics, name: str, corners: np.ndarray, centre: np.ndarray,
                 axes: np.ndarray) -> None:
    spec = OBJECTS[name]
    draw.polygon(_hull(corners), fill=spec.body, outline=(20, 20, 20))
    wd, hd, dd = spec.size
    if name == "cup":  # a coloured band and a handle on the side
        band = _object_corners(centre + axes[:, 1] * 0.01, axes, (wd * 1.02, hd * 0.25, dd * 1.02))
        draw.polygon(_hull(color.project(band)), fill=spec.detail)
        handle = color.project(centre + axes[:, 0] * (wd * 0.75))
        r = max(2.0, 0.025 * color.focal / centre[2])
        draw.ellipse((handle[0] - r, handle[1] - r, handle[0] + r, handle[1] + r), outline=spec.body, width=2)
    elif name == "bottle":  # a neck and a red cap
        neck = _object_corners(centre + axes[:, 1] * (hd * 0.55), axes, (wd * 0.45, hd * 0.15, dd * 0.45))
        draw.polygon(_hull(color.project(neck)), fill=spec.body)
        cap = _object_corners(centre + axes[:, 1] * (hd * 0.66), axes, (wd * 0.5, hd * 0.08, dd * 0.5))
        draw.polygon(_hull(color.project(cap)), fill=spec.detail)
    elif name == "book":  # white page block along the top edge
        pages = _object_corners(centre + axes[:, 1] * (hd * 0.45), axes, (wd * 0.95, hd * 0.12, dd * 0.7))
        draw.polygon(_hull(color.project(pages)), fill=spec.detail)
    elif name == "tablet":  # a grey rim
        draw.polygon(_hull(corners), outline=spec.detail, width=2)


def write_video(path: str | os.PathLike, frames: Iterable[Image.Image], fps: int, size: tuple[int, int]) -> None:
    """Encode RGB frames of ``size`` (width, height) to ``path`` (MPEG-4 in AVI), atomically."""
    with atomic_path(path) as tmp, av.open(str(tmp), "w", format="avi") as container:
        stream = container.add_stream(VIDEO_CODEC, rate=fps, options={"motion_est": "zero"})
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.bit_rate = VIDEO_BITRATE
        stream.codec_context.thread_count = 1
        for frame in frames:
            if frame.size != size:
                raise ValueError(f"{path}: frame of size {frame.size}, expected {size}")
            container.mux(stream.encode(av.VideoFrame.from_image(frame)))
        container.mux(stream.encode())
