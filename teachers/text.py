"""Text encoders: LLM answers and class names/descriptions -> fixed-size vectors (N, D_t) float32.

``kind: hf``: a sentence-embedding model (e.g. all-MiniLM-L6-v2) through ``AutoTokenizer`` + ``AutoModel``; the
sentence vector is the attention-masked mean of the last hidden states (sentence-transformers' mean pooling:
``sum_t(h_t * m_t) / max(sum_t m_t, 1e-9)``) or the first token (``pooling: cls``), then L2-normalised if configured.
``kind: clip``: the CLIP teacher's text tower.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from teachers.clip import ClipTeacher
from teachers.config import TextEncoderConfig


class TextEncoder(Protocol):
    dim: int

    def encode(self, texts: list[str]) -> np.ndarray:
        """Texts -> (N, dim) float32."""


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``hidden`` (N, L, D) over the positions where ``mask`` (N, L) is 1."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


class HFTextEncoder:
    """A transformers encoder with masked mean (or CLS) pooling."""

    def __init__(self, config: TextEncoderConfig, device: torch.device | str = "cpu", batch_size: int = 64):
        from transformers import AutoModel, AutoTokenizer

        self.config = config
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.tokenizer = AutoTokenizer.from_pretrained(config.model, revision=config.revision)
        self.model = AutoModel.from_pretrained(config.model, revision=config.revision).to(self.device).eval()
        self.dim = int(self.model.config.hidden_size)

    @torch.inference_mode()
    def encode(self, texts: list[str]) -> np.ndarray:
        out = []
        for start in range(0, len(texts), self.batch_size):
            enc = self.tokenizer(texts[start:start + self.batch_size], padding=True, truncation=True,
                                 max_length=self.config.max_length, return_tensors="pt").to(self.device)
            hidden = self.model(**enc).last_hidden_state.float()
            emb = masked_mean(hidden, enc["attention_mask"]) if self.config.pooling == "mean" else hidden[:, 0]
            if self.config.normalize:
                emb = torch.nn.functional.normalize(emb, dim=-1)
            out.append(emb.cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, self.dim), np.float32)


class ClipTextEncoder:
    """The CLIP teacher's text tower as the text encoder (its embeddings are always L2-normalised)."""

    def __init__(self, clip: ClipTeacher, batch_size: int = 64):
        self.clip = clip
        self.batch_size = batch_size
        self.dim = clip.dim  # CLIP's image and text embeddings share one space

    def encode(self, texts: list[str]) -> np.ndarray:
        out = [self.clip.encode_text(texts[s:s + self.batch_size]).cpu() for s in range(0, len(texts), self.batch_size)]
        return torch.cat(out).numpy() if out else np.zeros((0, self.dim), np.float32)


def build_text_encoder(config: TextEncoderConfig, clip: ClipTeacher, device: torch.device | str = "cpu",
                       batch_size: int = 64) -> TextEncoder:
    """The configured text encoder (``clip`` is the CLIP teacher, used when ``kind`` is ``clip``)."""
    if config.kind == "clip":
        return ClipTextEncoder(clip, batch_size)
    return HFTextEncoder(config, device, batch_size)
