"""Subsets of a split's samples: the labelled fraction of semi-supervised training."""

from __future__ import annotations

import numpy as np

__all__ = ["stratified_subset"]


def stratified_subset(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted positions of a class-stratified random ``fraction`` of ``labels``, reproducible by ``seed``.

    ``round(fraction * N)`` samples in all, shared among the classes in proportion to their size (largest remainder,
    ties broken at random), at least one per class; within a class the samples are drawn uniformly without
    replacement.
    """
    labels = np.asarray(labels)
    if not 0 < fraction <= 1:
        raise ValueError(f"label fraction must lie in (0, 1], got {fraction}")
    classes, counts = np.unique(labels, return_counts=True)
    rng = np.random.default_rng(seed)
    total = max(int(round(fraction * len(labels))), len(classes))
    quota = counts * total / len(labels)
    take = np.maximum(np.floor(quota).astype(np.int64), 1)
    remainder = quota - np.floor(quota)
    order = np.lexsort((rng.random(len(classes)), -remainder))  # largest remainder first, random among ties
    for c in order:
        if take.sum() >= total:
            break
        if take[c] < counts[c]:
            take[c] += 1
    chosen = [rng.choice(np.flatnonzero(labels == cls), size=min(n, cnt), replace=False)
              for cls, n, cnt in zip(classes, take, counts)]
    return np.sort(np.concatenate(chosen))
