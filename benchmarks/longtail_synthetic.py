"""BRL on the long-tailed synthetic set: a backbone plain against BRL and each of its parts alone, over seeds.

::

    python benchmarks/longtail_synthetic.py [--plan configs/ablation/longtail_synthetic.yaml] [--seeds 1 2 3] \\
        [--variants plain brl] [--out runs/longtail-synthetic] [--lock /tmp/mmcl-heavy.lock] [key=value ...]

Every (variant, seed) is a normal ``mmcl train`` run, in a process of its own, of the plan's base config
(``configs/longtail/synthetic.yaml``: CTR-GCN) with the variant's overrides and the command line's (another backbone,
a shorter schedule), in ``<out>/<variant>-seed<seed>``; a run that already finished is read back, not retrained, and
one that was killed continues from its ``state/``. With ``--lock``, each run is started as ``flock LOCK mmcl train
...``: it holds the lock while it trains and only then, so other jobs queued on the lock interleave with this one. The
table gives overall and many / medium / few-shot test top-1 (mean ± std over seeds, classes grouped by their training
count as the base config says), written with the per-seed figures to
``benchmarks/results/longtail_synthetic.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from mmcl.engine.ablate import load_plan
from mmcl.engine.metrics import SHOT_GROUPS
from mmcl.io import atomic_path, atomic_write_text, write_json
from mmcl.paths import PROJECT_ROOT, configs_dir

RESULTS = PROJECT_ROOT / "benchmarks" / "results"
METRICS = ("top1", *(f"{g}_shot_top1" for g in SHOT_GROUPS))
LABELS = {"top1": "overall", "many_shot_top1": "many-shot", "medium_shot_top1": "medium", "few_shot_top1": "few-shot"}
DESCRIPTIONS = {
    "plain": "plain cross-entropy",
    "mixup": "+ rebalanced partial mixup",
    "drw": "+ deferred re-weighting (class-balanced)",
    "action_aware": "+ action-aware loss (from epoch 1)",
    "brl": "BRL: mixup + deferred action-aware loss",
}


def train_command(plan, variant: str, seed: int, out: Path, overrides: list[str], lock: Path | None) -> list[str]:
    """The command line of one run: a fresh ``mmcl train`` (``--resume`` when a killed run left its state)."""
    name = f"{variant}-seed{seed}"
    if (out / name / "state").is_dir():
        cmd = [sys.executable, "-m", "mmcl.cli", "train", "--resume", str(out / name)]
    else:
        cmd = [sys.executable, "-m", "mmcl.cli", "train", "--config", plan.base, *plan.variants[variant], *overrides,
               f"seed={seed}", f"name={name}", f"output_dir={out}"]
    return ["flock", str(lock), *cmd] if lock is not None else cmd


def run_all(plan, variants: list[str], seeds: list[int], out: Path, overrides: list[str],
            lock: Path | None) -> dict[str, list[dict]]:
    """Train (or read back) every (variant, seed) run, one seed of every variant after the other (a stopped
    benchmark leaves whole seeds); returns variant -> the runs' metrics in seed order."""
    results: dict[str, list[dict]] = {v: [] for v in variants}
    for seed in seeds:
        for variant in variants:
            metrics_file = out / f"{variant}-seed{seed}" / "metrics.json"
            if not metrics_file.exists():
                cmd = train_command(plan, variant, seed, out, overrides, lock)
                print(f"== {variant}-seed{seed}: {' '.join(cmd)}", flush=True)
                start = time.monotonic()
                subprocess.run(cmd, check=True)
                print(f"== {variant}-seed{seed} done in {time.monotonic() - start:.0f} s", flush=True)
            metrics = json.loads(metrics_file.read_text())
            if "longtail" not in metrics:
                raise ValueError(f"{metrics_file} has no long-tail metrics: is {plan.base} a long-tailed config?")
            results[variant].append({"seed": seed, **metrics})
    return results


def summarise(results: dict[str, list[dict]]) -> list[dict]:
    """Per variant: per-seed figures, mean and std (None for one seed) of each metric."""
    rows = []
    for variant, runs in results.items():
        row = {"variant": variant, "description": DESCRIPTIONS.get(variant, variant),
               "seeds": [r["seed"] for r in runs], "val_top1": [r["val_top1"] for r in runs],
               "best_epoch": [r["best_epoch"] for r in runs], "train_time_s": [r["train_time_s"] for r in runs]}
        for m in METRICS:
            values = np.array([r["top1"] if m == "top1" else r["longtail"][m] for r in runs], dtype=float)
            row[m] = {"per_seed": values.tolist(), "mean": float(values.mean()),
                      "std": float(values.std(ddof=1)) if len(values) > 1 else None}
        rows.append(row)
    return rows


