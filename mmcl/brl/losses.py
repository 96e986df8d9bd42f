"""BRL's detached action-aware learning: deferred re-weighting and the action-aware class weights.

- **Class-balanced weights** (Cui et al., 2019; BRL's released configs, ``TwostageCBLoss``):
  ``w_c = (1 - beta) / (1 - beta ** n_c)``, normalised to sum to C. For ``n_c`` well below ``1 / (1 - beta)`` this is
  proportional to ``1 / n_c`` (inverse frequency).
- **Action-aware weights** (BRL's action-aware loss, ``TwostageAALoss``): a class-dependent
  ``beta_c = upsilon + lam * (n_c - n_min) / (n_max - n_min)`` (0.99 for the rarest class, 0.9999 for the most
  frequent), ``w_c = (1 - beta_c) / (1 - beta_c ** n_c)``, normalised to sum to C.
- **Deferred re-weighting** (the "detached" schedule): plain cross-entropy until the switch epoch, the weights from it
  on (the release: from epoch 20 of 24).

:func:`mixed_cross_entropy` applies class weights to the two labels of a mixed batch (:mod:`mmcl.brl.mixup`) as
:func:`torch.nn.functional.cross_entropy` applies them to one: a weighted mean whose weights are the class weight of
each target times its label share. With no mixing it is ``F.cross_entropy(logits, labels, weight=w)``; with no class
weights and one label share for the whole batch it is the release's ``alpha * CE(a) + (1 - alpha) * CE(b)``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from mmcl.brl.config import BRLConfig
from mmcl.distributed import global_mean_share


def _counts(counts: Sequence[int] | np.ndarray) -> np.ndarray:
    n = np.asarray(counts, dtype=np.float64)
    if n.ndim != 1 or len(n) == 0:
        raise ValueError(f"class counts must be a non-empty 1-D sequence, got shape {n.shape}")
    empty = np.flatnonzero(n <= 0)
    if len(empty):
        raise ValueError(f"classes {empty.tolist()} have no training samples; class weights need every class")
    return n


def _normalise(w: np.ndarray) -> np.ndarray:
    return w / w.sum() * len(w)


def class_balanced_weights(counts: Sequence[int] | np.ndarray, beta: float = 0.999) -> np.ndarray:
    """``(1 - beta) / (1 - beta ** n_c)`` normalised to sum to C (Cui et al.'s class-balanced weights)."""
    if not 0 <= beta < 1:
        raise ValueError(f"beta must be in [0, 1), got {beta}")
    n = _counts(counts)
    return _normalise((1 - beta) / (1 - beta ** n))


def action_aware_weights(counts: Sequence[int] | np.ndarray, upsilon: float = 0.99, lam: float = 0.0099) -> np.ndarray:
    """BRL's action-aware weights: ``beta_c = upsilon + lam * (n_c - n_min) / (n_max - n_min)``,
    ``(1 - beta_c) / (1 - beta_c ** n_c)`` normalised to sum to C (all classes equal: uniform weights)."""
    if not (0 <= upsilon and upsilon + lam < 1 and lam >= 0):
        raise ValueError(f"need 0 <= upsilon, 0 <= lam and upsilon + lam < 1, got {upsilon}, {lam}")
    n = _counts(counts)
    span = n.max() - n.min()
    beta = upsilon + lam * ((n - n.min()) / span if span > 0 else np.zeros_like(n))
    return _normalise((1 - beta) / (1 - beta ** n))


def loss_class_weights(cfg: BRLConfig, counts: Sequence[int] | np.ndarray, epoch: int) -> np.ndarray | None:
    """The class weights of the loss in ``epoch`` (0-based), or None for plain cross-entropy.

    Action-aware weights when ``cfg.action_aware`` is on, otherwise class-balanced ones when ``cfg.drw`` is on; with
    ``cfg.drw`` on, only from the 1-based epoch ``cfg.drw.start_epoch``.
    """
    if cfg.drw.enabled and epoch + 1 < cfg.drw.start_epoch:
        return None
    if cfg.action_aware.enabled:
        return action_aware_weights(counts, cfg.action_aware.upsilon, cfg.action_aware.lam)
    if cfg.drw.enabled:
        return class_balanced_weights(counts, cfg.drw.beta)
    return None


def mixed_cross_entropy(logits: torch.Tensor, labels_a: torch.Tensor, labels_b: torch.Tensor | None = None,
                        weight_a: torch.Tensor | None = None, class_weights: torch.Tensor | None = None,
                        label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy of logits (N, C) against two labels per sample shared ``weight_a`` / ``1 - weight_a``, with
    optional class weights (C,): ``sum(s * w[y] * CE(y)) / sum(s * w[y])`` over both labels ``y`` of every sample,
    ``s`` its share. ``label_smoothing`` smooths each per-label cross-entropy. Under several processes both sums run
    over the global batch (:func:`mmcl.distributed.global_mean_share`), as in one process."""
    logits = logits.float()
    if labels_b is None:
        labels_b = labels_a
    if weight_a is None:
        weight_a = torch.ones(len(labels_a), device=logits.device)
    share_a = weight_a.to(logits.device, torch.float32)
    ce_a = F.cross_entropy(logits, labels_a, reduction="none", label_smoothing=label_smoothing)
    ce_b = F.cross_entropy(logits, labels_b, reduction="none", label_smoothing=label_smoothing)
    if class_weights is None:
        wa = wb = torch.ones_like(ce_a)
    else:
        cw = class_weights.to(logits.device, torch.float32)
        wa, wb = cw[labels_a], cw[labels_b]
    num = (share_a * wa * ce_a + (1 - share_a) * wb * ce_b).sum()
    den = (share_a * wa + (1 - share_a) * wb).sum()
    return global_mean_share(num, den, len(logits))
