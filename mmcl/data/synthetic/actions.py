"""The class library: procedural motions on the NTU-25 body, and the two class lists built from them.

A motion is a function of a :class:`MotionContext` (the action phase ``u`` of every frame, the performers, a random
generator, the class's parameters) that returns one :class:`ActorTrack` per person: the named joint angles of
:mod:`.kinematics` over time (added to a relaxed standing pose), where the actor stands, and the object it holds.
``u`` runs from 0 at the start of the action to 1 at its end; frames before and after are idle (``u`` < 0 or > 1),
and every motion is at rest there.

The source classes (:data:`SOURCE_CLASSES`, 16) are chosen so that a skeleton model has to look at time:

- pairs with the same poses in another order: sit down / stand up, swipe left / swipe right, circle clockwise /
  counter-clockwise (each second one is the first played backwards);
- a group of figures drawn in the air around the same centre (circles, X, triangle) and a pair that differs in a
  small motion (clap once / clap twice): their time-averaged poses are nearly the same;
- two pairs whose skeletons are nearly the same and whose held object differs (cup / bottle, book / tablet): the only
  kinematic difference is a tendency (two sips rather than one; a hand sweeping across the object to turn a page), so
  a skeleton model tells them apart only partly (at best about 80 %) and the RGB teachers see the difference;
- two two-person interactions (shake hands, push), the second person a real second body.

On the default set a linear classifier on the time-averaged pose scores 58.5 % cross-subject, one on per-segment
pose and motion statistics 88.8 % (:mod:`.baselines`; seeds 1 and 2: 58.9 % and 58.5 % static).

:data:`UTD_CLASSES` is the UTD-MHAD-style set: UTD's own action numbers and names, six of them with a source
counterpart (:data:`UTD_LABEL_MAP`) and two without (wave, arm cross).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from mmcl.data.synthetic.kinematics import DOFS, Body


@dataclass(frozen=True)
class Performer:
    """A person as the motions see them: proportions, dominant hand ('r' or 'l'), tempo and range of movement."""

    body: Body
    hand: str
    speed: float
    amplitude: float


@dataclass
class ActorTrack:
    """One person's motion in a clip.

    Attributes:
        dof: named joint angles over time, each (T,), added to the relaxed pose.
        x, z, yaw: the actor's start frame in the scene (metres on the floor, radians about the vertical).
        held: the held object's name (in hand for the whole clip), or None.
        grip: where the object is held: 'r' / 'l' (that hand) or 'both' (between the hands while they are close,
            else in the ``carry`` hand).
        carry: the hand that carries a two-handed object while the hands are apart.
    """

    dof: dict[str, np.ndarray]
    x: float = 0.0
    z: float = 0.0
    yaw: float = 0.0
    held: str | None = None
    grip: str = "r"
    carry: str = "r"


@dataclass
class MotionContext:
    """What a motion function gets: the per-frame action phase ``u`` (T,), the performers (one, or two for an
    interaction), a random generator and the class's parameters."""

    u: np.ndarray
    performers: list[Performer]
    rng: np.random.Generator
    params: dict = field(default_factory=dict)


Motion = Callable[[MotionContext], list[ActorTrack]]


@dataclass(frozen=True)
class ActionClass:
    """One class: a motion and its text.

    Attributes:
        name: short name (used in prompts and reports).
        description: one sentence for zero-shot text.
        motion: the motion function.
        object: the held object, or None.
        two_person: whether a second person takes part.
        frames: nominal length of the action at 30 fps and speed 1, idle frames excluded.
        reverse: play the motion backwards (stand up is sit down reversed).
        params: extra arguments of the motion.
    """

    name: str
    description: str
    motion: Motion
    object: str | None = None
    two_person: bool = False
    frames: int = 60
    reverse: bool = False
    params: dict = field(default_factory=dict)

    def info(self, class_id: int) -> dict:
        """The class's entry in ``classes.json``."""
        return {"id": class_id, "name": self.name, "description": self.description, "object": self.object,
                "two_person": self.two_person}


