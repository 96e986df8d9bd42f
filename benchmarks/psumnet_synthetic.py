"""PSUMNet's three part streams against CTR-GCN's four modality streams on the synthetic set.

Seven ordinary training runs on the default synthetic set (seed 0), one config family, the same training seed:

- PSUMNet ``body``, ``hand``, ``leg``: ``configs/synthetic/psumnet_{body,hand,leg}.yaml``;
- CTR-GCN ``joint``, ``bone``, ``joint_motion``, ``bone_motion``: ``configs/synthetic/ctrgcn_joint.yaml`` with
  ``data.stream`` set.

Each run selects its best epoch on validation and is evaluated once on test. The ensembles fuse the streams' logits
with weights searched on the validation scores (:func:`mmcl.engine.ensemble.search_weights`, grid step 0.1); the
published fixed weights (PSUMNet's NTU-60 X-Sub body/hand/leg 2/1.8/0.7, CTR-GCN's 0.6/0.6/0.4/0.4) are reported
beside them as a comparison, never chosen on test. Costs: parameters of the deployed models, forward GFLOPs per
sample (``torch.utils.flop_counter``, mmcl's implementation as executed, at the runs' window and at NTU's 64 frames,
M = 2), and training seconds per epoch (the run's training loop, validation passes included, over its epochs).

    python benchmarks/psumnet_synthetic.py --runs runs/psumnet-synthetic                 # train what is missing, report
    python benchmarks/psumnet_synthetic.py --runs runs/psumnet-synthetic --only psumnet_body   # train one run
    python benchmarks/psumnet_synthetic.py --runs runs/psumnet-synthetic --report         # report only
    python benchmarks/psumnet_synthetic.py --runs runs/psumnet-synthetic --report --allow-untrained
    python benchmarks/psumnet_synthetic.py --runs runs/psumnet-synthetic optim.epochs=3 optim.warmup_epochs=1

A finished run (its ``metrics.json`` exists) is not trained again; an interrupted one resumes. Overrides apply to
every run (a shorter schedule is stated in the report). ``--allow-untrained`` reports before all seven runs are
trained (PSUMNet body and CTR-GCN joint must be): the others show their cost alone, marked not trained. The report
goes to ``benchmarks/results/psumnet_synthetic.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from mmcl.config import load_config
from mmcl.data.streams import input_channels, stream_model_args
from mmcl.engine.ensemble import fuse, search_weights
from mmcl.engine.metrics import load_scores, topk_accuracy
from mmcl.io import atomic_path, atomic_write_text, write_json
from mmcl.models import create_model
from mmcl.models.checkpoint import load_checkpoint
from mmcl.paths import configs_dir

# run name -> (config under configs/synthetic/, overrides)
RUNS: dict[str, tuple[str, list[str]]] = {
    "psumnet_body": ("psumnet_body.yaml", []),
    "psumnet_hand": ("psumnet_hand.yaml", []),
    "psumnet_leg": ("psumnet_leg.yaml", []),
    "ctrgcn_joint": ("ctrgcn_joint.yaml", ["data.stream=joint"]),
    "ctrgcn_bone": ("ctrgcn_joint.yaml", ["data.stream=bone"]),
    "ctrgcn_joint_motion": ("ctrgcn_joint.yaml", ["data.stream=joint_motion"]),
    "ctrgcn_bone_motion": ("ctrgcn_joint.yaml", ["data.stream=bone_motion"]),
}
ENSEMBLES = {  # label -> (runs, published fixed weights)
    "PSUMNet, 3 part streams": (("psumnet_body", "psumnet_hand", "psumnet_leg"), (2.0, 1.8, 0.7)),
    "CTR-GCN, 4 modality streams": (("ctrgcn_joint", "ctrgcn_bone", "ctrgcn_joint_motion", "ctrgcn_bone_motion"),
                                    (0.6, 0.6, 0.4, 0.4)),
}
LABELS = {"psumnet_body": "PSUMNet body", "psumnet_hand": "PSUMNet hand", "psumnet_leg": "PSUMNet leg",
          "ctrgcn_joint": "CTR-GCN joint", "ctrgcn_bone": "CTR-GCN bone",
          "ctrgcn_joint_motion": "CTR-GCN joint-motion", "ctrgcn_bone_motion": "CTR-GCN bone-motion"}
RESULTS = Path(__file__).resolve().parent / "results"
NTU_WINDOW, PERSONS = 64, 2


def train_missing(runs: Path, names: list[str], overrides: list[str]) -> None:
    """Train the runs without ``metrics.json`` (resuming those with a ``state/``), each as an ``mmcl train``
    process: the command's own environment (thread policy, one accelerate state per run)."""
    for name in names:
        run_dir = runs / name
        if (run_dir / "metrics.json").exists():
            print(f"{run_dir}: finished, not trained again")
            continue
        if (run_dir / "state").is_dir():
            cmd = ["train", "--resume", str(run_dir)]
        else:
            config, extra = RUNS[name]
            cmd = ["train", "--config", str(configs_dir() / "synthetic" / config), *extra, f"name={name}",
                   f"output_dir={runs}", *overrides]
        subprocess.run([sys.executable, "-m", "mmcl.cli", *cmd], check=True)


