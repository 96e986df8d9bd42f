"""CTR-GCN with the 3D deformable cross-modal transformer's skeleton-only path: the deployed model of the
``colearn.deformable`` co-learning head.

Kim, Ahn and Ko, "Cross-Modal Learning with 3D Deformable Attention for Action Recognition" (ICCV 2023,
arXiv 2212.05638): transformer blocks over RGB tokens and pose tokens with two cross-modal tokens, each block a 3D
deformable attention (queries: the cross-modal and RGB tokens; keys and values: the cross-modal tokens and RGB tokens
sampled at learned offsets, the "3D token search"), a local joint-stride attention (pose tokens within body-part
groups, with the cross-modal tokens) and a temporal-stride attention (among frames t = k (mod s)); L blocks; the
cross-modal tokens classify. No official code exists and sizes were not published in reachable form; the choices made
here (fields of :class:`~mmcl.models.crossmodal_config.DeformablePathConfig` in brackets):

- Tokens [dim]: visual tokens = the projected cached features on a (k, g, g) grid (g = 1 for frame features; g x g
  patch tokens [patch_grid] when the teacher cache has them) plus time and patch-position embeddings; pose tokens =
  the GCN's last feature map, persons averaged, per (frame, joint): Linear(C, dim) plus the shared time embedding
  plus a learned joint embedding; two cross-modal tokens = learned vectors plus the mean visual token and the mean
  pose token (one per modality).
- 3D token search (:class:`TokenSearch`): reference points on a uniform (r_t, r_s, r_s) grid over the normalised clip
  [ref_time, ref_space] (over time only without patch tokens); the visual tokens interpolated at a reference point go
  through an MLP to an offset, tanh-bounded by [offset_range] (zero-initialised: the search starts on the grid),
  shared by the heads; tokens are sampled at reference + offset by trilinear interpolation (:func:`sample_tokens`,
  border values outside the clip). Every query attends to the cross-modal tokens and all sampled tokens.
- Joint-stride attention (:func:`joint_stride_keys`): a pose token attends to the pose tokens of its body-part group
  (the layout's ``groups``, so any joint layout works) in the same frame [joint_scope: frame] or in any frame [clip],
  and to the cross-modal tokens; the cross-modal tokens attend to every pose token.
- Temporal-stride attention (:func:`temporal_stride_keys`): a pose token of frame t attends to the pose tokens of
  frames t' = t (mod s) [temporal_stride] of the same joint [temporal_scope: joint] or of every joint [frame], and to
  the cross-modal tokens.
- Block: pre-norm residual deformable, joint-stride and temporal-stride attentions, then an MLP [mlp_ratio] over all
  tokens; [depth] blocks; [heads] heads. Readout: final layer norm, both cross-modal tokens concatenated [readout:
  concat] or averaged [mean], one linear classifier.

The hallucinator, the deployed logits and the wrapper are shared with M-Mixer (:mod:`mmcl.models.crossmodal`);
training (real visual tokens from the teacher cache, modality dropout, distillation) is :mod:`mmcl.colearn.deformable`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmcl.data.layouts import get_layout
from mmcl.models.crossmodal import (FourierEmbedding, Hallucinator, SkeletonOnlyModel, SkeletonPath, grid_points,
                                    patch_centres, sample_tokens, skeleton_features, token_centres)
from mmcl.models.crossmodal_config import DeformablePathConfig
from mmcl.models.ctrgcn import ctrgcn
from mmcl.models.registry import register_model

NUM_CROSS = 2  # cross-modal tokens


def joint_groups(layout: str) -> Tensor:
    """Group index of every joint (V,) from the layout's body-part ``groups``, which must partition the joints."""
    lay = get_layout(layout)
    ids = torch.full((lay.num_joints,), -1, dtype=torch.long)
    for g, joints in enumerate(lay.groups.values()):
        for j in joints:
            if ids[j] >= 0:
                raise ValueError(f"layout {layout!r}: joint {lay.joints[j]} is in two body-part groups")
            ids[j] = g
    if (ids < 0).any():
        missing = [lay.joints[j] for j in torch.nonzero(ids < 0).flatten().tolist()]
        raise ValueError(f"layout {layout!r}: joints {missing} are in no body-part group")
    return ids


