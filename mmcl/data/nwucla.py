"""NW-UCLA Multiview Action 3D: reader into the prepared format.

Raw input (CTR-GCN's ``all_sqe`` folder): one JSON file per sample, ``aAA_sSS_eEE_vVV.json`` (action, subject,
episode, view), whose key ``skeletons`` holds a (T, 20, 3) list of Kinect v1 joints. Files under ``raw_dir`` are found
recursively by that name pattern.

- Classes: the 10 actions a01 a02 a03 a04 a05 a06 a08 a09 a11 a12 map to 0..9 (:data:`NWUCLA_CLASSES`); any other
  action number is an error naming the file.
- Split (cross-view, standard): views 1 and 2 train (1,020 samples), view 3 tests (464); ``val`` is carved by subject
  from the training views (the highest-numbered 10% of subjects, i.e. subject 10 on the full dataset).
- Layout ``nwucla20``, one person. Names are the file stems.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np

from mmcl.data.importers import RawSample, import_samples
from mmcl.data.prepared import PreparedInfo
from mmcl.errors import DataError

NWUCLA_CLASSES = (
    "pick up with one hand", "pick up with two hands", "drop trash", "walk around", "sit down", "stand up",
    "donning", "doffing", "throw", "carry",
)
ACTION_IDS = (1, 2, 3, 4, 5, 6, 8, 9, 11, 12)
TRAIN_VIEWS = (1, 2)
TEST_VIEWS = (3,)
NAME_PATTERN = re.compile(r"^a(\d{2})_s(\d{2})_e(\d{2})_v(\d{2})$")
NUM_JOINTS = 20


def read_nwucla_json(path: str | os.PathLike) -> np.ndarray:
    """One sample's joints, (T, 20, 3) float32, from the ``skeletons`` key of its JSON file."""
    path = Path(path)
    try:
        content = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not valid JSON: {e}") from None
    if not isinstance(content, dict) or "skeletons" not in content:
        keys = list(content) if isinstance(content, dict) else type(content).__name__
        raise DataError(f"{path}: no 'skeletons' key (found {keys})")
    try:
        joints = np.asarray(content["skeletons"], dtype=np.float32)
    except (ValueError, TypeError) as e:
        raise DataError(f"{path}: 'skeletons' is not a numeric (T, {NUM_JOINTS}, 3) array: {e}") from None
    if joints.size == 0:
        return np.zeros((0, NUM_JOINTS, 3), dtype=np.float32)
    if joints.ndim != 3 or joints.shape[1:] != (NUM_JOINTS, 3):
        raise DataError(f"{path}: 'skeletons' has shape {joints.shape}, expected (T, {NUM_JOINTS}, 3)")
    return joints


def nwucla_sample(path: Path) -> RawSample:
    """The sample record of one NW-UCLA file (label, subject, view split) from its name."""
    match = NAME_PATTERN.match(path.stem)
    if match is None:
        raise DataError(f"{path}: name does not follow aAA_sSS_eEE_vVV")
    action, subject, _, view = map(int, match.groups())
    if action not in ACTION_IDS:
        raise DataError(f"{path}: action a{action:02d} is not one of NW-UCLA's 10 actions "
                         f"({', '.join(f'a{a:02d}' for a in ACTION_IDS)})")
    if view not in TRAIN_VIEWS + TEST_VIEWS:
        raise DataError(f"{path}: view v{view:02d} is not one of v01, v02, v03")
    return RawSample(path.stem, ACTION_IDS.index(action), subject, view in TEST_VIEWS, path)


def prepare_nwucla(raw_dir: str | os.PathLike, out: str | os.PathLike, overwrite: bool = False,
                   progress: bool = True) -> Path:
    """Convert NW-UCLA's JSON files under ``raw_dir`` into a prepared dataset at ``out``."""
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise FileNotFoundError(f"NW-UCLA directory not found: {raw_dir}")
    paths = sorted(raw_dir.rglob("a[0-9][0-9]_s[0-9][0-9]_e[0-9][0-9]_v[0-9][0-9].json"), key=lambda p: p.stem)
    if not paths:
        raise FileNotFoundError(f"no aAA_sSS_eEE_vVV.json files under {raw_dir}")
    info = PreparedInfo(dataset="nwucla", layout="nwucla20", num_person=1, class_names=list(NWUCLA_CLASSES),
                        benchmark="xview", source=str(raw_dir.resolve()))
    protocol = f"cross-view: views {TRAIN_VIEWS} train, view {TEST_VIEWS} test"
    return import_samples(out, info, [nwucla_sample(p) for p in paths], read_nwucla_json, protocol,
                          overwrite=overwrite, progress=progress)
