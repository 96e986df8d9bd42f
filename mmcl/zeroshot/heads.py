"""The source run's training-time heads, as refinement and open-vocabulary scoring need them.

A co-learning run saves ``best_heads.safetensors`` beside ``best.safetensors`` (same epoch, same metadata); the heads
of checkpoint ``<stem>.safetensors`` are looked for at ``<stem>_heads.safetensors`` unless given. Heads saved with
another run or epoch than the checkpoint are refused.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from mmcl.config import TrainConfig, from_yaml
from mmcl.engine.checkpoint import CheckpointInfo, load_heads


@dataclass
class RunHeads:
    """The heads' state dict (keys ``heads.<name>.*``), the source run's configuration and the file."""

    state: dict[str, torch.Tensor]
    config: TrainConfig
    path: Path

    def head(self, name: str, purpose: str) -> dict[str, torch.Tensor]:
        """The state dict of head ``name`` (prefix removed); ``purpose`` says what needs it, in the error."""
        prefix = f"heads.{name}."
        state = {k[len(prefix):]: v for k, v in self.state.items() if k.startswith(prefix)}
        if not state:
            present = sorted({k.split(".")[1] for k in self.state if k.startswith("heads.")})
            raise ValueError(f"{self.path} holds no {name!r} head ({purpose} needs it; the run trained "
                             f"{', '.join(present) or 'no head'}); train with colearn.{name}.enabled=true")
        return state


def heads_path(checkpoint: str | os.PathLike) -> Path:
    """Where the heads of a deployable checkpoint are saved: ``best.safetensors`` -> ``best_heads.safetensors``."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(f"{checkpoint.stem}_heads.safetensors")


def load_run_heads(checkpoint: str | os.PathLike, info: CheckpointInfo,
                   path: str | os.PathLike | None = None) -> RunHeads:
    """The heads saved with ``checkpoint`` (at :func:`heads_path` unless ``path``), checked to be of its epoch."""
    path = Path(path) if path is not None else heads_path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"no co-learning heads for {checkpoint}: {path} not found. Refinement and "
                                f"open-vocabulary scoring need the heads saved with the checkpoint (a co-learning "
                                f"run writes best_heads.safetensors beside best.safetensors); pass --heads")
    state, heads_info = load_heads(path)
    if heads_info.config_yaml != info.config_yaml or heads_info.extra.get("epoch") != info.extra.get("epoch"):
        raise ValueError(f"{path} was saved with another run or epoch (epoch {heads_info.extra.get('epoch')}) than "
                         f"{checkpoint} (epoch {info.extra.get('epoch')})")
    return RunHeads(state, from_yaml(info.config_yaml), path)