def partition(keys: Tensor) -> tuple[Tensor, Tensor]:
    """The classes of a partition of P tokens given each token's class key (P,).

    Returns ``members`` (B, S): the token indices of each of the B classes, padded with -1 to the largest size S, and
    ``slot`` (P,): where each token sits in ``members.flatten()``.
    """
    _, inverse, counts = torch.unique(keys, return_inverse=True, return_counts=True)
    order = torch.argsort(inverse, stable=True)
    rank = torch.arange(keys.numel()) - torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
    size = int(counts.max())
    members = torch.full((counts.numel(), size), -1, dtype=torch.long)
    members[inverse[order], rank] = order
    slot = torch.empty_like(order)
    slot[order] = inverse[order] * size + rank
    return members, slot


def joint_stride_keys(groups: Tensor, frames: int, scope: str = "frame") -> Tensor:
    """Class key of every pose token (t, v) (flattened t-major) for joint-stride attention: its body-part group
    (``groups``: (V,) group ids) and, with ``scope="frame"``, its frame."""
    g = groups.repeat(frames)
    if scope == "clip":
        return g
    return torch.arange(frames).repeat_interleave(groups.numel()) * (int(groups.max()) + 1) + g


def temporal_stride_keys(frames: int, joints: int, stride: int, scope: str = "joint") -> Tensor:
    """Class key of every pose token (t, v) for temporal-stride attention: t mod ``stride`` and, with
    ``scope="joint"``, the joint."""
    residue = (torch.arange(frames) % stride).repeat_interleave(joints)
    return residue * joints + torch.arange(joints).repeat(frames) if scope == "joint" else residue


def partition_mask(keys: Tensor, num_cross: int = NUM_CROSS) -> Tensor:
    """The attention mask (L, L) that :class:`PartitionAttention` computes, True where query i may attend key j.

    Tokens: ``num_cross`` cross-modal tokens, then the pose tokens with class ``keys`` (P,). A pose token attends to
    the pose tokens of its class and to the cross-modal tokens; a cross-modal token attends to every token.
    """
    size = num_cross + keys.numel()
    mask = torch.ones(size, size, dtype=torch.bool)
    mask[num_cross:, num_cross:] = keys[:, None] == keys[None, :]
    return mask


class PartitionAttention(nn.Module):
    """Multi-head self-attention over [cross-modal tokens; pose tokens] (N, c + P, dim) restricted by a partition of
    the pose tokens (:func:`partition`): the masked attention of :func:`partition_mask`, computed class by class, so
    its cost grows with the class sizes, not with P^2."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, num_cross: int, members: Tensor, slot: Tensor) -> Tensor:
        n, length, d = x.shape
        c, (b, size) = num_cross, members.shape
        q, k, v = self.qkv(x).view(n, length, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        cross = F.scaled_dot_product_attention(q[:, :, :c], k, v)
        index = members.clamp(min=0).flatten() + c

        def grouped(t: Tensor, with_cross: bool) -> Tensor:
            g = t[:, :, index].unflatten(2, (b, size))
            return torch.cat([t[:, :, None, :c].expand(-1, -1, b, -1, -1), g], dim=3) if with_cross else g

        allowed = torch.cat([members.new_ones(b, c, dtype=torch.bool), members >= 0], dim=1)
        pose = F.scaled_dot_product_attention(grouped(q, False), grouped(k, True), grouped(v, True),
                                              attn_mask=allowed[:, None, :])
        pose = pose.flatten(2, 3)[:, :, slot]
        return self.proj(torch.cat([cross, pose], dim=2).transpose(1, 2).reshape(n, length, d))


class Attention(nn.Module):
    """Multi-head attention of queries (N, Lq, dim) over a context (N, Lk, dim)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        n, length, d = x.shape
        h = self.heads
        q = self.q(x).view(n, length, h, d // h).transpose(1, 2)
        k, v = self.kv(context).view(n, context.shape[1], 2, h, d // h).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(n, length, d))


class TokenSearch(nn.Module):
    """3D token search: visual tokens (N, k, g, g, dim) sampled at reference points plus learned offsets.

    ``reference``: (R, 3) normalised (time, y, x) points; ``spatial``: whether offsets move y and x too (only time
    otherwise). Returns the sampled tokens (N, R, dim) and the points they were sampled at (N, R, 3).
    """

    def __init__(self, dim: int, reference: Tensor, spatial: bool, offset_range: float):
        super().__init__()
        self.register_buffer("reference", reference, persistent=False)
        self.spatial, self.offset_range = spatial, offset_range
        self.offsets = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, 3 if spatial else 1))
        nn.init.zeros_(self.offsets[-1].weight)
        nn.init.zeros_(self.offsets[-1].bias)

    def forward(self, tokens: Tensor) -> tuple[Tensor, Tensor]:
        reference = self.reference.expand(tokens.shape[0], -1, -1)
        delta = torch.tanh(self.offsets(sample_tokens(tokens, reference))) * self.offset_range
        if not self.spatial:
            delta = F.pad(delta, (0, 2))
        points = reference + delta
        return sample_tokens(tokens, points), points


