"""Checkpoints: mmcl's deployable checkpoint, and state dicts from other code bases.

**The deployable checkpoint** (``best.safetensors`` / ``last.safetensors`` of a run) is one safetensors file holding
the skeleton model alone. Its tensors are the model's ``state_dict`` (for CTR-GCN exactly the reference
implementation's keys); its metadata (:class:`CheckpointInfo`) holds what is needed to rebuild and use the model:
registry name and arguments, class names, layout, input stream and window, and the resolved training configuration.
No teacher, co-learning head or optimizer state is ever written there: the training state for ``--resume`` lives in
the run's ``state/`` directory, the co-learning heads in ``best_heads.safetensors`` (:mod:`mmcl.colearn.heads`).
:func:`load_checkpoint` rebuilds the model through the registry; nothing from training is imported.

**Other code bases**: the reference CTR-GCN's ``.pt`` files (:func:`load_reference_checkpoint`) and
DataParallel / DDP / torch.compile prefixes (:func:`load_state_dict_flexible`).
"""

from __future__ import annotations

import json
import os
import pickle
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from mmcl.errors import CheckpointError
from mmcl.io import atomic_path
from mmcl.models.registry import create_model

FORMAT = "mmcl-skeleton-model-v1"

# Prefixes added by wrappers: DataParallel / DistributedDataParallel ("module."), torch.compile ("_orig_mod.").
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def strip_wrapper_prefixes(state_dict: Mapping[str, Tensor]) -> OrderedDict[str, Tensor]:
    """Remove a ``module.`` / ``_orig_mod.`` prefix that every key carries (repeatedly, for nested wrappers)."""
    out = OrderedDict(state_dict)
    while out:
        prefix = next((p for p in WRAPPER_PREFIXES if all(k.startswith(p) for k in out)), None)
        if prefix is None:
            break
        out = OrderedDict((k[len(prefix):], v) for k, v in out.items())
    return out


def _mismatch_hint(key: str, checkpoint: tuple[int, ...], model: tuple[int, ...]) -> str:
    name = key.rsplit(".", 1)[-1]
    if key.startswith("fc."):
        return f"class count: checkpoint {checkpoint[0]}, model {model[0]} (num_classes)"
    if key.startswith("data_bn.") and name != "num_batches_tracked":
        return (f"data_bn has persons x joints x channels features: checkpoint {checkpoint[0]}, model {model[0]} "
                "(num_person, layout, in_channels)")
    if name == "PA":
        return f"graph joints: checkpoint {checkpoint[-1]}, model {model[-1]} (layout)"
    if len(checkpoint) == len(model) == 4 and checkpoint[0] == model[0] and checkpoint[1] != model[1]:
        return f"input channels: checkpoint {checkpoint[1]}, model {model[1]} (in_channels / architecture)"
    return "different architecture or configuration"


def load_state_dict_flexible(model: nn.Module, state_dict: Mapping[str, Tensor],
                             strict: bool = True) -> nn.modules.module._IncompatibleKeys:
    """``model.load_state_dict`` that accepts DataParallel/DDP (``module.``) and torch.compile prefixes and names
    every shape mismatch (key, both shapes, the likely cause: class count, joints, persons, channels).

    Raises:
        CheckpointError: on shape mismatches (for every key, whatever ``strict`` is).
        RuntimeError: from ``load_state_dict`` on missing / unexpected keys when ``strict``.
    """
    state_dict = strip_wrapper_prefixes(state_dict)
    own = model.state_dict()
    mismatches = [
        f"  {key}: checkpoint {tuple(value.shape)} vs model {tuple(own[key].shape)} -- "
        f"{_mismatch_hint(key, tuple(value.shape), tuple(own[key].shape))}"
        for key, value in state_dict.items() if key in own and value.shape != own[key].shape
    ]
    if mismatches:
        raise CheckpointError(f"checkpoint does not fit {type(model).__name__}: {len(mismatches)} shape mismatch(es)\n"
                              + "\n".join(mismatches))
    return model.load_state_dict(state_dict, strict=strict)


