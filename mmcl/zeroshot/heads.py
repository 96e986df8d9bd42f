"""Finding the source run's training-time heads, as refinement and open-vocabulary scoring need them.

A co-learning run saves ``best_heads.safetensors`` beside ``best.safetensors`` (same epoch, same metadata); the heads
of checkpoint ``<stem>.safetensors`` are looked for at ``<stem>_heads.safetensors`` unless given. Heads saved with
another run or epoch than the checkpoint are refused. The heads themselves are loaded by name with
:func:`mmcl.colearn.heads.load_head`.
"""

from __future__ import annotations

import os
from pathlib import Path

from mmcl.colearn.heads import read_heads
from mmcl.errors import CheckpointError
from mmcl.models.checkpoint import CheckpointInfo


def heads_path(checkpoint: str | os.PathLike) -> Path:
    """Where the heads of a deployable checkpoint are saved: ``best.safetensors`` -> ``best_heads.safetensors``."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(f"{checkpoint.stem}_heads.safetensors")


def run_heads_file(checkpoint: str | os.PathLike, info: CheckpointInfo, path: str | os.PathLike | None = None) -> Path:
    """The heads file saved with ``checkpoint`` (at :func:`heads_path` unless ``path``), checked to be of its epoch."""
    path = Path(path) if path is not None else heads_path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"no co-learning heads for {checkpoint}: {path} not found. Refinement and "
                                f"open-vocabulary scoring need the heads saved with the checkpoint (a co-learning "
                                f"run writes best_heads.safetensors beside best.safetensors); pass --heads")
    heads_info, _ = read_heads(path)
    if heads_info.config_yaml != info.config_yaml or heads_info.extra.get("epoch") != info.extra.get("epoch"):
        raise CheckpointError(f"{path} was saved with another run or epoch (epoch {heads_info.extra.get('epoch')}) "
                              f"than {checkpoint} (epoch {info.extra.get('epoch')})")
    return path
