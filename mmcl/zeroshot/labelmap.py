"""Label mappings: which class of the target dataset counts as which class of the source model.

A mapping is a YAML file (``configs/zeroshot/*.yaml``)::

    target: utd-mhad        # the target dataset, as `mmcl zeroshot --dataset` names it
    source: ntu120          # optional: the source label space (ntu60 | ntu120 | synthetic), checked against the
                            # checkpoint's class names
    classes:                # target class -> source class
      3: 22                 # an integer key is the target's 1-based action number as the dataset numbers it (UTD
                            # a3 = wave), an integer value the 0-based source label (NTU-120 22 = hand waving)
      arm cross: cross arms # a string is a class name, on either side

Target classes left out are not scored by the mapped protocol (open-vocabulary scoring covers them). Two target
classes may map to one source class; one target class may appear only once. Every problem is reported with the file
and line: an unknown target action number or class name, an unknown source label or class name, a target class
given twice, a mapping written for another dataset or source label space.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import yaml

from mmcl.data.ntu_classes import NTU60_CLASSES, NTU120_CLASSES
from mmcl.errors import MmclError


class LabelMappingError(MmclError, ValueError):
    """A label mapping file is invalid or does not fit the target data or the checkpoint."""


def source_spaces() -> dict[str, tuple[str, ...]]:
    """Known source label spaces a mapping may name in its ``source`` field: name -> class names."""
    from mmcl.data.synthetic.actions import SOURCE_CLASSES

    return {"ntu60": NTU60_CLASSES, "ntu120": NTU120_CLASSES, "synthetic": tuple(c.name for c in SOURCE_CLASSES)}


@dataclass(frozen=True)
class LabelMapping:
    """A validated mapping from target labels (0-based, the prepared dataset's) to source labels (the checkpoint's).

    Attributes:
        path: the mapping file.
        target_classes: the target dataset's class names (label order).
        source_classes: the checkpoint's class names (label order).
        pairs: target label -> source label, in file order.
    """

    path: Path
    target_classes: tuple[str, ...]
    source_classes: tuple[str, ...]
    pairs: dict[int, int]

    def source_labels(self) -> np.ndarray:
        """(C_target,) int64: the source label of each target label, -1 where the class is not mapped."""
        out = np.full(len(self.target_classes), -1, dtype=np.int64)
        for t, s in self.pairs.items():
            out[t] = s
        return out

    def describe(self) -> list[dict]:
        """The pairs as records (target and source label and name), for reports."""
        return [{"target": self.target_classes[t], "target_label": t, "source": self.source_classes[s],
                 "source_label": s} for t, s in self.pairs.items()]


@dataclass(frozen=True)
class _Entry:
    key: object
    value: object
    line: int  # 1-based


def _unique_key_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, where: str) -> list[_Entry]:
    """The (key, value, line) entries of a YAML mapping node, failing on a repeated key (YAML would keep the last)."""
    entries, seen = [], {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if not isinstance(key, (int, str)) or isinstance(key, bool):
            raise LabelMappingError(f"{where}, line {line}: key {key!r} is neither a name nor an integer")
        if key in seen:
            raise LabelMappingError(f"{where}, line {line}: {key!r} appears twice (first on line {seen[key]})")
        seen[key] = line
        entries.append(_Entry(key, loader.construct_object(value_node, deep=True), line))
    return entries


def read_mapping_file(path: str | os.PathLike) -> tuple[str, str | None, list[_Entry]]:
    """(target dataset, source label space or None, class entries) of a mapping file, checked for form only."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label mapping not found: {path}")
    loader = yaml.SafeLoader(path.read_text())
    try:
        root = loader.get_single_node()
    except yaml.YAMLError as e:
        raise LabelMappingError(f"{path}: invalid YAML: {e}") from None
    if not isinstance(root, yaml.MappingNode):
        raise LabelMappingError(f"{path}: expected a mapping with keys target, source (optional) and classes")
    top = {e.key: e for e in _unique_key_mapping(loader, root, str(path))}
    unknown = set(top) - {"target", "source", "classes"}
    if unknown:
        raise LabelMappingError(f"{path}, line {top[sorted(unknown, key=str)[0]].line}: unknown key "
                                f"{sorted(unknown, key=str)[0]!r}; a mapping has target, source and classes")
    for key in ("target", "classes"):
        if key not in top:
            raise LabelMappingError(f"{path}: no {key!r} key")
    target = top["target"].value
    if not isinstance(target, str):
        raise LabelMappingError(f"{path}, line {top['target'].line}: target must be a dataset name")
    source = top["source"].value if "source" in top else None
    if source is not None and source not in source_spaces():
        raise LabelMappingError(f"{path}, line {top['source'].line}: unknown source label space {source!r}; known: "
                                f"{', '.join(source_spaces())}")
    classes_node = next(v for k, v in root.value if k.value == "classes")
    if not isinstance(classes_node, yaml.MappingNode) or not classes_node.value:
        raise LabelMappingError(f"{path}, line {top['classes'].line}: classes must be a non-empty mapping "
                                f"target class -> source class")
    return target, source, _unique_key_mapping(loader, classes_node, str(path))