# ---- timing helpers: all take the action phase u and return a (T,) curve in [0, 1] ----

def smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def ramp(u: np.ndarray, start: float, end: float) -> np.ndarray:
    """0 before ``start``, 1 after ``end``, smooth in between."""
    return smoothstep((u - start) / (end - start))


def window(u: np.ndarray, up0: float, up1: float, down0: float, down1: float) -> np.ndarray:
    """Rises over [up0, up1], holds, falls over [down0, down1]."""
    return ramp(u, up0, up1) * (1.0 - ramp(u, down0, down1))


def pulses(u: np.ndarray, start: float, end: float, count: int) -> np.ndarray:
    """``count`` smooth 0 -> 1 -> 0 pulses filling [start, end]."""
    x = np.clip((u - start) / (end - start), 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * count * x)


def cycle(u: np.ndarray, start: float, end: float, count: float) -> np.ndarray:
    """Phase angle running from 0 to 2*pi*count over [start, end], constant outside."""
    return 2.0 * np.pi * count * np.clip((u - start) / (end - start), 0.0, 1.0)


def _side_sign(hand: str) -> float:
    """+1 for the right hand, -1 for the left: turns "toward the actor's right" into a sided channel's sign."""
    return 1.0 if hand == "r" else -1.0


# ---- single-person motions ----

def drink(ctx: MotionContext) -> list[ActorTrack]:
    """Bring the held drink to the mouth with the dominant hand, take one or two sips, lower it.

    Two sips (the drink leaves the lips in between) with probability ``two_sips`` (class parameter: high for the
    cup, low for the bottle): the only kinematic difference between the two drinks, and only a tendency.
    """
    p, u = ctx.performers[0], ctx.u
    sips = 2 if ctx.rng.uniform() < ctx.params["two_sips"] else 1
    e = window(u, 0.04, 0.22, 0.8, 0.96)
    sip = pulses(u, 0.24, 0.78, sips)
    d = p.hand
    dof = {
        f"{d}_sh_flex": e * 0.62 * p.amplitude,
        f"{d}_sh_abd": e * 0.3,
        f"{d}_sh_horiz": e * 0.35,
        f"{d}_sh_twist": e * 0.2,
        f"{d}_elbow": e * (1.8 + 0.35 * sip),
        f"{d}_wrist": -e * 0.25 - sip * 0.3,
        "neck_flex": -sip * 0.15,
    }
    return [ActorTrack(dof=dof, held=ctx.params["object"], grip=d)]


def hold_and_read(ctx: MotionContext) -> list[ActorTrack]:
    """Hold a flat object in both hands in front of the chest and look down at it for a while.

    With probability ``sweep`` (class parameter: high for the book, whose page is turned, low for the tablet, whose
    screen is swiped) the dominant hand sweeps once across the object: the only kinematic difference, and only a
    tendency.
    """
    p, u = ctx.performers[0], ctx.u
    e = window(u, 0.05, 0.25, 0.8, 0.97)
    drift = 0.05 * np.sin(2.0 * np.pi * (1.5 * u + ctx.rng.uniform()))
    dof = {"neck_flex": e * 0.42 * p.amplitude}
    for side in ("r", "l"):
        dof |= {
            f"{side}_sh_flex": e * 0.42,
            f"{side}_sh_horiz": e * 0.1,
            f"{side}_sh_twist": e * 0.12,
            f"{side}_elbow": e * (1.45 + drift),
            f"{side}_wrist": -e * 0.3,
        }
    if ctx.rng.uniform() < ctx.params["sweep"]:
        start = ctx.rng.uniform(0.32, 0.56)
        bump = window(u, start, start + 0.06, start + 0.06, start + 0.14)
        dof[f"{p.hand}_sh_horiz"] = dof[f"{p.hand}_sh_horiz"] + bump * 0.4
        dof[f"{p.hand}_elbow"] = dof[f"{p.hand}_elbow"] + bump * 0.15
    return [ActorTrack(dof=dof, held=ctx.params["object"], grip="both", carry=p.hand)]


