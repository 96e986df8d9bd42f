"""``mmcl ablate``: the same training run with and without each co-learning module, over several seeds.

    mmcl ablate --plan configs/ablation/synthetic.yaml [--seeds 1 2 3] [--variants baseline fam_frm]
                [--lock /tmp/heavy.lock] [--results benchmarks/results --name NAME] [--finished-only] [key=value ...]

A plan names a base training config and, per variant, the overrides that switch its modules on. Every (variant, seed)
run is a normal ``mmcl train`` run, in its own process (each may use its own precision), under
``<out>/<variant>-seed<seed>`` (the best epoch chosen on validation, the test split evaluated once); runs that already
finished are read back, not retrained, and a run that was killed continues from its ``state/`` (``--resume``). The
result is a table of test top-1 (mean ± std over seeds), the gain over the plan's ``reference`` variant (paired by
seed: the same seed gives the same initialisation and data order, so the per-seed differences are averaged), the
per-class accuracy of the classes the plan singles out (on the synthetic set: the pairs that differ only in the held
object) and the training time, as ``ablation.json``, ``ablation.md`` and ``ablation.png``; a plan's ``compare``
lists variants to set side by side (the same modules with two teachers). ``--results DIR --name NAME`` writes the
three files there too, with the command. ``--lock FILE`` holds an exclusive ``flock`` on FILE for each training run
only, so other jobs that share the machine through the same lock run between them. ``--finished-only`` trains
nothing: it summarises the runs that have finished and names the missing ones (an ablation cut short).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
from omegaconf import MISSING

from mmcl.config import check, check_model, load_config
from mmcl.errors import ConfigError, MmclError
from mmcl.io import atomic_path, atomic_write_text, write_json
from mmcl.paths import configs_dir, shown_path


@dataclass
class AblationPlan:
    """An ablation plan (``configs/ablation/*.yaml``), loaded by :func:`mmcl.config.load_config`."""

    base: str = MISSING  # the training config every run starts from, relative to the plan file
    variants: dict[str, list[str]] = MISSING  # variant name -> the overrides that switch its modules on
    seeds: list[int] = MISSING
    focus_classes: list[str] = field(default_factory=list)  # classes whose accuracy the table shows
    output_dir: str = "runs/ablation"
    # the variant gains are measured against (paired by seed); "" for none; unset: "baseline" when the plan has it
    reference: Optional[str] = None
    compare: dict[str, list[str]] = field(default_factory=dict)  # column label -> variants, set side by side by row

    def validate(self) -> None:
        check(len(self.variants) > 0, "variants", self.variants, "at least one variant")
        check(len(self.seeds) > 0, "seeds", self.seeds, "at least one seed")
        check(not self.reference or self.reference in self.variants, "reference", self.reference,
              "one of the plan's variants (or empty)")
        named = [v for vs in self.compare.values() for v in vs]
        check(all(v in self.variants for v in named), "compare", self.compare, "lists of the plan's variants")
        check(len({len(vs) for vs in self.compare.values()}) <= 1, "compare", self.compare, "lists of one length")


def load_plan(path: str | Path, overrides: list[str] = ()) -> AblationPlan:
    """Read an ablation plan; ``base`` is relative to the plan file."""
    plan = load_config(path, overrides, schema=AblationPlan)
    plan.base = str((Path(path).parent / plan.base).resolve())
    if plan.reference is None:
        plan.reference = "baseline" if "baseline" in plan.variants else ""
    return plan


def _mean_std(values) -> tuple[float, float | None]:
    v = np.asarray(values, dtype=float)
    return float(v.mean()), (float(v.std(ddof=1)) if len(v) > 1 else None)


def summarise(results: dict[str, dict[int, dict]], focus: list[str], reference: str = "") -> list[dict]:
    """Per variant (``results``: variant -> seed -> metrics): mean and std of test top-1 over seeds (std None for one
    seed), the gain over ``reference`` averaged over the seeds both have (paired), the mean per-class accuracy of the
    focus classes and the mean training time."""
    rows = []
    for variant, runs in results.items():
        top1_mean, top1_std = _mean_std([r["top1"] for r in runs.values()])
        row = {"variant": variant, "seeds": len(runs), "seed_list": sorted(runs), "top1_mean": top1_mean,
               "top1_std": top1_std, "val_top1_mean": float(np.mean([r["val_top1"] for r in runs.values()])),
               "focus": {c: float(np.mean([r["per_class_accuracy"][c] for r in runs.values()])) for c in focus},
               "train_time_s_mean": (float(np.mean([r["train_time_s"] for r in runs.values()]))
                                     if all("train_time_s" in r for r in runs.values()) else None),
               "gain_mean": None, "gain_std": None, "gain_seeds": 0}
        paired = sorted(set(runs) & set(results.get(reference, {}))) if reference and variant != reference else []
        if paired:
            row["gain_mean"], row["gain_std"] = _mean_std([runs[s]["top1"] - results[reference][s]["top1"]
                                                           for s in paired])
            row["gain_seeds"] = len(paired)
        rows.append(row)
    return rows


def _pm(mean: float | None, std: float | None, scale: float = 100, digits: int = 2, sign: bool = False) -> str:
    if mean is None:
        return "-"
    text = f"{scale * mean:+.{digits}f}" if sign else f"{scale * mean:.{digits}f}"
    return text + ("" if std is None else f" ± {scale * std:.{digits}f}")


def markdown_table(rows: list[dict], focus: list[str], reference: str = "") -> str:
    gain = f" vs {reference} (pp) |" if reference else ""
    head = ("| variant | seeds | test top-1 (%) |" + gain + " val top-1 (%) |" + "".join(f" {c} |" for c in focus)
            + " train time (min) |")
    sep = "|---|---:|---:|" + ("---:|" if reference else "") + "---:|" + "---:|" * len(focus) + "---:|"
    lines = [head, sep]
    for r in rows:
        cell = f" {_pm(r['gain_mean'], r['gain_std'], sign=True)} |" if reference else ""
        minutes = "-" if r["train_time_s_mean"] is None else f"{r['train_time_s_mean'] / 60:.1f}"
        lines.append(f"| {r['variant']} | {r['seeds']} | {_pm(r['top1_mean'], r['top1_std'])} |{cell} "
                     f"{100 * r['val_top1_mean']:.2f} |" + "".join(f" {100 * r['focus'][c]:.1f} |" for c in focus)
                     + f" {minutes} |")
    return "\n".join(lines) + "\n"


def compare_table(rows: list[dict], compare: dict[str, list[str]], focus: list[str], reference: str) -> str:
    """The variants of ``compare`` side by side: one row per position in the lists, per column label its test
    top-1, its gain over the reference and the mean accuracy of the focus classes."""
    by_name = {r["variant"]: r for r in rows}
    labels = list(compare)
    head = "| row |" + "".join(f" {k}: test top-1 (%) | gain (pp) | focus classes (%) |" for k in labels)
    lines = [head, "|---|" + "---:|---:|---:|" * len(labels)]
    for i in range(len(next(iter(compare.values())))):
        cells = []
        for k in labels:
            r = by_name.get(compare[k][i])
            if r is None:
                cells.append(" - | - | - |")
                continue
            f = f"{100 * np.mean([r['focus'][c] for c in focus]):.1f}" if focus else "-"
            cells.append(f" {_pm(r['top1_mean'], r['top1_std'])} | {_pm(r['gain_mean'], r['gain_std'], sign=True)}"
                         f" | {f} |")
        lines.append(f"| {' / '.join(compare[k][i] for k in labels)} |" + "".join(cells))
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
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


@contextlib.contextmanager
def held(lock: str | Path | None):
    """An exclusive ``flock`` on ``lock`` for the duration of the block (nothing when ``lock`` is None)."""
    if lock is None:
        yield
        return
    import fcntl

    with open(lock, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


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
                 overrides: list[str] = (), out: Path | None = None, lock: str | Path | None = None,
                 results_dir: Path | None = None, name: str = "ablation", command: str = "",
                 finished_only: bool = False) -> list[dict]:
    """Train (or read back) every (variant, seed) run and write the summary; returns its rows. ``finished_only``:
    train nothing, summarise the runs that have finished and list the others as missing (an ablation cut short)."""
    out = Path(out or plan.output_dir)
    variants = variants or list(plan.variants)
    unknown = [v for v in variants if v not in plan.variants]
    if unknown:
        raise ConfigError(f"unknown variants {unknown}; the plan has {list(plan.variants)}")
    results: dict[str, dict[int, dict]] = {}
    missing: list[str] = []
    for variant in variants:
        for seed in seeds or plan.seeds:
            run_name = f"{variant}-seed{seed}"
            metrics_file = out / run_name / "metrics.json"
            if not metrics_file.exists() and finished_only:
                missing.append(run_name)
                continue
            if not metrics_file.exists():
                print(f"== ablation run {run_name}", flush=True)
                with held(lock):
                    launch_run(plan.base, [*plan.variants[variant], *overrides, f"seed={seed}", f"name={run_name}",
                                           f"output_dir={out}"], out / run_name)
            results.setdefault(variant, {})[seed] = json.loads(metrics_file.read_text())
    if not results:
        raise FileNotFoundError(f"no finished run in {out} (--finished-only trains nothing)")
    reference = plan.reference if plan.reference in results else ""
    rows = summarise(results, plan.focus_classes, reference)
    text = markdown_table(rows, plan.focus_classes, reference)
    if missing:
        text += f"\nNot run (the ablation was cut short): {', '.join(missing)}.\n"
    compare = {k: vs for k, vs in plan.compare.items() if any(v in results for v in vs)}
    if compare:
        text += "\n" + compare_table(rows, compare, plan.focus_classes, reference)
    summary = {"command": command, "base": shown_path(plan.base), "variants": {v: plan.variants[v] for v in variants},
               "seeds": seeds or plan.seeds, "overrides": list(overrides), "missing": missing, "reference": reference,
               "compare": compare, "rows": rows,
               "runs": {v: {str(s): str(out / f"{v}-seed{s}") for s in r} for v, r in results.items()}}
    for where, stem in ((out, "ablation"), *(((Path(results_dir), name),) if results_dir else ())):
        where.mkdir(parents=True, exist_ok=True)
        write_json(where / f"{stem}.json", summary)
        intro = f"`{command}`\n\n" if command and where != out else ""
        atomic_write_text(where / f"{stem}.md", intro + text)
        plot(rows, where / f"{stem}.png")
    print(text)
    return rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--plan", type=Path, default=None,
                        help="ablation plan YAML (default: configs/ablation/synthetic.yaml)")
    parser.add_argument("--variants", nargs="+", default=None, help="a subset of the plan's variants")
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="seeds (default: the plan's)")
    parser.add_argument("--out", type=Path, default=None, help="output directory (default: the plan's output_dir)")
    parser.add_argument("--lock", type=Path, default=None,
                        help="hold an exclusive flock on this file for each training run (machines shared by jobs)")
    parser.add_argument("--results", type=Path, default=None,
                        help="also write the summary here (e.g. benchmarks/results), as <name>.json/.md/.png")
    parser.add_argument("--name", default="ablation", help="file stem of the --results files (default %(default)s)")
    parser.add_argument("--finished-only", action="store_true",
                        help="train nothing: summarise the finished runs and list the missing ones")
    parser.add_argument("overrides", nargs="*", help="dotted.key=value overrides applied to every run")


def run(args: argparse.Namespace) -> int:
    plan = load_plan(args.plan or configs_dir() / "ablation" / "synthetic.yaml")
    command = "mmcl ablate " + " ".join(sys.argv[2:])
    run_ablation(plan, args.variants, args.seeds, args.overrides, args.out, args.lock, args.results, args.name,
                 command, args.finished_only)
    return 0
