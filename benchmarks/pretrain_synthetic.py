"""Self-supervised pre-training on the synthetic set: what MoCo, HaLP and SkeletonMAE bring to their encoders.

For each seed: pre-train with each method's ``configs/pretrain/<method>/synthetic.yaml`` (MoCo and HaLP: the
release's BiGRU encoder; SkeletonMAE: its GIN network), then probe every pre-trained encoder and the random
initialisation of each encoder with the same seed and configuration (``mmcl probe-encoder``): linear evaluation,
kNN (k = 1), and fine-tuning on a class-stratified 10 % of the training labels (the same 10 % per seed for every
row; for a random initialisation this is supervised training from scratch on those labels). Each run is its own
process (``nice -n 10``; with ``--lock`` the runs of a seed hold that lock file together) and is skipped when its
results exist, so the command resumes after a kill. Positional ``key=value`` overrides go to every pre-training run
(and so to the encoder every probe builds); ``--finetune key=value`` to the fine-tuning runs::

    python benchmarks/pretrain_synthetic.py --runs runs/pretrain-synthetic --lock /tmp/mmcl-heavy.lock
    python benchmarks/pretrain_synthetic.py --runs runs/pretrain-synthetic optim.epochs=10 --finetune optim.epochs=8
    python benchmarks/pretrain_synthetic.py --runs runs/pretrain-synthetic --report-only

Writes ``benchmarks/results/pretrain_synthetic.{json,md,png}`` (README block: ``python benchmarks/readme_tables.py``).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
METHODS = ("moco", "halp", "mae")
# table rows: name -> (label, pre-training method or None for a random init, the run whose configuration it uses)
ROWS = {
    "random-bigru": ("random init", None, "moco"),
    "moco": ("MoCo v2", "moco", "moco"),
    "halp": ("HaLP", "halp", "halp"),
    "random-gin": ("random init", None, "mae"),
    "mae": ("SkeletonMAE", "mae", "mae"),
}
FRACTION = 0.1


def _mmcl(*args: str) -> list[str]:
    return [sys.executable, "-m", "mmcl.cli", *args]


def pretrain_dir(runs: Path, method: str, seed: int) -> Path:
    return runs / f"{method}-s{seed}"


def probe_dir(runs: Path, method: str, seed: int) -> Path:
    return runs / "probe" / f"{method}-s{seed}"


def plan(runs: Path, seed: int, overrides: list[str], finetune: list[str]) -> list[tuple[str, list[str], Path]]:
    """The missing runs of one seed, in order, as (name, command, file that marks it done): the three pre-training
    runs, then the probes of their encoders and of each encoder's random initialisation (that of a pre-training
    run's resolved configuration: the same encoder, arguments, window and stream)."""
    tasks = []
    for method in METHODS:
        run_dir = pretrain_dir(runs, method, seed)
        if (run_dir / "state").is_dir():
            cmd = _mmcl("pretrain", "--resume", str(run_dir))
        elif run_dir.exists() and not (run_dir / "metrics.json").is_file():
            raise FileExistsError(f"{run_dir} holds an unfinished run without a saved state: remove it")
        else:
            cmd = _mmcl("pretrain", "--config", f"configs/pretrain/{method}/synthetic.yaml", f"seed={seed}",
                        f"name={run_dir.name}", f"output_dir={runs}", *overrides)
        tasks.append((run_dir.name, cmd, run_dir / "metrics.json"))
    for row, (_, method, config_of) in ROWS.items():
        out = probe_dir(runs, row, seed)
        if method is None:
            source = ["--random-init", str(pretrain_dir(runs, config_of, seed) / "config.yaml")]
        else:
            source = ["--checkpoint", str(pretrain_dir(runs, method, seed) / "encoder.safetensors")]
        tasks.append((f"probe {out.name}", _mmcl("probe-encoder", *source, "--protocols", "linear", "knn", "semi",
                                                 "--fractions", f"{FRACTION:g}", "--seeds", str(seed),
                                                 "--out", str(out), *finetune), out / "metrics.json"))
    return [t for t in tasks if not t[2].is_file()]


