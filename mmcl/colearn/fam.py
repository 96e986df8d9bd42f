"""FAM, the Feature Alignment Module: the skeleton's global feature is aligned with the RGB teacher's feature.

The visual feature u (the cached per-frame CLIP embeddings, pooled) goes through an MLP, Linear(d_u, 256), ReLU,
Linear(256, 256), to z; :func:`contrastive_loss` aligns the L2-normalised skeleton feature g with z, symmetric, with
intra-modality negatives (REFERENCE section 1.1), over the global batch when several processes train. FAM exists only
at training time.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mmcl.colearn.config import FAMConfig
from mmcl.colearn.pooling import build_pool
from mmcl.distributed import gather_with_grad, global_mean_share, global_sum


def _one_direction(a: torch.Tensor, b_all: torch.Tensor, a_all: torch.Tensor, start: int, tau: float) -> torch.Tensor:
    """l(a_i, b) = -log(e^{s(a_i,b_i)/tau} / (sum_k e^{s(a_i,b_k)/tau} + sum_{k != i} e^{s(a_i,a_k)/tau})) for the rows
    a_i of this process, k over the global batch (``a_all``, ``b_all``) in which row i is ``start + i``."""
    rows = torch.arange(len(a), device=a.device)
    own = torch.zeros(len(a), len(a_all), dtype=torch.bool, device=a.device)
    own[rows, rows + start] = True
    between = a @ b_all.T / tau
    within = (a @ a_all.T / tau).masked_fill(own, float("-inf"))  # any dtype: under autocast the products are bf16
    return torch.logsumexp(torch.cat([between, within], dim=1), dim=1) - between[rows, rows + start]


def contrastive_loss(skeleton: torch.Tensor, visual: torch.Tensor, tau: float = 0.4,
                     mask: torch.Tensor | None = None) -> torch.Tensor:
    """MMCL's FAM loss on two (N, D) batches: mean_i (l(g_i, z) + l(z_i, g)) / 2 on cosine similarities, over the
    samples in ``mask`` (all by default); 0 (keeping the graph) when fewer than two take part.

    Under several processes the sums run over the global batch, as in one process (:mod:`mmcl.distributed`): the
    negatives are every process's samples and the value is this process's share of the global mean.
    """
    if skeleton.shape != visual.shape or skeleton.ndim != 2:
        raise ValueError(f"contrastive_loss needs two (N, D) tensors of one shape, got {tuple(skeleton.shape)} and "
                         f"{tuple(visual.shape)}")
    if mask is None:
        mask = torch.ones(len(skeleton), dtype=torch.bool, device=skeleton.device)
    local = mask.sum()
    if int(global_sum(local)) < 2:  # a contrastive loss needs two samples; keep the graph for DDP
        return (skeleton.sum() + visual.sum()) * 0.0
    g = F.normalize(skeleton.float()[mask], dim=1)
    z = F.normalize(visual.float()[mask], dim=1)
    (g_all, start), (z_all, _) = gather_with_grad(g), gather_with_grad(z)
    rows = (_one_direction(g, z_all, g_all, start, tau) + _one_direction(z, g_all, z_all, start, tau)) / 2
    return global_mean_share(rows.sum(), local.item(), len(skeleton))


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
        loss = contrastive_loss(out["global_feature"], z, self.cfg.tau, batch["teacher_mask"])
        return {"fam": self.cfg.weight * loss}
