"""Deployable skeleton models: the registry (``create_model``, ``list_models``, ``register_model``), one file per
model (CTR-GCN; CTR-GCN with the M-Mixer or 3D deformable skeleton-only path) and checkpoints (:mod:`.checkpoint`).

Nothing here imports training code (:mod:`mmcl.colearn`, :mod:`mmcl.engine`, ``teachers``).

``import mmcl.models`` stays cheap: torch and the model code load on first use of a model or helper.
"""

from __future__ import annotations

import importlib
from typing import Any

from mmcl.models.registry import create_model, list_models, register_model

_LAZY = {
    "CTRGCN": "mmcl.models.ctrgcn",
    "load_state_dict_flexible": "mmcl.models.checkpoint",
    "load_reference_checkpoint": "mmcl.models.checkpoint",
}

__all__ = ["create_model", "list_models", "register_model", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mmcl.models' has no attribute {name!r}")
