"""CTR-GCN (Chen et al., "Channel-wise Topology Refinement Graph Convolution for Skeleton-Based Action Recognition",
ICCV 2021), parameter for parameter the published model (github.com/Uason-Chen/CTR-GCN, ``model/ctrgcn.py``).

The module tree, parameter names and shapes, buffers and initialisation are those of the reference code, so a
checkpoint trained with it loads with ``load_state_dict(strict=True)`` and gives the same logits; with the same
``torch.manual_seed`` a freshly built model even has the same weights. Only the forward pass is rearranged for
speed (the measured ratios against a straightforward port of the reference are in
``benchmarks/results/ctrgcn_speed.md``); it computes the same function:

- ``conv1``/``conv2`` of the three CTR-GC subsets (1x1 convolutions followed by a mean over time) become one small
  matrix product applied to the time-mean of the input: a 1x1 convolution commutes with the mean.
- ``conv4``, the ``alpha`` scaling and the learnable graph ``PA`` of a subset are one ``baddbmm``; the aggregation
  ``einsum('ncuv,nctv->nctu', A_s, x3_s)`` is a ``bmm`` accumulated in place over the subsets.
- All 1x1 convolutions that share an input (the subsets' ``conv3`` and ``down``; the first convolutions of the four
  temporal branches) are one autograd function of batched matrix products (:func:`pointwise_convs`), whose
  backward accumulates the input gradient in place. On CPU this is much faster than oneDNN's NCHW convolution.
- Max-pooling over time runs in channels-last layout; ReLUs and residual additions are in place.
- Under bf16 autocast, the small parameters are cast before they are broadcast over the batch and the time-mean
  is a sum (autocast would otherwise copy whole activations to change their dtype).
- Evaluation mode folds every batch norm that follows a convolution into it (``fold_bn``, on by default): the GCN's
  ``bn`` scales the subsets' ``conv3`` (the topologies act within a channel), the temporal branches' norms go into
  their convolutions, and only the norm after the max-pooling stays, as a per-channel affine map.

Shapes follow the reference: input ``(N, C, T, V, M)``, features ``(N*M, C', T', V)``. The one extension: inputs of
1-7 channels other than 3 (e.g. 6 for stacked joint+bone), for which the reference builds empty convolutions and
fails, get 8 relation channels like 3-channel input.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmcl.data.layouts import get_layout
from mmcl.models.registry import register_model

__all__ = ["CTRGCN", "CTRGC", "UnitGCN", "MultiScaleTCN", "TemporalConv", "ResidualConv", "TCNGCNUnit",
           "ctrgcn", "pointwise_convs"]

# (in, out, stride) of units l2..l10 in multiples of BASE_CHANNELS; l1 maps the input to BASE_CHANNELS.
BASE_CHANNELS = 64
_UNITS = ((1, 1, 1), (1, 1, 1), (1, 1, 1), (1, 2, 2), (2, 2, 1), (2, 2, 1), (2, 4, 2), (4, 4, 1), (4, 4, 1))


def _conv_init(conv: nn.Conv2d) -> None:
    nn.init.kaiming_normal_(conv.weight, mode="fan_out")
    nn.init.constant_(conv.bias, 0)


def _bn_init(bn: nn.modules.batchnorm._BatchNorm, scale: float) -> None:
    nn.init.constant_(bn.weight, scale)
    nn.init.constant_(bn.bias, 0)


def _matmul_dtype(x: Tensor) -> torch.dtype:
    """The dtype autocast would run a matrix product in here (``x.dtype`` when autocast is off)."""
    device = x.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype


class _PointwiseConvs(torch.autograd.Function):
    """1x1 convolutions of one input ``(N, C, T, V)``, as batched matrix products, one output per weight block.

    On CPU, oneDNN's NCHW convolution backward is several times slower than the same products through ``bmm``;
    accumulating the input gradient of all blocks in place also saves one full-size tensor per block.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor, sizes: tuple[int, ...]) -> tuple[Tensor, ...]:
        n, c, t, v = x.shape
        dtype = _matmul_dtype(x)
        with torch.autocast(x.device.type, enabled=False):
            x3 = x.reshape(n, c, t * v).to(dtype)
            w, b = weight.flatten(1).to(dtype), bias.to(dtype)
            blocks = list(zip(w.split(sizes), b.split(sizes)))
            if torch.jit.is_tracing():  # the TorchScript tracer (ONNX export) does not record out= products
                outs = tuple(torch.baddbmm(bi.view(1, -1, 1), wi.expand(n, -1, -1), x3).view(n, -1, t, v)
                             for wi, bi in blocks)
            else:
                outs = tuple(x3.new_empty(n, size, t, v) for size in sizes)  # not views: callers may modify them
                for out, (wi, bi) in zip(outs, blocks):
                    torch.baddbmm(bi.view(1, -1, 1), wi.expand(n, -1, -1), x3, out=out.view(n, -1, t * v))
        ctx.save_for_backward(x3, w)
        ctx.sizes, ctx.x_shape, ctx.dtypes = sizes, x.shape, (x.dtype, weight.dtype, bias.dtype)
        return outs

    @staticmethod
    def backward(ctx, *grads: Tensor):
        x3, w = ctx.saved_tensors
        n = x3.shape[0]
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        # per-sample products and sums come in the products' dtype (as autocast's own convolutions give their
        # weight gradients); the sum over the batch is taken in fp32
        acc_dtype = torch.promote_types(x3.dtype, torch.float32)
        grad_x, grad_w, grad_b = None, [], []
        with torch.autocast(x3.device.type, enabled=False):
            for g, wi in zip(grads, w.split(ctx.sizes)):
                g = g.reshape(n, wi.shape[0], -1).to(x3.dtype)
                if need_x:
                    wt = wi.t().expand(n, -1, -1)
                    grad_x = torch.bmm(wt, g) if grad_x is None else grad_x.baddbmm_(wt, g)
                if need_w:
                    grad_w.append(torch.bmm(g, x3.transpose(1, 2)).sum(0, dtype=acc_dtype))
                if need_b:
                    grad_b.append(g.sum(2).sum(0, dtype=acc_dtype))
        x_dtype, w_dtype, b_dtype = ctx.dtypes
        return (grad_x.view(ctx.x_shape).to(x_dtype) if need_x else None,
                torch.cat(grad_w).view(-1, w.shape[1], 1, 1).to(w_dtype) if need_w else None,
                torch.cat(grad_b).to(b_dtype) if need_b else None,
                None)


