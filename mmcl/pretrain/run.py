"""``mmcl pretrain``: self-supervised pre-training of a skeleton encoder with accelerate.

    mmcl pretrain --config configs/pretrain/halp/ntu60_xsub.yaml [dotted.key=value ...] [--resume RUN_DIR]
    accelerate launch -m mmcl.cli pretrain --config ...        # several processes / GPUs

A run directory (``<output_dir>/<name>``) is laid out like a training run's:

- ``config.yaml``: the resolved configuration;
- ``encoder.safetensors``: the encoder after the latest epoch, as a deployable checkpoint (registry name and
  arguments, layout, stream, window, this config; its classifier ``fc`` is untrained). Training starts from it with
  ``model.init=RUN/encoder.safetensors`` (``mmcl train``) or ``create_model(..., init=...)``;
- ``state/``: everything ``--resume`` needs (encoder, key encoder, queue, prototypes, decoder, optimizer, RNG states,
  epoch, history);
- ``tensorboard/``: losses and learning rate per step; the kNN monitor per evaluated epoch;
- ``history.json`` and ``curves.png``: per epoch, the losses, the wall time, the process's CPU time (the cost that
  does not depend on what else runs on a shared machine) and the kNN monitor (top-1 of the validation split against
  the training split, k = ``knn_k``: labels are read for this monitor only);
- ``metrics.json``: method, epochs, mean wall and CPU seconds per epoch, the last kNN monitor.

Evaluating the encoder (linear, kNN, semi-supervised, fine-tuning, transfer) is ``mmcl probe-encoder``'s job.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from mmcl.config import check_model, load_config, to_yaml
from mmcl.data.prepared import PreparedData
from mmcl.models.checkpoint import CheckpointInfo, init_from_checkpoint, save_checkpoint
from mmcl.engine.data import build_dataset, build_loader, model_input, resolve_data_root
from mmcl.errors import ConfigError
from mmcl.engine.state import TrainerState, load_state, save_state
from mmcl.engine.trainer import (NonFiniteError, _accelerator, _all_finite, _seed_everything, _set_cpu_threads,
                                 cpu_processes, learning_rate, predict, resolve_run_dir)
from mmcl.io import atomic_path, atomic_write_text, write_json
from mmcl.models import create_model
from mmcl.paths import configs_dir
from mmcl.pretrain.augment import ContrastiveAugment, TwoViewDataset
from mmcl.pretrain.config import METHODS, PretrainConfig
from mmcl.pretrain.protocols import knn_predict

DEFAULT_CONFIG = "pretrain/moco/synthetic.yaml"


def build_method(cfg: PretrainConfig, encoder: nn.Module, layout: str, in_channels: int) -> nn.Module:
    """The pre-training module of ``cfg.method`` around ``encoder``."""
    if cfg.method == "moco":
        from mmcl.pretrain.moco import MoCo

        return MoCo(encoder, **asdict(cfg.moco))
    if cfg.method == "halp":
        from mmcl.pretrain.halp import HaLP

        h = asdict(cfg.halp)
        h.pop("start_epoch")
        return HaLP(encoder, **asdict(cfg.moco), **h, seed=cfg.seed)
    if cfg.method == "mae":
        from mmcl.pretrain.skeletonmae import SkeletonMAE

        return SkeletonMAE(encoder, layout, in_channels=in_channels, **asdict(cfg.mae), seed=cfg.seed)
    raise ConfigError(f"method = {cfg.method!r}; expected one of {', '.join(METHODS)}")


def build_train_set(cfg: PretrainConfig, data: PreparedData):
    """Two augmented views per clip (contrastive methods) or the training transform's clips (MAE)."""
    if cfg.method == "mae":
        return build_dataset(data, cfg.data, "train", train=True, seed=cfg.seed)
    a = cfg.augment
    augment = ContrastiveAugment(window=cfg.data.window, crop=tuple(a.crop), min_length=a.min_length or None,
                                 shear=a.shear, corrupt_fraction=a.corrupt_fraction, p_shear=a.p_shear)
    reference = build_dataset(data, cfg.data, "train", train=False)
    return TwoViewDataset(data, "train", augment, stream=cfg.data.stream, repeat=cfg.data.repeat, seed=cfg.seed,
                          adapter=reference.adapter)


