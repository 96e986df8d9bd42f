"""What ``mmcl zeroshot`` writes: per-clip scores, confusion matrices and the summary table."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from mmcl.io import atomic_path
from mmcl.zeroshot.protocol import MappedResult

# metrics.json section -> row label of the summary table
ROWS = {"mapped": "mapped", "refined": "mapped, w/ refine", "openvocab": "open-vocabulary"}


def plot_mapped_confusion(result: MappedResult, path: str | os.PathLike, title: str = "") -> Path:
    """Mapped target classes (rows) x predicted source classes of the mapping plus ``other`` (columns), with counts;
    colours are the fraction of the row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = result.confusion
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.45 * cm.shape[1] + 3), max(3.5, 0.4 * cm.shape[0] + 2)))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the target class")
    ax.set_xticks(range(cm.shape[1]), result.columns, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(cm.shape[0]), result.rows, fontsize=7)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted source class")
    ax.set_ylabel("target class")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
    return path


def save_clip_scores(path: str | os.PathLike, names: Sequence[str], target_labels: np.ndarray,
                     target_classes: Sequence[str], source_classes: Sequence[str], source_labels: np.ndarray,
                     scores: dict[str, np.ndarray]) -> Path:
    """Per-clip scores as ``.npz``: names, target labels and classes, each clip's mapped source label (-1: none),
    source classes, and the arrays of ``scores``: ``logits`` (N, C_source), ``features`` (N, D: the global skeleton
    features), ``refined`` (N, C_source), ``openvocab`` (N, C_target))."""
    path = Path(path)
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, names=np.asarray(names), target_labels=np.asarray(target_labels, dtype=np.int64),
                 target_classes=np.asarray(target_classes), source_classes=np.asarray(source_classes),
                 source_labels=np.asarray(source_labels, dtype=np.int64),
                 **{k: np.asarray(v, dtype=np.float32) for k, v in scores.items()})
    return path


def summary_table(metrics: dict) -> str:
    """The top-1 / top-5 rows of a ``metrics.json`` as a markdown table."""
    lines = ["| protocol | clips | classes | top-1 (%) | top-5 (%) |", "|---|---:|---:|---:|---:|"]
    for key, label in ROWS.items():
        if key in metrics:
            m = metrics[key]
            lines.append(f"| {label} | {m['num_clips']} | {m['num_classes']} | {100 * m['top1']:.2f} | "
                         f"{100 * m['top5']:.2f} |")
    return "\n".join(lines)
