"""Classification metrics, the per-sample scores file, the confusion-matrix plot and, for long-tailed training sets,
many / medium / few-shot accuracy with a per-class accuracy plot ordered by training count."""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from mmcl.errors import DataError
from mmcl.io import atomic_path, write_json


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, k: int = 1) -> float:
    """Fraction of samples whose label is among the ``k`` highest scores.

    Ties rank the lower class index first, as ``argmax`` does (bf16 logits tie often), so top-1 always equals the
    accuracy of the argmax predictions that the report and confusion matrix use.
    """
    if len(labels) == 0:
        raise ValueError("no samples to score")
    k = min(k, scores.shape[1])
    topk = np.argsort(-scores, axis=1, kind="stable")[:, :k]
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
    """Read a scores file written by :func:`save_scores`; a corrupt, foreign or non-finite one is a
    :class:`mmcl.errors.DataError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"scores file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = {"names", "labels", "scores", "class_names"} - set(f.files)
            if missing:
                raise DataError(f"{path} is not an mmcl scores file: missing {sorted(missing)}")
            names, labels, scores, class_names = (f[k] for k in ("names", "labels", "scores", "class_names"))
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as e:
        raise DataError(f"{path}: not a readable scores file ({type(e).__name__}: {e})") from None
    n = len(names)
    if (scores.ndim != 2 or scores.dtype.kind != "f" or labels.shape != (n,) or labels.dtype.kind not in "iu"
            or scores.shape != (n, len(class_names)) or names.dtype.kind != "U" or class_names.dtype.kind != "U"):
        raise DataError(f"{path}: scores {scores.shape} {scores.dtype}, labels {labels.shape} {labels.dtype}, "
                        f"{n} names and {len(class_names)} class names do not fit together")
    if n and not (0 <= labels.min() and labels.max() < len(class_names)):
        raise DataError(f"{path}: labels outside 0..{len(class_names) - 1}")
    if not np.isfinite(scores).all():
        rows = np.flatnonzero(~np.isfinite(scores).all(1))
        raise DataError(f"{path}: scores of {len(rows)} sample(s) are NaN or inf ({', '.join(names[rows[:3]])})")
    return Scores(list(names), labels, scores, list(class_names))


def write_report(out_dir: str | os.PathLike, prefix: str, report: ClassificationReport,
                 class_names: Sequence[str], extra: dict | None = None) -> dict:
    """``<prefix>metrics.json`` and ``<prefix>confusion.png`` in ``out_dir``; returns the metrics dict."""
    out_dir = Path(out_dir)
    metrics = {**(extra or {}), **report.to_dict()}
    write_json(out_dir / f"{prefix}metrics.json", metrics)
    plot_confusion(report.confusion, class_names, out_dir / f"{prefix}confusion.png",
                   title=f"top-1 {100 * report.top1:.2f}%  ({report.num_samples} samples)")
    return metrics


SHOT_GROUPS = ("many", "medium", "few")


def shot_groups(train_counts: Sequence[int] | np.ndarray, many_above: int = 100,
                few_below: int = 20) -> dict[str, np.ndarray]:
    """Class indices by training count: many-shot (> ``many_above``), medium (``few_below`` … ``many_above``) and
    few-shot (< ``few_below``); NTU-LT uses 100 and 20."""
    if few_below > many_above + 1:
        raise ValueError(f"few_below ({few_below}) must not exceed many_above + 1 ({many_above + 1})")
    n = np.asarray(train_counts)
    return {"many": np.flatnonzero(n > many_above),
            "medium": np.flatnonzero((n >= few_below) & (n <= many_above)),
            "few": np.flatnonzero(n < few_below)}


def longtail_accuracy(per_class_accuracy: Sequence[float | None], train_counts: Sequence[int] | np.ndarray,
                      many_above: int = 100, few_below: int = 20) -> dict:
    """Many / medium / few-shot top-1: the mean per-class accuracy over each group's classes (None for a group with
    no class or no evaluated sample), with the thresholds and each group's classes."""
    acc = list(per_class_accuracy)
    if len(acc) != len(train_counts):
        raise ValueError(f"{len(acc)} per-class accuracies for {len(train_counts)} training counts")
    out: dict = {"thresholds": {"many_above": many_above, "few_below": few_below}, "classes": {}}
    for group, classes in shot_groups(train_counts, many_above, few_below).items():
        values = [acc[c] for c in classes if acc[c] is not None]
        out[f"{group}_shot_top1"] = float(np.mean(values)) if values else None
        out["classes"][group] = classes.tolist()
    return out


