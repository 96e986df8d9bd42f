"""``mmcl eval``: skeleton-only inference of a deployable checkpoint on a prepared split.

    mmcl eval --checkpoint runs/x/best.safetensors --data cache/synthetic/prepared-seed0 --split test

Writes ``<split>_scores.npz``, ``<split>_metrics.json`` and ``<split>_confusion.png`` (on a long-tailed dataset also
many / medium / few-shot top-1 and ``<split>_per_class_accuracy.png``). Nothing but the checkpoint
and the skeletons is read: no video, no teacher cache.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from accelerate import Accelerator

from mmcl.cli import non_negative_int, positive_int
from mmcl.config import DataConfig, from_yaml
from mmcl.data.longtail import read_longtail
from mmcl.data.prepared import PreparedData
from mmcl.data.streams import skeleton_channels
from mmcl.engine.data import build_dataset, build_loader, model_input, trained_class_counts
from mmcl.engine.metrics import classification_report, format_longtail, longtail_report, save_scores, write_report
from mmcl.engine.trainer import predict
from mmcl.errors import CheckpointError
from mmcl.models.checkpoint import CheckpointInfo, load_checkpoint


def check_compatible(info: CheckpointInfo, data: PreparedData, data_cfg: DataConfig, checkpoint: Path) -> None:
    """The prepared data (as the run's data settings adapt it) must have the checkpoint's layout, persons, channels
    and classes."""
    problems = []
    layout, num_person = model_input(data, data_cfg)
    if layout != info.layout:
        problems.append(f"layout {layout!r} vs the checkpoint's {info.layout!r}")
    if num_person != info.num_person:
        problems.append(f"{num_person} persons vs the checkpoint's {info.num_person}")
    channels = skeleton_channels(info.stream, info.in_channels)  # per joint of the skeletons its stream reads
    if data.info.channels != channels:
        problems.append(f"{data.info.channels} channels vs the checkpoint's {channels}")
    if data.class_names != info.class_names:
        problems.append(f"{data.num_classes} classes ({', '.join(data.class_names[:3])}, ...) vs the checkpoint's "
                        f"{info.num_classes} ({', '.join(info.class_names[:3])}, ...); for another label space use "
                        f"`mmcl zeroshot`")
    if problems:
        raise CheckpointError(f"{data.root} does not fit {checkpoint}: " + "; ".join(problems))


def evaluate(checkpoint: str | Path, data_root: str | Path, split: str = "test", out: str | Path | None = None,
             batch_size: int | None = None, num_workers: int = 2) -> dict:
    """Evaluate ``checkpoint`` on one split of a prepared dataset; returns the metrics."""
    accelerator = Accelerator()
    checkpoint = Path(checkpoint)
    model, info = load_checkpoint(checkpoint)
    data = PreparedData(data_root)
    data_cfg = from_yaml(info.config_yaml).data
    check_compatible(info, data, data_cfg, checkpoint)
    loader = build_loader(build_dataset(data, data_cfg, split, train=False), batch_size or data_cfg.eval_batch_size,
                          num_workers)
    model, loader = accelerator.prepare(model, loader)
    scores, labels, indices = predict(model, loader, accelerator, desc=f"{split}")
    if not np.isfinite(scores).all():
        raise CheckpointError(f"{checkpoint} gives NaN or inf scores on {data.root} [{split}] (finite weights and "
                              f"inputs: the model overflows); no metrics are written")
    metrics: dict = {}
    if accelerator.is_main_process:
        out = Path(out) if out else checkpoint.parent / f"eval-{data.root.name}"
        out.mkdir(parents=True, exist_ok=True)
        save_scores(out / f"{split}_scores.npz", [data.names[i] for i in indices], labels, scores, data.class_names)
        report = classification_report(scores, labels, data.class_names)
        extra = {"checkpoint": str(checkpoint), "data": str(data.root), "split": split, "stream": info.stream}
        if read_longtail(data.root) is not None:  # a long-tailed training split: accuracy by training count too
            lt = data_cfg.longtail
            counts = trained_class_counts(data, data_cfg)
            extra["longtail"] = longtail_report(report, data.class_names, counts, lt.many_above,
                                                lt.few_below, out / f"{split}_per_class_accuracy.png")
        metrics = write_report(out, f"{split}_", report, data.class_names, extra=extra)
        print(f"{checkpoint} on {data.root} [{split}]: top-1 {100 * report.top1:.2f}%  top-5 {100 * report.top5:.2f}%"
              f"  mean class {100 * report.mean_class_accuracy:.2f}%  ({report.num_samples} samples) -> {out}")
        if "longtail" in extra:
            print(f"top-1 by training count: {format_longtail(extra['longtail'])}")
    return metrics


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, type=Path, help="deployable checkpoint (.safetensors)")
    parser.add_argument("--data", required=True, type=Path, help="prepared dataset directory")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("--out", type=Path, default=None, help="output directory (default: next to the checkpoint)")
    parser.add_argument("--batch-size", type=positive_int, default=None)
    parser.add_argument("--workers", type=non_negative_int, default=2)


def run(args: argparse.Namespace) -> int:
    evaluate(args.checkpoint, args.data, args.split, args.out, args.batch_size, args.workers)
    return 0