def pointwise_convs(x: Tensor, convs: Sequence[nn.Conv2d | tuple[Tensor, Tensor]]) -> tuple[Tensor, ...]:
    """``tuple(conv(x) for conv in convs)`` for 1x1 convolutions (stride 1) sharing the input ``x``; a convolution
    may also be given as its ``(weight, bias)`` (e.g. with a batch norm folded in, :func:`fold_bn`)."""
    pairs = [(c.weight, c.bias) if isinstance(c, nn.Conv2d) else c for c in convs]
    weight = torch.cat([w for w, _ in pairs])
    bias = torch.cat([b for _, b in pairs])
    sizes = tuple(int(w.shape[0]) for w, _ in pairs)  # Python ints, also under the tracer (ONNX export)
    return _PointwiseConvs.apply(x, weight, bias, sizes)


def bn_affine(bn: nn.modules.batchnorm._BatchNorm) -> tuple[Tensor, Tensor]:
    """(scale, shift) of a batch norm in evaluation mode: ``bn(x) = x * scale + shift`` per channel."""
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


def fold_bn(conv: nn.Conv2d, bn: nn.modules.batchnorm._BatchNorm) -> tuple[Tensor, Tensor]:
    """(weight, bias) of ``bn(conv(x))`` as one convolution, ``bn`` in evaluation mode."""
    scale, shift = bn_affine(bn)
    return conv.weight * scale.view(-1, 1, 1, 1), conv.bias * scale + shift


