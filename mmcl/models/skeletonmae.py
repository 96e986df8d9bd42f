"""SkeletonMAE's graph encoder (Yan et al., "SkeletonMAE: Graph-based Masked Autoencoder for Skeleton Sequence
Pre-training", ICCV 2023) and the spatial-temporal network it is fine-tuned in. No code was released; what the paper
states is kept, everything else is a documented choice (see ``mmcl/pretrain/skeletonmae.py`` for the pre-training).

**From the paper**: the encoder is a stack of GIN layers (graph isomorphism network: ``h_v' = MLP((1 + eps) h_v +
sum_{u in N(v)} h_u)``) over the skeleton graph, learning the joints' representation spatially; the pre-trained encoder
is then integrated with a spatial-temporal representation learning (STRL) module for fine-tuning.

**Our choices** (factory arguments):

- ``segment``: a node is one joint over ``segment`` consecutive frames; its input feature is that short trajectory
  (``C x segment`` values), so the clip of T frames is T / segment graphs per person.
- ``hidden_dim`` / ``num_layers``: width and depth of the encoder (each layer: GIN aggregation over the layout's bone
  graph, a 2-layer MLP, LayerNorm and ReLU; LayerNorm per node, so a masked joint never shifts a visible joint's
  statistics during pre-training).
- STRL = the encoder followed by ``temporal_layers`` residual temporal convolutions (kernel ``temporal_kernel`` over
  the segments, per joint, BN, ReLU), then mean pooling over segments, joints and persons and the classifier ``fc``.
  The last BatchNorm of each temporal block starts at scale 0, so an untrained STRL passes the encoder's features
  through unchanged: a freshly pre-trained checkpoint is probed (linear, kNN) on the encoder's own features.

:meth:`SkeletonMAENet.encode_joints` runs the encoder alone, optionally on the sub-graph of visible joints (masked
joints get no input and send no messages): that is what masked pre-training trains.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mmcl.data.layouts import get_layout
from mmcl.models.registry import register_model

__all__ = ["GINLayer", "GINEncoder", "TemporalBlock", "SkeletonMAENet", "skeletonmae", "bone_graph", "joint_segments"]


def joint_segments(x: Tensor, segment: int) -> Tensor:
    """(N, C, T, V, M) -> (N*M, T/segment, V, C*segment): each joint's trajectory over each segment of frames,
    channel-major (``[x_0..x_{s-1}, y_0.., z_0..]``). T must be a multiple of ``segment``."""
    n, c, t, v, m = x.shape
    if t % segment:
        raise ValueError(f"{t} frames do not split into segments of {segment}")
    x = x.permute(0, 4, 2, 3, 1).reshape(n * m, t // segment, segment, v, c)  # (NM, T', s, V, C)
    return x.permute(0, 1, 3, 4, 2).reshape(n * m, t // segment, v, c * segment)


def bone_graph(layout: str) -> Tensor:
    """(V, V) symmetric 0/1 adjacency of the layout's graph edges (no self loops)."""
    graph = get_layout(layout)
    adjacency = torch.zeros(graph.num_joints, graph.num_joints)
    for i, j in graph.inward:
        adjacency[i, j] = adjacency[j, i] = 1.0
    return adjacency


class GINLayer(nn.Module):
    """One GIN layer on a fixed graph, for node features ``(..., V, D)``: ``MLP((1 + eps) h_v + sum_u A_vu h_u)``.

    ``mlp_layers`` 2: Linear, LayerNorm, ReLU, Linear (the encoder's); 1: a single Linear (a light decoder's).
    ``eps`` is learnable, initialised to 0.
    """

    def __init__(self, in_dim: int, out_dim: int, adjacency: Tensor, hidden_dim: int | None = None,
                 mlp_layers: int = 2) -> None:
        super().__init__()
        self.register_buffer("adjacency", adjacency.clone(), persistent=False)
        self.eps = nn.Parameter(torch.zeros(1))
        if mlp_layers == 2:
            hidden_dim = hidden_dim or out_dim
            self.mlp = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.LayerNorm(hidden_dim), nn.ReLU(inplace=True),
                                     nn.Linear(hidden_dim, out_dim))
        elif mlp_layers == 1:
            self.mlp = nn.Sequential(nn.Linear(in_dim, out_dim))
        else:
            raise ValueError(f"mlp_layers must be 1 or 2, got {mlp_layers}")

    def forward(self, h: Tensor, visible: Tensor | None = None) -> Tensor:
        """``h`` (..., V, D); ``visible`` (..., V, 1) of 0/1 broadcastable to ``h``: only visible nodes send."""
        messages = h if visible is None else h * visible
        return self.mlp((1 + self.eps) * h + torch.matmul(self.adjacency, messages))


class GINEncoder(nn.Module):
    """``num_layers`` GIN layers, each followed by LayerNorm and ReLU; node features (..., V, in_dim) -> (..., V, D).

    With ``visible``, the encoder sees the sub-graph of visible nodes only: masked nodes' inputs are zeroed, they send
    no messages, and their outputs are zeroed after every layer.
    """

    def __init__(self, in_dim: int, hidden_dim: int, num_layers: int, adjacency: Tensor) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be at least 1, got {num_layers}")
        self.layers = nn.ModuleList(GINLayer(in_dim if i == 0 else hidden_dim, hidden_dim, adjacency)
                                    for i in range(num_layers))
        self.norms = nn.ModuleList(nn.LayerNorm(hidden_dim) for _ in range(num_layers))
        self.out_dim = hidden_dim

    def forward(self, h: Tensor, visible: Tensor | None = None) -> Tensor:
        keep = None if visible is None else visible.to(h.dtype).unsqueeze(-1)
        if keep is not None:
            h = h * keep
        for layer, norm in zip(self.layers, self.norms):
            h = norm(layer(h, keep)).relu()
            if keep is not None:
                h = h * keep
        return h


