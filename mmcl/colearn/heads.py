"""A run's training-time heads on disk: ``best_heads.safetensors``, each head with its config and sizes.

A co-learning run saves its heads (:func:`save_heads`) beside ``best.safetensors``, from the same epoch, with the
same run metadata (:class:`~mmcl.models.checkpoint.CheckpointInfo`). The file's metadata ``heads`` maps each head's
name (its ``colearn`` config section: ``fam``, ``frm``, ``openvocab``, ``mmixer``, ``deformable``) to its config and
the sizes it was built for; its tensors are the heads' state dicts, keyed ``<name>.<key>``. :func:`load_head`
rebuilds one head by name from that: the one way any consumer (zero-shot refinement, open-vocabulary scoring) gets
a trained head. None of it is needed to classify.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, fields
from pathlib import Path

from safetensors import safe_open
from torch import nn

from mmcl.colearn.config import ColearnConfig
from mmcl.colearn.deformable import DeformableHead
from mmcl.colearn.fam import FAM
from mmcl.colearn.frm import FRM
from mmcl.colearn.mmixer import MMixerHead
from mmcl.colearn.openvocab import OpenVocabHead
from mmcl.errors import CheckpointError
from mmcl.models.checkpoint import CheckpointInfo, read_metadata, read_weights, write_safetensors

HEADS_FORMAT = "mmcl-colearn-heads-v2"
OLD_FORMATS = ("mmcl-colearn-heads-v1",)  # heads saved without their configs: not loadable by name

# Config section -> head class; each is built as ``cls(config, **dims)`` and keeps ``cfg`` and ``dims``.
HEAD_CLASSES: dict[str, type[nn.Module]] = {"fam": FAM, "frm": FRM, "openvocab": OpenVocabHead,
                                            "mmixer": MMixerHead, "deformable": DeformableHead}


def save_heads(path: str | os.PathLike, colearner: nn.Module, info: CheckpointInfo) -> Path:
    """Write the heads of ``colearner`` (its ``heads``: name -> head) with their configs and ``info``, atomically."""
    specs, tensors = {}, {}
    for name, head in colearner.heads.items():
        if not isinstance(head, HEAD_CLASSES.get(name, ())):
            raise TypeError(f"head {name!r} is a {type(head).__name__}; heads files hold "
                            f"{', '.join(f'{n} ({c.__name__})' for n, c in HEAD_CLASSES.items())}")
        specs[name] = {"config": asdict(head.cfg), "dims": head.dims}
        tensors.update({f"{name}.{key}": value for key, value in head.state_dict().items()})
    return write_safetensors(path, tensors, {"format": HEADS_FORMAT, **info.to_metadata(), "heads": json.dumps(specs)})


def read_heads(path: str | os.PathLike) -> tuple[CheckpointInfo, dict[str, dict]]:
    """The run metadata of a heads file and its heads' specs (name -> ``{"config", "dims"}``), without tensors."""
    try:
        meta = read_metadata(path, HEADS_FORMAT)
    except CheckpointError:
        old = _stored_format(path)
        if old in OLD_FORMATS:
            raise CheckpointError(f"{path} was written by an older mmcl ({old}) that did not store the heads' configs; "
                                  f"retrain the run to get loadable heads") from None
        raise
    return CheckpointInfo.from_metadata(meta), json.loads(meta["heads"])


def _stored_format(path: str | os.PathLike) -> str | None:
    try:
        with safe_open(str(path), framework="pt") as f:
            return (f.metadata() or {}).get("format")
    except Exception:  # not a safetensors file: read_metadata's error says so
        return None


def load_head(path: str | os.PathLike, name: str) -> nn.Module:
    """Head ``name`` of a heads file, rebuilt from its stored config and sizes with its trained weights, in eval mode.

    Raises:
        CheckpointError: the file is no heads file, the run trained no head of that name (the error lists the ones
            it has), or the stored config does not fit this mmcl's config of that head.
    """
    _, specs = read_heads(path)
    if name not in specs:
        raise CheckpointError(f"{path} holds no {name!r} head (the run trained {', '.join(specs) or 'no head'}); "
                              f"train with colearn.{name}.enabled=true")
    if name not in HEAD_CLASSES:
        raise CheckpointError(f"{path}: unknown head {name!r}; known heads: {', '.join(HEAD_CLASSES)}")
    config_class = type(getattr(ColearnConfig(), name))
    stored = specs[name]["config"]
    unknown = sorted(set(stored) - {f.name for f in fields(config_class)})
    if unknown:
        raise CheckpointError(f"{path}: the {name!r} head's stored config has keys this mmcl does not know: {unknown}")
    head = HEAD_CLASSES[name](config_class(**stored), **specs[name]["dims"])
    prefix = f"{name}."
    state = {key[len(prefix):]: value for key, value in read_weights(path).items() if key.startswith(prefix)}
    try:
        head.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: the {name!r} head's tensors do not fit its stored config "
                              f"({' '.join(str(e).split())[:300]})") from None
    return head.eval()
