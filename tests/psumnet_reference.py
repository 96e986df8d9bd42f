"""A straightforward port of the PSUMNet release (github.com/skelemoa/psumnet), for tests only: ``model/psumnet.py``
(``Model`` and its units, class names the release's), ``graph/ntu_rgb_d.py`` with CTR-GCN's ``graph/tools.py``,
``feeders/bone_pairs.py`` and the part-input half of ``feeders/feeder_ntu.py``'s ``__getitem__``.

Left out: ``Model``'s ``import_class`` graph lookup (the graph is passed in), the non-adaptive graph path
(``adaptive=True`` in every release config) and the unused ``coff_embedding`` / ``mid_channels`` attributes.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

# ---------------------------------------------------------------------------------------------------------------
# graph/ntu_rgb_d.py (+ CTR-GCN's graph/tools.py) and feeders/bone_pairs.py, 1-based
# ---------------------------------------------------------------------------------------------------------------

NTU_PAIRS = ((1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7), (9, 21), (10, 9), (11, 10), (12, 11),
             (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18), (20, 19), (22, 23), (23, 8),
             (24, 25), (25, 12))
KINECT_HAND_PAIRS = ((2, 1), (3, 2), (4, 3), (5, 4), (6, 5), (7, 5), (8, 1), (9, 8), (10, 9), (11, 10), (12, 11),
                     (13, 11))
KINECT_LEG_PAIRS = ((2, 1), (3, 2), (4, 3), (5, 4), (5, 1), (6, 5), (7, 6), (8, 7))


def edge2mat(link, num_node):
    A = np.zeros((num_node, num_node))
    for i, j in link:
        A[j, i] = 1
    return A


def normalize_digraph(A):
    Dl = np.sum(A, 0)
    h, w = A.shape
    Dn = np.zeros((w, w))
    for i in range(w):
        if Dl[i] > 0:
            Dn[i, i] = Dl[i] ** (-1)
    return np.dot(A, Dn)


def get_spatial_graph(num_node, self_link, inward, outward):
    I = edge2mat(self_link, num_node)
    In = normalize_digraph(edge2mat(inward, num_node))
    Out = normalize_digraph(edge2mat(outward, num_node))
    return np.stack((I, In, Out))


def spatial_graph(num_node, inward_ori_index):
    inward = [(i - 1, j - 1) for (i, j) in inward_ori_index]
    outward = [(j, i) for (i, j) in inward]
    return get_spatial_graph(num_node, [(i, i) for i in range(num_node)], inward, outward)


class Graph:
    """graph.ntu_rgb_d.Graph(labeling_mode='spatial'), with the leg pairs replaceable."""

    def __init__(self, leg_pairs=KINECT_LEG_PAIRS):
        self.A = spatial_graph(25, NTU_PAIRS)
        self.hand_A = spatial_graph(13, KINECT_HAND_PAIRS)
        self.leg_A = spatial_graph(9, leg_pairs)


# ---------------------------------------------------------------------------------------------------------------
# model/psumnet.py
# ---------------------------------------------------------------------------------------------------------------

def conv_init(conv):
    if conv.weight is not None:
        nn.init.kaiming_normal_(conv.weight, mode="fan_out")
    if conv.bias is not None:
        nn.init.constant_(conv.bias, 0)


def bn_init(bn, scale):
    nn.init.constant_(bn.weight, scale)
    nn.init.constant_(bn.bias, 0)


def weights_init(m):
    classname = m.__class__.__name__
    if classname.find("Conv") != -1:
        if hasattr(m, "weight"):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
        if hasattr(m, "bias") and m.bias is not None and isinstance(m.bias, torch.Tensor):
            nn.init.constant_(m.bias, 0)
    elif classname.find("BatchNorm") != -1:
        if hasattr(m, "weight") and m.weight is not None:
            m.weight.data.normal_(1.0, 0.02)
        if hasattr(m, "bias") and m.bias is not None:
            m.bias.data.fill_(0)


class TemporalConv(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, dilation=1):
        super().__init__()
        pad = (kernel_size + (kernel_size - 1) * (dilation - 1) - 1) // 2
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=(kernel_size, 1), padding=(pad, 0),
                              stride=(stride, 1), dilation=(dilation, 1))
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x):
        return self.bn(self.conv(x))


class TRM(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, dilations=(1, 2, 3, 4), residual=True,
                 residual_kernel_size=1):
        super().__init__()
        self.num_branches = len(dilations) + 2
        branch_channels = out_channels // self.num_branches
        kernel_size = [kernel_size] * len(dilations)
        self.branches = nn.ModuleList([
            nn.Sequential(
                nn.Conv2d(in_channels, branch_channels, kernel_size=1, padding=0),
                nn.BatchNorm2d(branch_channels),
                nn.ReLU(inplace=True),
                TemporalConv(branch_channels, branch_channels, kernel_size=ks, stride=stride, dilation=dilation))
            for ks, dilation in zip(kernel_size, dilations)
        ])
        self.branches.append(nn.Sequential(
            nn.Conv2d(in_channels, branch_channels, kernel_size=1, padding=0),
            nn.BatchNorm2d(branch_channels),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=(3, 1), stride=(stride, 1), padding=(1, 0)),
            nn.BatchNorm2d(branch_channels)))
        self.branches.append(nn.Sequential(
            nn.Conv2d(in_channels, branch_channels, kernel_size=1, padding=0, stride=(stride, 1)),
            nn.BatchNorm2d(branch_channels)))
        if not residual:
            self.residual = lambda x: 0
        elif in_channels == out_channels and stride == 1:
            self.residual = lambda x: x
        else:
            self.residual = TemporalConv(in_channels, out_channels, kernel_size=residual_kernel_size, stride=stride)
        self.apply(weights_init)

    def forward(self, x):
        res = self.residual(x)
        out = torch.cat([tempconv(x) for tempconv in self.branches], dim=1)
        out += res
        return out


class SAMG(nn.Module):
    def __init__(self, in_channels, out_channels, rel_reduction=8):
        super().__init__()
        if in_channels == 3 or in_channels == 6:
            self.rel_channels = 8
        else:
            self.rel_channels = in_channels // rel_reduction
        self.conv1 = nn.Conv2d(in_channels, self.rel_channels, kernel_size=1)
        self.conv2 = nn.Conv2d(in_channels, self.rel_channels, kernel_size=1)
        self.conv3 = nn.Conv2d(in_channels, out_channels, kernel_size=1)
        self.conv4 = nn.Conv2d(self.rel_channels, out_channels, kernel_size=1)
        self.tanh = nn.Tanh()
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                conv_init(m)

    def forward(self, x, A=None, alpha=1):
        x1, x2, x3 = self.conv1(x).mean(-2), self.conv2(x).mean(-2), self.conv3(x)
        x1 = self.tanh(x1.unsqueeze(-1) - x2.unsqueeze(-2))
        x1 = self.conv4(x1) * alpha + (A.unsqueeze(0).unsqueeze(0) if A is not None else 0)
        return torch.einsum("ncuv,nctv->nctu", x1, x3)


class unit_tcn(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size=9, stride=1):
        super().__init__()
        pad = int((kernel_size - 1) / 2)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=(kernel_size, 1), padding=(pad, 0),
                              stride=(stride, 1))
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        conv_init(self.conv)
        bn_init(self.bn, 1)

    def forward(self, x):
        return self.bn(self.conv(x))


class unit_gcn(nn.Module):
    def __init__(self, in_channels, out_channels, A, residual=True):
        super().__init__()
        self.num_subset = A.shape[0]
        self.convs = nn.ModuleList()
        for _ in range(self.num_subset):
            self.convs.append(SAMG(in_channels, out_channels))
        if residual:
            if in_channels != out_channels:
                self.down = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1), nn.BatchNorm2d(out_channels))
            else:
                self.down = lambda x: x
        else:
            self.down = lambda x: 0
        self.PA = nn.Parameter(torch.from_numpy(A.astype(np.float32)))
        self.alpha = nn.Parameter(torch.zeros(1))
        self.bn = nn.BatchNorm2d(out_channels)
        self.soft = nn.Softmax(-2)
        self.relu = nn.ReLU(inplace=True)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                conv_init(m)
            elif isinstance(m, nn.BatchNorm2d):
                bn_init(m, 1)
        bn_init(self.bn, 1e-6)

    def forward(self, x):
        y = None
        A = self.PA
        for i in range(self.num_subset):
            z = self.convs[i](x, A[i], self.alpha)
            y = z + y if y is not None else z
        y = self.bn(y)
        y += self.down(x)
        return self.relu(y)


class STRB(nn.Module):
    def __init__(self, in_channels, out_channels, A, stride=1, residual=True, kernel_size=5, dilations=(1, 2)):
        super().__init__()
        self.gcn1 = unit_gcn(in_channels, out_channels, A)
        self.tcn1 = TRM(out_channels, out_channels, kernel_size=kernel_size, stride=stride, dilations=dilations,
                        residual=False)
        self.relu = nn.ReLU(inplace=True)
        if not residual:
            self.residual = lambda x: 0
        elif in_channels == out_channels and stride == 1:
            self.residual = lambda x: x
        else:
            self.residual = unit_tcn(in_channels, out_channels, kernel_size=1, stride=stride)

    def forward(self, x):
        return self.relu(self.tcn1(self.gcn1(x)) + self.residual(x))


class Model(nn.Module):
    def __init__(self, num_class=120, num_point=25, num_person=2, graph=None, in_channels=12, drop_out=0,
                 stream="body"):
        super().__init__()
        self.graph = graph if graph is not None else Graph()
        if stream == "hand":
            A = self.graph.hand_A
        elif stream == "leg":
            A = self.graph.leg_A
        elif stream == "body":
            A = self.graph.A
        self.num_class = num_class
        self.num_point = num_point
        self.data_bn = nn.BatchNorm1d(num_person * in_channels * num_point)
        base_channel = 64
        l1 = STRB(in_channels, base_channel, A, residual=False)
        l2 = STRB(base_channel, base_channel, A)
        l3 = STRB(base_channel, base_channel, A)
        l4 = STRB(base_channel, base_channel, A)
        l5 = STRB(base_channel, base_channel * 2, A, stride=2)
        l6 = STRB(base_channel * 2, base_channel * 2, A)
        l7 = STRB(base_channel * 2, base_channel * 2, A)
        l8 = STRB(base_channel * 2, base_channel * 4, A, stride=2)
        l9 = STRB(base_channel * 4, base_channel * 4, A)
        l10 = STRB(base_channel * 4, base_channel * 4, A)
        if stream == "body":
            layers = [l1, l2, l3, l4, l5, l6, l7, l8, l9, l10]
        elif stream == "hand":
            layers = [l1, l5, l6, l7, l8, l9]
        elif stream == "leg":
            layers = [l1, l5, l6, l8]
        self.layers = nn.ModuleList(layers)
        self.fc = nn.Linear(base_channel * 4, num_class)
        nn.init.normal_(self.fc.weight, 0, math.sqrt(2.0 / num_class))
        bn_init(self.data_bn, 1)
        self.drop_out = nn.Dropout(drop_out) if drop_out else (lambda x: x)

    def forward(self, x):
        N, C, T, V, M = x.size()
        x = x.permute(0, 4, 3, 1, 2).contiguous().view(N, M * V * C, T)
        x = self.data_bn(x)
        x = x.view(N, M, V, C, T).permute(0, 1, 3, 4, 2).contiguous().view(N * M, C, T, V)
        for m in self.layers:
            x = m(x)
        c_new = x.size(1)
        x = x.view(N, M, c_new, -1)
        x = x.mean(3).mean(1)
        x = self.drop_out(x)
        return self.fc(x)


# ---------------------------------------------------------------------------------------------------------------
# feeders/feeder_ntu.py, Feeder.__getitem__ after valid_crop_resize and random_rot
# ---------------------------------------------------------------------------------------------------------------

def feeder_part_input(data_numpy, stream, leg_pairs=KINECT_LEG_PAIRS):
    """The release feeder's part selection, bones, motions and concatenation, on a cropped (C, T, 25, M) clip
    (float32, as valid_crop_resize / random_rot return it)."""
    C, T, V, M = data_numpy.shape
    pairs = NTU_PAIRS
    if stream == "hand":
        hand_data = np.zeros((C, T, 13, M))
        for k, j in enumerate((20, 4, 5, 6, 7, 21, 22, 8, 9, 10, 11, 23, 24)):
            hand_data[:, :, k, :] = data_numpy[:, :, j, :]
        data_numpy = hand_data
        pairs = KINECT_HAND_PAIRS
    elif stream == "leg":
        leg_data = np.zeros((C, T, 9, M))
        for k, j in enumerate((0, 12, 13, 14, 15, 16, 17, 18, 19)):
            leg_data[:, :, k, :] = data_numpy[:, :, j, :]
        data_numpy = leg_data
        pairs = leg_pairs
    bone_data_numpy = np.zeros_like(data_numpy)
    for v1, v2 in pairs:
        bone_data_numpy[:, :, v1 - 1] = data_numpy[:, :, v1 - 1] - data_numpy[:, :, v2 - 1]
    joint_vel_data = np.zeros_like(data_numpy)
    bone_vel_data = np.zeros_like(bone_data_numpy)
    joint_vel_data[:, :-1] = data_numpy[:, 1:] - data_numpy[:, :-1]
    joint_vel_data[:, -1] = 0
    bone_vel_data[:, :-1] = bone_data_numpy[:, 1:] - bone_data_numpy[:, :-1]
    bone_vel_data[:, -1] = 0
    final_data = np.concatenate([data_numpy, bone_data_numpy, joint_vel_data, bone_vel_data], 0)
    return final_data.astype(np.float32)  # main.py: x.float()