def sit_down(ctx: MotionContext) -> list[ActorTrack]:
    """Lean forward, bend hips and knees until seated, settle with the hands on the thighs."""
    p, u = ctx.performers[0], ctx.u
    seat = ramp(u, 0.2, 0.8)
    lean = window(u, 0.12, 0.45, 0.6, 0.95)
    depth = ctx.rng.uniform(0.92, 1.05)
    dof = {"lumbar_flex": lean * 0.45 * p.amplitude + seat * 0.06, "neck_flex": lean * 0.2}
    for side in ("r", "l"):
        dof |= {
            f"{side}_hip_flex": seat * 1.5 * depth,
            f"{side}_knee": seat * 1.55 * depth,
            f"{side}_sh_flex": lean * 0.3 + seat * 0.3,
            f"{side}_elbow": seat * 0.7,
        }
    return [ActorTrack(dof=dof)]


def clap(ctx: MotionContext) -> list[ActorTrack]:
    """Raise both hands in front of the chest, clap ``count`` times, lower them.

    Any number of claps fills the same phase span and closes the hands for the same share of the clip, so "clap once"
    (one slow clap) and "clap twice" (two quick ones) have the same time-averaged pose: only rhythm tells them apart.
    """
    p, u = ctx.performers[0], ctx.u
    count = ctx.params["count"]
    if isinstance(count, tuple):
        count = int(ctx.rng.integers(count[0], count[1] + 1))
    e = window(u, 0.04, 0.2, 0.82, 0.96)
    closed = pulses(u, 0.3, 0.7, count)
    dof = {}
    for side in ("r", "l"):
        dof |= {
            f"{side}_sh_flex": e * 0.9 * p.amplitude,
            f"{side}_sh_horiz": e * (0.15 + 0.5 * closed),
            f"{side}_sh_twist": e * 0.45,
            f"{side}_elbow": e * 1.35,
            f"{side}_wrist": -e * 0.2,
        }
    return [ActorTrack(dof=dof)]


def wave(ctx: MotionContext) -> list[ActorTrack]:
    """Raise the dominant hand beside the head, forearm up, and wave it from side to side a few times."""
    p, u = ctx.performers[0], ctx.u
    d = p.hand
    e = window(u, 0.05, 0.25, 0.8, 0.97)
    inside = window(u, 0.22, 0.3, 0.75, 0.82)
    osc = np.sin(cycle(u, 0.26, 0.78, ctx.rng.uniform(2.5, 3.5)))
    dof = {
        f"{d}_sh_abd": e * 1.3 * p.amplitude,
        f"{d}_sh_flex": e * 0.3,
        f"{d}_sh_twist": -e * 1.45,
        f"{d}_elbow": e * (1.35 + 0.38 * osc * inside),
    }
    return [ActorTrack(dof=dof)]


def swipe_left(ctx: MotionContext) -> list[ActorTrack]:
    """Raise the dominant hand in front at chest height and sweep it from the actor's right to their left."""
    p, u = ctx.performers[0], ctx.u
    d = p.hand
    e = window(u, 0.05, 0.3, 0.7, 0.95)
    sweep = ramp(u, 0.3, 0.7)
    # sh_horiz > 0 swings an arm toward the midline: to the left for the right arm, to the right for the left arm.
    start, end = (-0.55, 0.85) if d == "r" else (0.85, -0.55)
    dof = {
        f"{d}_sh_flex": e * 1.25 * p.amplitude,
        f"{d}_sh_horiz": e * (start + (end - start) * sweep),
        f"{d}_elbow": e * 0.3,
        "lumbar_turn": e * 0.35 * (sweep - 0.5),
    }
    return [ActorTrack(dof=dof)]


