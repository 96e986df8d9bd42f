"""Training the cross-modal variants (M-Mixer, 3D deformable): real visual tokens, modality dropout, distillation.

A variant's deployable part, its skeleton-only path (hallucinator + fused classifier), is defined with the deployed
model in :mod:`mmcl.models` (:mod:`mmcl.models.crossmodal`); this module adds what only training needs:

- the visual tokens (:class:`VisualTokens`, visual-only): the per-frame visual features (N, k, D) from the teacher
  cache, or patch tokens (N, k, P, D_p) with P = g * g, projected to the head's width and layer-normalised into a
  token grid (N, k, g, g, dim) (g = 1 without patches);
- the losses of :class:`CrossModalHead` (see :class:`~mmcl.colearn.config.CrossModalTrainingConfig`):

  - fused pass: real visual tokens; rows without teacher features (``teacher_mask`` False) and rows hit by
    ``modality_dropout`` get the hallucinated tokens instead (never the zero placeholders); cross-entropy;
  - skeleton pass: hallucinated tokens for every row; cross-entropy;
  - hallucination: MSE between hallucinated and real tokens (target detached), rows with teacher features;
  - distillation: KL at a temperature from the fused pass (detached) to the deployed logits, rows whose fused pass
    saw real visual tokens.

:meth:`CrossModalHead.deployable` wraps the backbone and the path (shared, not copied) as the registered deployed
model; the visual projection never reaches it.
"""

from __future__ import annotations

from dataclasses import asdict, fields

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmcl.colearn.config import CrossModalTrainingConfig
from mmcl.models.crossmodal import SkeletonOnlyModel, SkeletonPath, combine_logits
from mmcl.models.crossmodal_config import CrossModalPathConfig

PATCH_KEY = "visual_patches"  # batch key of patch tokens (N, k, P, D_p), when the data provides them


def path_config(cfg: CrossModalTrainingConfig, cls: type[CrossModalPathConfig]) -> CrossModalPathConfig:
    """The deployed path's config (``cls``) taken from a variant's co-learning config."""
    return cls(**{f.name: getattr(cfg, f.name) for f in fields(cls)})


class VisualTokens(nn.Module):
    """Visual-only: cached features to a layer-normalised token grid (N, k, g, g, dim); never deployed.

    Frame features ``visual`` (N, k, D) give a 1 x 1 grid per frame; with ``patch_dim`` > 0 the batch must carry
    ``visual_patches`` (N, k, g*g, patch_dim), row-major over the g x g grid, and the frame features are not used.
    """

    def __init__(self, visual_dim: int, dim: int, frames: int, patch_dim: int = 0, patch_grid: int = 0):
        super().__init__()
        self.frames, self.patch_dim, self.grid = frames, patch_dim, patch_grid if patch_dim else 1
        self.in_dim = patch_dim or visual_dim
        self.proj = nn.Linear(self.in_dim, dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, batch: dict) -> Tensor:
        if self.patch_dim:
            if PATCH_KEY not in batch:
                raise KeyError(f"the head is configured for patch tokens (patch_dim {self.patch_dim}) but the batch "
                               f"has no {PATCH_KEY!r}")
            x, key, shape = batch[PATCH_KEY], PATCH_KEY, (self.frames, self.grid ** 2, self.in_dim)
        else:
            x, key, shape = batch["visual"], "visual", (self.frames, self.in_dim)
        if tuple(x.shape[1:]) != shape:
            raise ValueError(f"batch[{key!r}] has shape {tuple(x.shape)}, expected (N, {', '.join(map(str, shape))})")
        tokens = self.norm(self.proj(x))
        return tokens.view(x.shape[0], self.frames, self.grid, self.grid, -1)


def distillation(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """Per-row KL(softmax(teacher / T) || softmax(student / T)) * T^2: (N,)."""
    t = temperature
    return F.kl_div(F.log_softmax(student / t, 1), F.log_softmax(teacher / t, 1), reduction="none",
                    log_target=True).sum(1) * t * t


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values`` (N,) over the rows where ``mask`` is True; 0 (still in the graph) when none is."""
    return (values * mask).sum() / mask.sum().clamp(min=1)


class CrossModalHead(nn.Module):
    """Trains a variant (module docstring); ``forward(out, batch)`` returns its weighted losses, named
    ``<prefix>_fused``, ``<prefix>_skeleton``, ``<prefix>_hallucinate`` and ``<prefix>_distill``.

    A subclass sets ``prefix`` (its config section), ``registry_name`` (the registered factory of the deployed model,
    called with the backbone's registry arguments plus ``visual_frames`` and ``head``, the path config's fields) and
    ``path_class`` (that config's class), and builds ``path`` (deployable) and ``visual`` (the visual-only
    projection). ``dims`` holds the sizes it was built for, with which :mod:`mmcl.colearn.heads` rebuilds it.
    """

    prefix: str
    registry_name: str
    path_class: type[CrossModalPathConfig]

    def __init__(self, cfg: CrossModalTrainingConfig, path: SkeletonPath, visual: VisualTokens, dims: dict):
        super().__init__()
        self.cfg, self.dims = cfg, dims
        self.path = path
        self.visual = visual

    def forward(self, out: dict, batch: dict) -> dict[str, Tensor]:
        cfg = self.cfg
        skeleton = self.path.encode(out)
        hallucinated = self.path.hallucinate(skeleton)
        real = self.visual(batch)
        mask = batch["teacher_mask"].to(device=real.device, dtype=torch.bool)
        available = mask
        if self.training and cfg.modality_dropout > 0:
            available = mask & (torch.rand(mask.shape, device=mask.device) >= cfg.modality_dropout)
        mixed = torch.where(available.view(-1, 1, 1, 1, 1), real, hallucinated)
        fused = self.path.classify(skeleton, mixed)
        alone = self.path.classify(skeleton, hallucinated)
        deployed = combine_logits(alone, out["logits"], self.path.deploy_logits)
        label = batch["label"]
        error = (hallucinated - real.detach()).pow(2).flatten(1).mean(1)
        kl = distillation(deployed, fused.detach(), cfg.distill_temperature)
        p, w = self.prefix, cfg.weight
        return {f"{p}_fused": w * F.cross_entropy(fused, label),
                f"{p}_skeleton": w * F.cross_entropy(alone, label),
                f"{p}_hallucinate": w * cfg.hallucination_weight * masked_mean(error, mask),
                f"{p}_distill": w * cfg.distill_weight * masked_mean(kl, available)}

    def deployable(self, backbone: nn.Module) -> SkeletonOnlyModel:
        """The backbone and this head's skeleton path (shared, not copied), rebuildable from the registry."""
        if getattr(backbone, "registry_name", None) != "ctrgcn":
            raise ValueError(f"the {self.prefix} head deploys CTR-GCN backbones (model.name: ctrgcn), got "
                             f"{getattr(backbone, 'registry_name', type(backbone).__name__)!r}")
        model = SkeletonOnlyModel(backbone, self.path)
        model.registry_name = self.registry_name
        model.registry_args = {**backbone.registry_args, "visual_frames": self.dims["visual_frames"],
                               "head": asdict(path_config(self.cfg, self.path_class))}
        return model
