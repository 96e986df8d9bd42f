"""An independent port of CTR-GCN's NTU feeder functions (feeders/tools.py, feeders/feeder_ntu.py), for tests only.

It follows the reference operation by operation (torch bilinear resize of a (C*V*M, T) image, torch rotation
matrices stacked per frame, 1-based bone pairs), except that its random numbers are passed in, so a test can give it
the same draws as :class:`mmcl.data.transforms.ClipTransform`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

# feeders/bone_pairs.py (1-based (joint, parent)).
NTU_PAIRS = (
    (1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7), (9, 21), (10, 9), (11, 10), (12, 11),
    (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18), (20, 19), (22, 23), (21, 21), (23, 8),
    (24, 25), (25, 12),
)
# feeders/feeder_ucla.py's bone list (20 Kinect v1 joints).
UCLA_PAIRS = (
    (1, 2), (2, 3), (3, 3), (4, 3), (5, 3), (6, 5), (7, 6), (8, 7), (9, 3), (10, 9), (11, 10), (12, 11),
    (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18), (20, 19),
)


def valid_frame_num(data_numpy: np.ndarray) -> int:
    return int(np.sum(data_numpy.sum(0).sum(-1).sum(-1) != 0))


def valid_crop_resize(data_numpy, valid_frame_num, p_interval, window, p=None, bias=None):
    """tools.valid_crop_resize with the training draws (p, bias) given instead of drawn."""
    C, T, V, M = data_numpy.shape
    begin, end = 0, valid_frame_num
    valid_size = end - begin
    if len(p_interval) == 1:
        p = p_interval[0]
        bias = int((1 - p) * valid_size / 2)
        data = data_numpy[:, begin + bias:end - bias, :, :]
        cropped_length = data.shape[1]
    else:
        cropped_length = np.minimum(np.maximum(int(np.floor(valid_size * p)), 64), valid_size)
        assert 0 <= bias <= valid_size - cropped_length
        data = data_numpy[:, begin + bias:begin + bias + cropped_length, :, :]
    data = torch.tensor(data, dtype=torch.float)
    data = data.permute(0, 2, 3, 1).contiguous().view(C * V * M, cropped_length)
    data = data[None, None, :, :]
    data = F.interpolate(data, size=(C * V * M, window), mode="bilinear", align_corners=False).squeeze()
    return data.contiguous().view(C, V, M, window).permute(0, 3, 1, 2).contiguous().numpy()


def _rot(rot):
    cos_r, sin_r = rot.cos(), rot.sin()
    zeros = torch.zeros(rot.shape[0], 1)
    ones = torch.ones(rot.shape[0], 1)
    r1 = torch.stack((ones, zeros, zeros), dim=-1)
    rx2 = torch.stack((zeros, cos_r[:, 0:1], sin_r[:, 0:1]), dim=-1)
    rx3 = torch.stack((zeros, -sin_r[:, 0:1], cos_r[:, 0:1]), dim=-1)
    rx = torch.cat((r1, rx2, rx3), dim=1)
    ry1 = torch.stack((cos_r[:, 1:2], zeros, -sin_r[:, 1:2]), dim=-1)
    r2 = torch.stack((zeros, ones, zeros), dim=-1)
    ry3 = torch.stack((sin_r[:, 1:2], zeros, cos_r[:, 1:2]), dim=-1)
    ry = torch.cat((ry1, r2, ry3), dim=1)
    rz1 = torch.stack((cos_r[:, 2:3], sin_r[:, 2:3], zeros), dim=-1)
    r3 = torch.stack((zeros, zeros, ones), dim=-1)
    rz2 = torch.stack((-sin_r[:, 2:3], cos_r[:, 2:3], zeros), dim=-1)
    rz = torch.cat((rz1, rz2, r3), dim=1)
    return rz.matmul(ry).matmul(rx)


def random_rot(data_numpy, angles):
    """tools.random_rot with the three angles given (float32, as torch's uniform_ would draw them)."""
    data_torch = torch.from_numpy(data_numpy)
    C, T, V, M = data_torch.shape
    data_torch = data_torch.permute(1, 0, 2, 3).contiguous().view(T, C, V * M)
    rot = torch.tensor(angles, dtype=torch.float32)
    rot = torch.stack([rot] * T, dim=0)
    rot = _rot(rot)
    data_torch = torch.matmul(rot, data_torch)
    return data_torch.view(T, C, V, M).permute(1, 0, 2, 3).contiguous()


def feeder_item(data_numpy, pairs, window, train, p=None, bias=None, angles=None, bone=False, vel=False):
    """Feeder.__getitem__'s transform part on one padded (C, T, V, M) sample."""
    data_numpy = np.array(data_numpy)
    valid = valid_frame_num(data_numpy)
    p_interval = [0.5, 1] if train else [0.95]
    data_numpy = valid_crop_resize(data_numpy, valid, p_interval, window, p=p, bias=bias)
    if train and angles is not None:
        data_numpy = random_rot(data_numpy, angles)
    if bone:
        bone_data_numpy = np.zeros_like(data_numpy)
        for v1, v2 in pairs:
            bone_data_numpy[:, :, v1 - 1] = data_numpy[:, :, v1 - 1] - data_numpy[:, :, v2 - 1]
        data_numpy = bone_data_numpy
    if vel:
        data_numpy[:, :-1] = data_numpy[:, 1:] - data_numpy[:, :-1]
        data_numpy[:, -1] = 0
    return np.asarray(data_numpy)
