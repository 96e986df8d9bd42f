"""The PNG beside a benchmark's JSON and Markdown: grouped bars, with the issue's targets as marks."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mmcl.io import atomic_path


def grouped_bars(path: Path, groups: list[str], series: dict[str, list[float]], ylabel: str, title: str,
                 targets: dict[str, list[float | None]] | None = None, line: tuple[float, str] | None = None) -> Path:
    """One bar per (group, series) with its value written above it; ``targets[series][group]`` draws a black mark at
    that height over the bar, ``line`` a dashed horizontal line ``(y, label)``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.arange(len(groups))
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(min(10.0, max(5.0, 1.2 * len(groups) + 2)), 3.8))
    for k, (name, values) in enumerate(series.items()):
        pos = x - 0.4 + width * (k + 0.5)
        bars = ax.bar(pos, values, width, label=name)
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
        for p, target in zip(pos, (targets or {}).get(name, [])):
            if target is not None:
                ax.plot([p - width / 2, p + width / 2], [target, target], color="black", lw=2)
    if targets:
        ax.plot([], [], color="black", lw=2, label="target")
    if line:
        ax.axhline(line[0], color="grey", ls="--", lw=1, label=line[1])
    ax.set_xticks(x, groups)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return path
