"""What the deployed cross-modal variants (:mod:`mmcl.models.ctrgcn_mmixer`, :mod:`mmcl.models.ctrgcn_deformable`)
share: skeleton features, normalised time, the hallucinator, the skeleton-only path and the deployed model.

Inputs (N samples, M persons, the GCN's last unit with C channels and T' frames): from the skeleton GCN
(:func:`skeleton_features`) the per-joint features (N, T', V, C), the per-frame summary (N, T', C) of its feature map
(persons averaged, as for the global feature) and the global feature (N, C). A variant's fused classifier also takes
a visual token grid (N, k, g, g, dim) (g = 1 without patch tokens): while training, the co-learning head
(:mod:`mmcl.colearn.crossmodal`) gives it tokens projected from the cached teacher features; deployed, it gets the
tokens the :class:`Hallucinator` predicts from the skeleton.

Time axes are aligned by normalised time: the j-th of L tokens along an axis sits at (j + 0.5) / L
(:func:`token_centres`), which is where the teacher samples its k frames (centres of k equal segments of the video),
and a step of the GCN's feature map stands for the centre of its T / T' input frames; both modalities get the same
:class:`FourierEmbedding` of that time. The skeleton window is treated as spanning the video (the training crop keeps
50-100% of the valid frames, the test crop 95%; the batch does not say which part).

The deployed model (:class:`SkeletonOnlyModel`) is the backbone plus the variant's :class:`SkeletonPath`: logits =
mean of the path's logits (hallucinated tokens -> fused classifier) and the GCN classifier's (``deploy_logits:
mean``), or the path's alone (``deploy_logits: path``). It reads no video.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


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
    patch position when g > 1) maps it to a layer-normalised token, like the training head's projected real tokens.
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


def combine_logits(path_logits: Tensor, gcn_logits: Tensor, mode: str) -> Tensor:
    """The deployed logits: ``mean`` of the path's and the GCN classifier's, or the ``path``'s alone."""
    return path_logits if mode == "path" else (path_logits + gcn_logits) / 2


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
