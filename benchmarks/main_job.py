"""The main job from an empty cache: wall time, where it goes, and test accuracy over seeds.

For the first seed the cache is a fresh temporary directory, so the run generates and prepares the synthetic set; the
other seeds reuse it (the data are the same). Each run is two processes, timed from the outside: the entry point's
data step (:func:`mmcl.engine.demo.prepare_demo`, what ``mmcl train`` does before training; nothing to do once the
cache holds the set) and then ``accelerate launch mmcl/train.py`` itself, which finds the data ready. The training
loop's own split (waiting for data, forward, backward, optimizer, bookkeeping, validation, checkpoints) comes from the
run's ``metrics.json``; start-up, set-up and the final evaluation are the rest of the second process's wall time.

Usage: ``python benchmarks/main_job.py [--seeds 1 2] [--out benchmarks/results/main_job.json] [dotted.key=value ...]``
(overrides go to both processes; the default is the main job's own config). JSON, Markdown and a PNG of the split.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_name  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PHASES = ("data", "forward", "backward", "optimizer", "other", "validation", "checkpoint")
PREPARE = ("import sys; from mmcl.config import load_config; from mmcl.engine.demo import prepare_demo; "
           "prepare_demo(load_config(None, sys.argv[1:]))")


def run_seed(seed: int, cache: Path, out_dir: Path, overrides: list[str]) -> dict:
    env = {**os.environ, "MMCL_CACHE": str(cache),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    args = [f"seed={seed}", f"output_dir={out_dir}", f"name=seed{seed}", *overrides]
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", PREPARE, *args], env=env, cwd=REPO, check=True)
    prepared = time.perf_counter()
    subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "mmcl/train.py", *args], env=env, cwd=REPO,
                   check=True)
    end = time.perf_counter()
    metrics = json.loads((out_dir / f"seed{seed}" / "metrics.json").read_text())
    return {"seed": seed, "wall_s": end - start, "data_step_s": prepared - start, "train_process_s": end - prepared,
            "train_time_s": metrics["train_time_s"], "train_time_split_s": metrics["train_time_split_s"],
            "outside_loop_s": end - prepared - metrics["train_time_s"], "epochs": metrics["epochs"],
            "best_epoch": metrics["best_epoch"], "val_top1": metrics["val_top1"], "top1": metrics["top1"],
            "top5": metrics["top5"], "mean_class_accuracy": metrics["mean_class_accuracy"],
            "per_class_accuracy": metrics["per_class_accuracy"]}


def markdown(report: dict) -> str:
    m = report["machine"]
    first = report["runs"][0]
    split = first["train_time_split_s"]

    def minutes(s: float) -> str:
        return f"{int(s // 60)} min {s % 60:04.1f} s"

    lines = [
        "# The main job from an empty cache",
        "",
        f"`accelerate launch mmcl/train.py{''.join(' ' + o for o in report['overrides'])}` on {m['cpu']} "
        f"({m['cores']} cores), 1-minute load average {m['load_average_start'][0]:.1f} at the start and "
        f"{m['load_average_end'][0]:.1f} at the end (a shared machine: other jobs ran beside it).",
        "",
        f"**Seed {first['seed']}, from {'an empty' if report['empty_cache'] else 'a filled'} cache: "
        f"{minutes(first['wall_s'])}**, test top-1 "
        f"{100 * first['top1']:.1f}%: generating and preparing the synthetic set {first['data_step_s']:.1f} s; "
        f"the training loop {first['train_time_s']:.1f} s (" + ", ".join(
            f"{k} {split[k]:.1f}" for k in PHASES if k in split) + " s); start-up, set-up and the final evaluation "
        f"{first['outside_loop_s']:.1f} s.",
        "",
        "| seed | cache | wall | data step (s) | training loop (s) | data | forward | backward | optimizer | other | "
        "validation | checkpoints | rest (s) | best epoch | val top-1 | test top-1 | top-5 | mean class |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for i, r in enumerate(report["runs"]):
        s = r["train_time_split_s"]
        lines.append(
            f"| {r['seed']} | {'empty' if i == 0 and report['empty_cache'] else 'filled'} | {minutes(r['wall_s'])} | {r['data_step_s']:.1f} | "
            f"{r['train_time_s']:.1f} | " + " | ".join(f"{s.get(k, 0.0):.1f}" for k in PHASES) +
            f" | {r['outside_loop_s']:.1f} | {r['best_epoch']}/{r['epochs']} | {100 * r['val_top1']:.1f}% | "
            f"**{100 * r['top1']:.1f}%** | {100 * r['top5']:.1f}% | {100 * r['mean_class_accuracy']:.1f}% |")
    lines += ["", "Classes below 80% test top-1, mean over the seeds: " + (", ".join(
        f"{name} {100 * acc:.1f}%" for name, acc in weakest(report["runs"])) or "none") + ".", ""]
    return "\n".join(lines)


def weakest(runs: list[dict], below: float = 0.8) -> list[tuple[str, float]]:
    """(class, mean test accuracy over the runs) of the classes under ``below``, weakest first."""
    names = runs[0]["per_class_accuracy"]
    means = {n: sum(r["per_class_accuracy"][n] for r in runs) / len(runs) for n in names}
    return sorted(((n, a) for n, a in means.items() if a < below), key=lambda item: item[1])


def plot(report: dict, path: Path) -> Path:
    """Seconds per part of the job, one bar per seed."""
    from plotting import grouped_bars

    groups = ["data step", *PHASES, "rest"]
    series = {f"seed {r['seed']}": [r["data_step_s"], *(r["train_time_split_s"].get(k, 0.0) for k in PHASES),
                                    r["outside_loop_s"]] for r in report["runs"]}
    return grouped_bars(path, groups, series, "seconds", "The main job from an empty cache: where the wall time goes")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--cache", type=Path, default=None,
                        help="use this cache instead of an empty temporary one (for a quick check of the script)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "main_job.json")
    parser.add_argument("overrides", nargs="*", help="dotted.key=value overrides of the main job's config")
    args = parser.parse_args(argv)
    from mmcl.io import atomic_write_text

    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="mmcl-main-job-") as tmp:
        cache = args.cache or Path(tmp) / "cache"
        runs = [run_seed(seed, cache, Path(tmp) / "runs", args.overrides) for seed in args.seeds]
    report = {"overrides": args.overrides, "empty_cache": args.cache is None, "runs": runs,
              "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version(),
                          "load_average_start": load_start, "load_average_end": os.getloadavg()}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    md = markdown(report)
    atomic_write_text(args.out.with_suffix(".md"), md)
    plot(report, args.out.with_suffix(".png"))
    print(md)
    return 0



if __name__ == "__main__":
    sys.exit(main())
