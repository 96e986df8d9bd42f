"""Classification metrics, the per-sample scores file and the confusion-matrix plot."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from mmcl.io import atomic_path, write_json


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, k: int = 1) -> float:
    """Fraction of samples whose label is among the ``k`` highest scores."""
    if len(labels) == 0:
        raise ValueError("no samples to score")
    k = min(k, scores.shape[1])
    topk = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return float((topk == labels[:, None]).any(axis=1).mean())


def confusion_matrix(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(num_classes, num_classes) counts; rows are true classes, columns predictions."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (labels, pred), 1)
    return cm


@dataclass
class ClassificationReport:
    top1: float
    top5: float
    mean_class_accuracy: float
    per_class_accuracy: dict[str, float | None]  # None for classes absent from the split
    num_samples: int
    confusion: np.ndarray

    def to_dict(self) -> dict:
        return {
            "top1": self.top1, "top5": self.top5, "mean_class_accuracy": self.mean_class_accuracy,
            "num_samples": self.num_samples, "per_class_accuracy": self.per_class_accuracy,
        }


def classification_report(scores: np.ndarray, labels: np.ndarray, class_names: Sequence[str]) -> ClassificationReport:
    """Top-1, top-5, mean class accuracy, per-class accuracy and the confusion matrix."""
    cm = confusion_matrix(scores.argmax(1), labels, len(class_names))
    support = cm.sum(1)
    per_class = {name: (float(cm[i, i] / support[i]) if support[i] else None) for i, name in enumerate(class_names)}
    present = [v for v in per_class.values() if v is not None]
    return ClassificationReport(
        top1=topk_accuracy(scores, labels, 1), top5=topk_accuracy(scores, labels, 5),
        mean_class_accuracy=float(np.mean(present)), per_class_accuracy=per_class,
        num_samples=int(len(labels)), confusion=cm)


def plot_confusion(cm: np.ndarray, class_names: Sequence[str], path: str | os.PathLike, title: str = "") -> Path:
    """Row-normalised confusion matrix as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(class_names)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    size = max(5.0, 0.32 * n + 2)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    if n <= 60:
        ax.set_xticks(range(n), class_names, rotation=90, fontsize=7)
        ax.set_yticks(range(n), class_names, fontsize=7)
        if n <= 30:
            for i in range(n):
                for j in range(n):
                    if cm[i, j]:
                        ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=6,
                                color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
    return path


def save_scores(path: str | os.PathLike, names: Sequence[str], labels: np.ndarray, scores: np.ndarray,
                class_names: Sequence[str]) -> Path:
    """Per-sample scores (logits) with names, labels and class names, as ``.npz``."""
    path = Path(path)
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, names=np.asarray(names), labels=np.asarray(labels, dtype=np.int64),
                 scores=np.asarray(scores, dtype=np.float32), class_names=np.asarray(class_names))
    return path


@dataclass
class Scores:
    names: list[str]
    labels: np.ndarray
    scores: np.ndarray
    class_names: list[str]


def load_scores(path: str | os.PathLike) -> Scores:
    """Read a scores file written by :func:`save_scores`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"scores file not found: {path}")
    with np.load(path) as f:
        missing = {"names", "labels", "scores", "class_names"} - set(f.files)
        if missing:
            raise ValueError(f"{path} is not an mmcl scores file: missing {sorted(missing)}")
        return Scores(list(f["names"]), f["labels"], f["scores"], list(f["class_names"]))


def write_report(out_dir: str | os.PathLike, prefix: str, report: ClassificationReport,
                 class_names: Sequence[str], extra: dict | None = None) -> dict:
    """``<prefix>metrics.json`` and ``<prefix>confusion.png`` in ``out_dir``; returns the metrics dict."""
    out_dir = Path(out_dir)
    metrics = {**(extra or {}), **report.to_dict()}
    write_json(out_dir / f"{prefix}metrics.json", metrics)
    plot_confusion(report.confusion, class_names, out_dir / f"{prefix}confusion.png",
                   title=f"top-1 {100 * report.top1:.2f}%  ({report.num_samples} samples)")
    return metrics