class DeformableBlock(nn.Module):
    """One block: 3D deformable attention, joint-stride attention, temporal-stride attention, MLP (all pre-norm)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, search: TokenSearch):
        super().__init__()
        self.norm_deform, self.search, self.deform = nn.LayerNorm(dim), search, Attention(dim, heads)
        self.norm_joint, self.joint = nn.LayerNorm(dim), PartitionAttention(dim, heads)
        self.norm_temporal, self.temporal = nn.LayerNorm(dim), PartitionAttention(dim, heads)
        hidden = int(dim * mlp_ratio)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, cross: Tensor, visual: Tensor, pose: Tensor, joint_partition: tuple[Tensor, Tensor],
                temporal_partition: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        c = cross.shape[1]
        queries = self.norm_deform(torch.cat([cross, visual.flatten(1, 3)], dim=1))
        sampled, _ = self.search(queries[:, c:].view_as(visual))
        update = self.deform(queries, torch.cat([queries[:, :c], sampled], dim=1))
        cross = cross + update[:, :c]
        visual = visual + update[:, c:].view_as(visual)
        s = torch.cat([cross, pose.flatten(1, 2)], dim=1)
        s = s + self.joint(self.norm_joint(s), c, *joint_partition)
        s = s + self.temporal(self.norm_temporal(s), c, *temporal_partition)
        tokens = torch.cat([s, visual.flatten(1, 3)], dim=1)
        tokens = tokens + self.mlp(self.norm_mlp(tokens))
        cross, pose_flat, visual_flat = tokens.split([c, s.shape[1] - c, tokens.shape[1] - s.shape[1]], dim=1)
        return cross, visual_flat.reshape(visual.shape), pose_flat.reshape(pose.shape)


class DeformablePath(SkeletonPath):
    """Hallucinator + the 3D deformable transformer: the deployable part of the co-learning head."""

    def __init__(self, cfg: DeformablePathConfig, num_classes: int, feature_dim: int, layout: str,
                 visual_frames: int):
        super().__init__()
        cfg.validate("head")
        d = cfg.dim
        self.cfg = cfg
        self.deploy_logits = cfg.deploy_logits
        self.frames, self.grid = visual_frames, max(cfg.patch_grid, 1)
        self.register_buffer("groups", joint_groups(layout), persistent=False)
        self.time = FourierEmbedding(1, d, cfg.time_frequencies)
        self.space = FourierEmbedding(2, d, cfg.time_frequencies) if self.grid > 1 else None
        self.pose_proj = nn.Linear(feature_dim, d)
        self.joint_embed = nn.Parameter(torch.randn(self.groups.numel(), d) * 0.02)
        self.cross = nn.Parameter(torch.randn(NUM_CROSS, d) * 0.02)
        self.hallucinator = Hallucinator(feature_dim, d, visual_frames, self.grid, cfg.hallucinator_hidden,
                                         cfg.time_frequencies)
        reference = grid_points(cfg.ref_time or visual_frames, cfg.ref_space or self.grid)
        self.blocks = nn.ModuleList([
            DeformableBlock(d, cfg.heads, cfg.mlp_ratio, TokenSearch(d, reference, self.grid > 1, cfg.offset_range))
            for _ in range(cfg.depth)])
        self.norm = nn.LayerNorm(d)
        self.fc = nn.Linear(2 * d if cfg.readout == "concat" else d, num_classes)
        self._partitions: dict[tuple[int, torch.device], tuple] = {}

    def partitions(self, frames: int, device: torch.device) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
        """(joint-stride, temporal-stride) partitions (:func:`partition`) of ``frames`` x V pose tokens, cached.

        ``int(frames)``: under ONNX tracing a size is a tensor; as a key it would miss the cache filled before the
        trace (and trace the partition's sort, which the exporter cannot write) instead of using its constants."""
        key = (int(frames), device)
        if key not in self._partitions:
            cfg, groups = self.cfg, self.groups.cpu()
            joint = partition(joint_stride_keys(groups, frames, cfg.joint_scope))
            temporal = partition(temporal_stride_keys(frames, groups.numel(), cfg.temporal_stride, cfg.temporal_scope))
            self._partitions[key] = tuple(tuple(t.to(device) for t in p) for p in (joint, temporal))
        return self._partitions[key]

    def visual_position(self, device: torch.device) -> Tensor:
        """Time (and patch-position) embedding of the visual token grid: (k, g, g, dim)."""
        position = self.time(token_centres(self.frames, device)[:, None])[:, None, None]
        if self.space is not None:
            position = position + self.space(patch_centres(self.grid, device))
        return position

    def encode(self, out: dict) -> dict[str, Tensor]:
        joints, frames, global_feature = skeleton_features(out)
        t, v = joints.shape[1:3]
        if v != self.groups.numel():
            raise ValueError(f"the deformable head was built for {self.groups.numel()} joints, got {v}")
        pose = self.pose_proj(joints) + self.time(token_centres(t, joints.device)[:, None])[:, None] + self.joint_embed
        return {"frames": frames, "global": global_feature, "pose": pose}

    def classify(self, skeleton: dict[str, Tensor], visual: Tensor) -> Tensor:
        pose = skeleton["pose"]
        expected = (pose.shape[0], self.frames, self.grid, self.grid, self.cfg.dim)
        if tuple(visual.shape) != expected:
            raise ValueError(f"visual tokens of shape {tuple(visual.shape)}, expected {expected}")
        visual = visual + self.visual_position(visual.device)
        cross = self.cross + torch.stack([visual.mean((1, 2, 3)), pose.mean((1, 2))], dim=1)
        joint_partition, temporal_partition = self.partitions(pose.shape[1], pose.device)
        for block in self.blocks:
            cross, visual, pose = block(cross, visual, pose, joint_partition, temporal_partition)
        cross = self.norm(cross)
        return self.fc(cross.flatten(1) if self.cfg.readout == "concat" else cross.mean(1))


@register_model
def ctrgcn_deformable(num_classes: int, layout: str = "ntu25", in_channels: int = 3, num_person: int = 2,
                      visual_frames: int = 5, head: dict | None = None, **backbone_args) -> SkeletonOnlyModel:
    """CTR-GCN with the 3D deformable transformer's skeleton-only path, the deployed model of ``colearn.deformable``.

    ``head``: the fields of :class:`DeformablePathConfig`; ``visual_frames``: the number of hallucinated
    visual frames (the teacher's k); ``backbone_args``: CTR-GCN's (``drop_rate``).
    """
    backbone = ctrgcn(num_classes=num_classes, layout=layout, in_channels=in_channels, num_person=num_person,
                      **backbone_args)
    path = DeformablePath(DeformablePathConfig(**(head or {})), num_classes, backbone.feature_dim, layout,
                          visual_frames)
    return SkeletonOnlyModel(backbone, path)
