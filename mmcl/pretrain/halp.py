"""HaLP: hallucinating latent positives (Shah et al., CVPR 2023), on top of :class:`~mmcl.pretrain.moco.MoCo`, as
the public release does it (anshulbshah/HaLP ``moco/builder_single_modality_halp.py``, ``moco/generator.py``,
``pretrain_moco_single_modality.py``; NTU-60 script ``scripts/ntu60_xsub_single_modality.sh``).

- **Prototypes**: ``num_prototypes`` (20) centroids of the ``prototype_keys`` (256) most recent queue keys, by
  spherical k-means (:func:`~mmcl.pretrain.sphere.spherical_kmeans`). They are first computed once the HaLP phase has
  pushed ``2 * queue_size + 1`` keys (the queue filled twice), then refreshed every ``refresh_every`` (10) steps.
- **Positives**: for each key (anchor) ``k``, ``num_positives`` (100) points. Each picks a target prototype uniformly
  among the ``num_candidates`` (20) most similar ones after skipping the ``skip_closest`` (1) closest: with 20
  prototypes, any prototype but the key's nearest. It slides ``k`` along the great circle toward the target by
  ``t = (1 - lam) t_max`` of the arc, ``lam ~ U(0, lam_max)`` (0.8), with :func:`hallucinate`.
- **Rank filter**: a generated point is kept only if its nearest prototype is still the key's nearest.
- **Loss**: ``weight * -(sum over kept points of q . z / T) / (number kept)`` (``weight`` = the release's ``mu``, 2
  in its NTU scripts), added to MoCo's loss. No gradient flows through the generated points.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmcl.distributed import world_size
from mmcl.pretrain.moco import MoCo
from mmcl.pretrain.sphere import spherical_kmeans

__all__ = ["t_max", "hallucinate", "rank_filter", "HaLP"]


def t_max(anchor: Tensor, target: Tensor, nearest: Tensor) -> Tensor:
    """The release's closed form: the largest fraction ``t`` of the arc from ``anchor`` to ``target`` at which the
    point is still no closer to ``target`` than to ``nearest`` (at ``t_max`` it is equally close to both).

    With ``w`` the angle between anchor and target, ``a = anchor . (nearest - target)`` and
    ``b = 1 - target . nearest``, the point ``z(t) = [sin((1 - t) w) anchor + sin(t w) target] / sin w`` satisfies
    ``z . target = z . nearest`` where ``tan(t w) = a sin w / (b + a cos w)``. The release evaluates
    ``atan(sin w / (K + cos w)) / w`` with ``K = b / a``; ``atan2`` is the same value whenever that denominator is
    positive and stays on the arc (``t`` in [0, 1]) when it is not. Inputs (B, D) unit rows; output (B,).
    """
    cos_w = (anchor * target).sum(-1).clamp(-1.0, 1.0)
    omega = torch.arccos(cos_w)
    a = (anchor * (nearest - target)).sum(-1)
    b = 1.0 - (target * nearest).sum(-1)
    angle = torch.atan2(a * torch.sin(omega), b + a * cos_w)
    return torch.where(omega > 1e-6, angle / omega.clamp_min(1e-6), torch.zeros_like(omega))


def hallucinate(anchor: Tensor, target: Tensor, nearest: Tensor, lam: Tensor) -> Tensor:
    """Points on the great circle from ``anchor`` toward ``target`` at ``t = (1 - lam) * t_max``.

    Args:
        anchor: (B, D) unit keys.
        target: (B, D) the chosen prototypes (unit).
        nearest: (B, D) each anchor's most similar prototype (unit).
        lam: (B,) hardness in [0, 1]: 0 gives the hardest positive (at ``t_max``), 1 the anchor itself.

    Returns:
        (B, D) unit points: ``[sin((1 - t) w) anchor + sin(t w) target] / sin w``, ``w`` the anchor-target angle.
    """
    if not (anchor.shape == target.shape == nearest.shape) or lam.shape != anchor.shape[:1]:
        raise ValueError(f"hallucinate expects anchor, target, nearest (B, D) and lam (B,), got "
                         f"{tuple(anchor.shape)}, {tuple(target.shape)}, {tuple(nearest.shape)}, {tuple(lam.shape)}")
    t = ((1.0 - lam) * t_max(anchor, target, nearest)).unsqueeze(-1)
    omega = torch.arccos((anchor * target).sum(-1, keepdim=True).clamp(-1.0, 1.0))
    sin_w = torch.sin(omega)
    arc = sin_w > 1e-6  # otherwise anchor and target (nearly) coincide: the chord's limit
    coef_anchor = torch.where(arc, torch.sin((1 - t) * omega) / sin_w.clamp_min(1e-6), 1 - t)
    coef_target = torch.where(arc, torch.sin(t * omega) / sin_w.clamp_min(1e-6), t)
    return F.normalize(coef_anchor * anchor + coef_target * target, dim=-1)


def rank_filter(points: Tensor, prototypes: Tensor, nearest_index: Tensor) -> Tensor:
    """Mask (B, P) of the generated ``points`` (B, P, D) whose most similar prototype is still ``nearest_index`` (B,)."""
    return (points @ prototypes.t()).argmax(-1) == nearest_index.unsqueeze(1)


class HaLP(MoCo):
    """MoCo plus hallucinated positives (see the module docstring; defaults are the release's NTU-60 settings).

    ``forward(query, key, hallucinate=True)``: with ``hallucinate`` false the step is plain MoCo (the release
    pre-trains 200 epochs of MoCo before HaLP). Progress (keys seen, steps, prototype refreshes) lives in buffers, so
    a resumed run continues exactly; the k-means of refresh ``r`` is seeded with ``(seed, r)``.
    """

    def __init__(self, encoder: nn.Module, dim: int = 128, queue_size: int = 16384, momentum: float = 0.999,
                 temperature: float = 0.07, mlp: bool = True, num_prototypes: int = 20, prototype_keys: int = 256,
                 refresh_every: int = 10, num_positives: int = 100, num_candidates: int = 20, skip_closest: int = 1,
                 lam_max: float = 0.8, weight: float = 2.0, seed: int = 0) -> None:
        super().__init__(encoder, dim=dim, queue_size=queue_size, momentum=momentum, temperature=temperature, mlp=mlp)
        if not num_prototypes <= prototype_keys <= queue_size:
            raise ValueError(f"need num_prototypes ({num_prototypes}) <= prototype_keys ({prototype_keys}) <= "
                             f"queue_size ({queue_size})")
        if not 0 < skip_closest < num_prototypes or num_candidates < 1:
            raise ValueError(f"skip_closest must be in 1..{num_prototypes - 1} and num_candidates positive")
        if not 0 <= lam_max <= 1:
            raise ValueError(f"lam_max must lie in [0, 1], got {lam_max}")
        self.num_prototypes, self.prototype_keys, self.refresh_every = num_prototypes, prototype_keys, refresh_every
        self.num_positives, self.num_candidates, self.skip_closest = num_positives, num_candidates, skip_closest
        self.lam_max, self.weight, self.seed = lam_max, weight, seed
        self.warmup_keys = 2 * queue_size + 1
        self.register_buffer("prototypes", torch.zeros(num_prototypes, dim))
        self.register_buffer("keys_seen", torch.zeros((), dtype=torch.long))  # keys enqueued in the HaLP phase
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))  # HaLP-phase steps
        self.register_buffer("refreshes", torch.zeros((), dtype=torch.long))

    @property
    def ready(self) -> bool:
        """Whether prototypes exist (the HaLP phase has filled the queue twice)."""
        return int(self.refreshes) > 0

    def recent_keys(self) -> Tensor:
        """The ``prototype_keys`` most recently enqueued keys (n, dim)."""
        ptr, size = int(self.queue_ptr), self.queue_size
        index = (ptr - self.prototype_keys + torch.arange(self.prototype_keys)) % size
        return self.queue[:, index.to(self.queue.device)].t()

    @torch.no_grad()
    def refresh_prototypes(self) -> None:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + int(self.refreshes))
        centroids = spherical_kmeans(self.recent_keys(), self.num_prototypes, generator)
        self.prototypes.copy_(centroids.to(self.prototypes))
        self.refreshes += 1

    @torch.no_grad()
    def positives(self, keys: Tensor) -> tuple[Tensor, Tensor]:
        """Hallucinated positives (B, P, D) of unit ``keys`` (B, D) and the rank filter's mask (B, P)."""
        b, d = keys.shape
        p = self.num_positives
        prototypes = self.prototypes.float()
        order = (keys @ prototypes.t()).argsort(dim=1, descending=True)
        nearest_index = order[:, 0]
        candidates = order[:, self.skip_closest:self.skip_closest + self.num_candidates]
        pick = torch.randint(candidates.shape[1], (b, p), device=keys.device)
        target = prototypes[candidates.gather(1, pick)]  # (B, P, D)
        lam = torch.empty(b * p, device=keys.device).uniform_(0, self.lam_max)
        anchor = keys.unsqueeze(1).expand(b, p, d).reshape(-1, d)
        nearest = prototypes[nearest_index].unsqueeze(1).expand(b, p, d).reshape(-1, d)
        points = hallucinate(anchor, target.reshape(-1, d), nearest, lam).view(b, p, d)
        return points, rank_filter(points, prototypes, nearest_index)

    def forward(self, query: Tensor, key: Tensor, hallucinate: bool = True) -> dict:
        out = self.contrast(query, key)
        if hallucinate and not self.ready and int(self.keys_seen) >= self.warmup_keys:
            self.refresh_prototypes()
        if hallucinate and self.ready:
            points, keep = self.positives(out["k"])
            with torch.autocast(out["q"].device.type, enabled=False):
                similarity = torch.einsum("nd,npd->np", out["q"], points) / self.temperature
                kept = keep.sum()
                out["losses"]["halp"] = self.weight * -(similarity * keep).sum() / (kept + 1e-8)
            out["kept_fraction"] = kept.float() / keep.numel()
        self.enqueue(out["k"])
        if hallucinate:
            self.keys_seen += out["k"].shape[0] * world_size()
            self.steps += 1
            if self.ready and int(self.steps) % self.refresh_every == 0:
                self.refresh_prototypes()
        out["loss"] = torch.stack(list(out["losses"].values())).sum()
        return out
