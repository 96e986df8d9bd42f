"""Two reference classifiers on a synthetic raw directory: how hard is the set for a skeleton model?

- :func:`static_pose_baseline`: the time-averaged pose. The source classes are built so that this scores low
  (reversed pairs have the same average pose).
- :func:`temporal_baseline`: mean pose, spread, velocity and speed in a few consecutive time segments: a crude
  temporal model that shows the set is learnable.

Both read the ``.skeleton`` files back with NTU's standard preprocessing (centred on actor 1's spine-mid joint in
frame 0), fit an L2-regularised multinomial logistic regression on the cross-subject training
performers (NTU-60's list) and return top-1 accuracy on the other performers.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from mmcl.data.ntu import XSUB_TRAIN_SUBJECTS, parse_name, read_skeleton


def load_raw(raw_dir: str | os.PathLike) -> tuple[list[str], np.ndarray, list[np.ndarray]]:
    """(names, 0-based labels, joints (T, 2, 25, 3) per sample) of every ``.skeleton`` in ``raw_dir/skeletons``,
    read by the standard NTU preprocessing (:func:`mmcl.data.ntu.read_skeleton`, centred on actor 1's spine-mid)."""
    paths = sorted((Path(raw_dir) / "skeletons").glob("*.skeleton"))
    if not paths:
        raise FileNotFoundError(f"no .skeleton files under {Path(raw_dir) / 'skeletons'}")
    names = [p.stem for p in paths]
    labels = np.asarray([parse_name(n).label for n in names])
    return names, labels, [read_skeleton(p).astype(np.float64) for p in paths]


def _segments(x: np.ndarray, count: int) -> list[np.ndarray]:
    bounds = np.linspace(0, len(x), count + 1).round().astype(int)
    return [x[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def static_features(x: np.ndarray) -> np.ndarray:
    """The time-averaged pose, flattened (150,)."""
    return x.mean(axis=0).ravel()


def temporal_features(x: np.ndarray, segments: int = 8) -> np.ndarray:
    """Per joint, in ``segments`` equal time segments: mean pose, its spread, mean velocity and mean speed."""
    velocity = np.diff(x, axis=0, append=x[-1:])
    speed = np.linalg.norm(velocity, axis=-1)
    return np.concatenate([stat(s, axis=0).ravel() for arr, stat in ((x, np.mean), (x, np.std), (velocity, np.mean),
                                                                     (speed, np.mean))
                           for s in _segments(arr, segments)])


def cross_subject_split(names: list[str]) -> np.ndarray:
    """Boolean mask of the training samples (NTU-60 cross-subject performers)."""
    return np.array([parse_name(n).performer in XSUB_TRAIN_SUBJECTS["ntu60"] for n in names])


def logistic_regression_accuracy(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
                                 test_y: np.ndarray, weight_decay: float = 1e-3) -> float:
    """Top-1 test accuracy of an L2-regularised multinomial logistic regression on standardised features."""
    mean, std = train_x.mean(axis=0), train_x.std(axis=0) + 1e-6
    xtr = torch.as_tensor((train_x - mean) / std, dtype=torch.float64)
    xte = torch.as_tensor((test_x - mean) / std, dtype=torch.float64)
    ytr = torch.as_tensor(train_y)
    classes = int(max(train_y.max(), test_y.max())) + 1
    w = torch.zeros(xtr.shape[1], classes, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=300, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(xtr @ w + b, ytr) + weight_decay * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        pred = (xte @ w + b).argmax(dim=1).numpy()
    return float((pred == test_y).mean())


def _baseline(raw_dir: str | os.PathLike, features) -> float:
    names, labels, samples = load_raw(raw_dir)
    feats = np.stack([features(x) for x in samples])
    train = cross_subject_split(names)
    if train.all() or not train.any():
        raise ValueError(f"{raw_dir}: the cross-subject split needs both training and test performers")
    return logistic_regression_accuracy(feats[train], labels[train], feats[~train], labels[~train])


def static_pose_baseline(raw_dir: str | os.PathLike) -> float:
    """Cross-subject top-1 of a linear classifier on the time-averaged, centred pose."""
    return _baseline(raw_dir, static_features)


def temporal_baseline(raw_dir: str | os.PathLike) -> float:
    """Cross-subject top-1 of a linear classifier on per-segment pose and motion statistics."""
    return _baseline(raw_dir, temporal_features)
