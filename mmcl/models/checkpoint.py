"""Loading state dicts from other code bases: the reference CTR-GCN's ``.pt`` files and DataParallel/DDP checkpoints.

mmcl's own checkpoints (safetensors) are written and read by the training engine.
"""

from __future__ import annotations

import pickle
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

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
        ValueError: on shape mismatches (for every key, whatever ``strict`` is).
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
        raise ValueError(f"checkpoint does not fit {type(model).__name__}: {len(mismatches)} shape mismatch(es)\n"
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
        raise ValueError(f"{path}: not a readable torch checkpoint ({err})") from err
    if not isinstance(state_dict, Mapping):
        raise ValueError(f"{path}: expected a state dict (names to tensors), got {type(state_dict).__name__}")
    bad = [k for k, v in state_dict.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        raise ValueError(f"{path}: not a flat state dict; entries that are not tensors: "
                         f"{', '.join(map(repr, bad[:5]))}{' ...' if len(bad) > 5 else ''} "
                         "(if the file wraps a state dict, pass that entry to load_state_dict_flexible)")
    return strip_wrapper_prefixes(state_dict)