def load_reference_checkpoint(path: str | Path) -> OrderedDict[str, Tensor]:
    """Read a checkpoint saved by the reference CTR-GCN code (``torch.save`` of a state dict, ``.pt``).

    Loaded with ``weights_only=True`` on CPU; wrapper prefixes (``module.``) are removed. Pass the result to
    :func:`load_state_dict_flexible`.
    """
    path = Path(path)
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError) as err:
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({err})") from err
    if not isinstance(state_dict, Mapping):
        raise CheckpointError(f"{path}: expected a state dict (names to tensors), got {type(state_dict).__name__}")
    bad = [k for k, v in state_dict.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        raise CheckpointError(f"{path}: not a flat state dict; entries that are not tensors: "
                              f"{', '.join(map(repr, bad[:5]))}{' ...' if len(bad) > 5 else ''} "
                              "(if the file wraps a state dict, pass that entry to load_state_dict_flexible)")
    return strip_wrapper_prefixes(state_dict)


@dataclass
class CheckpointInfo:
    """What a deployable checkpoint says about its model."""

    model: str
    model_args: dict[str, Any]
    class_names: list[str]
    layout: str
    in_channels: int  # per joint of the model input: the skeletons' (3 for xyz), 12 for a PSUMNet part stream
    num_person: int
    stream: str  # mmcl.data.streams: it alone defines the input transform
    window: int
    config_yaml: str
    extra: dict[str, Any]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_metadata(self) -> dict[str, str]:
        """The safetensors metadata entries (strings) holding this info."""
        return {"model": self.model, "model_args": json.dumps(self.model_args),
                "class_names": json.dumps(self.class_names), "layout": self.layout,
                "in_channels": str(self.in_channels), "num_person": str(self.num_person), "stream": self.stream,
                "window": str(self.window), "config": self.config_yaml, "extra": json.dumps(self.extra)}

    @classmethod
    def from_metadata(cls, meta: Mapping[str, str]) -> CheckpointInfo:
        """The inverse of :meth:`to_metadata`."""
        return cls(model=meta["model"], model_args=json.loads(meta["model_args"]),
                   class_names=json.loads(meta["class_names"]), layout=meta["layout"],
                   in_channels=int(meta["in_channels"]), num_person=int(meta["num_person"]), stream=meta["stream"],
                   window=int(meta["window"]), config_yaml=meta["config"], extra=json.loads(meta.get("extra", "{}")))


def write_safetensors(path: str | os.PathLike, tensors: Mapping[str, Tensor], metadata: Mapping[str, str]) -> Path:
    """Write ``tensors`` (moved to the CPU, contiguous) and string ``metadata`` to ``path`` atomically."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=dict(metadata))
    return Path(path)


def read_metadata(path: str | os.PathLike, file_format: str) -> dict[str, str]:
    """The metadata of an mmcl safetensors file, which must be of ``file_format`` (a deployable checkpoint's
    :data:`FORMAT`, or a heads file's); the error says which file is which."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:
        raise CheckpointError(f"{path} is not a safetensors file: {e}") from None
    if meta.get("format") != file_format:
        what = "deployable checkpoint" if file_format == FORMAT else "heads file"
        raise CheckpointError(f"{path} is not an mmcl {what} (format {meta.get('format')!r}, expected "
                              f"{file_format!r}); a run's best.safetensors / last.safetensors are deployable "
                              f"checkpoints, best_heads.safetensors holds its co-learning heads")
    return meta


def save_checkpoint(path: str | os.PathLike, model: nn.Module, info: CheckpointInfo) -> Path:
    """Write ``model``'s weights and ``info`` to ``path`` as a deployable checkpoint, atomically."""
    return write_safetensors(path, model.state_dict(), {"format": FORMAT, **info.to_metadata()})


def read_checkpoint_info(path: str | os.PathLike) -> CheckpointInfo:
    """The metadata of a deployable checkpoint, without loading its tensors."""
    meta = read_metadata(path, FORMAT)
    try:
        return CheckpointInfo.from_metadata(meta)
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: its metadata is incomplete or corrupt ({type(e).__name__}: {e})") from None


def read_weights(path: str | os.PathLike) -> dict[str, Tensor]:
    """The tensors of an mmcl safetensors file, every floating-point one finite; errors name the file and tensor."""
    try:
        weights = load_file(str(path))
    except Exception as e:  # safetensors' SafetensorError (truncated, corrupt header), OSError
        raise CheckpointError(f"{path}: cannot read its tensors ({type(e).__name__}: {e})") from None
    bad = [k for k, v in weights.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"{path}: tensor(s) {', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''} hold NaN or "
                              f"inf; a model with such weights gives no meaningful result (a run that diverged?)")
    return weights


def build_model(info: CheckpointInfo) -> nn.Module:
    """An untrained model of the checkpoint's architecture, from the registry."""
    return create_model(info.model, num_classes=info.num_classes, layout=info.layout, in_channels=info.in_channels,
                        num_person=info.num_person, **info.model_args)


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, CheckpointInfo]:
    """Rebuild the model of a deployable checkpoint and load its weights (strict), in eval mode."""
    info = read_checkpoint_info(path)
    try:
        model = build_model(info)
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: its metadata names a model the registry cannot build ({e})") from None
    _load_strict(model, read_weights(path), path)
    return model.to(device).eval(), info


def _load_strict(model: nn.Module, weights: Mapping[str, Tensor], path: str | os.PathLike) -> None:
    try:
        load_state_dict_flexible(model, weights, strict=True)
    except CheckpointError as e:  # shape mismatches
        raise CheckpointError(f"{path}: {e}") from None
    except RuntimeError as e:  # missing / unexpected keys
        raise CheckpointError(f"{path} does not fit {type(model).__name__}: "
                              f"{' '.join(str(e).split())[:300]}") from None


def init_from_checkpoint(model: nn.Module, path: str | os.PathLike, stream: str | None = None) -> list[str]:
    """Load a deployable checkpoint's weights into ``model`` to fine-tune it on ``stream``; returns the keys left as
    initialised.

    The checkpoint must have been trained on the same input stream (when ``stream`` is given), and every tensor must
    fit (an error names the key and both shapes), except the classifier (``fc.*``) when the class count differs or
    the file is an encoder checkpoint of ``mmcl pretrain`` (whose classifier was never trained): it then keeps its
    fresh initialisation.
    """
    info = read_checkpoint_info(path)
    if stream is not None and info.stream != stream:
        raise CheckpointError(f"{path} was trained on the {info.stream!r} stream; this run reads {stream!r}")
    weights = read_weights(path)
    own = model.state_dict()
    encoder = "pretrain" in info.extra
    skipped = [k for k in ("fc.weight", "fc.bias")
               if k in weights and k in own and (encoder or weights[k].shape != own[k].shape)]
    for k in skipped:
        weights[k] = own[k]
    _load_strict(model, weights, path)
    if skipped:
        why = f"a {info.extra['pretrain']} encoder" if encoder else f"{info.num_classes} classes"
        print(f"initialised from {path} ({why}); the classifier is new for {own['fc.weight'].shape[0]} classes")
    return skipped
