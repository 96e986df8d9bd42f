"""What the cross-modal co-learning variants (M-Mixer, 3D deformable) share: inputs, hallucinator, training, deployment.

Inputs at training time (N samples, M persons, the GCN's last unit with C channels and T' frames):

- from the skeleton GCN (:func:`skeleton_features`): per-joint features (N, T', V, C) and the per-frame summary
  (N, T', C) of its feature map (persons averaged, as for the global feature), and the global feature (N, C);
- from the teacher cache (:class:`VisualTokens`, visual-only): the per-frame visual features (N, k, D), or patch tokens
  (N, k, P, D_p) with P = g * g, projected to the head's width and layer-normalised into a token grid
  (N, k, g, g, dim) (g = 1 without patches).

Time axes are aligned by normalised time: the j-th of L tokens along an axis sits at (j + 0.5) / L
(:func:`token_centres`), which is where the teacher samples its k frames (centres of k equal segments of the video),
and a step of the GCN's feature map stands for the centre of its T / T' input frames; both modalities get the same
:class:`FourierEmbedding` of that time. The skeleton window is treated as spanning the video (the training crop keeps
50-100% of the valid frames, the test crop 95%; the batch does not say which part).

The skeleton-only path (a :class:`SkeletonPath`) owns the :class:`Hallucinator`, which predicts the visual token grid
from skeleton features (the per-frame summary resampled at the visual frames' normalised times, plus the global
feature), and the variant's fused classifier. :class:`CrossModalHead` trains it (see :class:`CrossModalConfig`):

- fused pass: real visual tokens; rows without teacher features (``teacher_mask`` False) and rows hit by
  ``modality_dropout`` get the hallucinated tokens instead (never the zero placeholders); cross-entropy;
- skeleton pass: hallucinated tokens for every row; cross-entropy;
- hallucination: MSE between hallucinated and real tokens (target detached), rows with teacher features;
- distillation: KL at a temperature from the fused pass (detached) to the deployed logits, rows whose fused pass saw
  real visual tokens.

The deployed model (:class:`SkeletonOnlyModel`) is the backbone plus the skeleton path: logits = mean of the path's
logits (hallucinated tokens -> fused classifier) and the GCN classifier's (``deploy_logits: mean``), or the path's
alone (``deploy_logits: path``). The visual projection never reaches it.
"""

from __future__ import annotations

import math
from dataclasses import asdict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmcl.colearn.config import CrossModalConfig

# Config fields that only shape training; every other field of a variant's config is architecture and goes into the
# deployed model's registry arguments.
TRAINING_ONLY = frozenset({"enabled", "weight", "modality_dropout", "hallucination_weight", "distill_weight",
                           "distill_temperature", "visual_dim", "patch_dim"})

PATCH_KEY = "visual_patches"  # batch key of patch tokens (N, k, P, D_p), when the data provides them


def check_choice(value: str, options: tuple[str, ...], key: str) -> None:
    """``value`` must be one of ``options``; ``key`` names the config key in the error."""
    if value not in options:
        raise ValueError(f"{key} must be one of {', '.join(map(repr, options))}, got {value!r}")


def check_common(cfg: CrossModalConfig, key: str) -> None:
    """Validate the fields every variant shares; ``key`` is the config section (e.g. ``colearn.mmixer``)."""
    check_choice(cfg.deploy_logits, ("mean", "path"), f"{key}.deploy_logits")
    if not 0.0 <= cfg.modality_dropout < 1.0:
        raise ValueError(f"{key}.modality_dropout must be in [0, 1), got {cfg.modality_dropout}")
    if cfg.time_frequencies < 1 or cfg.distill_temperature <= 0:
        raise ValueError(f"{key}.time_frequencies must be >= 1 and {key}.distill_temperature > 0")


def token_centres(length: int, device: torch.device | None = None) -> Tensor:
    """Normalised positions (j + 0.5) / length of ``length`` tokens along one axis: (length,)."""
    return (torch.arange(length, device=device, dtype=torch.float32) + 0.5) / length


def patch_centres(side: int, device: torch.device | None = None) -> Tensor:
    """Normalised (y, x) centres of a side x side patch grid: (side, side, 2)."""
    c = token_centres(side, device)
    return torch.stack(torch.meshgrid(c, c, indexing="ij"), dim=-1)