def _suggest(name: str, names: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def load_label_mapping(path: str | os.PathLike, dataset: str, target_classes: Sequence[str],
                       target_action_ids: Sequence[int | None], source_classes: Sequence[str],
                       checkpoint: str | os.PathLike = "the checkpoint") -> LabelMapping:
    """Read and validate a mapping for ``dataset`` (as ``mmcl zeroshot --dataset`` names it).

    ``target_action_ids[label]`` is the target class's action number (None when it has none); ``source_classes`` are
    the checkpoint's class names, ``checkpoint`` names it in errors.
    """
    path = Path(path)
    target, source, entries = read_mapping_file(path)
    if target != dataset:
        raise LabelMappingError(f"{path} maps the classes of {target!r}, not of {dataset!r}")
    if source is not None and tuple(source_classes) != source_spaces()[source]:
        space = source_spaces()[source]
        raise LabelMappingError(
            f"{path} maps onto the {source} label space ({len(space)} classes: {', '.join(space[:3])}, ...), but "
            f"{checkpoint} predicts {len(source_classes)} other classes ({', '.join(source_classes[:3])}, ...)")
    by_id = {a: label for label, a in enumerate(target_action_ids) if a is not None}
    pairs: dict[int, int] = {}
    first_line: dict[int, int] = {}
    for e in entries:
        where = f"{path}, line {e.line}"
        if isinstance(e.key, int):
            if e.key not in by_id:
                ids = ", ".join(map(str, sorted(by_id))) or "none"
                raise LabelMappingError(f"{where}: unknown target class: {dataset} has no action number {e.key} "
                                        f"(its action numbers: {ids})")
            t = by_id[e.key]
        else:
            if e.key not in target_classes:
                raise LabelMappingError(f"{where}: unknown target class {e.key!r}: not a class of {dataset}"
                                        f"{_suggest(e.key, list(target_classes))}")
            t = list(target_classes).index(e.key)
        if t in pairs:
            raise LabelMappingError(f"{where}: target class {target_classes[t]!r} is mapped twice (first on line "
                                    f"{first_line[t]})")
        if isinstance(e.value, int) and not isinstance(e.value, bool):
            if not 0 <= e.value < len(source_classes):
                raise LabelMappingError(f"{where}: unknown source label {e.value}: {checkpoint} has labels "
                                        f"0..{len(source_classes) - 1}")
            s = e.value
        elif isinstance(e.value, str):
            if e.value not in source_classes:
                raise LabelMappingError(f"{where}: unknown source class {e.value!r}: not a class of {checkpoint}"
                                        f"{_suggest(e.value, list(source_classes))}")
            s = list(source_classes).index(e.value)
        else:
            raise LabelMappingError(f"{where}: the source class of {e.key!r} must be a 0-based label or a class name, "
                                    f"got {e.value!r}")
        pairs[t] = s
        first_line[t] = e.line
    return LabelMapping(path, tuple(target_classes), tuple(source_classes), pairs)
