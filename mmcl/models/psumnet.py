"""PSUMNet (Trivedi and Sarvadevabhatla, "PSUMNet: Unified Modality Part Streams are All You Need for Efficient
Pose-based Action Recognition", ECCV-W 2022), parameter for parameter the released ``model.psumnet.Model``
(github.com/skelemoa/psumnet).

PSUMNet replaces the four modality streams of CTR-GCN (joint, bone and their motions, one network each) by three
part streams that each see all four modalities at once, 12 input channels (:class:`mmcl.data.parts.PartInput`):

============  ======================================  ==================  ==========================
stream        joints (0-based NTU-25)                 units (of 1-10)     parameters at 60 classes
============  ======================================  ==================  ==========================
``body``      all 25                                  1-10                1,448,418
``hand``      20, 4, 5, 6, 7, 21, 22, 8, 9, 10, 11,   1, 5, 6, 7, 8, 9    978,482
              23, 24
``leg``       0, 12-19                                1, 5, 6, 8          499,898
============  ======================================  ==================  ==========================

2,926,798 in all, against 5,786,688 for CTR-GCN's four streams. The release's units are CTR-GCN's (``STRB`` =
``TCN_GCN_unit``, ``SAMG`` = ``CTRGC``, ``TRM`` = ``MultiScale_TemporalConv``, same parameters, initialisation and
arithmetic), so this model is built from :mod:`mmcl.models.ctrgcn`'s units: unit ``k`` of the table is CTR-GCN's
``l<k>`` (64, 64, 64, 64, 128 stride 2, 128, 128, 256 stride 2, 256, 256 channels), chained in the listed order
on the part's own graph. The state dict is the release's: ``data_bn``, ``layers.<i>.gcn1`` / ``tcn1`` /
``residual``, ``fc``; a released checkpoint of the same stream and class count loads with ``strict=True`` and
gives the same logits (train and eval mode) and gradients. With the same ``torch.manual_seed`` a fresh body stream
has the release's very weights (the release also builds, and discards, the units a hand or leg stream skips, so
those two draw the same distributions from a different point of the random stream).

``leg_graph`` selects the leg's graph (:data:`mmcl.data.parts.LEG_GRAPHS`): ``intended`` (default) or the
release's off-by-one ``released`` pairs. The graph only initialises the learnable adjacency ``PA``, so a released
leg checkpoint loads into either; but it was trained on the released leg bones, so use one with
``leg_graph="released"`` for the model and the input alike. In training configs the data stream says both:
``data.stream: psumnet_leg_released`` gives the input the released leg bones and the model ``leg_graph="released"``
(:func:`mmcl.data.streams.stream_model_args`); the configs meant to reproduce or load the release use it.

The release derives a unit's relation channels as ``in/8``, except 8 for 3 or 6 input channels; mmcl's CTR-GC gives
8 for fewer than 8 channels and for 9 (CTR-GCN's rule). Both give 1 for the 12-channel input and 8 for the 64-channel
units; they differ only for 9 input channels, which no PSUMNet configuration uses.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from mmcl.data.parts import MODALITIES, part_layout
from mmcl.models.ctrgcn import TCNGCNUnit
from mmcl.models.registry import register_model

__all__ = ["PSUMNet", "STREAM_UNITS", "psumnet"]

BASE_CHANNELS = 64
# Unit k (1-based) of the release: (output channels in multiples of BASE_CHANNELS, temporal stride). A unit takes
# the output of the unit before it in the stream (unit 1: the input), which the streams' unit lists keep consistent.
_UNIT_SHAPES = {1: (1, 1), 2: (1, 1), 3: (1, 1), 4: (1, 1), 5: (2, 2), 6: (2, 1), 7: (2, 1), 8: (4, 2), 9: (4, 1),
                10: (4, 1)}
STREAM_UNITS: dict[str, tuple[int, ...]] = {
    "body": (1, 2, 3, 4, 5, 6, 7, 8, 9, 10),
    "hand": (1, 5, 6, 7, 8, 9),
    "leg": (1, 5, 6, 8),
}


class PSUMNet(nn.Module):
    """One PSUMNet part stream.

    Args:
        num_classes: number of action classes.
        stream: ``body``, ``hand`` or ``leg``.
        in_channels: input channels per joint (12: joint, bone, joint-motion, bone-motion).
        num_person: persons per sample (M).
        drop_rate: dropout before the classifier (0 in the release's configs).
        leg_graph: ``intended`` or ``released`` leg graph (the leg stream only; see the module docstring).
        layout: the skeleton layout the parts are cut from; PSUMNet's parts are defined on ``ntu25``.

    Input ``(N, in_channels, T, V_part, M)``; features ``(N*M, 256, T', V_part)``.
    """

    def __init__(self, num_classes: int = 60, stream: str = "body", in_channels: int = 3 * len(MODALITIES),
                 num_person: int = 2, drop_rate: float = 0.0, leg_graph: str = "intended",
                 layout: str = "ntu25") -> None:
        super().__init__()
        if layout != "ntu25":
            raise ValueError(f"PSUMNet's part streams are defined on the ntu25 layout, got layout {layout!r}")
        part = part_layout(stream, leg_graph)  # checks stream and leg_graph
        adjacency = torch.from_numpy(part.adjacency())
        self.stream = stream
        self.leg_graph = leg_graph
        self.layout_name = layout
        self.part_name = part.name
        self.num_classes = num_classes
        self.num_joints = part.num_joints
        self.num_person = num_person
        self.in_channels = in_channels
        self.feature_dim = 4 * BASE_CHANNELS

        self.data_bn = nn.BatchNorm1d(num_person * in_channels * part.num_joints)
        layers, channels = [], in_channels
        for unit in STREAM_UNITS[stream]:
            cout, stride = _UNIT_SHAPES[unit]
            layers.append(TCNGCNUnit(channels, cout * BASE_CHANNELS, adjacency, stride=stride, residual=unit != 1))
            channels = cout * BASE_CHANNELS
        self.layers = nn.ModuleList(layers)
        self.fc = nn.Linear(self.feature_dim, num_classes)
        nn.init.normal_(self.fc.weight, 0, math.sqrt(2.0 / num_classes))
        nn.init.constant_(self.data_bn.weight, 1)
        nn.init.constant_(self.data_bn.bias, 0)
        self.drop_out = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()

    def _check_input(self, x: Tensor) -> None:
        expected = (self.in_channels, None, self.num_joints, self.num_person)
        if x.dim() != 5 or any(e is not None and s != e for s, e in zip(x.shape[1:], expected)):
            raise ValueError(
                f"PSUMNet({self.stream}) expects input (N, C={self.in_channels}, T, V={self.num_joints}, "
                f"M={self.num_person}), got {tuple(x.shape)}")

    def forward_features(self, x: Tensor) -> dict[str, Tensor]:
        """One pass: ``feature_map`` (N*M, 256, T', V_part) of the last unit, ``global_feature`` (N, 256),
        ``logits``."""
        self._check_input(x)
        n, c, t, v, m = x.shape
        x = x.permute(0, 4, 3, 1, 2).reshape(n, m * v * c, t)
        x = self.data_bn(x)
        x = x.view(n, m, v, c, t).permute(0, 1, 3, 4, 2).reshape(n * m, c, t, v)
        for unit in self.layers:
            x = unit(x)
        global_feature = x.view(n, m, x.shape[1], -1).mean(3).mean(1)
        return {"feature_map": x, "global_feature": global_feature, "logits": self.classify(global_feature)}

    def classify(self, global_feature: Tensor) -> Tensor:
        """Dropout and the linear classifier: (N, 256) -> (N, num_classes)."""
        return self.fc(self.drop_out(global_feature))

    def forward(self, x: Tensor) -> Tensor:
        """Logits (N, num_classes) of the part input ``x`` (N, C, T, V_part, M)."""
        return self.forward_features(x)["logits"]


@register_model
def psumnet(num_classes: int, layout: str = "ntu25", in_channels: int = 12, num_person: int = 2,
            stream: str = "body", leg_graph: str = "intended", drop_rate: float = 0.0) -> PSUMNet:
    """One PSUMNet part stream (``stream``: body | hand | leg) as released; 12 input channels by default."""
    return PSUMNet(num_classes=num_classes, stream=stream, in_channels=in_channels, num_person=num_person,
                   drop_rate=drop_rate, leg_graph=leg_graph, layout=layout)