# Figures drawn in the air, as corners of a path in the actor's frontal plane: (to the actor's right, up), radius 1.
FIGURES: dict[str, np.ndarray] = {
    "circle": np.stack([np.sin(np.linspace(0, 2 * np.pi, 33)), np.cos(np.linspace(0, 2 * np.pi, 33))], 1),
    "x": np.array([[-0.7, 0.7], [0.7, -0.7], [0.7, 0.7], [-0.7, -0.7]]),
    "triangle": np.array([[-0.87, -0.5], [0.0, 1.0], [0.87, -0.5], [-0.87, -0.5]]),
}


def trace(path: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Points (len(s), 2) at arc-length fractions ``s`` in [0, 1] along a polyline (N, 2)."""
    seg = np.linalg.norm(np.diff(path, axis=0), axis=1)
    at = np.concatenate([[0.0], np.cumsum(seg)]) / seg.sum()
    return np.stack([np.interp(s, at, path[:, 0]), np.interp(s, at, path[:, 1])], 1)


def draw_figure(ctx: MotionContext) -> list[ActorTrack]:
    """Draw a big figure (class parameter ``figure``) in the air with the dominant, stretched arm: the circle
    clockwise from the top, the triangle clockwise from its lower left corner, the X from its top left corner, as the
    actor sees them."""
    p, u = ctx.performers[0], ctx.u
    d = p.hand
    e = window(u, 0.05, 0.25, 0.8, 0.97)
    inside = window(u, 0.2, 0.28, 0.77, 0.85)
    point = trace(FIGURES[ctx.params["figure"]], np.clip((u - 0.25) / 0.55, 0.0, 1.0))
    radius = 0.38 * p.amplitude
    dof = {
        f"{d}_sh_flex": e * 1.2 + inside * radius * point[:, 1],
        # toward the actor's right: sh_horiz < 0 for the right arm, > 0 for the left arm
        f"{d}_sh_horiz": e * 0.15 - _side_sign(d) * inside * radius * point[:, 0],
        f"{d}_elbow": e * 0.25,
    }
    return [ActorTrack(dof=dof)]


def cross_arms(ctx: MotionContext) -> list[ActorTrack]:
    """Cross both forearms in front of the chest, hold, release."""
    p, u = ctx.performers[0], ctx.u
    e = window(u, 0.05, 0.35, 0.7, 0.95)
    dof = {}
    for side, lift in (("r", 0.0), ("l", 0.08)):
        dof |= {f"{side}_sh_flex": e * (1.0 + lift) * p.amplitude, f"{side}_sh_horiz": e * 0.95,
                f"{side}_sh_twist": e * 0.7, f"{side}_elbow": e * 1.0}
    return [ActorTrack(dof=dof)]


# ---- two-person motions: actor 1 (the performer) stands at x < 0 facing +x, actor 2 at x > 0 facing -x ----

def _facing_pair(gap: float) -> tuple[dict, dict]:
    """Start frames of two actors ``gap`` metres apart (root to root), facing each other."""
    return dict(x=-gap / 2.0, yaw=-np.pi / 2.0), dict(x=gap / 2.0, yaw=np.pi / 2.0)


def _step(u: np.ndarray, start: float, end: float, side: str, backward: bool = False) -> dict[str, np.ndarray]:
    """One leg's swing of a single step over [start, end]."""
    bump = window(u, start, (start + end) / 2.0, (start + end) / 2.0, end)
    return {f"{side}_hip_flex": (-0.25 if backward else 0.4) * bump, f"{side}_knee": 0.6 * bump}


def _add(*parts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for part in parts:
        for k, v in part.items():
            out[k] = out.get(k, 0.0) + v
    return out


def shake_hands(ctx: MotionContext) -> list[ActorTrack]:
    """Both step in, join right hands, shake them three times, let go."""
    u = ctx.u
    one, two = _facing_pair(ctx.rng.uniform(1.1, 1.2))
    tracks = []
    for i, (p, start) in enumerate(zip(ctx.performers, (one, two))):
        lag = 0.03 * i
        e = window(u, 0.15 + lag, 0.38, 0.78, 0.95)
        shake = window(u, 0.4, 0.45, 0.68, 0.73) * np.sin(cycle(u, 0.42, 0.72, 3.0))
        dof = _add({
            "root_z": -0.12 * ramp(u, 0.05 + lag, 0.3 + lag),
            "r_sh_flex": e * 0.85 * p.amplitude + shake * 0.12,
            "r_sh_horiz": e * 0.25, "r_sh_twist": e * 0.2, "r_elbow": e * 0.7,
        }, _step(u, 0.05 + lag, 0.3 + lag, "r"))
        tracks.append(ActorTrack(dof=dof, **start))
    return tracks


def push(ctx: MotionContext) -> list[ActorTrack]:
    """Actor 1 steps in and shoves actor 2 with both hands; actor 2 stumbles back."""
    u = ctx.u
    one, two = _facing_pair(ctx.rng.uniform(0.95, 1.05))
    p1, p2 = ctx.performers
    e = window(u, 0.1, 0.3, 0.75, 0.95)
    thrust = ramp(u, 0.42, 0.52) * (1.0 - ramp(u, 0.65, 0.85))
    pusher = _add({
        "root_z": -0.25 * ramp(u, 0.2, 0.5),
        "lumbar_flex": thrust * 0.25,
    }, _step(u, 0.2, 0.5, p1.hand), *({f"{s}_sh_flex": e * 1.25 * p1.amplitude, f"{s}_elbow": e * 1.5 - thrust * 1.3,
                                       f"{s}_sh_twist": e * 0.2} for s in ("r", "l")))
    back = ramp(u, 0.48, 0.72)
    flail = window(u, 0.48, 0.56, 0.66, 0.85)
    pushed = _add({"root_z": 0.35 * back * p2.amplitude, "lumbar_flex": -0.25 * flail},
                  _step(u, 0.5, 0.72, p2.hand, backward=True),
                  *({f"{s}_sh_abd": flail * 0.6, f"{s}_sh_flex": flail * 0.4, f"{s}_elbow": flail * 0.5}
                    for s in ("r", "l")))
    return [ActorTrack(dof=pusher, **one), ActorTrack(dof=pushed, **two)]


def relaxed_pose(rng: np.random.Generator, u: np.ndarray, fps: float) -> dict[str, np.ndarray]:
    """A standing person's resting angles with breathing sway; one random draw of posture per call."""
    t = np.arange(len(u)) / fps
    sway = 2.0 * np.pi * rng.uniform(0.2, 0.4) * t + rng.uniform(0, 2 * np.pi)
    look = 2.0 * np.pi * rng.uniform(0.1, 0.3) * t + rng.uniform(0, 2 * np.pi)
    abd = rng.normal(0.14, 0.04)
    pose = {
        "root_x": 0.012 * np.sin(sway),
        "lumbar_side": 0.02 * np.sin(sway),
        "lumbar_flex": np.full(len(u), rng.normal(0.03, 0.03)),
        "neck_turn": 0.06 * np.sin(look),
        "neck_flex": np.full(len(u), rng.normal(0.05, 0.04)),
    }
    for side in ("r", "l"):
        pose |= {f"{side}_sh_abd": np.full(len(u), abd), f"{side}_elbow": np.full(len(u), rng.normal(0.25, 0.08)),
                 f"{side}_sh_twist": np.full(len(u), 0.15), f"{side}_hip_abd": np.full(len(u), 0.05)}
    return pose


def compose(base: dict[str, np.ndarray], motion: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The relaxed pose plus a motion's angles (both keyed by :data:`~.kinematics.DOFS`)."""
    unknown = (set(base) | set(motion)) - set(DOFS)
    if unknown:
        raise KeyError(f"unknown motion channels {sorted(unknown)}")
    return _add(base, motion)


SOURCE_CLASSES: tuple[ActionClass, ...] = (
    ActionClass("drink from a cup", "A person lifts a cup to the mouth with one hand, takes a sip and puts it down.",
                drink, object="cup", frames=70, params={"two_sips": 0.8, "object": "cup"}),
    ActionClass("drink from a bottle", "A person lifts a bottle to the mouth with one hand, drinks from it and "
                "lowers it.", drink, object="bottle", frames=70, params={"two_sips": 0.2, "object": "bottle"}),
    ActionClass("read a book", "A person holds an open book with both hands in front of the chest and reads it.",
                hold_and_read, object="book", frames=70, params={"sweep": 0.8, "object": "book"}),
    ActionClass("use a tablet", "A person holds a tablet with both hands in front of the chest and looks at its "
                "screen.", hold_and_read, object="tablet", frames=70, params={"sweep": 0.2, "object": "tablet"}),
    ActionClass("sit down", "A person standing upright bends the knees and sits down on a chair.", sit_down,
                frames=60),
    ActionClass("stand up", "A person sitting on a chair leans forward and stands up.", sit_down, frames=60,
                reverse=True),
    ActionClass("clap once", "A person raises both hands in front of the chest and claps a single time.", clap,
                frames=70, params={"count": 1}),
    ActionClass("clap twice", "A person raises both hands in front of the chest and claps two times quickly.", clap,
                frames=70, params={"count": 2}),
    ActionClass("swipe left", "A person sweeps one raised hand through the air in front of the body from right to "
                "left.", swipe_left, frames=50),
    ActionClass("swipe right", "A person sweeps one raised hand through the air in front of the body from left to "
                "right.", swipe_left, frames=50, reverse=True),
    ActionClass("draw a circle clockwise", "A person draws a large clockwise circle in the air with one stretched "
                "arm.", draw_figure, frames=65, params={"figure": "circle"}),
    ActionClass("draw a circle counter-clockwise", "A person draws a large counter-clockwise circle in the air with "
                "one stretched arm.", draw_figure, frames=65, reverse=True, params={"figure": "circle"}),
    ActionClass("draw an X", "A person draws a large letter X in the air with one stretched arm.", draw_figure,
                frames=70, params={"figure": "x"}),
    ActionClass("draw a triangle", "A person draws a large triangle in the air with one stretched arm.", draw_figure,
                frames=70, params={"figure": "triangle"}),
    ActionClass("shake hands", "Two people step toward each other and shake their right hands.", shake_hands,
                two_person=True, frames=75),
    ActionClass("push another person", "One person pushes the other person's chest with both hands and the other "
                "stumbles backwards.", push, two_person=True, frames=55),
)

# UTD-MHAD-style classes, keyed by UTD-MHAD's 1-based action number (file names a{id}_s{s}_t{t}).
UTD_CLASSES: dict[int, ActionClass] = {
    1: ActionClass("swipe left", "A person swipes the right hand through the air from right to left.", swipe_left,
                   frames=45),
    3: ActionClass("wave", "A person waves the right hand above the shoulder.", wave, frames=65),
    4: ActionClass("clap", "A person claps the hands in front of the chest a few times.", clap, frames=60,
                   params={"count": (2, 3)}),
    6: ActionClass("arm cross", "A person crosses both arms in front of the chest.", cross_arms, frames=55),
    9: ActionClass("draw circle (clockwise)", "A person draws a clockwise circle in the air with the right hand.",
                   draw_figure, frames=65, params={"figure": "circle"}),
    11: ActionClass("draw triangle", "A person draws a triangle in the air with the right hand.", draw_figure,
                    frames=70, params={"figure": "triangle"}),
    24: ActionClass("sit to stand", "A seated person stands up from a chair.", sit_down, frames=55, reverse=True),
    25: ActionClass("stand to sit", "A standing person sits down on a chair.", sit_down, frames=55),
}
# UTD action number -> 0-based source class index, for the UTD classes that have a source counterpart.
UTD_LABEL_MAP: dict[int, int] = {
    utd: next(i for i, c in enumerate(SOURCE_CLASSES) if c.name == name)
    for utd, name in ((1, "swipe left"), (4, "clap twice"), (9, "draw a circle clockwise"), (11, "draw a triangle"),
                      (24, "stand up"), (25, "sit down"))
}
