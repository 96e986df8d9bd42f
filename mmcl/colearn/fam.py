"""FAM, the Feature Alignment Module: the skeleton's global feature is aligned with the RGB teacher's feature.

The visual feature u (the cached per-frame CLIP embeddings, pooled) goes through an MLP, Linear(d_u, 256), ReLU,
Linear(256, 256), to z; :func:`contrastive_loss` aligns the L2-normalised skeleton feature g with z, symmetric, with
intra-modality negatives (REFERENCE section 1.1). FAM exists only at training time.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mmcl.colearn.config import FAMConfig
from mmcl.colearn.pooling import build_pool


def _one_direction(a: torch.Tensor, b: torch.Tensor, tau: float) -> torch.Tensor:
    """l(a_i, b) = -log(e^{s(a_i,b_i)/tau} / (sum_k e^{s(a_i,b_k)/tau} + sum_{k != i} e^{s(a_i,a_k)/tau})), per i."""
    between = a @ b.T / tau
    within = a @ a.T / tau
    within = within.masked_fill(torch.eye(len(a), dtype=torch.bool, device=a.device), float("-inf"))
    return torch.logsumexp(torch.cat([between, within], dim=1), dim=1) - between.diagonal()


def contrastive_loss(skeleton: torch.Tensor, visual: torch.Tensor, tau: float = 0.4) -> torch.Tensor:
    """MMCL's FAM loss on two (N, D) batches: mean_i (l(g_i, z) + l(z_i, g)) / 2 on cosine similarities."""
    if skeleton.shape != visual.shape or skeleton.ndim != 2:
        raise ValueError(f"contrastive_loss needs two (N, D) tensors of one shape, got {tuple(skeleton.shape)} and "
                         f"{tuple(visual.shape)}")
    g = F.normalize(skeleton.float(), dim=1)
    z = F.normalize(visual.float(), dim=1)
    return ((_one_direction(g, z, tau) + _one_direction(z, g, tau)) / 2).mean()


class FAM(nn.Module):
    """Projects the pooled visual feature to the backbone width and returns the weighted contrastive loss."""

    def __init__(self, cfg: FAMConfig, visual_dim: int, feature_dim: int):
        super().__init__()
        self.cfg, self.dims = cfg, {"visual_dim": visual_dim, "feature_dim": feature_dim}
        self.pool = build_pool(cfg.pool, visual_dim, "colearn.fam.pool")
        self.proj = nn.Sequential(nn.Linear(visual_dim, cfg.hidden), nn.ReLU(inplace=True),
                                  nn.Linear(cfg.hidden, feature_dim))

    def forward(self, out: dict, batch: dict) -> dict[str, torch.Tensor]:
        z = self.proj(self.pool(batch["visual"]))
        g = out["global_feature"]
        mask = batch["teacher_mask"]
        if int(mask.sum()) < 2:  # a contrastive loss needs two samples; keep the graph for DDP
            return {"fam": (z.sum() + g.sum()) * 0.0}
        return {"fam": self.cfg.weight * contrastive_loss(g[mask], z[mask], self.cfg.tau)}
