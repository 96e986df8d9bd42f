"""UTD-MHAD: reader into the prepared format.

Raw input: ``a{a}_s{s}_t{t}_skeleton.mat`` files (action 1-27, subject 1-8, trial 1-4; found recursively under
``raw_dir``), each holding ``d_skel`` of shape (20, 3, T). The RGB video of a sample is ``a{a}_s{s}_t{t}_color.avi``
(:func:`utd_video_name`; the official release keeps videos in a separate ``RGB`` folder).

- Classes: the 27 actions in order (:data:`UTD_MHAD_CLASSES`), label = action - 1. A ``classes.json`` at the top of
  ``raw_dir`` (a JSON list of ``{"id": action number, "name": class name}``, other keys ignored; the synthetic
  UTD-style set writes one) replaces them: its entries are the classes in file order, label = the entry's position,
  and every sample's action number must be one of its ids (:func:`read_utd_classes`).
- Split (cross-subject, standard): odd subjects train, even subjects test; ``val`` is carved by subject from the
  training subjects (the highest-numbered 10%, at least one: subject 7 on the full dataset).
- Layout ``kinect_v1_20``, one person. The file's joint order (:data:`UTD_JOINTS`: head, shoulder centre, spine, hip
  centre, then left arm, right arm, left leg, right leg; unverified against the official figure) is reordered to the
  Kinect v1 order by joint name, so only the first four joints move.
- Sample names are the file stems without ``_skeleton``: ``a1_s1_t1``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import scipy.io

from mmcl.data.importers import RawSample, import_samples
from mmcl.data.layouts import KINECT_V1_20
from mmcl.data.prepared import PreparedInfo
from mmcl.errors import DataError

UTD_MHAD_CLASSES = (
    "swipe left", "swipe right", "wave", "clap", "throw", "arm cross", "basketball shoot", "draw x",
    "draw circle (clockwise)", "draw circle (counter clockwise)", "draw triangle", "bowling", "boxing",
    "baseball swing", "tennis swing", "arm curl", "tennis serve", "push", "knock", "catch", "pickup and throw", "jog",
    "walk", "sit to stand", "stand to sit", "lunge", "squat",
)
# Joint order of d_skel, as Kinect v1 joint names.
UTD_JOINTS = (
    "Head", "ShoulderCenter", "Spine", "HipCenter",
    "ShoulderLeft", "ElbowLeft", "WristLeft", "HandLeft",
    "ShoulderRight", "ElbowRight", "WristRight", "HandRight",
    "HipLeft", "KneeLeft", "AnkleLeft", "FootLeft",
    "HipRight", "KneeRight", "AnkleRight", "FootRight",
)
TO_KINECT_V1 = np.array([UTD_JOINTS.index(name) for name in KINECT_V1_20.joints])
NAME_PATTERN = re.compile(r"^a(\d+)_s(\d+)_t(\d+)_skeleton$")


def utd_video_name(name: str) -> str:
    """The RGB video file of sample ``name`` (``a1_s1_t1`` -> ``a1_s1_t1_color.avi``)."""
    return f"{name}_color.avi"


def read_utd_mat(path: str | os.PathLike) -> np.ndarray:
    """One sample's joints, (T, 20, 3) float32 in Kinect v1 order, from the ``d_skel`` (20, 3, T) of its .mat file."""
    path = Path(path)
    try:
        mat = scipy.io.loadmat(path)
    except FileNotFoundError:
        raise
    except Exception as e:  # scipy raises assorted types on a corrupt file; re-raise naming it
        raise DataError(f"{path}: cannot read as a .mat file: {type(e).__name__}: {e}") from e
    if "d_skel" not in mat:
        found = [k for k in mat if not k.startswith("__")]
        raise DataError(f"{path}: no variable 'd_skel' (found {found})")
    skel = np.asarray(mat["d_skel"])
    if skel.ndim == 2 and skel.shape == (len(UTD_JOINTS), 3):  # MATLAB drops a trailing singleton: one frame
        skel = skel[:, :, None]
    if skel.ndim != 3 or skel.shape[:2] != (len(UTD_JOINTS), 3):
        raise DataError(f"{path}: d_skel has shape {skel.shape}, expected ({len(UTD_JOINTS)}, 3, T)")
    if not np.issubdtype(skel.dtype, np.number):
        raise DataError(f"{path}: d_skel has dtype {skel.dtype}, expected numbers")
    return np.ascontiguousarray(skel.transpose(2, 0, 1)[:, TO_KINECT_V1], dtype=np.float32)