def _fold_bn_active(module: nn.Module) -> bool:
    """Evaluation mode with batch norms folded into the convolutions (the model's ``fold_bn`` switch)."""
    return module.fold_bn and not module.training


class CTRGC(nn.Module):
    """Parameters of one subset's channel-wise topology refinement graph convolution.

    ``conv1``/``conv2`` (in -> rel) embed joints for their pairwise relation, ``conv4`` (rel -> out) turns the
    relation into a channel-wise topology, ``conv3`` (in -> out) transforms the features that are aggregated.
    :class:`UnitGCN` computes all subsets together, so this module has no forward of its own.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        # The reference rule: 8 for raw 3- or 9-channel input, else in/8. Inputs of 1-7 channels, for which the
        # reference builds empty convolutions and fails, get 8 as well.
        rel_channels = 8 if in_channels in (3, 9) or in_channels < 8 else in_channels // 8
        self.conv1 = nn.Conv2d(in_channels, rel_channels, 1)
        self.conv2 = nn.Conv2d(in_channels, rel_channels, 1)
        self.conv3 = nn.Conv2d(in_channels, out_channels, 1)
        self.conv4 = nn.Conv2d(rel_channels, out_channels, 1)
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            _conv_init(conv)


class UnitGCN(nn.Module):
    """Spatial graph convolution of one unit: CTR-GC over the subsets of ``adjacency``, summed, BN, residual, ReLU.

    ``PA`` (learnable, initialised to the graph) is added to every channel-wise topology; ``alpha`` (init 0) scales
    the refinement and is shared by the subsets. With ``fold_bn`` (set by :class:`CTRGCN`), evaluation mode folds
    the batch norms into the convolutions.
    """

    fold_bn = True

    def __init__(self, in_channels: int, out_channels: int, adjacency: Tensor) -> None:
        super().__init__()
        self.convs = nn.ModuleList([CTRGC(in_channels, out_channels) for _ in range(adjacency.shape[0])])
        self.down = (nn.Sequential(nn.Conv2d(in_channels, out_channels, 1), nn.BatchNorm2d(out_channels))
                     if in_channels != out_channels else None)
        self.PA = nn.Parameter(adjacency.clone())
        self.alpha = nn.Parameter(torch.zeros(1))
        self.bn = nn.BatchNorm2d(out_channels)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                _conv_init(module)
            elif isinstance(module, nn.BatchNorm2d):
                _bn_init(module, 1)
        _bn_init(self.bn, 1e-6)

    def forward(self, x: Tensor) -> Tensor:
        n, _, t, v = x.shape
        convs = self.convs
        subsets = len(convs)
        rel_channels, out_channels = convs[0].conv1.out_channels, convs[0].conv3.out_channels

        # conv1/conv2 of every subset, applied to the time-mean (the mean over T commutes with a 1x1 conv).
        w12 = torch.cat([c.conv1.weight for c in convs] + [c.conv2.weight for c in convs]).flatten(1)
        b12 = torch.cat([c.conv1.bias for c in convs] + [c.conv2.bias for c in convs])
        with torch.autocast(x.device.type, enabled=False):
            x_mean = x.sum(2) / t  # on CPU, a bf16 mean copies its input to fp32 first; a sum does not
        q = torch.matmul(w12, x_mean) + b12.unsqueeze(-1)  # (n, 2*S*R, V)
        q1, q2 = q.view(n, 2, subsets, rel_channels, v).unbind(1)
        # relation[n, s, r, v, u] = tanh(q1[u] - q2[v]): the reference's (u, v) matrix, transposed for the product.
        relation = torch.tanh(q1.unsqueeze(-2) - q2.unsqueeze(-1)).flatten(3)

        # conv3 of every subset (and the down-projection) as one set of products. With the batch norms folded
        # (evaluation), bn's scale goes into every conv3 (the topologies act within a channel) and its shift into
        # the down-projection's bias, whose output then starts the sum.
        folded = _fold_bn_active(self)
        if folded:
            scale, shift = bn_affine(self.bn)
            heads = [(c.conv3.weight * scale.view(-1, 1, 1, 1), c.conv3.bias * scale) for c in convs]
            if self.down is not None:
                down_weight, down_bias = fold_bn(*self.down)
                heads.append((down_weight, down_bias + shift))
        else:
            heads = [c.conv3 for c in convs] + ([self.down[0]] if self.down is not None else [])
        features = pointwise_convs(x, heads)
        dtype = features[0].dtype  # the products' dtype (bf16 under autocast)
        y = None
        if folded:
            y = features[-1] if self.down is not None else x.to(dtype) + shift.to(dtype).view(-1, 1, 1)
            y = y.view(n * out_channels, t, v)

        # topology_s = alpha * conv4_s(relation_s) + PA_s (transposed); y = sum_s x3_s @ topology_s. The small
        # parameters are cast to the products' dtype before they are broadcast over the batch (under autocast,
        # casting the broadcast tensors would copy them once per sample).
        for s, conv in enumerate(convs):
            bias = (self.alpha * conv.conv4.bias.unsqueeze(-1) + self.PA[s].t().reshape(1, -1)).to(dtype)
            weight = (self.alpha * conv.conv4.weight.flatten(1)).to(dtype)
            topology = torch.baddbmm(bias.unsqueeze(0), weight.expand(n, -1, -1), relation[:, s])
            topology = topology.view(n * out_channels, v, v)
            x3 = features[s].view(n * out_channels, t, v)
            y = torch.bmm(x3, topology) if y is None else y.baddbmm_(x3, topology)

        y = y.view(n, out_channels, t, v)
        if not folded:
            y = self.bn(y)
            y += self.down[1](features[-1]) if self.down is not None else x
        return y.relu_()


class TemporalConv(nn.Module):
    """Temporal convolution (kernel x 1, dilated, strided, "same" padding) followed by batch norm."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 dilation: int = 1) -> None:
        super().__init__()
        pad = (kernel_size + (kernel_size - 1) * (dilation - 1) - 1) // 2
        self.conv = nn.Conv2d(in_channels, out_channels, (kernel_size, 1), padding=(pad, 0), stride=(stride, 1),
                              dilation=(dilation, 1))
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(self.conv(x))


