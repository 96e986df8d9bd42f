"""Open-vocabulary head: the skeleton feature projected into the teacher's text space.

Beyond the paper: during co-learning a small MLP maps the global skeleton feature g (N, 256) to the text-embedding
space of the teacher's text encoder, trained so that it is closest to its own class's text (cross-entropy over cosine
similarities with the class-name or class-description embeddings) and, optionally, near the mean embedding of the
sample's LLM answers. At zero-shot time :func:`open_vocab_scores` ranks any class, named or described in text, by
cosine similarity to the projected feature (:meth:`OpenVocabHead.project`).
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
    """MLP(feature_dim -> hidden -> text_dim) trained against class texts (C, text_dim) (and the samples' answers).

    ``class_text`` is what training scores against; :meth:`project` alone needs none (a head loaded for zero-shot
    scores the projected features against the target's class texts).
    """

    def __init__(self, cfg: OpenVocabConfig, feature_dim: int, text_dim: int, class_text: torch.Tensor | None = None):
        super().__init__()
        self.cfg, self.dims = cfg, {"feature_dim": feature_dim, "text_dim": text_dim}
        if class_text is not None and (class_text.ndim != 2 or class_text.shape[1] != text_dim):
            raise ValueError(f"class texts of shape {tuple(class_text.shape)}, expected (C, {text_dim})")
        self.proj = nn.Sequential(nn.Linear(feature_dim, cfg.hidden), nn.ReLU(inplace=True),
                                  nn.Linear(cfg.hidden, text_dim))
        self.register_buffer("class_text", None if class_text is None else class_text.float(), persistent=False)

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """Global skeleton features (N, feature_dim) -> the text space (N, text_dim)."""
        return self.proj(features)

    def forward(self, out: dict, batch: dict) -> dict[str, torch.Tensor]:
        if self.class_text is None:
            raise ValueError("the open-vocabulary head trains against class texts; it was built without them")
        projected = self.project(out["global_feature"])
        loss = F.cross_entropy(open_vocab_scores(projected, self.class_text) / self.cfg.tau, batch["label"])
        if self.cfg.answer_weight:
            mask = batch["teacher_mask"]
            answers = batch["text"].mean(1)
            distance = 1 - F.cosine_similarity(projected, answers, dim=-1)
            loss = loss + self.cfg.answer_weight * (distance * mask).sum() / mask.sum().clamp(min=1)
        return {"openvocab": self.cfg.weight * loss}