class TemporalBlock(nn.Module):
    """Residual temporal convolution over segments, per joint: ``x + BN(conv(ReLU(BN(conv(x)))))``, then ReLU.

    The last BN starts at scale 0, so a new block is the identity (up to the final ReLU of non-negative input).
    """

    def __init__(self, channels: int, kernel_size: int) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"temporal_kernel must be odd, got {kernel_size}")
        pad = (kernel_size // 2, 0)
        self.conv1 = nn.Conv2d(channels, channels, (kernel_size, 1), padding=pad)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, (kernel_size, 1), padding=pad)
        self.bn2 = nn.BatchNorm2d(channels)
        nn.init.zeros_(self.bn2.weight)

    def forward(self, x: Tensor) -> Tensor:
        y = self.bn2(self.conv2(self.bn1(self.conv1(x)).relu()))
        return (x + y).relu()


class SkeletonMAENet(nn.Module):
    """The SkeletonMAE encoder inside the STRL network (input ``(N, C, T, V, M)``, T a multiple of ``segment``).

    Args:
        num_classes: classes of ``fc``.
        layout: joint layout name (joints and graph).
        in_channels: channels per joint.
        num_person: persons per sample (M).
        segment: frames per node feature.
        hidden_dim: encoder width (the feature dimension).
        num_layers: GIN layers of the encoder.
        temporal_layers: residual temporal blocks of STRL.
        temporal_kernel: their kernel size (in segments).
        drop_rate: dropout before ``fc``.
    """

    def __init__(self, num_classes: int = 60, layout: str = "ntu25", in_channels: int = 3, num_person: int = 2,
                 segment: int = 4, hidden_dim: int = 256, num_layers: int = 3, temporal_layers: int = 2,
                 temporal_kernel: int = 3, drop_rate: float = 0.0) -> None:
        super().__init__()
        if segment < 1:
            raise ValueError(f"segment must be at least 1, got {segment}")
        graph = get_layout(layout)
        self.layout_name = graph.name
        self.num_classes = num_classes
        self.num_joints = graph.num_joints
        self.num_person = num_person
        self.in_channels = in_channels
        self.segment = segment
        self.feature_dim = hidden_dim
        self.encoder = GINEncoder(in_channels * segment, hidden_dim, num_layers, bone_graph(layout))
        self.temporal = nn.ModuleList(TemporalBlock(hidden_dim, temporal_kernel) for _ in range(temporal_layers))
        self.drop_out = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
        self.fc = nn.Linear(hidden_dim, num_classes)

    def _check_input(self, x: Tensor) -> None:
        expected = (self.in_channels, None, self.num_joints, self.num_person)
        if x.dim() != 5 or any(e is not None and s != e for s, e in zip(x.shape[1:], expected)):
            raise ValueError(
                f"SkeletonMAENet({self.layout_name}) expects input (N, C={self.in_channels}, T, V={self.num_joints}, "
                f"M={self.num_person}), got {tuple(x.shape)}")
        if x.shape[2] % self.segment:
            raise ValueError(f"SkeletonMAENet reads segments of {self.segment} frames; the clip has {x.shape[2]} "
                             "frames (set data.window to a multiple of the segment)")

    def node_features(self, x: Tensor) -> Tensor:
        """(N, C, T, V, M) -> node inputs (N*M, T/segment, V, C*segment) (:func:`joint_segments`)."""
        self._check_input(x)
        return joint_segments(x, self.segment)

    def encode_joints(self, x: Tensor, visible: Tensor | None = None) -> Tensor:
        """The encoder alone: (N, C, T, V, M) -> (N*M, D, T/segment, V). ``visible`` (N*M, V) bool restricts it to
        the visible joints' sub-graph."""
        h = self.node_features(x)
        if visible is not None:
            visible = visible[:, None, :].expand(-1, h.shape[1], -1)
        return self.encoder(h, visible).permute(0, 3, 1, 2)

    def forward_features(self, x: Tensor) -> dict[str, Tensor]:
        """``feature_map`` (N*M, D, T', V) after STRL, ``global_feature`` (N, D), ``logits``."""
        n, m = x.shape[0], x.shape[-1]
        h = self.encode_joints(x)
        for block in self.temporal:
            h = block(h)
        global_feature = h.mean((2, 3)).view(n, m, -1).mean(1)
        return {"feature_map": h, "global_feature": global_feature, "logits": self.fc(self.drop_out(global_feature))}

    def forward(self, x: Tensor) -> Tensor:
        """Logits (N, num_classes) of skeletons ``x`` (N, C, T, V, M)."""
        return self.forward_features(x)["logits"]


@register_model
def skeletonmae(num_classes: int, layout: str = "ntu25", in_channels: int = 3, num_person: int = 2,
                segment: int = 4, hidden_dim: int = 256, num_layers: int = 3, temporal_layers: int = 2,
                temporal_kernel: int = 3, drop_rate: float = 0.0) -> SkeletonMAENet:
    """SkeletonMAE's GIN encoder in the STRL fine-tuning network (see the module docstring for the choices)."""
    return SkeletonMAENet(num_classes=num_classes, layout=layout, in_channels=in_channels, num_person=num_person,
                          segment=segment, hidden_dim=hidden_dim, num_layers=num_layers,
                          temporal_layers=temporal_layers, temporal_kernel=temporal_kernel, drop_rate=drop_rate)