class MultiScaleTCN(nn.Module):
    """Multi-scale temporal convolution: four branches of out/4 channels, concatenated.

    Branches: (1x1, BN, ReLU, kx1 conv dilation d, BN) for each dilation, (1x1, BN, ReLU, max-pool 3x1, BN),
    (1x1 with stride, BN). The module indices inside ``branches`` are the reference's (they name the weights).
    With ``fold_bn``, evaluation mode folds the batch norms into the convolutions.
    """

    fold_bn = True

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 5, stride: int = 1,
                 dilations: Sequence[int] = (1, 2)) -> None:
        super().__init__()
        num_branches = len(dilations) + 2
        if out_channels % num_branches:
            raise ValueError(f"out_channels ({out_channels}) must be a multiple of the {num_branches} branches")
        bc = out_channels // num_branches
        self.stride = stride
        self.branches = nn.ModuleList([
            nn.Sequential(nn.Conv2d(in_channels, bc, 1), nn.BatchNorm2d(bc), nn.ReLU(inplace=True),
                          TemporalConv(bc, bc, kernel_size, stride=stride, dilation=d))
            for d in dilations
        ])
        self.branches.append(nn.Sequential(
            nn.Conv2d(in_channels, bc, 1), nn.BatchNorm2d(bc), nn.ReLU(inplace=True),
            nn.MaxPool2d((3, 1), stride=(stride, 1), padding=(1, 0)), nn.BatchNorm2d(bc)))
        self.branches.append(nn.Sequential(nn.Conv2d(in_channels, bc, 1, stride=(stride, 1)), nn.BatchNorm2d(bc)))
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")
                nn.init.constant_(module.bias, 0)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.normal_(module.weight, 1.0, 0.02)
                nn.init.constant_(module.bias, 0)

    def forward(self, x: Tensor) -> Tensor:
        *temporal, pool, strided = self.branches
        folded = _fold_bn_active(self)
        heads = [fold_bn(branch[0], branch[1]) if folded else branch[0] for branch in self.branches]
        if self.stride == 1:
            *hidden, last = pointwise_convs(x, heads)
        else:
            hidden = pointwise_convs(x, heads[:-1])
            last = pointwise_convs(x[:, :, ::self.stride].contiguous(), heads[-1:])[0]
        if folded:
            outs = [self._folded_temporal(branch[3], h.relu_()) for branch, h in zip(temporal, hidden)]
            h = hidden[-1].relu_()
        else:
            outs = [branch[3](branch[1](h).relu_()) for branch, h in zip(temporal, hidden)]
            h = pool[1](hidden[-1]).relu_()
        # max-pooling over time is several times faster in channels-last layout on CPU
        h = pool[3](h.contiguous(memory_format=torch.channels_last)).contiguous()
        if folded:  # the batch norm after the pooling, as a per-channel affine map
            scale, shift = bn_affine(pool[4])
            outs.append(torch.addcmul(shift.to(h.dtype).view(-1, 1, 1), h, scale.to(h.dtype).view(-1, 1, 1)))
            outs.append(last)
        else:
            outs.append(pool[4](h))
            outs.append(strided[1](last))
        return torch.cat(outs, 1)

    @staticmethod
    def _folded_temporal(temporal: TemporalConv, x: Tensor) -> Tensor:
        conv = temporal.conv
        return F.conv2d(x, *fold_bn(conv, temporal.bn), stride=conv.stride, padding=conv.padding,
                        dilation=conv.dilation)


