"""Pooling a set of teacher vectors (sampled frames, prompts) into one."""

from __future__ import annotations

import torch
from torch import nn


class AttentionPool(nn.Module):
    """Softmax attention of one learned query over a set: (N, K, D) -> (N, D)."""

    def __init__(self, dim: int):
        super().__init__()
        self.query = nn.Parameter(torch.zeros(dim))
        self.key = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = self.key(x) @ self.query / x.shape[-1] ** 0.5  # (N, K); a zero query starts as the mean
        return (scores.softmax(dim=1).unsqueeze(-1) * x).sum(1)


class MeanPool(nn.Module):
    """Mean over the set: (N, K, D) -> (N, D)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(1)


def build_pool(mode: str, dim: int, key: str) -> nn.Module:
    """``mode`` 'mean' or 'attention'; ``key`` names the config key in errors."""
    if mode == "mean":
        return MeanPool()
    if mode == "attention":
        return AttentionPool(dim)
    raise ValueError(f"{key} must be 'mean' or 'attention', got {mode!r}")
