"""The target datasets of zero-shot evaluation and how their data is found.

``mmcl zeroshot --data DIR`` takes a prepared dataset (a directory with ``meta.json``, from ``mmcl prepare``) or the
raw dataset itself; raw data is prepared into ``<out>/prepared`` (kept there and reused by later runs on the same raw
directory).

A class's *action number* is the number the dataset's file names use for it (UTD-MHAD ``a{action}_s.._t..``,
SYSU ``S.._A{action}_V..``); label mappings may name target classes by it. It is read from the sample names of each
class, so it holds for UTD-MHAD's 27 classes and for a ``classes.json`` subset alike.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from mmcl.data.prepared import PreparedData


def _prepare_utd(raw: Path, out: Path) -> Path:
    from mmcl.data.utd_mhad import prepare_utd_mhad

    return prepare_utd_mhad(raw, out)


def _prepare_sysu(raw: Path, out: Path) -> Path:
    from mmcl.data.sysu import prepare_sysu

    return prepare_sysu(raw, out)


@dataclass(frozen=True)
class TargetDataset:
    """A dataset zero-shot evaluation can target.

    Attributes:
        name: the name on the command line.
        layout: the joint layout of its prepared form (the dataset's name in the metadata is free: a UTD-style set
            prepared under another name, e.g. the synthetic one, is a valid target; its sample names are checked).
        action_pattern: matches a sample name; group ``action`` is the class's action number.
        default_mapping: the label mapping used without ``--mapping`` (a file in ``configs/zeroshot/``).
        prepare: (raw directory, out) -> prepared directory.
    """

    name: str
    layout: str
    action_pattern: re.Pattern
    default_mapping: str
    prepare: Callable[[Path, Path], Path]


TARGETS: dict[str, TargetDataset] = {
    "utd-mhad": TargetDataset("utd-mhad", "kinect_v1_20", re.compile(r"^a(?P<action>\d+)_s\d+_t\d+$"),
                              "utd_mhad_ntu120.yaml", _prepare_utd),
    "sysu": TargetDataset("sysu", "kinect_v1_20", re.compile(r"^S\d{2}_A(?P<action>\d{2})_V\d{2}$"), "sysu_ntu120.yaml",
                          _prepare_sysu),
}


def get_target(name: str) -> TargetDataset:
    """Look up a target dataset by its command-line name."""
    if name not in TARGETS:
        raise ValueError(f"unknown target dataset {name!r}; known: {', '.join(TARGETS)}")
    return TARGETS[name]


def open_target_data(target: TargetDataset, data: str | Path, out: str | Path) -> tuple[PreparedData, str]:
    """The prepared target data: ``data`` itself when prepared, else ``data`` (raw) prepared into ``out/prepared``.

    Returns the data and a line saying which it was.
    """
    data = Path(data)
    if (data / "meta.json").is_file():
        prepared = PreparedData(data)
        note = f"prepared data {data}"
    elif data.is_dir():
        path = Path(out) / "prepared"
        if (path / "meta.json").is_file():
            prepared = PreparedData(path)
            if Path(prepared.info.source) != data.resolve():
                raise ValueError(f"{path} holds data prepared from {prepared.info.source}, not {data.resolve()}; "
                                 f"choose another --out")
            note = f"raw data {data}, prepared earlier into {path}"
        else:
            print(f"preparing the raw {target.name} data {data} into {path}")
            prepared = PreparedData(target.prepare(data, path))
            note = f"raw data {data}, prepared into {path}"
    else:
        raise FileNotFoundError(f"target data not found: {data}")
    if prepared.info.layout != target.layout:
        raise ValueError(f"{prepared.root} holds {prepared.info.layout!r} skeletons ({prepared.info.dataset}), not "
                         f"{target.name}'s {target.layout!r}")
    return prepared, note


def target_action_ids(data: PreparedData, target: TargetDataset) -> list[int | None]:
    """The action number of each class (label order), from its samples' names; None for a class without samples."""
    ids: list[set[int]] = [set() for _ in range(data.num_classes)]
    for name, label in zip(data.names, data.labels):
        match = target.action_pattern.match(name)
        if match is None:
            raise ValueError(f"{data.root}: sample {name!r} is not named as {target.name} names its samples")
        ids[int(label)].add(int(match["action"]))
    out: list[int | None] = []
    for label, found in enumerate(ids):
        if len(found) > 1:
            raise ValueError(f"{data.root}: class {data.class_names[label]!r} holds samples of several action numbers "
                             f"{sorted(found)}")
        out.append(found.pop() if found else None)
    taken = [a for a in out if a is not None]
    if len(set(taken)) != len(taken):
        raise ValueError(f"{data.root}: two classes share an action number ({taken})")
    return out