def _cell(stat: dict) -> str:
    spread = "" if stat["std"] is None else f" ± {100 * stat['std']:.1f}"
    return f"{100 * stat['mean']:.1f}{spread}"


def markdown(rows: list[dict], groups: dict, counts: list[int], base: str, setup: dict) -> str:
    seeds = rows[0]["seeds"]
    overrides = " ".join(setup["overrides"])
    lines = [
        "# BRL on the long-tailed synthetic set",
        "",
        f"{setup['model']}, {setup['epochs']} epochs, on `{base}`" + (f" with `{overrides}`" if overrides else "")
        + f": {len(counts)} classes with {max(counts)} down to {min(counts)} training samples "
        f"({sum(counts)} in all, r = {max(counts) / min(counts):g}), balanced validation (model selection) and test "
        f"(14 per class, unseen performers). Test top-1 (%), mean ± std over seeds {', '.join(map(str, seeds))}; "
        f"many-shot: {len(groups['many'])} classes with > {groups['many_above']} training samples, medium: "
        f"{len(groups['medium'])}, few-shot: {len(groups['few'])} classes with < {groups['few_below']}. "
        f"Mean training time per run {np.mean([t for r in rows for t in r['train_time_s']]):.0f} s on a 2-core CPU "
        f"shared with other jobs (noisy).",
        "",
        "| variant | overall | many-shot | medium | few-shot | val top-1 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['description']} | {_cell(r['top1'])} | {_cell(r['many_shot_top1'])} | "
                     f"{_cell(r['medium_shot_top1'])} | {_cell(r['few_shot_top1'])} | "
                     f"{100 * np.mean(r['val_top1']):.1f} |")
    lines += ["", "Per seed (overall / few-shot):", ""]
    for r in rows:
        pairs = ", ".join(f"seed {s}: {100 * a:.1f} / {100 * b:.1f}" for s, a, b in
                          zip(r["seeds"], r["top1"]["per_seed"], r["few_shot_top1"]["per_seed"]))
        lines.append(f"- {r['description']}: {pairs}")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path, setup: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3.8))
    width = 0.8 / len(METRICS)
    x = np.arange(len(rows))
    for k, m in enumerate(METRICS):
        means = [100 * r[m]["mean"] for r in rows]
        std = [100 * (r[m]["std"] or 0.0) for r in rows]
        ax.bar(x + (k - (len(METRICS) - 1) / 2) * width, means, width, yerr=std, capsize=3, label=LABELS[m])
    ax.set_xticks(x, [r["variant"] for r in rows])
    ax.set_ylabel("test top-1 (%)")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=8, ncol=4, loc="upper left")
    ax.set_title(f"long-tailed synthetic set, {setup['model']} ({setup['epochs']} epochs): mean ± std over "
                 f"{len(rows[0]['seeds'])} seeds, best epoch on validation", fontsize=10)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan", type=Path, default=configs_dir() / "ablation" / "longtail_synthetic.yaml")
    parser.add_argument("--variants", nargs="+", default=None, help="a subset of the plan's variants")
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="seeds (default: the plan's)")
    parser.add_argument("--out", type=Path, default=None, help="run directory (default: the plan's output_dir)")
    parser.add_argument("--lock", type=Path, default=None, help="hold this lock file while each run trains")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where longtail_synthetic.* are written")
    parser.add_argument("overrides", nargs="*", help="dotted.key=value overrides applied to every run")
    args = parser.parse_args(argv)
    plan = load_plan(args.plan)
    variants = args.variants or list(plan.variants)
    unknown = [v for v in variants if v not in plan.variants]
    if unknown:
        parser.error(f"unknown variants {unknown}; the plan has {list(plan.variants)}")
    seeds = args.seeds or plan.seeds
    results = run_all(plan, variants, seeds, Path(args.out or plan.output_dir), args.overrides, args.lock)
    rows = summarise(results)
    first = results[variants[0]][0]["longtail"]
    groups = {**first["thresholds"], **{g: first["classes"][g] for g in ("many", "medium", "few")}}
    counts = first["train_class_counts"]
    base = Path(plan.base).relative_to(PROJECT_ROOT) if Path(plan.base).is_relative_to(PROJECT_ROOT) else plan.base
    first_run = results[variants[0]][0]
    setup = {"model": first_run["model"], "epochs": first_run["epochs"], "overrides": args.overrides}
    text = markdown(rows, groups, counts, str(base), setup)
    args.results.mkdir(parents=True, exist_ok=True)
    write_json(args.results / "longtail_synthetic.json", {
        "base": str(base), **setup, "variants": {v: plan.variants[v] for v in variants},
        "seeds": seeds, "train_class_counts": counts, "groups": groups, "rows": rows})
    atomic_write_text(args.results / "longtail_synthetic.md", text)
    plot(rows, args.results / "longtail_synthetic.png", setup)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
