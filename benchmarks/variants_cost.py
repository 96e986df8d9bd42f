"""Parameters and inference cost of plain CTR-GCN vs the deployed cross-modal variants (skeleton-only).

The deployed model of ``colearn.mmixer`` / ``colearn.deformable`` is CTR-GCN plus the variant's skeleton-only path
(hallucinator + fused classifier, :mod:`mmcl.models.crossmodal`); this script builds each from the registry, as a
checkpoint is rebuilt, with the head sizes of the NTU configs (``configs/mmcl/ntu60|ntu120/xsub_joint_<variant>.yaml``)
and of the synthetic configs (the dataclass defaults), for NTU-25 skeletons, M = 2, 60 and 120 classes, and reports:

- parameters (total, and the path's);
- GFLOPs per sample of one forward pass, counted by ``torch.utils.flop_counter.FlopCounterMode`` (matrix products,
  the GRU's included, convolutions, attention; element-wise work and ``grid_sample`` are not counted);
- inference throughput on CPU: eval mode, no grad, batch 16, T = 64, samples/s (median over repetitions, the models'
  repetitions interleaved so that machine noise hits them alike).

Usage: ``python benchmarks/variants_cost.py [--threads 1] [--reps 5] [--out benchmarks/results/variants_cost.json]``
(writes the JSON and a markdown table beside it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from dataclasses import asdict
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode
from tqdm import tqdm

from mmcl.colearn.config import DeformableConfig, MMixerConfig
from mmcl.colearn.crossmodal import path_config
from mmcl.config import load_config
from mmcl.io import atomic_write_text
from mmcl.models import create_model
from mmcl.models.crossmodal_config import DeformablePathConfig, MMixerPathConfig
from mmcl.paths import configs_dir

BATCH, FRAMES, JOINTS, PERSONS, VISUAL_FRAMES = 16, 64, 25, 2, 5


def model_specs(num_classes: int) -> dict[str, tuple[str, dict]]:
    """Label -> (registry name, registry arguments) of the compared models for ``num_classes``."""
    dataset = {60: "ntu60", 120: "ntu120"}[num_classes]
    specs = {"CTR-GCN": ("ctrgcn", {})}
    for variant, default, path_class in (("mmixer", MMixerConfig(), MMixerPathConfig),
                                         ("deformable", DeformableConfig(), DeformablePathConfig)):
        ntu = getattr(load_config(configs_dir() / "mmcl" / dataset / f"xsub_joint_{variant}.yaml").colearn, variant)
        for label, cfg in (("NTU config", ntu), ("synthetic config", default)):
            specs[f"{variant} ({label})"] = (f"ctrgcn_{variant}", {"visual_frames": VISUAL_FRAMES,
                                                                  "head": asdict(path_config(cfg, path_class))})
    return specs


def build(name: str, args: dict, num_classes: int) -> torch.nn.Module:
    return create_model(name, num_classes=num_classes, layout="ntu25", in_channels=3, num_person=PERSONS,
                        **args).eval()


def gflops_per_sample(model: torch.nn.Module, x: torch.Tensor) -> float:
    """Forward FLOPs per sample / 1e9 (with grad mode on: FlopCounterMode's module tracker trips over views of
    parameters made under no_grad)."""
    counter = FlopCounterMode(display=False)
    with counter:
        model(x)
    return counter.get_total_flops() / x.shape[0] / 1e9


def throughput(models: dict[str, torch.nn.Module], x: torch.Tensor, reps: int) -> dict[str, float]:
    """Median samples/s of eval-mode forward passes, repetitions interleaved (one warm-up each)."""
    times: dict[str, list[float]] = {label: [] for label in models}
    with torch.no_grad():
        for model in models.values():
            model(x)
        for _ in tqdm(range(reps), desc="timing"):
            for label, model in models.items():
                start = time.perf_counter()
                model(x)
                times[label].append(time.perf_counter() - start)
    return {label: x.shape[0] / statistics.median(t) for label, t in times.items()}


def run(threads: int, reps: int) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    x = torch.randn(BATCH, 3, FRAMES, JOINTS, PERSONS)
    rows = []
    for num_classes in (60, 120):
        specs = model_specs(num_classes)
        models = {label: build(name, args, num_classes) for label, (name, args) in specs.items()}
        speed = throughput(models, x, reps)
        for label, model in models.items():
            path = getattr(model, "path", None)
            rows.append({"classes": num_classes, "model": label, "registry_name": specs[label][0],
                         "registry_args": specs[label][1], "parameters": sum(p.numel() for p in model.parameters()),
                         "path_parameters": sum(p.numel() for p in path.parameters()) if path is not None else 0,
                         "gflops_per_sample": gflops_per_sample(model, x), "samples_per_s": speed[label]})
    return {"setup": {"batch": BATCH, "frames": FRAMES, "joints": JOINTS, "persons": PERSONS,
                      "visual_frames": VISUAL_FRAMES, "threads": threads, "reps": reps, "torch": torch.__version__,
                      "cpu": platform.processor() or platform.machine(), "load_average": os.getloadavg()[0]},
            "rows": rows}


def markdown(report: dict) -> str:
    s = report["setup"]
    lines = ["# Deployed cross-modal variants vs CTR-GCN: parameters and inference cost", "",
             f"NTU-25 skeletons, M={s['persons']}, T={s['frames']}; CPU inference, eval mode, no grad, batch "
             f"{s['batch']}, {s['threads']} thread(s), median of {s['reps']} interleaved repetitions, torch "
             f"{s['torch']}, 1-minute load average {s['load_average']:.1f} at the start (other jobs share the cores). "
             "GFLOPs per sample: one forward pass, FlopCounterMode (matrix products, convolutions, attention).", "",
             "| classes | model | parameters | of which skeleton-only path | GFLOPs / sample | vs CTR-GCN | "
             "samples/s |", "|---:|---|---:|---:|---:|---:|---:|"]
    for classes in sorted({r["classes"] for r in report["rows"]}):
        rows = [r for r in report["rows"] if r["classes"] == classes]
        base = rows[0]["gflops_per_sample"]
        for r in rows:
            lines.append(f"| {classes} | {r['model']} | {r['parameters']:,} | {r['path_parameters']:,} | "
                         f"{r['gflops_per_sample']:.3f} | x{r['gflops_per_sample'] / base:.3f} | "
                         f"{r['samples_per_s']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "variants_cost.json")
    args = parser.parse_args(argv)
    report = run(args.threads, args.reps)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    md = markdown(report)
    atomic_write_text(args.out.with_suffix(".md"), md)
    print(md)
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