class GlobalFeature(nn.Module):
    """An encoder seen as ``x -> global_feature``, to reuse the engine's gathered :func:`predict`."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder.forward_features(x)["global_feature"]


def knn_monitor(encoder: nn.Module, loaders: dict, accelerator, k: int) -> float:
    """kNN top-1 of the validation split against the training split (evaluation crops)."""
    features = {split: predict(GlobalFeature(encoder), loader, accelerator, desc=f"kNN {split}")
                for split, loader in loaders.items()}
    (train_x, train_y, _), (val_x, val_y, _) = features["train"], features["val"]
    return float((knn_predict(train_x, train_y, val_x, k=min(k, len(train_y))) == val_y).mean())


def _plot(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.5))
    for key in sorted({k for h in history for k in h["losses"]}):
        a.plot(epochs, [h["losses"].get(key, np.nan) for h in history], label=f"{key} loss")
    a.set_xlabel("epoch")
    a.legend()
    monitor = [(h["epoch"], h["knn_val_top1"]) for h in history if h["knn_val_top1"] is not None]
    if monitor:
        b.plot(*zip(*monitor), marker="o", label="kNN val top-1 (monitor)")
    b.set_xlabel("epoch")
    b.legend()
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def pretrain(cfg: PretrainConfig, resume: str | Path | None = None) -> dict:
    """Pre-train the configured encoder; returns the run's ``metrics.json`` content."""
    from accelerate import PartialState

    data_root = resolve_data_root(cfg.data)
    data = PreparedData(data_root)  # opened and checked before the run directory is made
    run_dir = Path(resume) if resume else resolve_run_dir(cfg)
    if resume and not (run_dir / "state").is_dir():
        raise FileNotFoundError(f"nothing to resume in {run_dir}: no state/ directory")
    PartialState().wait_for_everyone()
    accelerator = _accelerator(cfg, run_dir)
    _seed_everything(cfg.seed, cfg.deterministic)
    _set_cpu_threads(accelerator, cfg.cpu_threads)

    layout, num_person = model_input(data, cfg.data)
    encoder = create_model(cfg.model.name, num_classes=data.num_classes, layout=layout,
                           in_channels=data.info.channels, num_person=num_person, **cfg.model.args)
    if cfg.model.init:
        init_from_checkpoint(encoder, cfg.model.init, cfg.data.stream)
    module = build_method(cfg, encoder, layout, data.info.channels)
    train_set = build_train_set(cfg, data)
    train_loader = build_loader(train_set, cfg.data.batch_size, cfg.data.num_workers, shuffle_seed=cfg.seed,
                                drop_last=True)
    if len(train_loader) == 0:
        raise ConfigError(f"data.batch_size = {cfg.data.batch_size} exceeds the {len(train_set)} training clips of "
                          f"{data.root}")
    monitor_loaders = {split: build_loader(build_dataset(data, cfg.data, split, train=False),
                                           cfg.data.eval_batch_size, cfg.data.num_workers)
                       for split in ("train", "val")}
    optimizer = torch.optim.SGD([p for p in module.parameters() if p.requires_grad], lr=cfg.optim.lr,
                                momentum=cfg.optim.momentum, nesterov=cfg.optim.nesterov,
                                weight_decay=cfg.optim.weight_decay)
    module, optimizer, train_loader = accelerator.prepare(module, optimizer, train_loader)
    monitor_loaders = {k: accelerator.prepare_data_loader(v) for k, v in monitor_loaders.items()}
    state = TrainerState()
    if resume:
        load_state(accelerator, run_dir / "state", state)
        accelerator.print(f"resumed {run_dir} after epoch {state.epoch + 1}")
    if accelerator.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "config.yaml", to_yaml(cfg))
    accelerator.wait_for_everyone()
    accelerator.init_trackers("tensorboard")
    unwrapped = accelerator.unwrap_model(module)
    encoder = unwrapped.encoder()
    accelerator.print(f"pre-training {run_dir} ({cfg.method}, {cfg.model.name}): {len(train_set)} clips, "
                      f"{sum(p.numel() for p in encoder.parameters()):,} encoder parameters, "
                      f"{accelerator.num_processes} process(es) on {accelerator.device}")
    info = CheckpointInfo(model=encoder.registry_name, model_args=dict(encoder.registry_args),
                          class_names=data.class_names, layout=layout, in_channels=data.info.channels,
                          num_person=num_person, stream=cfg.data.stream, window=cfg.data.window,
                          config_yaml=to_yaml(cfg), extra={})
    for epoch in range(state.epoch + 1, cfg.optim.epochs):
        start, start_cpu = time.time(), time.process_time()
        lr = learning_rate(cfg.optim, epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        train_set.set_epoch(epoch)
        train_loader.set_epoch(epoch)
        module.train()
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        bar = tqdm(train_loader, desc=f"{cfg.method} epoch {epoch + 1}/{cfg.optim.epochs}", leave=False,
                   disable=not accelerator.is_local_main_process)
        for batch in bar:
            with accelerator.accumulate(module):
                if cfg.method == "mae":
                    out = module(batch["skeleton"])
                elif cfg.method == "halp":
                    out = module(batch["query"], batch["key"], hallucinate=epoch >= cfg.halp.start_epoch)
                else:
                    out = module(batch["query"], batch["key"])
                if not _all_finite(accelerator, out["loss"]):
                    kept = (f"Kept: {run_dir / 'encoder.safetensors'} and state/ of epoch {state.epoch + 1}"
                            if state.epoch >= 0 else "No epoch had finished: nothing was saved")
                    losses = ", ".join(f"{k} {v.item():.4g}" for k, v in out["losses"].items())
                    raise NonFiniteError(f"non-finite loss at step {state.global_step + 1} (epoch {epoch + 1}, lr "
                                         f"{lr:.4g}): {losses}; lower optim.lr = {cfg.optim.lr}. {kept}.")
                accelerator.backward(out["loss"])
                if cfg.optim.clip_grad_norm > 0 and accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(module.parameters(), cfg.optim.clip_grad_norm)
                optimizer.step()
                optimizer.zero_grad()
            state.global_step += 1
            scalars = {"total": out["loss"], **out["losses"]}
            if "kept_fraction" in out:  # HaLP: hallucinated positives that pass the rank filter
                scalars["kept_fraction"] = out["kept_fraction"]
            for key, value in scalars.items():
                sums[key] = sums.get(key, 0.0) + value.item()
                counts[key] = counts.get(key, 0) + 1
            if state.global_step % cfg.log_every == 0:
                accelerator.log({"train/lr": lr, **{f"train/{k}": v.item() for k, v in out["losses"].items()}},
                                step=state.global_step)
            bar.set_postfix(loss=f"{sums['total'] / counts['total']:.3f}", lr=f"{lr:.3g}")
        record = {"epoch": epoch + 1, "lr": lr, "train_loss": sums["total"] / counts["total"],
                  "losses": {k: sums[k] / counts[k] for k in sums if k not in ("total", "kept_fraction")},
                  "halp_kept_fraction": sums["kept_fraction"] / counts["kept_fraction"] if "kept_fraction" in sums
                  else None,
                  "epoch_time_s": round(time.time() - start, 2),
                  "epoch_cpu_s": round(time.process_time() - start_cpu, 2), "knn_val_top1": None}
        if (cfg.eval_every and (epoch + 1) % cfg.eval_every == 0) or epoch + 1 == cfg.optim.epochs:
            record["knn_val_top1"] = knn_monitor(encoder, monitor_loaders, accelerator, cfg.knn_k)
            accelerator.log({"val/knn_top1": record["knn_val_top1"]}, step=state.global_step)
        state.history.append(record)
        state.epoch = epoch
        if accelerator.is_main_process:
            save_checkpoint(run_dir / "encoder.safetensors", encoder,
                            CheckpointInfo(**{**asdict(info), "extra": {
                                "pretrain": cfg.method, "epoch": epoch + 1, "dataset": data.info.dataset,
                                "data_root": str(data_root.resolve())}}))
        save_state(accelerator, run_dir, state)
        monitor = f", kNN val top-1 {100 * record['knn_val_top1']:.2f}%" if record["knn_val_top1"] is not None else ""
        accelerator.print(f"epoch {epoch + 1}/{cfg.optim.epochs}: loss {record['train_loss']:.4f} "
                          f"({record['epoch_time_s']:.1f} s){monitor}, lr {lr:.4g}")
    metrics = {}
    if accelerator.is_main_process:
        times = [h["epoch_time_s"] for h in state.history]
        cpu_times = [h["epoch_cpu_s"] for h in state.history if "epoch_cpu_s" in h]
        last = next((h["knn_val_top1"] for h in reversed(state.history) if h["knn_val_top1"] is not None), None)
        metrics = {"method": cfg.method, "model": cfg.model.name, "dataset": data.info.dataset,
                   "epochs": cfg.optim.epochs, "seconds_per_epoch": float(np.mean(times)) if times else None,
                   "cpu_seconds_per_epoch": float(np.mean(cpu_times)) if cpu_times else None,
                   "knn_val_top1": last, "knn_k": cfg.knn_k, "encoder": str(run_dir / "encoder.safetensors")}
        write_json(run_dir / "metrics.json", metrics)
        write_json(run_dir / "history.json", {"history": state.history})
        _plot(state.history, run_dir / "curves.png")
    accelerator.end_training()
    return metrics


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None,
                        help=f"YAML config (default: configs/{DEFAULT_CONFIG}, MoCo on the built-in synthetic set)")
    parser.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue a run from its state/")
    parser.add_argument("overrides", nargs="*", help="dotted.key=value overrides, e.g. optim.lr=0.05")


def run(args: argparse.Namespace) -> int:
    """``mmcl pretrain``: load the config, make the demo's synthetic set when the config reads it, pre-train."""
    from accelerate import PartialState

    from mmcl.engine.demo import ensure_synthetic, uses_demo_data

    cpu_processes()
    if args.resume:
        if not (Path(args.resume) / "state").is_dir():
            raise FileNotFoundError(f"nothing to resume in {args.resume}: no state/ directory")
        config = args.config or Path(args.resume) / "config.yaml"
    else:
        config = args.config or configs_dir() / DEFAULT_CONFIG
    cfg = load_config(config, args.overrides, schema=PretrainConfig, checks=[check_model])
    if uses_demo_data(cfg):
        with PartialState().main_process_first():
            ensure_synthetic(cfg.data.synthetic_seed)
    pretrain(cfg, resume=args.resume)
    return 0
