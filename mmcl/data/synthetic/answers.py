"""The answers file of the synthetic set: what the generator knows of each scene, as answers to MMCL's prompts.

``answers.jsonl`` holds one JSON object per line, ``{"name": sample, "prompt": prompt, "answer": answer}``, one line
per sample and MMCL prompt (:data:`MMCL_PROMPTS`, the defaults of ``teachers.config``). The answers state only what a
camera could show: whether an object is held, which object and in which hand, how many people there are, their
posture and their motion. They never name the performer's clothes, the room or the camera, so a teacher tuned on
them learns the action, not who performs it where.

``mmcl tune-teacher`` reads such a file (this one, or one a user writes, e.g. captions for NTU) to adapt the
vision-language teacher (:mod:`teachers.tune`).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from mmcl.data.synthetic.actions import ActionClass
from mmcl.io import atomic_write_text

ANSWERS_FILE = "answers.jsonl"

# MMCL's instructions (REFERENCE 1.1), expanded as teachers.config.expand_prompts does with its defaults; a test
# checks that both lists agree.
MMCL_PROMPTS = (
    "whether the people are holding objects?",
    "Whether the person are holding object?",
    "Whether the hand are touching head?",
    "Whether the hand are touching foot?",
    "Please describe the person.",
    "Please describe the hand.",
    "Please describe the foot.",
)

_NAME = re.compile(r"S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})$")
_HANDS = {"r": "right", "l": "left"}
_FIGURES = {"circle": "a circle", "x": "a letter X", "triangle": "a triangle"}


def _motion(action: ActionClass, hand: str) -> tuple[str, str, str]:
    """(the person, the hand, the feet) described for one class performed with the dominant ``hand``."""
    kind = action.motion.__name__
    side = _HANDS[hand]
    still = "Both feet stand still on the floor."
    if kind == "drink":
        return (f"A standing person drinks from a {action.object}.",
                f"The {side} hand lifts a {action.object} to the mouth.", still)
    if kind == "hold_and_read":
        return (f"A standing person holds a {action.object} and looks down at it.",
                f"Both hands hold a {action.object} in front of the chest.", still)
    if kind == "sit_down":
        if action.reverse:
            return ("A seated person stands up from a chair.", "The hands leave the thighs.",
                    "The feet push on the floor as the knees straighten.")
        return ("A standing person sits down on a chair.", "The hands come to rest on the thighs.",
                "The feet stay on the floor as the knees bend.")
    if kind == "clap":
        times = {1: "once", 2: "twice"}.get(action.params["count"], "a few times")
        return (f"A standing person claps the hands {times}.", "Both hands meet in front of the chest.", still)
    if kind == "swipe_left":
        way = "right" if action.reverse else "left"
        return (f"A standing person swipes one hand to the {way}.", f"The {side} hand sweeps across the body.", still)
    if kind == "draw_figure":
        figure = _FIGURES[action.params["figure"]]
        turn = {"circle": " counter-clockwise" if action.reverse else " clockwise"}.get(action.params["figure"], "")
        return (f"A standing person draws {figure}{turn} in the air.",
                f"The {side} hand moves along a large path in the air.", still)
    if kind == "shake_hands":
        return ("Two people shake hands.", "The right hands of the two people join and shake.",
                "Each person steps toward the other.")
    if kind == "push":
        return ("One person pushes another person.", "Both hands push the other person's chest.",
                "One person steps forward and the other steps back.")
    raise ValueError(f"no answers known for the motion {kind!r} of class {action.name!r}")


def scene_answers(action: ActionClass, hand: str) -> list[str]:
    """The answers to :data:`MMCL_PROMPTS`, in order, for ``action`` performed with the dominant ``hand``."""
    person, hands, feet = _motion(action, hand)
    if action.object is None:
        who = "the two people are" if action.two_person else "the person is"
        holding = f"No, {who} not holding any object."
        short = "No, nobody holds an object." if action.two_person else "No, the person holds nothing."
    else:
        where = "both hands" if action.motion.__name__ == "hold_and_read" else f"the {_HANDS[hand]} hand"
        holding = f"Yes, the person is holding a {action.object} in {where}."
        short = f"Yes, a {action.object} in {where}."
    head = ("Yes, the hand brings the drink to the mouth." if action.motion.__name__ == "drink"
            else "No, the hands stay away from the head.")
    return [holding, short, head, "No, the hands do not touch the feet.", person, hands, feet]


def sample_answers(seed: int, classes: tuple[ActionClass, ...], name: str) -> list[str]:
    """The answers for one NTU-style sample name of the set generated with ``seed`` and ``classes``."""
    from mmcl.data.synthetic.dataset import ntu_subject

    m = _NAME.match(name)
    if m is None:
        raise ValueError(f"{name!r} is not an NTU-style sample name (SsssCcccPpppRrrrAaaa)")
    performer, action = int(m[3]), int(m[5])
    if not 1 <= action <= len(classes):
        raise ValueError(f"sample {name!r}: action {action} is not one of the {len(classes)} classes")
    return scene_answers(classes[action - 1], ntu_subject(seed, performer).performer.hand)


def write_answers(path: str | os.PathLike, seed: int, classes: tuple[ActionClass, ...], names: list[str]) -> Path:
    """Write the answers file of ``names`` (JSON lines, one per sample and prompt) atomically; returns its path."""
    lines = []
    for name in names:
        for prompt, answer in zip(MMCL_PROMPTS, sample_answers(seed, classes, name)):
            lines.append(json.dumps({"name": name, "prompt": prompt, "answer": answer}))
    path = Path(path)
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path

