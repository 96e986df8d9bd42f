"""The main job on one CPU process vs two (torchrun, gloo) with the same global batch: do they train alike?

Both runs train ``configs/synthetic/ctrgcn_joint.yaml`` with the same seed: one process with ``data.batch_size=16``,
two processes with ``data.batch_size=8`` each. Each step of the two processes is made to compute what the one
process's step computes: each takes its half of the same global batch of 16 (the same samples, with the same
augmentations, drawn per sample), BatchNorm normalises over the global batch (``sync_bn``, on by default), and the
averaged gradient is the gradient of the global batch's mean loss (tests/test_distributed.py checks the first steps
agree up to float rounding). They are not bit-identical: reductions run in another order and in bf16, and CTR-GCN
amplifies such rounding differences over hundreds of steps, so the figures say whether the difference is within the
seed-to-seed noise of the recipe.

Usage: ``python benchmarks/distributed_cpu.py [--epochs 4] [--seed 1] [--processes 1 2] [--append] [--runs DIR]``
(writes ``benchmarks/results/distributed_cpu.{json,md,png}``; ``--append`` adds the runs to those already there, e.g.
another seed of one process, the seed-to-seed spread to compare with). Run it under the heavy lock: it trains.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "synthetic" / "ctrgcn_joint.yaml"


def train(processes: int, epochs: int, seed: int, runs: Path) -> dict:
    """One run; its metrics, history and wall time."""
    name = f"p{processes}-e{epochs}-s{seed}"
    launcher = [sys.executable, "-m", "mmcl.cli"] if processes == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
        "-m", "mmcl.cli"]
    cmd = [*launcher, "train", "--config", str(CONFIG), f"output_dir={runs}", f"name={name}", f"seed={seed}",
           f"optim.epochs={epochs}", f"optim.warmup_epochs={min(2, epochs - 1)}",
           f"data.batch_size={16 // processes}"]
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 2) // processes))}
    start = time.time()
    subprocess.run(cmd, env=env, check=True, cwd=REPO)
    wall = time.time() - start
    run = runs / name
    metrics = json.loads((run / "metrics.json").read_text())
    history = json.loads((run / "history.json").read_text())["history"]
    return {"processes": processes, "seed": seed, "batch_per_process": 16 // processes,
            "command": " ".join(cmd[1:]),
            "test_top1": metrics["top1"], "val_top1": metrics["val_top1"], "best_epoch": metrics["best_epoch"],
            "mean_class_accuracy": metrics["mean_class_accuracy"], "wall_s": round(wall, 1),
            "history": [{k: h[k] for k in ("epoch", "train_loss", "val_top1")} for h in history]}


def summary(rows: list[dict]) -> list[str]:
    """Markdown lines: test top-1 mean ± std over seeds per process count, and the per-seed difference (2 - 1
    processes, paired by seed) beside the seed-to-seed spread of one process."""
    by = {p: {r["seed"]: 100 * r["test_top1"] for r in rows if r["processes"] == p} for p in (1, 2)}
    paired = sorted(set(by[1]) & set(by[2]))
    if len(paired) < 2:
        return []
    lines = ["", "| processes | seeds | test top-1 (%), mean ± std over seeds |", "|---:|---:|---:|"]
    for p, runs in by.items():
        lines.append(f"| {p} | {len(runs)} | {statistics.mean(runs.values()):.2f} ± "
                     f"{statistics.stdev(runs.values()):.2f} |")
    diffs = [by[2][s] - by[1][s] for s in paired]
    lines += ["", f"2 processes - 1 process, paired by seed: {statistics.mean(diffs):+.2f} ± "
                  f"{statistics.stdev(diffs):.2f} points ({', '.join(f'{d:+.2f}' for d in diffs)}); one process "
                  f"from seed to seed: std {statistics.stdev(by[1][s] for s in paired):.2f} points."]
    return lines


def write(rows: list[dict], args: argparse.Namespace, out: Path, load: float) -> None:
    """JSON, Markdown and PNG of ``rows``; ``load``: the 1-minute load average when the last run ended."""
    result = {"config": str(CONFIG.relative_to(REPO)), "epochs": args.epochs, "global_batch": 16,
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
              "load_average_1min_end": round(load, 1), "runs": rows}
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    lines = ["# The main job on 1 vs 2 CPU processes (same global batch)", "",
             f"`{result['config']}`, {args.epochs} epochs, global batch 16 (2 processes: 8 each, torchrun + gloo); "
             f"{result['machine']}, shared (1-minute load average {result['load_average_1min_end']} at the end of "
             f"the last run; wall times are noisy). 224 test and 32 validation samples: one validation sample is "
             f"3.1 points.", "",
             "| processes | seed | batch / process | test top-1 (%) | mean class (%) | val top-1 (%) | best epoch | "
             "final train loss | wall (s) |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['processes']} | {r['seed']} | {r['batch_per_process']} | {100 * r['test_top1']:.2f} | "
                     f"{100 * r['mean_class_accuracy']:.2f} | {100 * r['val_top1']:.2f} | {r['best_epoch']} | "
                     f"{r['history'][-1]['train_loss']:.4f} | {r['wall_s']:.0f} |")
    lines += summary(rows)
    lines += ["", "Commands: " + "; ".join(sorted({f"`python benchmarks/distributed_cpu.py --epochs {args.epochs} "
                                                   f"--seed {r['seed']} --processes {r['processes']}`" for r in rows}))
              + "; the 2-process run is "
              "`torchrun --nproc_per_node 2 -m mmcl.cli train --config configs/synthetic/ctrgcn_joint.yaml "
              "data.batch_size=8`."]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    for r in rows:
        epochs = [h["epoch"] for h in r["history"]]
        a.plot(epochs, [h["train_loss"] for h in r["history"]], marker="o",
               label=f"{r['processes']} process(es), seed {r['seed']}")
        b.plot(epochs, [100 * (h["val_top1"] or 0) for h in r["history"]], marker="o")
    a.set(xlabel="epoch", ylabel="train loss")
    b.set(xlabel="epoch", ylabel="val top-1 (%)")
    a.legend()
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--append", action="store_true", help="add to the runs already in --out")
    parser.add_argument("--runs", type=Path, default=REPO / "runs" / "distributed-cpu")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "distributed_cpu.json")
    args = parser.parse_args()
    rows = json.loads(args.out.read_text())["runs"] if args.append and args.out.exists() else []
    rows += [train(p, args.epochs, args.seed, args.runs) for p in args.processes]
    rows.sort(key=lambda r: (r["seed"], r["processes"]))
    write(rows, args, args.out, os.getloadavg()[0])
    print(args.out.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