def forward_gflops(model: torch.nn.Module, channels: int, frames: int, joints: int) -> float:
    """Forward FLOPs per sample / 1e9 of ``model`` in eval mode (batch 2, M = 2)."""
    x = torch.randn(2, channels, frames, joints, PERSONS)
    counter = FlopCounterMode(display=False)
    with counter:
        model.eval()(x)
    return counter.get_total_flops() / 2 / 1e9


def _config_model(name: str, num_classes: int) -> tuple[torch.nn.Module, int, int]:
    """The model a run of ``name`` trains, built from its config as ``mmcl train`` builds it (untrained), its input
    channels and window."""
    config, extra = RUNS[name]
    cfg = load_config(configs_dir() / "synthetic" / config, extra)
    channels = input_channels(cfg.data.stream, 3)
    model = create_model(cfg.model.name, num_classes=num_classes, layout="ntu25", in_channels=channels,
                         num_person=PERSONS, **cfg.model.args, **stream_model_args(cfg.data.stream))
    return model, channels, cfg.data.window


def model_cost(run_dir: Path, num_classes: int) -> dict:
    """Parameters and forward GFLOPs of the run's deployed model: rebuilt from ``best.safetensors`` when the run
    trained, else built from its config (the same architecture, untrained)."""
    if (run_dir / "best.safetensors").exists():
        model, info = load_checkpoint(run_dir / "best.safetensors")
        channels, window = info.in_channels, info.window
    else:
        model, channels, window = _config_model(run_dir.name, num_classes)
    joints = model.num_joints  # the part's joints for PSUMNet
    return {"parameters": sum(p.numel() for p in model.parameters()),
            "gflops": forward_gflops(model, channels, window, joints),
            "gflops_ntu64": forward_gflops(model, channels, NTU_WINDOW, joints), "window": window}


def _trained(runs: Path, name: str) -> bool:
    return (runs / name / "metrics.json").exists()


def stream_row(name: str, runs: Path, num_classes: int) -> dict:
    """A stream's row; accuracy and training time are ``None`` for a run that was not trained."""
    row = {"label": LABELS[name], "runs": [name], "trained": _trained(runs, name), "test_top1": None,
           "val_top1": None, "best_epoch": None, "epochs": None, "train_s_per_epoch": None,
           **model_cost(runs / name, num_classes)}
    if row["trained"]:
        metrics = json.loads((runs / name / "metrics.json").read_text())
        val = load_scores(runs / name / "val_scores.npz")
        row.update(test_top1=metrics["top1"], val_top1=topk_accuracy(val.scores, val.labels),
                   best_epoch=metrics["best_epoch"], epochs=metrics["epochs"],
                   train_s_per_epoch=metrics["train_time_s"] / metrics["epochs"])
    return row


def _aligned(runs: Path, names: tuple[str, ...], split: str):
    loaded = [load_scores(runs / n / f"{split}_scores.npz") for n in names]
    order = [np.argsort(s.names) for s in loaded]
    names0 = [loaded[0].names[i] for i in order[0]]
    for s, o in zip(loaded, order):
        if [s.names[i] for i in o] != names0:
            raise ValueError(f"the runs {', '.join(names)} scored different {split} samples")
    return [s.scores[o] for s, o in zip(loaded, order)], loaded[0].labels[order[0]]