def run_all(runs: Path, seeds: list[int], lock: str | None, overrides: list[str], finetune: list[str]) -> None:
    """The missing runs, seed by seed, each its own ``nice -n 10`` process; with ``lock`` the runs of a seed hold
    that file's lock (flock) together (one acquisition per seed). The wall seconds of each run and of each seed's
    hold go to ``RUNS/timings.json``."""
    from mmcl.io import write_json

    timings_path = runs / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.is_file() else {}
    for seed in seeds:
        if not plan(runs, seed, overrides, finetune):
            continue
        with open(lock, "a") if lock else nullcontext() as held:
            if held:
                print(f"seed {seed}: waiting for {lock}", flush=True)
                fcntl.flock(held, fcntl.LOCK_EX)
            held_since = time.time()
            for name, cmd, _ in plan(runs, seed, overrides, finetune):
                print("+", " ".join(cmd), flush=True)
                start = time.time()
                with open(runs / "logs" / f"{name.replace(' ', '-')}.log", "w") as log:
                    code = subprocess.run(["nice", "-n", "10", *cmd], cwd=ROOT, stdout=log,
                                          stderr=subprocess.STDOUT).returncode
                if code:
                    raise RuntimeError(f"{name} failed (exit {code}); see {log.name}")
                timings[name] = round(time.time() - start, 1)
                write_json(timings_path, timings)
                print(f"done: {name} ({timings[name]} s)", flush=True)
        timings[f"seed {seed} (lock held)"] = round(time.time() - held_since, 1)
        write_json(timings_path, timings)


def _stats(values: list[float]) -> dict:
    return {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)) if len(values) > 1 else None,
            "values": values}


def collect(runs: Path, seeds: list[int]) -> dict:
    """The figures of every finished run, per table row."""
    rows = {}
    for name, (label, method, config_of) in ROWS.items():
        probes = {s: json.loads((probe_dir(runs, name, s) / "metrics.json").read_text()) for s in seeds}
        row = {
            "label": label, "method": method, "encoder": _encoder(runs, config_of, seeds[0]),
            "linear_top1": _stats([p["linear"][str(s)]["test_top1"] for s, p in probes.items()]),
            "knn_top1": _stats([p["knn"][str(s)]["k=1"]["test_top1"] for s, p in probes.items()]),
            "semi_top1": _stats([p["semi"][f"{FRACTION:g}"][str(s)]["test_top1"] for s, p in probes.items()]),
        }
        if method is not None:
            pre = [json.loads((pretrain_dir(runs, method, s) / "metrics.json").read_text()) for s in seeds]
            row["seconds_per_epoch"] = _stats([p["seconds_per_epoch"] for p in pre])
            row["cpu_seconds_per_epoch"] = _stats([p["cpu_seconds_per_epoch"] for p in pre])
            row["epochs"] = pre[0]["epochs"]
        rows[name] = row
    timings = json.loads((runs / "timings.json").read_text()) if (runs / "timings.json").is_file() else {}
    run_seconds = sum(v for k, v in timings.items() if not k.startswith("seed ")) if timings else None
    return {"seeds": seeds, "label_fraction": FRACTION, "setup": setup(runs, seeds[0]), "rows": rows,
            "run_seconds_total": run_seconds}


def _config(runs: Path, method: str, seed: int):
    from mmcl.config import load_config
    from mmcl.pretrain.config import PretrainConfig

    return load_config(pretrain_dir(runs, method, seed) / "config.yaml", schema=PretrainConfig)


def _encoder(runs: Path, method: str, seed: int) -> str:
    cfg = _config(runs, method, seed)
    return f"{cfg.model.name} ({', '.join(f'{k}={v}' for k, v in cfg.model.args.items())})"


def setup(runs: Path, seed: int) -> dict:
    """The sizes of the runs, read from their resolved configurations."""
    from mmcl.config import load_config

    cfg = {m: _config(runs, m, seed) for m in METHODS}
    finetune = json.loads((probe_dir(runs, "moco", seed) / "metrics.json").read_text())["semi"][f"{FRACTION:g}"]
    finetune_cfg = load_config(Path(finetune[str(seed)]["run"]) / "config.yaml")
    return {"pretraining": {m: {"window": c.data.window, "stream": c.data.stream, "batch_size": c.data.batch_size,
                                "epochs": c.optim.epochs, "lr": c.optim.lr} for m, c in cfg.items()},
            "queue_size": cfg["moco"].moco.queue_size, "key_momentum": cfg["moco"].moco.momentum,
            "halp_start_epoch": cfg["halp"].halp.start_epoch, "mae_ratio": cfg["mae"].mae.ratio,
            "finetune_epochs": finetune_cfg.optim.epochs, "finetune_repeat": finetune_cfg.data.repeat,
            "finetune_batch_size": finetune_cfg.data.batch_size, "finetune_lr": finetune_cfg.optim.lr}


def _fmt(stat: dict, scale: float = 100.0, digits: int = 1) -> str:
    mean = f"{scale * stat['mean']:.{digits}f}"
    return mean if stat["std"] is None else f"{mean} ± {scale * stat['std']:.{digits}f}"


