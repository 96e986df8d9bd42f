"""Open-vocabulary head: the skeleton feature projected into the teacher's text space.

Beyond the paper: during co-learning a small MLP maps the global skeleton feature g (N, 256) to the text-embedding
space of the teacher's text encoder, trained so that it is closest to its own class's text (cross-entropy over cosine
similarities with the class-name or class-description embeddings) and, optionally, near the mean embedding of the
sample's LLM answers. At zero-shot time :func:`open_vocab_scores` ranks any class, named or described in text, by
cosine similarity to the projected feature.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mmcl.colearn.config import OpenVocabConfig


def open_vocab_scores(projected: torch.Tensor, class_text: torch.Tensor) -> torch.Tensor:
    """Cosine similarities (N, C) between projected skeleton features (N, D_t) and class texts (C, D_t)."""
    return F.normalize(projected, dim=-1) @ F.normalize(class_text, dim=-1).T


class OpenVocabHead(nn.Module):
    """MLP(256 -> hidden -> D_t) trained against class texts (and the samples' answers)."""

    def __init__(self, cfg: OpenVocabConfig, feature_dim: int, class_text: torch.Tensor):
        super().__init__()
        self.cfg = cfg
        text_dim = class_text.shape[1]
        self.proj = nn.Sequential(nn.Linear(feature_dim, cfg.hidden), nn.ReLU(inplace=True),
                                  nn.Linear(cfg.hidden, text_dim))
        self.register_buffer("class_text", class_text.float(), persistent=False)

    def forward(self, out: dict, batch: dict) -> dict[str, torch.Tensor]:
        projected = self.proj(out["global_feature"])
        loss = F.cross_entropy(open_vocab_scores(projected, self.class_text) / self.cfg.tau, batch["label"])
        if self.cfg.answer_weight:
            mask = batch["teacher_mask"]
            answers = batch["text"].mean(1)
            distance = 1 - F.cosine_similarity(projected, answers, dim=-1)
            loss = loss + self.cfg.answer_weight * (distance * mask).sum() / mask.sum().clamp(min=1)
        return {"openvocab": self.cfg.weight * loss}
