"""BRL's spatial-temporal action exploration: the rebalanced partial mixup of a training batch.

A fraction ``ratio`` of the batch is mixed: such a sample ``a`` keeps its upper body and takes, over every frame and
person, the lower body (spine base, hips, legs: :func:`body_halves`) of a partner ``b`` from the same batch. Its
label is shared by how much of each sample remains, ``weight_a = |upper| / V`` (16/25 = 0.64 on NTU-25, BRL's
``alpha``) for ``a`` and the rest for ``b``, rebalanced as in Remix: when ``n_a > kappa * n_b`` (training samples of
the two classes) the whole label goes to ``b``, when ``n_b > kappa * n_a`` to ``a`` (BRL: ``kappa = 3``, ratio 1/16).
Partners are drawn class-balanced by default: ``b`` with probability proportional to ``1 / n_b`` among the other
samples of the batch, so tail classes are explored more often.

Where mmcl departs from BRL's release (``brl/models/recognizers/mixup_recognizergcn.py``), to do what the paper
describes:

- the release writes the mixed joints into the batch it was given (``new_keypoint = keypoint``), so a sample mixed
  earlier can lend already-mixed joints to a later one, and the caller's batch changes; here the source batch is never
  modified and every lower body comes from the original samples;
- it concatenates the upper-body joints and the partner's lower-body joints and writes that over joints 0 … V-1, which
  permutes the joint order (joint 0 receives joint 1, …); here every joint stays in its place;
- it removes the mixed sample from the list it is iterating (``new_list = data_list`` is the same list), which skips
  samples; here exactly ``int(ratio * N)`` distinct samples are mixed;
- it applies one label weight, that of the last mixed pair, to the whole batch; here each mixed sample has its own;
- it draws partners uniformly (``partner="uniform"`` does the same).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from mmcl.brl.config import PARTNERS
from mmcl.data.layouts import Layout


def body_halves(layout: Layout) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(upper, lower) 0-based joints: the lower body is the layout's ``legs`` part (spine base, hips, legs), BRL's
    lower body on NTU-25 and NW-UCLA; the upper body is every other joint."""
    if "legs" not in layout.parts:
        raise ValueError(f"layout {layout.name!r} names no 'legs' part, which the partial mixup swaps")
    lower = tuple(sorted(layout.parts["legs"]))
    upper = tuple(j for j in range(layout.num_joints) if j not in set(lower))
    return upper, lower


@dataclass
class MixedBatch:
    """A mixed batch: inputs, the two labels of every sample and the weight of the first (``1 - weight_a`` for the
    second). Unmixed samples have ``labels_b == labels_a``, ``weight_a == 1`` and ``partner == -1``."""

    x: torch.Tensor
    labels_a: torch.Tensor
    labels_b: torch.Tensor
    weight_a: torch.Tensor
    partner: torch.Tensor

    def targets(self, num_classes: int) -> torch.Tensor:
        """Soft targets (N, num_classes): ``weight_a`` on ``labels_a`` plus ``1 - weight_a`` on ``labels_b``."""
        eye = torch.eye(num_classes, dtype=self.weight_a.dtype, device=self.weight_a.device)
        w = self.weight_a[:, None]
        return w * eye[self.labels_a] + (1 - w) * eye[self.labels_b]


def partial_mixup(x: torch.Tensor, labels: torch.Tensor, class_counts: Sequence[float] | torch.Tensor,
                  lower: Sequence[int], ratio: float = 1 / 16, kappa: float = 3.0, partner: str = "balanced",
                  generator: torch.Generator | None = None) -> MixedBatch:
    """Mix ``int(ratio * N)`` samples of the batch ``x`` (N, C, T, V, M) with partners from the same batch.

    ``class_counts``: training samples per class (C,); ``lower``: the joints taken from the partner
    (:func:`body_halves`); ``generator``: a CPU generator for the draws. ``x`` and ``labels`` are not modified.
    """
    if x.dim() != 5:
        raise ValueError(f"expected a batch of shape (N, C, T, V, M), got {tuple(x.shape)}")
    if partner not in PARTNERS:
        raise ValueError(f"partner must be one of {PARTNERS}, got {partner!r}")
    if not 0 <= ratio <= 1:
        raise ValueError(f"ratio must be in [0, 1], got {ratio}")
    n, v = x.shape[0], x.shape[3]
    lower_idx = torch.as_tensor(list(lower), dtype=torch.long)
    if len(lower_idx) == 0 or len(lower_idx) >= v or int(lower_idx.min()) < 0 or int(lower_idx.max()) >= v:
        raise ValueError(f"lower-body joints {list(lower)} are not a proper subset of the {v} joints")
    counts = torch.as_tensor(class_counts, dtype=torch.float64).cpu()
    labels_cpu = labels.detach().cpu().long()
    if int(labels_cpu.max()) >= len(counts) or bool((counts[labels_cpu] <= 0).any()):
        raise ValueError("every label of the batch needs a positive training count in class_counts")
    weight_a = torch.ones(n, dtype=torch.float32)
    partners = torch.full((n,), -1, dtype=torch.long)
    labels_b = labels_cpu.clone()
    k = int(ratio * n) if n >= 2 else 0
    out = x.clone()
    if k > 0:
        chosen = torch.randperm(n, generator=generator)[:k]
        base = (1 / counts[labels_cpu]) if partner == "balanced" else torch.ones(n, dtype=torch.float64)
        probs = base.expand(k, n).clone()
        probs[torch.arange(k), chosen] = 0  # never the sample itself
        drawn = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        mixed = x[chosen.to(x.device)].clone()
        mixed[:, :, :, lower_idx.to(x.device)] = x[drawn.to(x.device)][:, :, :, lower_idx.to(x.device)]
        out[chosen.to(x.device)] = mixed
        n_a, n_b = counts[labels_cpu[chosen]], counts[labels_cpu[drawn]]
        w = torch.full((k,), (v - len(lower_idx)) / v, dtype=torch.float64)
        w[n_a > kappa * n_b] = 0.0
        w[n_b > kappa * n_a] = 1.0
        weight_a[chosen] = w.float()
        partners[chosen] = drawn
        labels_b[chosen] = labels_cpu[drawn]
    device = labels.device
    return MixedBatch(out, labels_cpu.to(device), labels_b.to(device), weight_a.to(device), partners.to(device))
