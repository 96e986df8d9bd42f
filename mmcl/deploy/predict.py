"""``mmcl predict``: the top-5 classes of a skeleton file, from a deployable checkpoint.

    mmcl predict --checkpoint runs/x/best.safetensors S001C001P001R001A001.skeleton

Accepted files: an NTU ``.skeleton`` (read exactly as ``mmcl prepare ntu`` reads it), or a ``.npy`` array of shape
(T, M, V, C) in the checkpoint's layout (the prepared format's per-sample layout; (T, V, C) for one person).
:func:`preprocess` turns such a file into the model's input exactly as ``mmcl eval`` feeds a prepared sample of the
test split (all-zero persons up to the checkpoint's, the checkpoint's stream, centre crop 0.95 resized to its window).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from mmcl.data.layouts import get_layout
from mmcl.data.transforms import ClipTransform
from mmcl.errors import DataError
from mmcl.models.checkpoint import CheckpointInfo, load_checkpoint


def preprocess(path: str | os.PathLike, info: CheckpointInfo) -> np.ndarray:
    """A ``.skeleton`` or ``.npy`` file as the model input (C, window, V, M) float32 of the checkpoint ``info``;
    errors name the file and the mismatch."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"skeleton file not found: {path}")
    if path.suffix == ".skeleton":
        from mmcl.data.ntu import read_skeleton

        joints = read_skeleton(path)
    elif path.suffix == ".npy":
        joints = np.load(path, allow_pickle=False).astype(np.float32)
        if joints.ndim == 3:
            joints = joints[:, None]
    else:
        raise DataError(f"{path}: expected a .skeleton or .npy file")
    layout = get_layout(info.layout)
    v, m = layout.num_joints, info.num_person
    if joints.ndim != 4 or joints.shape[2] != v or joints.shape[3] != info.in_channels or joints.shape[0] == 0:
        raise DataError(f"{path}: array of shape {joints.shape}; the checkpoint needs (T, M<={m}, {v}, "
                        f"{info.in_channels}) in layout {info.layout!r}")
    if joints.shape[1] > m:
        raise DataError(f"{path}: {joints.shape[1]} persons; the checkpoint takes at most {m}")
    if joints.shape[1] < m:
        joints = np.concatenate([joints, np.zeros((joints.shape[0], m - joints.shape[1], v, joints.shape[3]),
                                                  dtype=np.float32)], axis=1)
    transform = ClipTransform(window=info.window, stream=info.stream, bones=layout.bones)
    return transform(joints.transpose(3, 0, 2, 1), joints.shape[0])


@torch.no_grad()
def predict_logits(model: torch.nn.Module, info: CheckpointInfo, paths: Sequence[str | os.PathLike]) -> np.ndarray:
    """The model's logits (N, classes) for skeleton files (:func:`preprocess`), one batch."""
    device = next(model.parameters()).device
    batch = torch.from_numpy(np.stack([preprocess(p, info) for p in paths])).to(device)
    return model.eval()(batch).float().cpu().numpy()


def top_classes(logits: np.ndarray, class_names: Sequence[str], k: int = 5) -> list[tuple[str, float]]:
    """The ``k`` most probable (class name, softmax probability) pairs of one row of logits, most probable first."""
    probs = torch.softmax(torch.from_numpy(logits).double(), dim=0)
    top = torch.topk(probs, min(k, len(class_names)))
    return [(class_names[i], float(p)) for p, i in zip(top.values, top.indices)]


def predict_file(checkpoint: str | os.PathLike, path: str | os.PathLike, topk: int = 5) -> list[tuple[str, float]]:
    """The ``topk`` (class name, probability) pairs for one skeleton file."""
    model, info = load_checkpoint(checkpoint)
    return top_classes(predict_logits(model, info, [path])[0], info.class_names, topk)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, type=Path, help="deployable checkpoint (.safetensors)")
    parser.add_argument("file", type=Path, help=".skeleton or .npy file")
    parser.add_argument("--topk", type=int, default=5)


def run(args: argparse.Namespace) -> int:
    for rank, (name, prob) in enumerate(predict_file(args.checkpoint, args.file, args.topk), 1):
        print(f"{rank}. {name:<40} {100 * prob:6.2f}%")
    return 0