def ensemble_rows(label: str, names: tuple[str, ...], published: tuple[float, ...], runs: Path,
                  streams: dict[str, dict]) -> list[dict]:
    """The ensemble with weights searched on val and with the published weights; while a member run is untrained,
    one row with its cost alone."""
    cost = {key: sum(streams[n][key] for n in names) for key in ("parameters", "gflops", "gflops_ntu64")}
    if not all(streams[n]["trained"] for n in names):
        return [{"label": label, "runs": list(names), "trained": False, "test_top1": None, "val_top1": None,
                 "train_s_per_epoch": None, **cost}]
    val, val_labels = _aligned(runs, names, "val")
    searched = search_weights(val, val_labels, step=0.1)
    rows = []
    for how, weights in (("weights searched on val", searched), ("published weights, for comparison", published)):
        # the test scores are read once the weights are fixed
        test, test_labels = _aligned(runs, names, "test")
        rows.append({
            "label": f"{label} ({how})", "runs": list(names), "trained": True,
            "weights": [round(float(w), 4) for w in weights],
            "test_top1": topk_accuracy(fuse(test, weights), test_labels),
            "val_top1": topk_accuracy(fuse(val, weights), val_labels), **cost,
            "train_s_per_epoch": sum(streams[n]["train_s_per_epoch"] for n in names)})
    return rows


