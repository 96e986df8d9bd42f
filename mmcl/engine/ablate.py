"""``mmcl ablate``: the same training run with and without each co-learning module, over several seeds.

    mmcl ablate --plan configs/ablation/synthetic.yaml [--seeds 1 2 3] [--variants baseline fam_frm] [key=value ...]

A plan names a base training config and, per variant, the overrides that switch its modules on. Every (variant, seed)
run is a normal ``mmcl train`` run, in its own process (each may use its own precision), under
``<out>/<variant>-seed<seed>`` (the best epoch chosen on validation, the test split evaluated once); runs that already
finished are read back, not retrained, and a run that was killed continues from its ``state/`` (``--resume``). The
result is a table of test top-1 (mean ± std over seeds), with the per-class accuracy of the classes the plan singles
out (on the synthetic set: the pairs that differ only in the held object), as ``ablation.json``, ``ablation.md`` and
``ablation.png``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from omegaconf import MISSING

from mmcl.config import check, check_model, load_config
from mmcl.errors import ConfigError, MmclError
from mmcl.io import atomic_path, atomic_write_text, write_json
from mmcl.paths import configs_dir


@dataclass
class AblationPlan:
    """An ablation plan (``configs/ablation/*.yaml``), loaded by :func:`mmcl.config.load_config`."""

    base: str = MISSING  # the training config every run starts from, relative to the plan file
    variants: dict[str, list[str]] = MISSING  # variant name -> the overrides that switch its modules on
    seeds: list[int] = MISSING
    focus_classes: list[str] = field(default_factory=list)  # classes whose accuracy the table shows
    output_dir: str = "runs/ablation"

    def validate(self) -> None:
        check(len(self.variants) > 0, "variants", self.variants, "at least one variant")
        check(len(self.seeds) > 0, "seeds", self.seeds, "at least one seed")


def load_plan(path: str | Path, overrides: list[str] = ()) -> AblationPlan:
    """Read an ablation plan; ``base`` is relative to the plan file."""
    plan = load_config(path, overrides, schema=AblationPlan)
    plan.base = str((Path(path).parent / plan.base).resolve())
    return plan


def summarise(results: dict[str, list[dict]], focus: list[str]) -> list[dict]:
    """Per variant: mean and std of test top-1 over seeds (std None for one seed), and the mean per-class accuracy of
    the focus classes."""
    rows = []
    for variant, runs in results.items():
        top1 = np.array([r["top1"] for r in runs])
        row = {"variant": variant, "seeds": len(runs), "top1_mean": float(top1.mean()),
               "top1_std": float(top1.std(ddof=1)) if len(runs) > 1 else None,
               "val_top1_mean": float(np.mean([r["val_top1"] for r in runs])),
               "focus": {c: float(np.mean([r["per_class_accuracy"][c] for r in runs])) for c in focus}}
        rows.append(row)
    return rows


def markdown_table(rows: list[dict], focus: list[str]) -> str:
    head = "| variant | seeds | test top-1 (%) | val top-1 (%) |" + "".join(f" {c} |" for c in focus)
    sep = "|---|---:|---:|---:|" + "---:|" * len(focus)
    lines = [head, sep]
    for r in rows:
        spread = "" if r["top1_std"] is None else f" ± {100 * r['top1_std']:.2f}"
        lines.append(f"| {r['variant']} | {r['seeds']} | {100 * r['top1_mean']:.2f}{spread} | "
                     f"{100 * r['val_top1_mean']:.2f} |" + "".join(f" {100 * r['focus'][c]:.1f} |" for c in focus))
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.4 * len(rows) + 2, 3.5))
    x = np.arange(len(rows))
    std = [100 * (r["top1_std"] or 0.0) for r in rows]
    ax.bar(x, [100 * r["top1_mean"] for r in rows], yerr=std, capsize=4, color="tab:blue")
    ax.set_xticks(x, [r["variant"] for r in rows], rotation=20)
    ax.set_ylabel("test top-1 (%)")
    low = min(100 * r["top1_mean"] - s for r, s in zip(rows, std))
    ax.set_ylim(max(0, low - 5), 100)
    ax.set_title("ablation (mean ± std over seeds, best epoch on validation)")
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def launch_run(base: str, overrides: list[str], run_dir: Path) -> None:
    """The training run ``mmcl train --config base overrides...`` writing to ``run_dir``, in a process of its own;
    continued with ``--resume`` when a killed one left its state there."""
    load_config(base, overrides, checks=[check_model])  # a bad override fails here, naming it, before any process
    cmd = [sys.executable, "-m", "mmcl.cli", "train", "--config", base, *overrides]
    if (run_dir / "state").is_dir():
        cmd += ["--resume", str(run_dir)]
    elif run_dir.exists():
        shutil.rmtree(run_dir)  # killed before its first epoch ended: nothing to continue from
    result = subprocess.run(cmd)
    if result.returncode:
        raise MmclError(f"ablation run {run_dir.name} failed (exit status {result.returncode}, its error above): "
                        f"{' '.join(cmd)}")


def run_ablation(plan: AblationPlan, variants: list[str] | None = None, seeds: list[int] | None = None,
                 overrides: list[str] = (), out: Path | None = None) -> list[dict]:
    """Train (or read back) every (variant, seed) run and write the summary; returns its rows."""
    out = Path(out or plan.output_dir)
    variants = variants or list(plan.variants)
    unknown = [v for v in variants if v not in plan.variants]
    if unknown:
        raise ConfigError(f"unknown variants {unknown}; the plan has {list(plan.variants)}")
    results: dict[str, list[dict]] = {}
    for variant in variants:
        for seed in seeds or plan.seeds:
            name = f"{variant}-seed{seed}"
            metrics_file = out / name / "metrics.json"
            if not metrics_file.exists():
                print(f"== ablation run {name}")
                launch_run(plan.base, [*plan.variants[variant], *overrides, f"seed={seed}", f"name={name}",
                                       f"output_dir={out}"], out / name)
            results.setdefault(variant, []).append(json.loads(metrics_file.read_text()))
    rows = summarise(results, plan.focus_classes)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "ablation.json", {"base": plan.base, "variants": {v: plan.variants[v] for v in variants},
                                       "seeds": seeds or plan.seeds, "rows": rows})
    atomic_write_text(out / "ablation.md", markdown_table(rows, plan.focus_classes))
    plot(rows, out / "ablation.png")
    print(markdown_table(rows, plan.focus_classes))
    return rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--plan", type=Path, default=None,
                        help="ablation plan YAML (default: configs/ablation/synthetic.yaml)")
    parser.add_argument("--variants", nargs="+", default=None, help="a subset of the plan's variants")
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="seeds (default: the plan's)")
    parser.add_argument("--out", type=Path, default=None, help="output directory (default: the plan's output_dir)")
    parser.add_argument("overrides", nargs="*", help="dotted.key=value overrides applied to every run")


def run(args: argparse.Namespace) -> int:
    plan = load_plan(args.plan or configs_dir() / "ablation" / "synthetic.yaml")
    run_ablation(plan, args.variants, args.seeds, args.overrides, args.out)
    return 0