def markdown(results: dict) -> str:
    rows, s = results["rows"], results["setup"]
    pre = s["pretraining"]
    fraction = f"{100 * results['label_fraction']:.0f} %"
    lines = [
        "# Self-supervised pre-training on the synthetic set",
        "",
        f"Test top-1 (%), mean ± sample standard deviation over seeds {', '.join(map(str, results['seeds']))}; "
        f"{pre['moco']['stream']} stream, {pre['moco']['window']}-frame clips. Pre-training "
        f"{pre['moco']['epochs']} epochs of batch {pre['moco']['batch_size']} (MoCo / HaLP: lr {pre['moco']['lr']:g} "
        f"cosine, queue {s['queue_size']}, key momentum {s['key_momentum']:g}, HaLP from epoch "
        f"{s['halp_start_epoch'] + 1}; SkeletonMAE: lr {pre['mae']['lr']:g} cosine, {100 * s['mae_ratio']:.0f} % of "
        "the joints masked), the configs of `configs/pretrain/<method>/synthetic.yaml`. Linear evaluation and kNN on "
        f"the frozen encoder; fine-tuning on a class-stratified {fraction} of the training labels "
        f"({s['finetune_epochs']} epochs over them repeated {s['finetune_repeat']}x, batch "
        f"{s['finetune_batch_size']}, lr {s['finetune_lr']:g}; the same labels per seed for every row; random init: "
        "supervised training from scratch on them); \"vs scratch\": against the random init of the same encoder. "
        "Cost: wall and CPU seconds per pre-training epoch on this 2-core CPU shared with other jobs (wall time is "
        "noisy; CPU time is the process's own).",
        "",
        f"| encoder | initialisation | linear eval | kNN (k=1) | {fraction}-label fine-tuning | vs scratch | "
        "wall s / epoch | CPU s / epoch |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    scratch = {}
    for row in rows.values():
        if row["method"] is None:
            scratch[row["encoder"]] = row["semi_top1"]["mean"]
    for row in rows.values():
        if row["method"] is None:
            delta, cost = "", ("", "")
        else:
            delta = f"{100 * (row['semi_top1']['mean'] - scratch[row['encoder']]):+.1f}"
            cost = (_fmt(row["seconds_per_epoch"], 1.0, 2), _fmt(row["cpu_seconds_per_epoch"], 1.0, 2))
        lines.append(f"| {row['encoder']} | {row['label']} | {_fmt(row['linear_top1'])} | {_fmt(row['knn_top1'])} "
                     f"| {_fmt(row['semi_top1'])} | {delta} | {cost[0]} | {cost[1]} |")
    return "\n".join(lines) + "\n"


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["rows"]
    metrics = [("linear_top1", "linear eval"), ("knn_top1", "kNN k=1"), ("semi_top1", "10 % labels, fine-tuned")]
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / len(rows)
    for i, row in enumerate(rows.values()):
        means = [100 * row[m]["mean"] for m, _ in metrics]
        stds = [100 * (row[m]["std"] or 0) for m, _ in metrics]
        label = f"{row['label']}, {row['encoder'].split(' ')[0]}"
        ax.bar(np.arange(len(metrics)) + i * width, means, width, yerr=stds, capsize=3, label=label)
    ax.set_xticks(np.arange(len(metrics)) + width * (len(rows) - 1) / 2, [label for _, label in metrics])
    ax.set_ylabel("test top-1 (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8, ncol=3, loc="upper center", bbox_to_anchor=(0.5, 1.2))
    fig.tight_layout()
    from mmcl.io import atomic_path

    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "pretrain-synthetic")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--lock", default=None, help="hold this file's lock during each seed's runs (shared machines)")
    parser.add_argument("--report-only", action="store_true", help="only collect finished runs into the results")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--finetune", action="append", default=[], metavar="KEY=VALUE",
                        help="override of the fine-tuning config (repeatable)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides for every pre-training run")
    args = parser.parse_args(argv)
    if not args.report_only:
        (args.runs / "logs").mkdir(parents=True, exist_ok=True)
        run_all(args.runs, args.seeds, args.lock, args.overrides, args.finetune)
    from mmcl.io import atomic_write_text, write_json

    results = collect(args.runs, args.seeds)
    write_json(args.out / "pretrain_synthetic.json", results)
    atomic_write_text(args.out / "pretrain_synthetic.md", markdown(results))
    plot(results, args.out / "pretrain_synthetic.png")
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
