"""SkeletonMAE pre-training (Yan et al., ICCV 2023): mask body regions, encode the visible graph, reconstruct the
masked joints' features and the skeleton's edges with a light graph decoder, scored by a re-weighted cosine error.

No code was released. The paper gives: a GIN encoder over the skeleton graph and a decoder of one GIN layer that
reconstructs the input joint features from the encoder's hidden features (asymmetric encoder-decoder); joints
partitioned by the body's natural structure into six regions (head, torso, left / right arm, left / right leg) and
masked region-aware; reconstruction of masked joints *and edges* using the human topology; a re-weighted cosine
reconstruction loss. Every other detail is ours and is a config key (``pretrain.mae.*``, see
:class:`~mmcl.pretrain.config.MAEConfig`):

- **node feature** = one joint's trajectory over ``segment`` frames (``C x segment`` values): for the GIN network
  its ``segment``; for CTR-GCN its temporal stride (4), so each cell of its feature map has one target.
- **masking** (:func:`region_mask`): ``ratio`` of the joints (rounded, at least 1, at most V - 1) per sample, the
  same joints in every frame and for every person; whole regions in a random order while they fit, the rest drawn
  from the next region. Regions: :data:`BODY_REGIONS` per layout.
- **visible graph**: encoders with ``encode_joints(x, visible)`` (the GIN network) drop masked joints from the graph;
  others (CTR-GCN) see a learnable mask token (``C`` values) in place of the masked joints' coordinates.
- **decoder**: GraphMAE's recipe: a bias-free linear map of the latent, masked nodes re-masked to zero, one GIN layer
  whose MLP is a single linear layer.
- **loss**: scaled cosine error ``mean (1 - cos(x_hat, x))^gamma`` over the masked joints of the persons present
  (``gamma`` 2, GraphMAE's default); **edges**: for every graph edge (bone) touching a masked joint, the bone vector
  ``x_child - x_parent`` rebuilt from the reconstruction (true values at visible ends), scored the same way, weighted
  by ``edge_weight`` (1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmcl.data.layouts import get_layout
from mmcl.errors import ConfigError
from mmcl.models.skeletonmae import GINLayer, bone_graph, joint_segments

__all__ = ["BODY_REGIONS", "body_regions", "region_mask", "scaled_cosine_error", "SkeletonMAE"]

# 0-based joints of the six regions per layout (SkeletonMAE's partition, drawn on COCO-17 in the paper).
_KINECT_V1_REGIONS = {
    "head": (2, 3), "torso": (0, 1), "left_arm": (4, 5, 6, 7), "right_arm": (8, 9, 10, 11),
    "left_leg": (12, 13, 14, 15), "right_leg": (16, 17, 18, 19),
}
BODY_REGIONS: dict[str, dict[str, tuple[int, ...]]] = {
    "ntu25": {
        "head": (2, 3), "torso": (0, 1, 20), "left_arm": (4, 5, 6, 7, 21, 22), "right_arm": (8, 9, 10, 11, 23, 24),
        "left_leg": (12, 13, 14, 15), "right_leg": (16, 17, 18, 19),
    },
    "kinect_v1_20": _KINECT_V1_REGIONS,
    "nwucla20": _KINECT_V1_REGIONS,
}


def body_regions(layout: str) -> list[tuple[int, ...]]:
    """The body regions of a layout; they partition its joints."""
    if layout not in BODY_REGIONS:
        raise KeyError(f"no body regions for layout {layout!r}; known: {', '.join(BODY_REGIONS)}")
    return list(BODY_REGIONS[layout].values())


def region_mask(batch: int, regions: list[tuple[int, ...]], ratio: float, generator: torch.Generator) -> Tensor:
    """Body-region-aware joint mask (batch, V), True = masked (see the module docstring); one row per sample."""
    num_joints = sum(len(r) for r in regions)
    if sorted(j for r in regions for j in r) != list(range(num_joints)):
        raise ValueError(f"body regions must partition joints 0..{num_joints - 1}, got {regions}")
    if not 0 < ratio < 1:
        raise ValueError(f"mask ratio must lie strictly between 0 and 1, got {ratio}")
    count = min(max(round(ratio * num_joints), 1), num_joints - 1)
    mask = torch.zeros(batch, num_joints, dtype=torch.bool)
    for row in mask:
        chosen: list[int] = []
        for r in torch.randperm(len(regions), generator=generator).tolist():
            joints = regions[r]
            need = count - len(chosen)
            if len(joints) <= need:
                chosen.extend(joints)
            else:
                pick = torch.randperm(len(joints), generator=generator)[:need].tolist()
                chosen.extend(joints[i] for i in pick)
            if len(chosen) == count:
                break
        row[chosen] = True
    return mask


def scaled_cosine_error(pred: Tensor, target: Tensor, gamma: float, weight: Tensor) -> Tensor:
    """``sum w (1 - cos(pred, target))^gamma / sum w`` over the last dimension's vectors (0 if no weight)."""
    error = (1 - F.cosine_similarity(pred.float(), target.float(), dim=-1)).pow(gamma)
    weight = weight.to(error.dtype)
    return (error * weight).sum() / weight.sum().clamp_min(1.0)


