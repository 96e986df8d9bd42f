"""The evaluation protocols of self-supervised skeleton representation learning, as functions.

- **Linear evaluation**: the encoder is frozen (eval mode, no gradient: its weights and BatchNorm statistics never
  change); a linear classifier is trained on its global features of the training split. The release (HaLP's
  ``action_classification.py``) trains 80 epochs of SGD (momentum 0.9, no weight decay, lr x0.1 at 50 and 70,
  classifier initialised N(0, 0.01)). Here the features are computed once per split (the evaluation crop) and
  standardised with the training split's statistics (as MAE's linear probe does with a non-affine BatchNorm), the
  learning rate is chosen from ``lrs`` and the epoch on the **validation** split, and the test split is scored once.
- **kNN**: cosine similarity between L2-normalised features, majority vote of the ``k`` nearest training samples
  (ties to the lower class index); the release uses k = 1.
- **Semi-supervised**: :func:`mmcl.data.subsets.stratified_subset` picks a class-stratified, seeded fraction of the
  training labels (1 %, 10 %: ``data.label_fraction``); fine-tuning then trains on those alone.
- **Fine-tuning** and **transfer** run through ``mmcl probe-encoder`` (the training engine, started from the encoder
  checkpoint; transfer = a checkpoint pre-trained on another dataset).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

__all__ = ["Features", "extract_features", "LinearProbeConfig", "linear_probe", "linear_eval", "knn_predict",
           "knn_eval"]


@dataclass
class Features:
    """Global features of one split: ``features`` (N, D) float32, ``labels`` (N,), ``indices`` (N,) into the
    prepared dataset."""

    features: np.ndarray
    labels: np.ndarray
    indices: np.ndarray


@torch.no_grad()
def extract_features(model: nn.Module, loader, device: str | torch.device = "cpu",
                     autocast_dtype: torch.dtype | None = None, desc: str = "features",
                     progress: bool = True) -> Features:
    """``model.forward_features(x)["global_feature"]`` of every sample of ``loader``, the model in eval mode.

    The model's training flag is restored afterwards; nothing else about it changes.
    """
    was_training = model.training
    model.eval()
    device = torch.device(device)
    feats, labels, indices = [], [], []
    try:
        for batch in tqdm(loader, desc=desc, leave=False, disable=not progress):
            x = batch["skeleton"].to(device)
            with torch.autocast(device.type, dtype=autocast_dtype or torch.bfloat16, enabled=autocast_dtype is not None):
                out = model.forward_features(x)["global_feature"]
            feats.append(out.float().cpu().numpy())
            labels.append(np.asarray(batch["label"]))
            indices.append(np.asarray(batch["index"]))
    finally:
        model.train(was_training)
    return Features(np.concatenate(feats), np.concatenate(labels).astype(np.int64), np.concatenate(indices))


@dataclass
class LinearProbeConfig:
    """Linear classifier training on frozen features (see the module docstring)."""

    epochs: int = 80
    batch_size: int = 64
    lrs: list[float] = field(default_factory=lambda: [0.005, 0.05, 0.5])  # the release's 0.005 first
    momentum: float = 0.9
    weight_decay: float = 0.0
    steps: list[int] = field(default_factory=lambda: [50, 70])
    standardize: bool = True
    seed: int = 0


def _top1(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(1) == labels).float().mean())


def linear_probe(train: Features, val: Features, test: Features, num_classes: int,
                 config: LinearProbeConfig | None = None) -> dict:
    """Train a linear classifier on ``train``; select lr and epoch on ``val``; score ``test`` once.

    Returns ``val_top1``, ``test_top1``, ``lr``, ``epoch`` (1-based) and ``train_top1`` of the selected classifier.
    """
    config = config or LinearProbeConfig()
    x_train, x_val, x_test = (torch.from_numpy(f.features).float() for f in (train, val, test))
    if config.standardize:
        mean, std = x_train.mean(0), x_train.std(0).clamp_min(1e-6)
        x_train, x_val, x_test = ((x - mean) / std for x in (x_train, x_val, x_test))
    y_train, y_val, y_test = (torch.from_numpy(f.labels) for f in (train, val, test))
    best = None
    for lr in config.lrs:
        generator = torch.Generator().manual_seed(config.seed)
        head = nn.Linear(x_train.shape[1], num_classes)
        with torch.no_grad():
            head.weight.normal_(0.0, 0.01, generator=generator)
            head.bias.zero_()
        optimizer = torch.optim.SGD(head.parameters(), lr=lr, momentum=config.momentum,
                                    weight_decay=config.weight_decay)
        schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, config.steps, 0.1)
        for epoch in range(config.epochs):
            order = torch.randperm(len(x_train), generator=generator)
            for start in range(0, len(order), config.batch_size):
                idx = order[start:start + config.batch_size]
                loss = F.cross_entropy(head(x_train[idx]), y_train[idx])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            schedule.step()
            with torch.no_grad():
                val_top1 = _top1(head(x_val), y_val)
            if best is None or val_top1 > best["val_top1"]:
                best = {"val_top1": val_top1, "lr": lr, "epoch": epoch + 1,
                        "state": {k: v.clone() for k, v in head.state_dict().items()}}
    head.load_state_dict(best.pop("state"))
    with torch.no_grad():
        best["test_top1"] = _top1(head(x_test), y_test)
        best["train_top1"] = _top1(head(x_train), y_train)
    return best


def linear_eval(model: nn.Module, loaders: dict, num_classes: int, config: LinearProbeConfig | None = None,
                device: str | torch.device = "cpu", autocast_dtype: torch.dtype | None = None) -> dict:
    """Linear evaluation of a frozen ``model`` with ``loaders`` {"train", "val", "test"} (evaluation transforms)."""
    feats = {split: extract_features(model, loaders[split], device, autocast_dtype, desc=f"features ({split})")
             for split in ("train", "val", "test")}
    return linear_probe(feats["train"], feats["val"], feats["test"], num_classes, config)


def knn_predict(train_features: np.ndarray, train_labels: np.ndarray, query: np.ndarray, k: int = 1,
                chunk: int = 4096) -> np.ndarray:
    """Majority vote of the ``k`` most cosine-similar training samples (ties: the lower class index)."""
    if not 1 <= k <= len(train_labels):
        raise ValueError(f"k must be in 1..{len(train_labels)}, got {k}")
    bank = F.normalize(torch.from_numpy(train_features).float(), dim=1)
    labels = torch.from_numpy(np.asarray(train_labels)).long()
    num_classes = int(labels.max()) + 1
    out = []
    for start in range(0, len(query), chunk):
        q = F.normalize(torch.from_numpy(query[start:start + chunk]).float(), dim=1)
        neighbours = (q @ bank.t()).topk(k, dim=1).indices
        votes = F.one_hot(labels[neighbours], num_classes).sum(1)
        out.append(votes.argmax(1))
    return torch.cat(out).numpy()


def knn_eval(train: Features, test: Features, k: int = 1) -> float:
    """kNN top-1 of ``test`` against the ``train`` features."""
    return float((knn_predict(train.features, train.labels, test.features, k) == test.labels).mean())
