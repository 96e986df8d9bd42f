"""Tuned teacher weights on disk: what ``mmcl tune-teacher`` saves and what the teachers load on top of their base model.

Visual (the CLIP image tower), one of:

- a peft LoRA adapter (``adapter_config.json`` + ``adapter_model.safetensors``, written by ``save_pretrained``), merged
  into the tower when loaded;
- the whole tower's weights, ``visual.safetensors`` (full fine-tuning, the tiny random model's case).

Language (the vision-language model): a peft LoRA adapter; when tuning had to add words to a word-level tokenizer
(the tiny model's) or changed the image processor's settings, the processor is saved beside it (and the base model's
embeddings are resized to its tokenizer before the adapter is loaded).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from mmcl.errors import CheckpointError

PEFT_CONFIG = "adapter_config.json"
FULL_VISUAL = "visual.safetensors"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


class AdapterError(CheckpointError):
    """A tuned-teacher directory is missing or does not hold what it should; the message names the path."""


def _require_dir(path: str | os.PathLike, what: str) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise AdapterError(f"{what} adapter not found: {path} is not a directory (run `mmcl tune-teacher`)")
    return path


def save_full_visual(tower: nn.Module, path: str | os.PathLike) -> Path:
    """Save a fully fine-tuned image tower as ``<path>/visual.safetensors``."""
    from safetensors.torch import save_file

    from mmcl.io import atomic_path

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in tower.state_dict().items()}
    with atomic_path(path / FULL_VISUAL) as tmp:
        save_file(state, tmp, metadata={"format": "mmcl-visual-tower"})
    return path / FULL_VISUAL


def load_visual_adapter(tower: nn.Module, path: str | os.PathLike) -> nn.Module:
    """The image tower ``tower`` with the tuned weights in ``path`` applied (LoRA merged); returns the tower to use."""
    path = _require_dir(path, "visual")
    if (path / FULL_VISUAL).is_file():
        from safetensors.torch import load_file

        state = load_file(path / FULL_VISUAL)
        missing, unexpected = tower.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise AdapterError(f"{path / FULL_VISUAL} does not fit the configured CLIP image tower "
                               f"(missing {missing[:5]}, unexpected {unexpected[:5]})")
        return tower
    if (path / PEFT_CONFIG).is_file():
        from peft import PeftModel

        return PeftModel.from_pretrained(tower, str(path)).merge_and_unload()
    raise AdapterError(f"{path} holds neither a peft adapter ({PEFT_CONFIG}) nor tuned tower weights ({FULL_VISUAL})")


def has_processor(path: str | os.PathLike) -> bool:
    """Whether a language adapter directory carries its own (extended) processor."""
    return all((Path(path) / f).is_file() for f in TOKENIZER_FILES)


def load_language_adapter(model, path: str | os.PathLike, num_tokens: int):
    """The vision-language ``model`` with the LoRA adapter in ``path`` merged; ``num_tokens``: the size of the
    tokenizer that goes with it (the base model's embeddings are resized to it first when words were added)."""
    from peft import PeftModel

    path = _require_dir(path, "language")
    if not (path / PEFT_CONFIG).is_file():
        raise AdapterError(f"{path} holds no peft adapter ({PEFT_CONFIG})")
    if model.get_input_embeddings().num_embeddings != num_tokens:
        model.resize_token_embeddings(num_tokens)
    with torch.no_grad():
        return PeftModel.from_pretrained(model, str(path)).merge_and_unload()


def lora_config(settings, **extra):
    """A peft ``LoraConfig`` from LoRA settings (rank, alpha, dropout, target modules; ``["all-linear"]`` is peft's
    shortcut for every linear layer but the output head)."""
    from peft import LoraConfig

    targets = settings.target_modules
    return LoraConfig(r=settings.rank, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                      target_modules=targets[0] if list(targets) == ["all-linear"] else list(targets), **extra)
