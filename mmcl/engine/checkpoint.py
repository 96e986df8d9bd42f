"""mmcl's deployable checkpoints: one safetensors file holding the skeleton model alone.

The file's tensors are the model's ``state_dict`` (for CTR-GCN exactly the reference implementation's keys); its
metadata holds what is needed to rebuild and use the model: registry name and arguments, class names, layout, input
stream and window, and the resolved training configuration. No teacher, co-learning head or optimizer state is ever
written here: the training state for ``--resume`` lives in the run's ``state/`` directory instead.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from mmcl.io import atomic_path
from mmcl.models import create_model
from mmcl.models.checkpoint import load_state_dict_flexible

FORMAT = "mmcl-skeleton-model-v1"
HEADS_FORMAT = "mmcl-colearn-heads-v1"


@dataclass
class CheckpointInfo:
    """What a deployable checkpoint says about its model."""

    model: str
    model_args: dict[str, Any]
    class_names: list[str]
    layout: str
    in_channels: int
    num_person: int
    stream: str
    window: int
    config_yaml: str
    extra: dict[str, Any]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def save_checkpoint(path: str | os.PathLike, model: torch.nn.Module, info: CheckpointInfo,
                    file_format: str = FORMAT) -> Path:
    """Write ``model``'s weights and ``info`` to ``path`` atomically."""
    path = Path(path)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    metadata = {
        "format": file_format,
        "model": info.model,
        "model_args": json.dumps(info.model_args),
        "class_names": json.dumps(info.class_names),
        "layout": info.layout,
        "in_channels": str(info.in_channels),
        "num_person": str(info.num_person),
        "stream": info.stream,
        "window": str(info.window),
        "config": info.config_yaml,
        "extra": json.dumps(info.extra),
    }
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path


def save_heads(path: str | os.PathLike, colearner: torch.nn.Module, info: CheckpointInfo) -> Path:
    """Write the training-time co-learning heads (not a deployable model) with the run's metadata."""
    return save_checkpoint(path, colearner, info, file_format=HEADS_FORMAT)


def load_heads(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], CheckpointInfo]:
    """The co-learning heads' state dict and the run's metadata, from :func:`save_heads`' file."""
    from safetensors.torch import load_file

    return load_file(str(path)), read_checkpoint_info(path, file_format=HEADS_FORMAT)


def read_checkpoint_info(path: str | os.PathLike, file_format: str = FORMAT) -> CheckpointInfo:
    """The metadata of a deployable checkpoint (or heads file), without loading its tensors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:
        raise ValueError(f"{path} is not a safetensors file: {e}") from None
    if meta.get("format") != file_format:
        raise ValueError(f"{path} is not an mmcl {'deployable checkpoint' if file_format == FORMAT else 'heads file'} "
                         f"(format {meta.get('format')!r}, expected {file_format!r}); a run's best.safetensors / "
                         f"last.safetensors are deployable checkpoints, best_heads.safetensors holds its heads")
    return CheckpointInfo(
        model=meta["model"], model_args=json.loads(meta["model_args"]), class_names=json.loads(meta["class_names"]),
        layout=meta["layout"], in_channels=int(meta["in_channels"]), num_person=int(meta["num_person"]),
        stream=meta["stream"], window=int(meta["window"]), config_yaml=meta["config"],
        extra=json.loads(meta.get("extra", "{}")))


def build_model(info: CheckpointInfo) -> torch.nn.Module:
    """An untrained model of the checkpoint's architecture."""
    return create_model(info.model, num_classes=info.num_classes, layout=info.layout, in_channels=info.in_channels,
                        num_person=info.num_person, **info.model_args)


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, CheckpointInfo]:
    """Rebuild the model of a deployable checkpoint and load its weights (strict), in eval mode."""
    from safetensors.torch import load_file

    info = read_checkpoint_info(path)
    model = build_model(info)
    load_state_dict_flexible(model, load_file(str(path)), strict=True)
    return model.to(device).eval(), info


def init_from_checkpoint(model: torch.nn.Module, path: str | os.PathLike, stream: str) -> list[str]:
    """Load a deployable checkpoint's weights into ``model`` to fine-tune it on ``stream``; returns the keys left as
    initialised.

    The checkpoint must have been trained on the same input stream, and every tensor must fit (an error names the key
    and both shapes), except the classifier (``fc.*``) when the class count differs: it then keeps its fresh
    initialisation for the new label space.
    """
    from safetensors.torch import load_file

    info = read_checkpoint_info(path)
    if info.stream != stream:
        raise ValueError(f"{path} was trained on the {info.stream!r} stream; this run reads {stream!r}")
    weights = load_file(str(path))
    own = model.state_dict()
    skipped = [k for k in ("fc.weight", "fc.bias") if k in weights and k in own and weights[k].shape != own[k].shape]
    for k in skipped:
        weights[k] = own[k]
    load_state_dict_flexible(model, weights, strict=True)
    if skipped:
        print(f"initialised from {path} ({info.num_classes} classes); the classifier is new for "
              f"{own['fc.weight'].shape[0]} classes")
    return skipped