def plot_per_class_accuracy(per_class_accuracy: Sequence[float | None], train_counts: Sequence[int] | np.ndarray,
                            class_names: Sequence[str], path: str | os.PathLike, many_above: int = 100,
                            few_below: int = 20, title: str = "") -> Path:
    """Per-class accuracy (bars, classes ordered by training count, most first) with the training counts (line) and
    the many / medium / few-shot groups shaded, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = np.asarray(train_counts)
    order = np.argsort(-counts, kind="stable")
    acc = np.array([np.nan if per_class_accuracy[c] is None else 100 * per_class_accuracy[c] for c in order])
    x = np.arange(len(order))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.16 * len(order) + 3), 4))
    colours = {"many": "tab:blue", "medium": "tab:orange", "few": "tab:red"}
    groups = shot_groups(counts, many_above, few_below)
    group_of = {int(c): g for g, classes in groups.items() for c in classes}
    ax.bar(x, np.nan_to_num(acc), color=[colours[group_of[int(c)]] for c in order])
    for g, label in (("many", f"many-shot (> {many_above})"), ("medium", f"medium ({few_below}-{many_above})"),
                     ("few", f"few-shot (< {few_below})")):
        ax.bar([], [], color=colours[g], label=label)
    ax.set_ylabel("test top-1 (%)")
    ax.set_ylim(0, 105)
    ax.set_xlabel("classes, most training samples first")
    if len(order) <= 40:
        ax.set_xticks(x, [class_names[c] for c in order], rotation=90, fontsize=7)
    twin = ax.twinx()
    twin.plot(x, counts[order], color="black", marker=".", label="training samples")
    twin.set_ylabel("training samples")
    twin.set_ylim(0, counts.max() * 1.1)
    handles = ax.get_legend_handles_labels()
    extra = twin.get_legend_handles_labels()
    ax.legend(handles[0] + extra[0], handles[1] + extra[1], fontsize=7, loc="upper right")
    ax.set_title(title)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return Path(path)


def longtail_report(report: ClassificationReport, class_names: Sequence[str], train_counts: Sequence[int],
                    many_above: int, few_below: int, plot_path: str | os.PathLike | None = None) -> dict:
    """The long-tail part of ``metrics.json`` (:func:`longtail_accuracy` plus the training counts), with the per-class
    accuracy plot written to ``plot_path``."""
    per_class = [report.per_class_accuracy[name] for name in class_names]
    out = {**longtail_accuracy(per_class, train_counts, many_above, few_below),
           "train_class_counts": [int(n) for n in train_counts]}
    if plot_path is not None:
        plot_per_class_accuracy(per_class, train_counts, class_names, plot_path, many_above, few_below,
                                title=f"top-1 {100 * report.top1:.2f}%  ({report.num_samples} samples)")
    return out


def format_longtail(longtail: dict) -> str:
    """``many-shot 91.2% (4 classes)  medium ...  few-shot ...`` for a report line."""
    parts = []
    for group in SHOT_GROUPS:
        acc = longtail[f"{group}_shot_top1"]
        text = "n/a" if acc is None else f"{100 * acc:.2f}%"
        name = group if group == "medium" else f"{group}-shot"
        parts.append(f"{name} {text} ({len(longtail['classes'][group])} classes)")
    return "  ".join(parts)
