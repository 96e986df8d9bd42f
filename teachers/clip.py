"""The CLIP visual teacher through open_clip: sampled frames -> per-frame image embeddings (k, D).

``model`` is an open_clip model name, ``pretrained`` a tag (``openai``) or a local checkpoint file; a custom model
config JSON (the tiny teacher's) is registered with ``open_clip.add_model_config`` first. Weights are required:
``require_pretrained`` makes open_clip fail rather than fall back to a random model.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from teachers.config import ClipConfig

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def register_model_config(model: str, config_path: str | Path) -> None:
    """Register a model config JSON with open_clip; its file stem must be the model name."""
    import open_clip

    path = Path(config_path)
    if not path.is_file():
        raise FileNotFoundError(f"clip.model_config: {path} not found")
    if path.stem != model:
        raise ValueError(f"clip.model_config {path} registers model {path.stem!r}, but clip.model is {model!r}")
    cfg = json.loads(path.read_text())
    missing = [k for k in ("embed_dim", "vision_cfg", "text_cfg") if k not in cfg]
    if missing:
        raise ValueError(f"clip.model_config {path}: missing keys {missing}")
    open_clip.add_model_config(path)


def preprocess_frames(preprocess, frames: np.ndarray) -> torch.Tensor:
    """Frames (k, H, W, 3) uint8 -> open_clip's input (k, 3, S, S) float32 through its ``preprocess`` transform."""
    return torch.stack([preprocess(Image.fromarray(f)) for f in frames])


def autocast(device: torch.device, precision: str):
    """An autocast context for ``precision`` (``fp32``: none)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=AUTOCAST_DTYPES[precision])


class ClipTeacher:
    """An open_clip model in eval mode with its image preprocessing and tokenizer."""

    def __init__(self, config: ClipConfig, device: torch.device | str = "cpu"):
        import open_clip

        self.config = config
        self.device = torch.device(device)
        if config.model_config:
            register_model_config(config.model, config.model_config)
        model, _, preprocess = open_clip.create_model_and_transforms(
            config.model, pretrained=config.pretrained, device=self.device, require_pretrained=True)
        if config.adapter:
            from teachers.adapters import load_visual_adapter

            model.visual = load_visual_adapter(model.visual, config.adapter).to(self.device)
        self.model = model.eval().requires_grad_(False)
        self.preprocess = preprocess
        self.tokenizer = open_clip.get_tokenizer(config.model)
        known = open_clip.get_model_config(config.model)  # None for hf-hub models, whose ViT towers say it
        self.dim = int(known["embed_dim"]) if known else int(self.model.visual.output_dim)

    @torch.inference_mode()
    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        """Preprocessed images (N, 3, S, S) -> embeddings (N, D) float32 (L2-normalised if configured)."""
        with autocast(self.device, self.config.precision):
            emb = self.model.encode_image(pixels.to(self.device, non_blocking=True))
        emb = emb.float()
        return torch.nn.functional.normalize(emb, dim=-1) if self.config.normalize else emb

    @torch.inference_mode()
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """Texts -> CLIP text embeddings (N, D) float32, L2-normalised (CLIP's text space)."""
        tokens = self.tokenizer(texts).to(self.device)
        with autocast(self.device, self.config.precision):
            emb = self.model.encode_text(tokens)
        return torch.nn.functional.normalize(emb.float(), dim=-1)
