"""Cost of one training step of CTR-GCN + FAM: visual features read from the teacher cache vs computed online.

    python benchmarks/fam_online_cost.py [--teacher tiny_tuned] [--reps 20] [--threads 2] [--out benchmarks/results]

The main job's settings (synthetic set, joint stream, window 32, batch 16, bf16 autocast on CPU, SGD), one optimizer
step each, for:

- no FAM (the baseline step);
- FAM on cached features (``colearn.fam.source: cache``): the batch carries the (16, k, D) embeddings;
- FAM online, frozen tower (``source: online``): the batch carries the (16, k, 3, S, S) person crops, the CLIP image
  tower embeds them at every step;
- FAM online, LoRA tower (``tower: lora``): the same, with the tower's LoRA adapters trained by the FAM loss.

Decoding the videos is not in the step: online mode decodes the training split's frames once and keeps them in memory
(its one-time cost is reported apart, per sample). Repetitions of the four steps are interleaved so that machine noise
hits them alike; the median per step is reported, and its ratio to the cached FAM step. Writes ``fam_online_cost.json``,
``.md`` and ``.png``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import default_collate

from mmcl.colearn.build import CoLearner
from mmcl.colearn.config import FAMConfig
from mmcl.colearn.fam import FAM
from mmcl.colearn.online import build_online_visual
from mmcl.config import load_config
from mmcl.engine.data import build_dataset, synthetic_paths
from mmcl.engine.module import TrainModule
from mmcl.io import atomic_path, atomic_write_text, write_json
from mmcl.models import create_model
from mmcl.paths import configs_dir
from teachers.config import load_config as load_teacher
from teachers.inputs import VideoInputs
from teachers.tiny import ensure_tiny_teachers

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_name  # noqa: E402

MODES = ("baseline", "cached", "online frozen", "online lora")


def build(mode: str, cfg, data, teacher, dim: int, k: int):
    backbone = create_model(cfg.model.name, num_classes=data.num_classes, layout=data.info.layout,
                            in_channels=data.info.channels, num_person=data.info.num_person)
    colearner = None
    if mode != "baseline":
        online = None
        if mode.startswith("online"):
            online, _ = build_online_visual(teacher, "lora" if mode.endswith("lora") else "frozen", 8, 16,
                                            teacher.tune.visual.lora.target_modules)
        colearner = CoLearner({"fam": FAM(FAMConfig(enabled=True), dim, backbone.feature_dim)}, online)
    module = TrainModule(backbone, colearner)
    return module, torch.optim.SGD([p for p in module.parameters() if p.requires_grad], lr=0.01, momentum=0.9)


def step(module, optimizer, batch) -> float:
    start = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = module(batch)
    out["loss"].backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default="tiny_tuned", help="teacher config whose CLIP tower runs online")
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = load_config(configs_dir() / "synthetic" / "ctrgcn_joint.yaml")
    raw, prepared = synthetic_paths(cfg.data.synthetic_seed)
    from mmcl.data.prepared import PreparedData

    data = PreparedData(prepared)
    teacher = load_teacher(args.teacher)
    ensure_tiny_teachers(teacher)
    train_set = build_dataset(data, cfg.data, "train", train=True, seed=1)
    items = [train_set[i] for i in range(cfg.data.batch_size)]
    online, preprocess = build_online_visual(teacher, "frozen", 8, 16, teacher.tune.visual.lora.target_modules)
    inputs = VideoInputs(data, [int(i) for i in train_set.indices[: cfg.data.batch_size]], raw / "videos",
                         teacher.video, teacher.llm.canvas, preprocess, teacher.runtime.video_backend)
    t0 = time.perf_counter()
    decoded = [inputs[j] for j in range(len(inputs))]
    decode_ms = 1000 * (time.perf_counter() - t0) / len(decoded)
    pixels = torch.stack([d.pixels for d in decoded])
    with torch.no_grad():
        visual = online(pixels)
    batch = default_collate(items)
    batch.update(visual=visual, pixels=pixels, teacher_mask=torch.ones(len(items), dtype=torch.bool))
    k, dim = visual.shape[1:]
    runs = {m: build(m, cfg, data, teacher, dim, k) for m in MODES}
    for m in MODES:  # warm-up
        step(*runs[m], batch)
    times = {m: [] for m in MODES}
    for _ in range(args.reps):
        for m in MODES:
            times[m].append(step(*runs[m], batch))
    med = {m: statistics.median(t) for m, t in times.items()}
    rows = [{"mode": m, "ms_per_step": 1000 * med[m], "vs_cached": med[m] / med["cached"],
             "trainable_teacher_params": sum(p.numel() for p in (runs[m][0].colearner.online.parameters()
                                                                 if m.startswith("online") else [])
                                             if p.requires_grad)} for m in MODES]
    command = "python benchmarks/fam_online_cost.py " + " ".join(argv if argv is not None else sys.argv[1:])
    meta = {"command": command, "teacher": args.teacher, "batch": cfg.data.batch_size, "window": cfg.data.window,
            "frames": int(k), "image": list(pixels.shape[-2:]), "threads": args.threads, "reps": args.reps,
            "decode_ms_per_sample": decode_ms, "cpu": cpu_name(),
            "torch": torch.__version__}
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "fam_online_cost.json", {**meta, "rows": rows, "times_s": times})
    lines = ["# FAM: cached vs online visual features, cost of one training step", "", f"`{command}`", "",
             f"Main-job step (batch {meta['batch']}, window {meta['window']}, bf16 autocast, {args.threads} CPU "
             f"threads), teacher `{args.teacher}` ({k} frames of {meta['image'][0]}x{meta['image'][1]}); median of "
             f"{args.reps} interleaved repetitions on a shared, noisy 2-core machine: compare the ratios. Online "
             f"mode decodes the training frames once ({decode_ms:.0f} ms per sample here), not in the step.", "",
             "| mode | ms per step | vs cached FAM | trainable tower parameters |", "|---|---:|---:|---:|"]
    lines += [f"| {r['mode']} | {r['ms_per_step']:.0f} | {r['vs_cached']:.2f}x | {r['trainable_teacher_params']:,} |"
              for r in rows]
    atomic_write_text(args.out / "fam_online_cost.md", "\n".join(lines) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.boxplot([1000 * np.asarray(times[m]) for m in MODES], tick_labels=list(MODES))
    ax.set_ylabel("ms per training step")
    ax.set_title(f"CTR-GCN + FAM step, teacher {args.teacher}")
    fig.tight_layout()
    with atomic_path(args.out / "fam_online_cost.png", ".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
