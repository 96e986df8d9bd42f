"""FRM, the Feature Refinement Module: the LLM's instructive text refines the classification scores.

Text features (one vector per prompt, any dimension) are pooled over prompts and mapped by an MLP,
Linear(d_f, 64), ReLU, Linear(64, 2), to p = softmax; the refined scores are
S_R = (p_0 M_pos + p_1 M_neg) ⊙ S_M with learnable M_pos, M_neg (num_classes,) initialised to 1, and the loss is
CE(S_R, y) (``mode: refine``, weight 0.2, as released). ``mode: soft_label`` instead turns the similarities between
the sample's answer embeddings and the class-description embeddings into a soft target for S_M, trained with KL at
a temperature. Inference uses S_M alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mmcl.colearn.config import FRMConfig
from mmcl.colearn.pooling import build_pool


def refine_logits(logits: torch.Tensor, probs: torch.Tensor, m_pos: torch.Tensor, m_neg: torch.Tensor) -> torch.Tensor:
    """S_R = (p_0 M_pos + p_1 M_neg) ⊙ S_M for logits (N, C), probs (N, 2), m_pos and m_neg (C,)."""
    return (probs[:, :1] * m_pos + probs[:, 1:2] * m_neg) * logits


def soft_targets(text: torch.Tensor, class_text: torch.Tensor, temperature: float) -> torch.Tensor:
    """softmax over classes of the mean (over prompts) cosine similarity of answers (N, P, D) and classes (C, D)."""
    sim = F.normalize(text, dim=-1) @ F.normalize(class_text, dim=-1).T  # (N, P, C)
    return (sim.mean(1) / temperature).softmax(dim=1)


class FRM(nn.Module):
    """Refines the backbone's logits with text features (or soft-labels them) and returns the weighted loss."""

    def __init__(self, cfg: FRMConfig, text_dim: int, num_classes: int, class_text: torch.Tensor | None = None):
        super().__init__()
        self.cfg, self.dims = cfg, {"text_dim": text_dim, "num_classes": num_classes}
        if cfg.mode == "refine":
            self.pool = build_pool(cfg.pool, text_dim, "colearn.frm.pool")
            self.mlp = nn.Sequential(nn.Linear(text_dim, cfg.hidden), nn.ReLU(inplace=True),
                                     nn.Linear(cfg.hidden, 2))
            self.m_pos = nn.Parameter(torch.ones(num_classes))
            self.m_neg = nn.Parameter(torch.ones(num_classes))
        elif cfg.mode == "soft_label":
            # the class-description embeddings (C, D_t) of the teacher cache; a head rebuilt from a heads file has
            # none (they are not trained) and cannot compute its loss
            if class_text is not None and tuple(class_text.shape) != (num_classes, text_dim):
                raise ValueError(f"colearn.frm.mode soft_label needs class-description embeddings of shape "
                                 f"({num_classes}, {text_dim}) from the teacher cache, got {tuple(class_text.shape)}")
            self.register_buffer("class_text", None if class_text is None else class_text.float(), persistent=False)
        else:
            raise ValueError(f"colearn.frm.mode must be 'refine' or 'soft_label', got {cfg.mode!r}")

    def probs(self, text: torch.Tensor) -> torch.Tensor:
        """p (N, 2) from text features (N, P, D_t)."""
        return self.mlp(self.pool(text)).softmax(dim=1)

    def refined(self, logits: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """S_R for the backbone's logits and the samples' text features."""
        return refine_logits(logits, self.probs(text), self.m_pos, self.m_neg)

    def forward(self, out: dict, batch: dict) -> dict[str, torch.Tensor]:
        logits, text, mask = out["logits"], batch["text"], batch["teacher_mask"]
        if self.cfg.mode == "refine":
            refined = self.refined(logits, text)
            if not mask.any():  # no teacher text in this batch: a zero that keeps every parameter in the graph
                return {"frm": refined.sum() * 0.0}
            return {"frm": self.cfg.weight * F.cross_entropy(refined[mask], batch["label"][mask])}
        if self.class_text is None:
            raise ValueError("a soft-label FRM needs the class-description embeddings of the teacher cache")
        t = self.cfg.temperature
        target = soft_targets(text, self.class_text, t)
        kl = F.kl_div(F.log_softmax(logits / t, dim=1), target, reduction="none").sum(1) * t * t
        return {"frm": self.cfg.weight * (kl * mask).sum() / mask.sum().clamp(min=1)}