class ResidualConv(nn.Module):
    """Strided 1x1 convolution and batch norm: the unit's residual when its shape changes (``fold_bn``: folded in
    evaluation mode)."""

    fold_bn = True

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, stride=(stride, 1))
        self.bn = nn.BatchNorm2d(out_channels)
        _conv_init(self.conv)
        _bn_init(self.bn, 1)

    def forward(self, x: Tensor) -> Tensor:
        stride = self.conv.stride[0]
        x = x[:, :, ::stride].contiguous() if stride > 1 else x
        if _fold_bn_active(self):
            return pointwise_convs(x, [fold_bn(self.conv, self.bn)])[0]
        return self.bn(pointwise_convs(x, [self.conv])[0])


class TCNGCNUnit(nn.Module):
    """One CTR-GCN unit: ``ReLU(TCN(GCN(x)) + residual(x))``."""

    def __init__(self, in_channels: int, out_channels: int, adjacency: Tensor, stride: int = 1,
                 residual: bool = True) -> None:
        super().__init__()
        self.gcn1 = UnitGCN(in_channels, out_channels, adjacency)
        self.tcn1 = MultiScaleTCN(out_channels, out_channels, kernel_size=5, stride=stride, dilations=(1, 2))
        if not residual:
            self.residual: nn.Module | None = None
        elif in_channels == out_channels and stride == 1:
            self.residual = nn.Identity()
        else:
            self.residual = ResidualConv(in_channels, out_channels, stride=stride)

    def forward(self, x: Tensor) -> Tensor:
        y = self.tcn1(self.gcn1(x))
        if self.residual is not None:
            y += self.residual(x)
        return y.relu_()