def markdown(report: dict) -> str:
    shortened = ""
    if report["epochs"] != report["config_epochs"]:
        shortened = (f"; shortened from the configs' {report['config_epochs']} epochs with "
                     f"`optim.epochs={report['epochs']} optim.warmup_epochs={report['warmup_epochs']}`, "
                     "so every model is under-trained")
    lines = [
        "# PSUMNet vs CTR-GCN on the synthetic set",
        "",
        f"Default synthetic set (seed 0: {report['test_samples']} test / {report['val_samples']} val samples, "
        f"{report['num_classes']} classes), configs `configs/synthetic/psumnet_*.yaml` and "
        "`configs/synthetic/ctrgcn_joint.yaml` (`data.stream` set per CTR-GCN stream), training seed "
        f"{report['seed']}, {report['epochs']} epochs ({report['warmup_epochs']} warm-up, {report['scheduler']} "
        f"decay from lr {report['lr']:g}{shortened}), best epoch on validation, test evaluated once. One seed: "
        "differences "
        "of a few points "
        "are within seed-to-seed spread. Ensemble weights are searched on the small validation split; the published "
        "weights are shown for comparison only. GFLOPs: forward, per sample, M = 2, mmcl's implementation as "
        f"executed (`torch.utils.flop_counter`), at the runs' {report['window']}-frame window and at NTU's 64. "
        f"Training time per epoch on {report['machine']}, validation passes included: each run trained at its own "
        "time under whatever else shared the cores, so these times measure the load as much as the model; compare "
        "cost by GFLOPs.",
        "",
        "| model | streams | test top-1 (%) | val top-1 (%) | parameters | GFLOPs / sample "
        f"(T={report['window']}) | GFLOPs (T=64) | train s / epoch |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["rows"]:
        streams = len(row["runs"])
        weights = f" w = {'/'.join(f'{w:g}' for w in row['weights'])}" if "weights" in row else ""
        if row["trained"]:
            measured = (f"{100 * row['test_top1']:.2f} | {100 * row['val_top1']:.2f} | ",
                        f"{row['train_s_per_epoch']:.1f}")
        else:
            measured = ("not trained | | ", "")
        lines.append(f"| {row['label']} | {streams}{weights} | {measured[0]}{row['parameters']:,} | "
                     f"{row['gflops']:.2f} | {row['gflops_ntu64']:.2f} | {measured[1]} |")
    if report["untrained"]:
        lines += ["", f"Not trained (out of the time budget): {', '.join(report['untrained'])}. Their parameters and "
                  "GFLOPs are those of the same architecture built from its config; no accuracy is claimed for them "
                  "or for an ensemble that needs them."]
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for row in report["rows"]:
        if "published" in row["label"] or not row["trained"]:
            continue
        psum = row["label"].startswith("PSUMNet")
        ax.scatter(row["gflops"], 100 * row["test_top1"], s=row["parameters"] / 2e4,
                   color="tab:orange" if psum else "tab:blue", alpha=0.7, edgecolor="k")
        ax.annotate(row["label"].replace(" (weights searched on val)", ""), (row["gflops"], 100 * row["test_top1"]),
                    fontsize=7, xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel(f"forward GFLOPs per sample (T={report['window']}, M=2)")
    ax.set_ylabel("test top-1 (%)")
    ax.set_title(f"synthetic set, {report['epochs']} epochs: PSUMNet (orange) vs CTR-GCN (blue); "
                 "marker area ~ parameters", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def _schedule(cfg) -> tuple[int, int, str, float]:
    return cfg.optim.epochs, cfg.optim.warmup_epochs, cfg.optim.scheduler, cfg.optim.lr


def report(runs: Path, out: Path, allow_untrained: bool = False) -> dict:
    """Write the comparison; with ``allow_untrained``, runs not trained yet (``psumnet_body`` and ``ctrgcn_joint``
    must be) are listed as such, with their cost alone."""
    untrained = [n for n in RUNS if not _trained(runs, n)]
    required = untrained if not allow_untrained else [n for n in ("psumnet_body", "ctrgcn_joint") if n in untrained]
    if required:
        raise FileNotFoundError(f"unfinished runs in {runs}: {', '.join(required)} (train them first)")
    val = load_scores(runs / "psumnet_body" / "val_scores.npz")
    test = load_scores(runs / "psumnet_body" / "test_scores.npz")
    streams = {name: stream_row(name, runs, len(val.class_names)) for name in RUNS}
    rows = [streams["psumnet_body"]]
    rows += ensemble_rows(*("PSUMNet, 3 part streams",), *ENSEMBLES["PSUMNet, 3 part streams"], runs, streams)
    rows += [streams["ctrgcn_joint"]]
    rows += ensemble_rows("CTR-GCN, 4 modality streams", *ENSEMBLES["CTR-GCN, 4 modality streams"], runs, streams)
    rows += [streams[n] for n in ("psumnet_hand", "psumnet_leg", "ctrgcn_bone", "ctrgcn_joint_motion",
                                  "ctrgcn_bone_motion")]
    cfg = load_config(runs / "psumnet_body" / "config.yaml")
    schedules = {name: _schedule(load_config(runs / name / "config.yaml")) for name in RUNS if _trained(runs, name)}
    if len(set(schedules.values())) != 1:
        raise ValueError(f"the runs in {runs} were trained on different schedules: {schedules}")
    epochs, warmup, scheduler, lr = schedules["psumnet_body"]
    result = {"rows": rows, "untrained": untrained, "runs_dir": str(runs), "seed": cfg.seed, "window": cfg.data.window,
              "epochs": epochs, "warmup_epochs": warmup, "scheduler": scheduler, "lr": lr,
              "config_epochs": load_config(configs_dir() / "synthetic" / "ctrgcn_joint.yaml").optim.epochs,
              "num_classes": len(val.class_names), "val_samples": len(val.names), "test_samples": len(test.names),
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
                         f"{torch.__version__}"}
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "psumnet_synthetic.json", result)
    atomic_write_text(out / "psumnet_synthetic.md", markdown(result))
    plot(result, out / "psumnet_synthetic.png")
    print(markdown(result))
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, required=True, help="directory of the seven runs")
    parser.add_argument("--only", choices=list(RUNS), action="append", help="train only this run (repeatable)")
    parser.add_argument("--report", action="store_true", help="do not train; write the report from finished runs")
    parser.add_argument("--allow-untrained", action="store_true",
                        help="report although some runs are not trained (cost only for them; PSUMNet body and "
                             "CTR-GCN joint must be trained)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("overrides", nargs="*", help="dotted.key=value overrides for every run")
    args = parser.parse_args()
    if not args.report:
        train_missing(args.runs, args.only or list(RUNS), args.overrides)
        if args.only:
            return 0
    report(args.runs, args.out, args.allow_untrained)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