class SkeletonMAE(nn.Module):
    """Masked graph autoencoder around a registered encoder (the GIN network ``skeletonmae`` or CTR-GCN).

    Args:
        encoder: the encoder pre-training trains (checkpoints save it); it must give a per-joint feature map,
            through ``encode_joints(x, visible)`` or ``forward_features(x)["feature_map"]`` (N*M, D, T', V).
        layout: joint layout (regions, graph, edges).
        in_channels: channels per joint.
        segment: frames per node target; must equal the encoder's T / T'.
        ratio, gamma, edge_weight: see the module docstring.
        seed: the masks of step ``s`` are drawn from a generator seeded with ``(seed, s)``.
    """

    def __init__(self, encoder: nn.Module, layout: str, in_channels: int = 3, segment: int = 4, ratio: float = 0.4,
                 gamma: float = 2.0, edge_weight: float = 1.0, seed: int = 0) -> None:
        super().__init__()
        if hasattr(encoder, "fc"):
            encoder.fc.requires_grad_(False)  # the classifier is not pre-trained
        self.encoder_q = encoder
        self.visible_graph = hasattr(encoder, "encode_joints")
        if self.visible_graph:  # the paper pre-trains the joint encoder alone; STRL joins it for fine-tuning
            for name, param in encoder.named_parameters():
                if not name.startswith("encoder."):
                    param.requires_grad_(False)
        if self.visible_graph and getattr(encoder, "segment", segment) != segment:
            raise ValueError(f"mae segment {segment} differs from the encoder's segment {encoder.segment}")
        self.regions = body_regions(layout)
        self.segment, self.ratio, self.gamma, self.edge_weight, self.seed = segment, ratio, gamma, edge_weight, seed
        edges = torch.tensor(get_layout(layout).inward, dtype=torch.long)
        self.register_buffer("edges", edges, persistent=False)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        if not self.visible_graph:
            self.mask_token = nn.Parameter(torch.zeros(in_channels))
        dim = encoder.feature_dim
        self.encoder_to_decoder = nn.Linear(dim, dim, bias=False)
        self.decoder = GINLayer(dim, in_channels * segment, bone_graph(layout), mlp_layers=1)

    def encoder(self) -> nn.Module:
        """The encoder that pre-training produces."""
        return self.encoder_q

    def draw_mask(self, batch: int) -> Tensor:
        """The (batch, V) mask of the current step (reproducible from ``seed`` and the step count)."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + int(self.steps))
        return region_mask(batch, self.regions, self.ratio, generator)

    def encode(self, x: Tensor, masked: Tensor, present: Tensor) -> Tensor:
        """Latent (N*M, D, T', V) of ``x`` with the ``masked`` (N, V) joints hidden."""
        n, c, t, v, m = x.shape
        if self.visible_graph:
            visible = ~masked.unsqueeze(1).expand(n, m, v).reshape(n * m, v)
            return self.encoder_q.encode_joints(x, visible)
        hide = masked[:, None, None, :, None] & present[:, None, None, None, :]
        x = torch.where(hide, self.mask_token.view(1, c, 1, 1, 1).to(x.dtype), x)
        features = self.encoder_q.forward_features(x)
        if "feature_map" not in features:
            raise ConfigError(f"SkeletonMAE reconstructs joints from a per-joint feature map; the encoder "
                              f"{getattr(self.encoder_q, 'registry_name', type(self.encoder_q).__name__)!r} has none "
                              "(use model.name=skeletonmae or ctrgcn)")
        return features["feature_map"]

    def forward(self, x: Tensor, masked: Tensor | None = None) -> dict:
        """Loss of one batch ``x`` (N, C, T, V, M); ``masked`` (N, V) defaults to this step's :meth:`draw_mask`."""
        n, c, t, v, m = x.shape
        if masked is None:
            masked = self.draw_mask(n).to(x.device)
        present = x.flatten(1, 3).abs().amax(1) > 0  # (N, M): persons with any non-zero coordinate
        latent = self.encode(x, masked, present)
        if latent.shape[2] * self.segment != t:
            raise ValueError(f"the encoder maps {t} frames to {latent.shape[2]} steps; mae segment is {self.segment} "
                             f"(set pretrain.mae.segment to {t // max(latent.shape[2], 1)})")
        node_masked = masked.unsqueeze(1).expand(n, m, v).reshape(n * m, 1, v, 1)
        z = self.encoder_to_decoder(latent.permute(0, 2, 3, 1))  # (NM, T', V, D)
        recon = self.decoder(z.masked_fill(node_masked, 0.0))  # (NM, T', V, C*s)
        target = joint_segments(x, self.segment)
        person = present.reshape(n * m, 1, 1)
        joint_weight = node_masked.squeeze(-1) & person & (target.norm(dim=-1) > 1e-6)
        losses = {"joint": scaled_cosine_error(recon, target, self.gamma, joint_weight)}
        if self.edge_weight > 0:
            filled = torch.where(node_masked, recon.to(target.dtype), target)
            child, parent = self.edges[:, 0], self.edges[:, 1]
            bone_pred = filled[:, :, child] - filled[:, :, parent]
            bone_true = target[:, :, child] - target[:, :, parent]
            touched = (node_masked[:, :, child, 0] | node_masked[:, :, parent, 0]) & person
            edge_weight = touched & (bone_true.norm(dim=-1) > 1e-6)
            losses["edge"] = self.edge_weight * scaled_cosine_error(bone_pred, bone_true, self.gamma, edge_weight)
        self.steps += 1
        return {"loss": torch.stack(list(losses.values())).sum(), "losses": losses, "masked": masked}