def read_utd_classes(raw_dir: str | os.PathLike) -> dict[int, str] | None:
    """Action number -> class name, in label order, from ``raw_dir/classes.json``; None when there is none (the 27
    UTD-MHAD classes apply)."""
    path = Path(raw_dir) / "classes.json"
    if not path.is_file():
        return None
    try:
        entries = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON: {e}") from None
    if not isinstance(entries, list) or not entries:
        raise DataError(f"{path}: expected a non-empty list of {{\"id\": action number, \"name\": class name}}")
    classes: dict[int, str] = {}
    for k, entry in enumerate(entries):
        action, name = (entry.get("id"), entry.get("name")) if isinstance(entry, dict) else (None, None)
        valid_id = isinstance(action, int) and not isinstance(action, bool) and action >= 1
        if not valid_id or not isinstance(name, str) or not name:
            raise DataError(f"{path}: entry {k} needs an integer 'id' >= 1 (the action number) and a string 'name'")
        if action in classes:
            raise DataError(f"{path}: action number {action} is listed twice")
        classes[action] = name
    if len(set(classes.values())) != len(classes):
        raise DataError(f"{path}: class names are not unique")
    return classes


def utd_sample(path: Path, classes: dict[int, str] | None = None) -> RawSample:
    """The sample record of one UTD-MHAD file (label, subject, split) from its name; ``classes``: action number ->
    name in label order (:func:`read_utd_classes`; None: UTD-MHAD's 27, label = action - 1)."""
    match = NAME_PATTERN.match(path.stem)
    if match is None:
        raise DataError(f"{path}: name does not follow a{{a}}_s{{s}}_t{{t}}_skeleton.mat")
    action, subject, _ = map(int, match.groups())
    if classes is None:
        if not 1 <= action <= len(UTD_MHAD_CLASSES):
            raise DataError(f"{path}: action a{action} outside a1..a{len(UTD_MHAD_CLASSES)}")
        return RawSample(path.stem.removesuffix("_skeleton"), action - 1, subject, subject % 2 == 0, path)
    if action not in classes:
        known = ", ".join(f"a{a}" for a in classes)
        raise DataError(f"{path}: action a{action} is not among the classes of classes.json ({known})")
    return RawSample(path.stem.removesuffix("_skeleton"), list(classes).index(action), subject, subject % 2 == 0,
                     path)


def prepare_utd_mhad(raw_dir: str | os.PathLike, out: str | os.PathLike, overwrite: bool = False,
                     progress: bool = True, dataset_name: str = "utd_mhad") -> Path:
    """Convert UTD-MHAD's skeleton .mat files under ``raw_dir`` into a prepared dataset at ``out``.

    ``dataset_name`` is the dataset's name in its metadata, which keys its teacher caches: give a UTD-style set of
    other recordings (the synthetic one) its own name.
    """
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise FileNotFoundError(f"UTD-MHAD directory not found: {raw_dir}")
    paths = sorted(raw_dir.rglob("a*_s*_t*_skeleton.mat"), key=lambda p: p.stem)
    if not paths:
        raise FileNotFoundError(f"no a{{a}}_s{{s}}_t{{t}}_skeleton.mat files under {raw_dir}")
    classes = read_utd_classes(raw_dir)
    class_names = list(UTD_MHAD_CLASSES if classes is None else classes.values())
    info = PreparedInfo(dataset=dataset_name, layout="kinect_v1_20", num_person=1, class_names=class_names,
                        benchmark="xsub", source=str(raw_dir.resolve()))
    return import_samples(out, info, [utd_sample(p, classes) for p in paths], read_utd_mat,
                          "cross-subject: odd subjects train, even subjects test",
                          overwrite=overwrite, progress=progress)