class CTRGCN(nn.Module):
    """CTR-GCN for skeletons of any joint layout (see :mod:`mmcl.data.layouts`).

    Args:
        num_classes: number of action classes.
        layout: joint layout name; gives the number of joints and the graph.
        in_channels: input channels per joint (3 for xyz).
        num_person: persons per sample (M).
        drop_rate: dropout before the classifier (0 in the reference configs).
        fold_bn: in evaluation mode, fold every batch norm that follows a convolution into it (the same function
            computed with fewer passes over the activations; the parameters and the state dict are unchanged).
    """

    def __init__(self, num_classes: int = 60, layout: str = "ntu25", in_channels: int = 3, num_person: int = 2,
                 drop_rate: float = 0.0, fold_bn: bool = True) -> None:
        super().__init__()
        graph = get_layout(layout)
        adjacency = torch.from_numpy(graph.adjacency())
        self.layout_name = graph.name
        self.num_classes = num_classes
        self.num_joints = graph.num_joints
        self.num_person = num_person
        self.in_channels = in_channels
        self.feature_dim = 4 * BASE_CHANNELS

        self.data_bn = nn.BatchNorm1d(num_person * in_channels * graph.num_joints)
        self.l1 = TCNGCNUnit(in_channels, BASE_CHANNELS, adjacency, residual=False)
        for i, (cin, cout, stride) in enumerate(_UNITS, start=2):
            setattr(self, f"l{i}", TCNGCNUnit(cin * BASE_CHANNELS, cout * BASE_CHANNELS, adjacency, stride=stride))
        self.fc = nn.Linear(self.feature_dim, num_classes)
        nn.init.normal_(self.fc.weight, 0, math.sqrt(2.0 / num_classes))
        _bn_init(self.data_bn, 1)
        self.drop_out = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
        self.fold_bn = fold_bn

    @property
    def fold_bn(self) -> bool:
        """Whether evaluation mode folds the batch norms into the convolutions (settable)."""
        return self.l1.gcn1.fold_bn

    @fold_bn.setter
    def fold_bn(self, enabled: bool) -> None:
        for module in self.modules():
            if isinstance(module, (UnitGCN, MultiScaleTCN, ResidualConv)):
                module.fold_bn = bool(enabled)

    @property
    def units(self) -> list[TCNGCNUnit]:
        """The ten units, input first."""
        return [getattr(self, f"l{i}") for i in range(1, len(_UNITS) + 2)]

    def _check_input(self, x: Tensor) -> None:
        expected = (self.in_channels, None, self.num_joints, self.num_person)
        if x.dim() != 5 or any(e is not None and s != e for s, e in zip(x.shape[1:], expected)):
            raise ValueError(
                f"CTRGCN({self.layout_name}) expects input (N, C={self.in_channels}, T, V={self.num_joints}, "
                f"M={self.num_person}), got {tuple(x.shape)}")

    def forward_features(self, x: Tensor) -> dict[str, Tensor]:
        """One pass: ``feature_map`` (N*M, 256, T', V) of the last unit, ``global_feature`` (N, 256), ``logits``."""
        self._check_input(x)
        n, c, t, v, m = x.shape
        x = x.permute(0, 4, 3, 1, 2).reshape(n, m * v * c, t)
        x = self.data_bn(x)
        x = x.view(n, m, v, c, t).permute(0, 1, 3, 4, 2).reshape(n * m, c, t, v)
        for unit in self.units:
            x = unit(x)
        global_feature = x.view(n, m, x.shape[1], -1).mean(3).mean(1)
        return {"feature_map": x, "global_feature": global_feature, "logits": self.classify(global_feature)}

    def classify(self, global_feature: Tensor) -> Tensor:
        """Dropout and the linear classifier: (N, 256) -> (N, num_classes)."""
        return self.fc(self.drop_out(global_feature))

    def forward(self, x: Tensor) -> Tensor:
        """Logits (N, num_classes) of skeletons ``x`` (N, C, T, V, M)."""
        return self.forward_features(x)["logits"]


@register_model
def ctrgcn(num_classes: int, layout: str = "ntu25", in_channels: int = 3, num_person: int = 2,
           drop_rate: float = 0.0, fold_bn: bool = True) -> CTRGCN:
    """CTR-GCN as published (NTU configs: ntu25, M=2; NW-UCLA: nwucla20, M=1)."""
    return CTRGCN(num_classes=num_classes, layout=layout, in_channels=in_channels, num_person=num_person,
                  drop_rate=drop_rate, fold_bn=fold_bn)