def grid_points(frames: int, side: int, device: torch.device | None = None) -> Tensor:
    """Normalised (time, y, x) centres of a frames x side x side token grid, time-major: (frames * side**2, 3)."""
    t = token_centres(frames, device).view(-1, 1, 1, 1).expand(-1, side, side, 1)
    yx = patch_centres(side, device).expand(frames, -1, -1, -1)
    return torch.cat([t, yx], dim=-1).reshape(-1, 3)


class FourierEmbedding(nn.Module):
    """Learned linear map of fixed Fourier features of normalised coordinates: (..., coords) -> (..., dim).

    Features are sin and cos of pi * 2^f * p for f < ``frequencies``, per coordinate p in [0, 1].
    """

    def __init__(self, coords: int, dim: int, frequencies: int):
        super().__init__()
        self.register_buffer("scales", math.pi * 2.0 ** torch.arange(frequencies, dtype=torch.float32),
                             persistent=False)
        self.proj = nn.Linear(2 * frequencies * coords, dim)

    def forward(self, points: Tensor) -> Tensor:
        angles = (points.unsqueeze(-1) * self.scales).flatten(-2)
        return self.proj(torch.cat([angles.sin(), angles.cos()], dim=-1))


def skeleton_features(out: dict) -> tuple[Tensor, Tensor, Tensor]:
    """(per-joint (N, T', V, C), per-frame summary (N, T', C), global (N, C)) from ``forward_features``' output."""
    feature_map, global_feature = out["feature_map"], out["global_feature"]
    n = global_feature.shape[0]
    nm, c, t, v = feature_map.shape
    joints = feature_map.view(n, nm // n, c, t, v).mean(1).permute(0, 2, 3, 1)
    return joints, joints.mean(2), global_feature


def sample_tokens(tokens: Tensor, points: Tensor) -> Tensor:
    """Trilinear interpolation of a token grid (N, T, H, W, D) at normalised points (N, R, 3) ordered (time, y, x).

    Token j of an axis of length L sits at (j + 0.5) / L (:func:`token_centres`); a point outside the token centres
    takes the nearest border value (``padding_mode="border"``). Returns (N, R, D).
    """
    n, _, _, _, d = tokens.shape
    grid = (points.flip(-1) * 2 - 1).view(n, -1, 1, 1, 3).to(tokens.dtype)  # grid_sample wants (x, y, t) in [-1, 1]
    sampled = F.grid_sample(tokens.permute(0, 4, 1, 2, 3), grid, mode="bilinear", padding_mode="border",
                            align_corners=False)
    return sampled.view(n, d, -1).transpose(1, 2)


def align_frames(frames: Tensor, length: int) -> Tensor:
    """Resample a sequence (N, L, C) to ``length`` steps by normalised time: output step j is the linear
    interpolation of the input at normalised time (j + 0.5) / length (input step i sits at (i + 0.5) / L)."""
    return F.interpolate(frames.transpose(1, 2), size=length, mode="linear", align_corners=False).transpose(1, 2)


class Hallucinator(nn.Module):
    """Predicts the visual token grid (N, k, g, g, dim) from skeleton features.

    The per-frame summary (N, T', C) is resampled at the k visual frames' normalised times (linear interpolation,
    the normalised-time alignment) and concatenated with the global feature; an MLP (with a Fourier embedding of the
    patch position when g > 1) maps it to a layer-normalised token, like :class:`VisualTokens`' output.
    """

    def __init__(self, feature_dim: int, dim: int, frames: int, grid: int, hidden: int, frequencies: int):
        super().__init__()
        self.frames, self.grid = frames, grid
        self.inp = nn.Linear(2 * feature_dim, hidden)
        self.space = FourierEmbedding(2, hidden, frequencies) if grid > 1 else None
        self.out = nn.Linear(hidden, dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, frames: Tensor, global_feature: Tensor) -> Tensor:
        aligned = align_frames(frames, self.frames)
        h = self.inp(torch.cat([aligned, global_feature.unsqueeze(1).expand(-1, self.frames, -1)], dim=-1))
        h = h[:, :, None, None, :]
        if self.space is not None:
            h = h + self.space(patch_centres(self.grid, frames.device))
        return self.norm(self.out(F.gelu(h)))


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


def combine_logits(path_logits: Tensor, gcn_logits: Tensor, mode: str) -> Tensor:
    """The deployed logits: ``mean`` of the path's and the GCN classifier's, or the ``path``'s alone."""
    return path_logits if mode == "path" else (path_logits + gcn_logits) / 2


def distillation(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """Per-row KL(softmax(teacher / T) || softmax(student / T)) * T^2: (N,)."""
    t = temperature
    return F.kl_div(F.log_softmax(student / t, 1), F.log_softmax(teacher / t, 1), reduction="none",
                    log_target=True).sum(1) * t * t


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values`` (N,) over the rows where ``mask`` is True; 0 (still in the graph) when none is."""
    return (values * mask).sum() / mask.sum().clamp(min=1)


class SkeletonPath(nn.Module):
    """The deployable part of a variant: a :class:`Hallucinator` (``self.hallucinator``) and a fused classifier.

    :meth:`encode` computes the skeleton side once per batch (a dict holding at least ``frames``, the per-frame
    summary, and ``global``, the global feature); :meth:`classify` runs the fused classifier on it and a visual token
    grid, real or hallucinated. ``forward(out)`` gives the deployed logits from the backbone's ``forward_features``.
    """

    deploy_logits: str

    def encode(self, out: dict) -> dict[str, Tensor]:
        """The skeleton-side inputs of :meth:`hallucinate` and :meth:`classify`."""
        raise NotImplementedError

    def hallucinate(self, skeleton: dict[str, Tensor]) -> Tensor:
        """Visual tokens (N, k, g, g, dim) predicted from the skeleton."""
        return self.hallucinator(skeleton["frames"], skeleton["global"])

    def classify(self, skeleton: dict[str, Tensor], visual: Tensor) -> Tensor:
        """Fused logits (N, num_classes) from encoded skeleton features and a visual token grid (N, k, g, g, dim)."""
        raise NotImplementedError

    def forward(self, out: dict) -> Tensor:
        skeleton = self.encode(out)
        return combine_logits(self.classify(skeleton, self.hallucinate(skeleton)), out["logits"], self.deploy_logits)


class SkeletonOnlyModel(nn.Module):
    """The deployed model of a variant: skeletons (N, C, T, V, M) -> logits, with no teacher input.

    ``backbone`` is the GCN (its classifier included), ``path`` the variant's :class:`SkeletonPath`.
    """

    def __init__(self, backbone: nn.Module, path: SkeletonPath):
        super().__init__()
        self.backbone = backbone
        self.path = path
        self.num_classes, self.num_person = backbone.num_classes, backbone.num_person
        self.layout_name, self.feature_dim = backbone.layout_name, backbone.feature_dim

    def forward_features(self, x: Tensor) -> dict[str, Tensor]:
        """The backbone's outputs, with ``logits`` the deployed ones and ``gcn_logits`` the GCN classifier's."""
        out = self.backbone.forward_features(x)
        return {**out, "gcn_logits": out["logits"], "logits": self.path(out)}

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_features(x)["logits"]


def architecture(cfg: CrossModalConfig) -> dict:
    """The fields of a variant's config that shape its deployed path (everything but :data:`TRAINING_ONLY`)."""
    return {k: v for k, v in asdict(cfg).items() if k not in TRAINING_ONLY}


class CrossModalHead(nn.Module):
    """Trains a variant (module docstring); ``forward(out, batch)`` returns its weighted losses, named
    ``<prefix>_fused``, ``<prefix>_skeleton``, ``<prefix>_hallucinate`` and ``<prefix>_distill``.

    ``path`` is deployable (:meth:`deployable`), ``visual`` the visual-only projection. ``registry_name`` is the
    registered factory of the deployed model; it is called with the backbone's registry arguments plus
    ``visual_frames`` and ``head`` (the architecture fields of ``cfg``).
    """

    def __init__(self, cfg: CrossModalConfig, prefix: str, path: SkeletonPath, visual: VisualTokens,
                 registry_name: str, visual_frames: int):
        super().__init__()
        self.cfg, self.prefix, self.registry_name, self.visual_frames = cfg, prefix, registry_name, visual_frames
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
        model.registry_args = {**backbone.registry_args, "visual_frames": self.visual_frames,
                               "head": architecture(self.cfg)}
        return model
