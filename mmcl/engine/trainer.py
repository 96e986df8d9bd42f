"""Training with accelerate: devices, mixed precision, gradient accumulation and DDP without code changes.

    accelerate launch mmcl/train.py --config configs/ntu60/xsub_joint.yaml [dotted.key=value ...] [--resume RUN_DIR]

:func:`train` is :func:`setup` (run directory, accelerator, data, model, co-learning heads, optimizer, loaders; the
saved state when resuming), then per epoch :func:`train_one_epoch`, :func:`validate` and :func:`finish_epoch`, then
:func:`final_evaluation`. It reads prepared data and teacher caches and makes none: the demo's are made by the entry
point (:func:`run`, through :mod:`mmcl.engine.demo`).

A run directory (``<output_dir>/<name>``) receives:

- ``config.yaml``: the resolved configuration;
- ``best.safetensors``: the deployable model (skeleton model alone) of the epoch with the best *validation* top-1;
  ``last.safetensors``: the latest epoch's; with co-learning, ``best_heads.safetensors``: the training-time heads of
  that epoch (FRM for zero-shot refinement, the text projection for open-vocabulary zero-shot), never needed to
  classify;
- ``state/``: everything ``--resume`` needs (model and co-learning heads, optimizer, RNG states, epoch, history);
- ``tensorboard/``: loss, learning rate and validation curves;
- at the end, from ``best.safetensors`` evaluated once on the test split: ``metrics.json``, ``confusion.png``,
  ``test_scores.npz`` (and ``val_scores.npz`` for ``mmcl ensemble``), ``history.json`` and ``curves.png``; with a
  long-tailed training split (:mod:`mmcl.data.longtail`), many / medium / few-shot top-1 in ``metrics.json`` and
  ``per_class_accuracy.png`` (classes ordered by training count).
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator, PartialState
from accelerate.data_loader import prepare_data_loader
from accelerate.utils import set_seed
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from mmcl.brl.step import BRLStep
from mmcl.colearn.build import build_colearner
from mmcl.colearn.heads import save_heads
from mmcl.config import OptimConfig, TrainConfig, check_model, load_config, to_yaml
from mmcl.data.longtail import read_longtail
from mmcl.data.prepared import PreparedData
from mmcl.data.streams import input_channels, stream_model_args
from mmcl.engine.data import build_dataset, build_loader, model_input, resolve_data_root, trained_class_counts
from mmcl.engine.metrics import classification_report, format_longtail, longtail_report, save_scores, write_report
from mmcl.engine.module import TrainModule
from mmcl.engine.state import TrainerState, load_state, save_state
from mmcl.engine.sync_bn import sync_batchnorm
from mmcl.errors import CheckpointError, DataError, MmclError
from mmcl.io import atomic_path, atomic_write_text, write_json
from mmcl.models import create_model
from mmcl.models.checkpoint import CheckpointInfo, init_from_checkpoint, save_checkpoint
from mmcl.paths import configs_dir

DEFAULT_CONFIG = "synthetic/ctrgcn_joint.yaml"


def learning_rate(cfg: OptimConfig, epoch: int) -> float:
    """CTR-GCN's per-epoch schedule: linear warm-up over ``warmup_epochs``, then step or cosine decay."""
    if epoch < cfg.warmup_epochs:
        return cfg.lr * (epoch + 1) / cfg.warmup_epochs
    if cfg.scheduler == "step":
        return cfg.lr * cfg.gamma ** int(np.sum(epoch >= np.asarray(cfg.steps)))
    if cfg.scheduler == "cosine":
        span = max(cfg.epochs - cfg.warmup_epochs, 1)
        progress = (epoch - cfg.warmup_epochs) / span
        return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * progress))
    raise ValueError(f"optim.scheduler must be 'step' or 'cosine', got {cfg.scheduler!r}")


def resolve_run_dir(cfg: TrainConfig) -> Path:
    """``<output_dir>/<name>``, or ``<name>-1``, ``<name>-2``... when that run already exists."""
    base = Path(cfg.output_dir) / cfg.name
    run_dir, k = base, 0
    while run_dir.exists():
        k += 1
        run_dir = base.with_name(f"{base.name}-{k}")
    return run_dir


def _set_cpu_threads(accelerator: Accelerator, threads: int) -> None:
    """`accelerate launch` sets OMP_NUM_THREADS=1; on a CPU, give each process its share of the cores instead."""
    if accelerator.device.type == "cpu":
        local = int(os.environ.get("LOCAL_WORLD_SIZE", accelerator.num_processes))  # processes on this machine
        share = max(1, (os.cpu_count() or 1) // local)
        torch.set_num_threads(threads or share)


def _seed_everything(seed: int, deterministic: bool) -> None:
    set_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


@torch.no_grad()
def predict(model: torch.nn.Module, loader, accelerator: Accelerator, desc: str = "eval") -> tuple[np.ndarray, ...]:
    """Scores (logits), labels and dataset indices of every sample in ``loader``, gathered over processes."""
    model.eval()
    scores, labels, indices = [], [], []
    for batch in tqdm(loader, desc=desc, leave=False, disable=not accelerator.is_local_main_process):
        finite = torch.isfinite(batch["skeleton"]).flatten(1).all(1)
        if not finite.all():
            names = [n for n, ok in zip(batch["name"], finite.tolist()) if not ok]
            raise DataError(f"{desc}: the input of sample(s) {', '.join(names[:5])} holds NaN or inf; a prepared "
                            f"dataset written by mmcl never does (prepare it again)")
        with accelerator.autocast():
            logits = model(batch["skeleton"])
        logits, label, index = accelerator.gather_for_metrics((logits.float(), batch["label"], batch["index"]))
        scores.append(logits.cpu().numpy())
        labels.append(label.cpu().numpy())
        indices.append(index.cpu().numpy())
    return np.concatenate(scores), np.concatenate(labels), np.concatenate(indices)


def _plot_history(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.5))
    a.plot(epochs, [h["train_loss"] for h in history], label="train loss")
    a.set_xlabel("epoch")
    a.legend()
    val = [(h["epoch"], h["val_top1"]) for h in history if h.get("val_top1") is not None]
    if val:
        b.plot(*zip(*val), marker="o", label="val top-1")
    b.plot(epochs, [h["train_top1"] for h in history], label="train top-1")
    b.set_xlabel("epoch")
    b.legend()
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


@dataclass
class Run:
    """A training run in progress, as :func:`setup` builds it for the epoch loop and the final evaluation."""

    cfg: TrainConfig
    run_dir: Path
    accelerator: Accelerator
    data: PreparedData
    train_set: Dataset
    module: torch.nn.Module  # a TrainModule, wrapped by accelerate
    optimizer: torch.optim.Optimizer
    train_loader: DataLoader
    val_loader: DataLoader
    state: TrainerState
    deployable: torch.nn.Module  # the skeleton-only model that is validated and checkpointed
    info: CheckpointInfo  # what every checkpoint of the run says about its model
    brl: BRLStep | None = None  # BRL's class weights and batch mixup, when brl.* switches any on

    @property
    def colearner(self) -> torch.nn.Module | None:
        return self.accelerator.unwrap_model(self.module).colearner


def setup(cfg: TrainConfig, resume: str | Path | None = None) -> Run:
    """The run directory, accelerator, data, model, co-learning heads, optimizer and loaders of a run (restored from
    ``resume``'s ``state/`` when given). The prepared data and teacher features must exist (the entry point makes
    the demo's: :func:`mmcl.engine.demo.prepare_demo`). Everything a run reads is opened and checked before its
    directory is made, so a run that cannot start leaves nothing behind."""
    data = PreparedData(resolve_data_root(cfg.data))
    run_dir, restart = _run_dir(cfg, resume)
    PartialState().wait_for_everyone()  # every process has chosen the same run directory before any creates it
    accelerator = _accelerator(cfg, run_dir)
    _seed_everything(cfg.seed, cfg.deterministic)
    _set_cpu_threads(accelerator, cfg.cpu_threads)

    train_set = build_dataset(data, cfg.data, "train", train=True, seed=cfg.seed)
    val_set = build_dataset(data, cfg.data, "val", train=False)
    layout, num_person = model_input(data, cfg.data)
    in_channels = input_channels(cfg.data.stream, data.info.channels)
    backbone = create_model(cfg.model.name, num_classes=data.num_classes, layout=layout, in_channels=in_channels,
                            num_person=num_person, **cfg.model.args, **stream_model_args(cfg.data.stream))
    if cfg.model.init:
        init_from_checkpoint(backbone, cfg.model.init, cfg.data.stream)
    colearner, train_set = build_colearner(cfg.colearn, backbone, data, train_set)
    if getattr(train_set, "missing", None):
        accelerator.print(f"{len(train_set.missing)} training samples have no teacher features; they train without "
                          f"the teacher losses (colearn.teacher.missing=skip)")
    module = TrainModule(backbone, colearner, label_smoothing=cfg.optim.label_smoothing)
    if cfg.sync_bn and accelerator.num_processes > 1:
        module = sync_batchnorm(module, accelerator.device)
    optimizer = torch.optim.SGD(module.parameters(), lr=cfg.optim.lr, momentum=cfg.optim.momentum,
                                nesterov=cfg.optim.nesterov, weight_decay=cfg.optim.weight_decay)
    train_loader = build_loader(train_set, cfg.data.batch_size, cfg.data.num_workers, shuffle_seed=cfg.seed,
                                shard=(accelerator.num_processes, accelerator.process_index))
    # already this process's share of each global batch: accelerate only moves it to the device
    train_loader = prepare_data_loader(train_loader, accelerator.device, num_processes=1, process_index=0,
                                       put_on_device=True)
    val_loader = build_loader(val_set, cfg.data.eval_batch_size, cfg.data.num_workers)
    module, optimizer, val_loader = accelerator.prepare(module, optimizer, val_loader)
    state = TrainerState()
    if resume and not restart:
        load_state(accelerator, run_dir / "state", state)
        accelerator.print(f"resumed {run_dir} after epoch {state.epoch + 1}")
    elif restart:
        accelerator.print(f"{run_dir} stopped before its first epoch ended (no state/ to resume): restarting it "
                          f"from the start")
    if accelerator.is_main_process:
        if restart:  # nothing to continue: the killed attempt's partial logs go
            for partial in ("tensorboard", "state.tmp"):
                shutil.rmtree(run_dir / partial, ignore_errors=True)
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "config.yaml", to_yaml(cfg))
    accelerator.wait_for_everyone()
    accelerator.init_trackers("tensorboard")
    deployable = accelerator.unwrap_model(module).deployable()
    accelerator.print(f"run {run_dir}: {len(train_set)} train / {len(val_set)} val samples, "
                      f"{sum(p.numel() for p in deployable.parameters()):,} deployable parameters, "
                      f"{accelerator.num_processes} process(es) on {accelerator.device}")
    info = CheckpointInfo(model=deployable.registry_name, model_args=dict(deployable.registry_args),
                          class_names=data.class_names, layout=layout, in_channels=in_channels,
                          num_person=num_person, stream=cfg.data.stream, window=cfg.data.window,
                          config_yaml=to_yaml(cfg), extra={})
    brl = BRLStep(cfg.brl, trained_class_counts(data, cfg.data), layout, cfg.seed) if cfg.brl.enabled else None
    return Run(cfg, run_dir, accelerator, data, train_set, module, optimizer, train_loader, val_loader, state,
               deployable, info, brl)


def _run_dir(cfg: TrainConfig, resume: str | Path | None) -> tuple[Path, bool]:
    """(run directory, whether it restarts): a new ``<output_dir>/<name>``, or the run to resume; one whose first
    epoch never ended (a ``config.yaml``, no ``state/``) restarts from the start."""
    if not resume:
        return resolve_run_dir(cfg), False
    run_dir = Path(resume)
    if (run_dir / "state").is_dir():
        return run_dir, False
    if (run_dir / "config.yaml").is_file() and not (run_dir / "last.safetensors").exists():
        return run_dir, True
    raise CheckpointError(f"nothing to resume in {run_dir}: no state/ directory"
                          + ("" if run_dir.is_dir() else " (no such run directory)"))


def _accelerator(cfg: TrainConfig, run_dir: Path) -> Accelerator:
    try:
        return Accelerator(mixed_precision=cfg.mixed_precision, gradient_accumulation_steps=cfg.grad_accum,
                           log_with="tensorboard", project_dir=str(run_dir))
    except ValueError as e:
        if "already been initialized" not in str(e):
            raise
        raise ValueError(f"mixed_precision={cfg.mixed_precision!r}: this process already trained with another "
                         f"precision, and accelerate fixes it per process; start each precision in its own process "
                         f"(`mmcl ablate` runs every run in its own)") from e


class PhaseClock:
    """Wall seconds spent in each phase of a loop, each :meth:`lap` closing the phase it names.

    On a GPU the device is synchronised at every lap, so that the kernels a phase queued count in that phase.
    """

    def __init__(self, device: torch.device):
        self._sync = torch.cuda.synchronize if device.type == "cuda" else None
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, phase: str) -> None:
        if self._sync is not None:
            self._sync()
        now = time.perf_counter()
        self.seconds[phase] = self.seconds.get(phase, 0.0) + now - self._last
        self._last = now


def train_one_epoch(run: Run, epoch: int) -> dict:
    """One pass over the training split at the schedule's learning rate; returns the epoch's record (loss, top-1,
    and ``time_s``: seconds waiting for batches (``data``), in ``forward``, ``backward`` and ``optimizer``, and the
    bookkeeping between steps (``other``)); with ``optim.clip_grad_norm``, ``clipped_steps``: the steps whose
    gradient norm was above it."""
    cfg, accelerator, state = run.cfg, run.accelerator, run.state
    lr = learning_rate(cfg.optim, epoch)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    run.train_set.set_epoch(epoch)
    run.train_loader.set_epoch(epoch)
    run.module.train()
    reweighted = False
    if run.brl is not None:
        weights = run.brl.class_weights(epoch)
        accelerator.unwrap_model(run.module).class_weights = weights
        reweighted = weights is not None
        mixup = run.brl.generator(epoch, accelerator.process_index)
    total_loss, correct, seen, clipped, grad_norm = 0.0, 0, 0, 0, None
    global_sizes = run.train_loader.batch_sampler.global_sizes()  # samples per step over every process
    bar = tqdm(run.train_loader, desc=f"epoch {epoch + 1}/{cfg.optim.epochs}", leave=False,
               disable=not accelerator.is_local_main_process)
    clock = PhaseClock(accelerator.device)
    for step, batch in enumerate(bar):
        clock.lap("data")
        if run.brl is not None:
            batch = run.brl.mix(batch, mixup)
        with accelerator.accumulate(run.module):
            out = run.module(batch)
            clock.lap("forward")
            if not _all_finite(accelerator, out["loss"]):
                raise NonFiniteError(_divergence_report(run, epoch, state.global_step + 1, lr, out, batch))
            # DDP averages the processes' gradients: weighting each process's mean loss by its share of the global
            # batch makes that the gradient of the global batch's mean loss (1 unless the last batch is uneven)
            n = batch["label"].shape[0]
            accelerator.backward(out["loss"] * (n * accelerator.num_processes / global_sizes[step]))
            clock.lap("backward")
            if cfg.optim.clip_grad_norm > 0 and accelerator.sync_gradients:
                grad_norm = float(accelerator.clip_grad_norm_(run.module.parameters(), cfg.optim.clip_grad_norm))
                clipped += grad_norm > cfg.optim.clip_grad_norm
            run.optimizer.step()
            run.optimizer.zero_grad()
            clock.lap("optimizer")
        state.global_step += 1
        total_loss += out["loss"].item() * n
        correct += (out["logits"].argmax(1) == batch["label"]).sum().item()
        seen += n
        if state.global_step % cfg.log_every == 0:
            accelerator.log({"train/loss": out["loss"].item(), "train/lr": lr,
                             **({} if grad_norm is None else {"train/grad_norm": grad_norm}),
                             **{f"train/{k}": v.item() for k, v in out["losses"].items()}}, step=state.global_step)
        bar.set_postfix(loss=f"{total_loss / seen:.3f}", lr=f"{lr:.3g}")
        clock.lap("other")
    if accelerator.num_processes > 1:  # the epoch's figures over the global batches, not this process's share
        sums = accelerator.reduce(torch.tensor([total_loss, correct, seen], dtype=torch.float64), "sum")
        total_loss, correct, seen = sums[0].item(), int(sums[1]), int(sums[2])
    record = {"epoch": epoch + 1, "lr": lr, "train_loss": total_loss / max(seen, 1),
              "train_top1": correct / max(seen, 1), "val_top1": None,
              "time_s": {k: round(v, 3) for k, v in clock.seconds.items()}}
    if cfg.optim.clip_grad_norm > 0:
        record["clipped_steps"] = clipped  # steps whose gradient norm was above optim.clip_grad_norm
    if run.brl is not None:
        record["class_weights"] = reweighted
    return record


def validate(run: Run, record: dict) -> None:
    """Score the deployable model on the validation split into ``record``; a new best epoch is checkpointed as
    ``best.safetensors`` (with its co-learning heads as ``best_heads.safetensors``)."""
    accelerator, state = run.accelerator, run.state
    start = time.perf_counter()
    scores, labels, _ = predict(run.deployable, run.val_loader, accelerator, desc="val")
    if not np.isfinite(scores).all():
        raise NonFiniteError(f"the validation scores after epoch {record['epoch']} are not finite: the weights "
                             f"diverged in the epoch's last steps (lower optim.lr = {run.cfg.optim.lr}?). "
                             f"{_last_good(run)}")
    record["val_top1"] = float((scores.argmax(1) == labels).mean())
    accelerator.log({"val/top1": record["val_top1"]}, step=state.global_step)
    if record["val_top1"] > state.best_val_top1:
        state.best_val_top1, state.best_epoch = record["val_top1"], record["epoch"]
        if accelerator.is_main_process:
            info = _with_epoch(run.info, record["epoch"], record["val_top1"])
            save_checkpoint(run.run_dir / "best.safetensors", run.deployable, info)
            if run.colearner is not None:
                save_heads(run.run_dir / "best_heads.safetensors", run.colearner, info)
    record["time_s"]["validation"] = round(time.perf_counter() - start, 3)


def finish_epoch(run: Run, record: dict) -> None:
    """Record the epoch in the history, write ``last.safetensors`` and the state ``--resume`` continues from."""
    bad = [name for name, p in run.accelerator.unwrap_model(run.module).named_parameters()
           if not torch.isfinite(p).all()]
    if bad:
        raise NonFiniteError(f"after epoch {record['epoch']} the weights hold NaN or inf ({', '.join(bad[:3])}"
                             f"{' ...' if len(bad) > 3 else ''}): training diverged (lower optim.lr = "
                             f"{run.cfg.optim.lr}?). {_last_good(run)}")
    start = time.perf_counter()
    run.state.history.append(record)
    run.state.epoch = record["epoch"] - 1
    if run.accelerator.is_main_process:
        save_checkpoint(run.run_dir / "last.safetensors", run.deployable,
                        _with_epoch(run.info, record["epoch"], record["val_top1"]))
    save_state(run.accelerator, run.run_dir, run.state)
    record["time_s"]["checkpoint"] = round(time.perf_counter() - start, 3)  # after the state: not in its copy
    val_text = f", val top-1 {100 * record['val_top1']:.2f}%" if record["val_top1"] is not None else ""
    split = ", ".join(f"{k} {v:.1f}" for k, v in record["time_s"].items())
    run.accelerator.print(f"epoch {record['epoch']}/{run.cfg.optim.epochs}: loss {record['train_loss']:.4f}, "
                          f"train top-1 {100 * record['train_top1']:.2f}%{val_text}, lr {record['lr']:.4g}; "
                          f"{sum(record['time_s'].values()):.1f} s ({split})")


class NonFiniteError(MmclError, FloatingPointError):
    """Training produced a NaN or inf (loss, scores or weights); the message names the step, the likely cause and
    the last good checkpoint, which is kept."""


def _all_finite(accelerator: Accelerator, loss: torch.Tensor) -> bool:
    """Whether the loss is finite on every process (they stop together, or none waits forever for the others)."""
    finite = torch.isfinite(loss.detach()).all().reshape(1)
    if accelerator.num_processes > 1:
        finite = accelerator.gather(finite)
    return bool(finite.all())


def _divergence_report(run: Run, epoch: int, step: int, lr: float, out: dict, batch: dict) -> str:
    """What went non-finite at ``step``, the likely cause, and what is kept."""
    parts = ", ".join(f"{k} {v.item():.4g}" for k, v in out["losses"].items())
    teacher = [k for k in ("visual", "text") if k in batch and not torch.isfinite(batch[k]).all()]
    if teacher:
        cause = (f"the teacher features: this batch's {' and '.join(teacher)} features hold NaN or inf (samples "
                 f"{', '.join(n for n, ok in zip(batch['name'], _finite_rows(batch, teacher)) if not ok)[:200]}); "
                 f"precompute the teacher cache again")
    elif not torch.isfinite(out["losses"]["cls"]).all():
        cause = (f"the learning rate: the classification loss diverged at lr {lr:.4g} (optim.lr = "
                 f"{run.cfg.optim.lr}); lower optim.lr")
    else:
        bad = [k for k, v in out["losses"].items() if not torch.isfinite(v).all()]
        cause = (f"the co-learning loss {', '.join(bad)} (teacher features or its weight colearn.<head>.weight); "
                 f"check the teacher cache, or lower the head's weight or optim.lr = {run.cfg.optim.lr}")
    return (f"non-finite loss at step {step} (epoch {epoch + 1}, lr {lr:.4g}): {parts}. Likely cause: {cause}. "
            f"{_last_good(run)}")


def _finite_rows(batch: dict, keys: list[str]) -> list[bool]:
    return [all(torch.isfinite(batch[k][i]).all() for k in keys) for i in range(len(batch["label"]))]


def _last_good(run: Run) -> str:
    if run.state.epoch < 0:
        return "No epoch had finished: nothing was saved."
    return (f"Kept: {run.run_dir / 'last.safetensors'} and state/ of epoch {run.state.epoch + 1}; fix the cause and "
            f"continue with `mmcl train --resume {run.run_dir} key=value ...`.")


def train(cfg: TrainConfig, resume: str | Path | None = None) -> dict:
    """Train, select the best epoch on validation, evaluate it once on test; returns the final metrics."""
    run = setup(cfg, resume)
    start = time.time()
    for epoch in range(run.state.epoch + 1, cfg.optim.epochs):
        record = train_one_epoch(run, epoch)
        if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.optim.epochs:
            validate(run, record)
        finish_epoch(run, record)
    metrics = final_evaluation(run, time.time() - start)
    run.accelerator.end_training()
    return metrics


def time_split(history: list[dict]) -> dict[str, float]:
    """Seconds per phase (data, forward, backward, optimizer, other, validation, checkpoint) over the epochs of
    ``history``."""
    total: dict[str, float] = {}
    for record in history:
        for phase, seconds in record.get("time_s", {}).items():
            total[phase] = total.get(phase, 0.0) + seconds
    return {k: round(v, 1) for k, v in total.items()}


def _with_epoch(info: CheckpointInfo, epoch: int, val_top1: float | None) -> CheckpointInfo:
    return CheckpointInfo(**{**asdict(info), "extra": {"epoch": epoch, "val_top1": val_top1}})


def final_evaluation(run: Run, train_time: float) -> dict:
    """Load the validation-selected model and evaluate it on val (for ensembles) and, once, on test; write the
    metrics, scores, confusion matrix, history and curves."""
    from mmcl.models.checkpoint import load_checkpoint

    cfg, data, accelerator, run_dir, state = run.cfg, run.data, run.accelerator, run.run_dir, run.state
    accelerator.wait_for_everyone()
    model, _ = load_checkpoint(run_dir / "best.safetensors")
    model = accelerator.prepare_model(model, evaluation_mode=True)
    results = {}
    for split in ("val", "test"):
        loader = accelerator.prepare_data_loader(
            build_loader(build_dataset(data, cfg.data, split, train=False), cfg.data.eval_batch_size,
                         cfg.data.num_workers))
        scores, labels, indices = predict(model, loader, accelerator, desc=split)
        results[split] = (scores, labels, indices)
    metrics = {}
    if accelerator.is_main_process:
        for split, (scores, labels, indices) in results.items():
            save_scores(run_dir / f"{split}_scores.npz", [data.names[i] for i in indices], labels, scores,
                        data.class_names)
        scores, labels, _ = results["test"]
        report = classification_report(scores, labels, data.class_names)
        val_scores, val_labels, _ = results["val"]
        extra = {"split": "test", "selected_on": "val", "best_epoch": state.best_epoch,
                 "val_top1": float((val_scores.argmax(1) == val_labels).mean()), "epochs": cfg.optim.epochs,
                 "train_time_s": round(train_time, 1), "train_time_split_s": time_split(state.history),
                 "dataset": str(data.root), "stream": cfg.data.stream, "model": cfg.model.name}
        if cfg.brl.enabled:
            extra["brl"] = {"mixup": cfg.brl.mixup.enabled, "drw": cfg.brl.drw.enabled,
                            "action_aware": cfg.brl.action_aware.enabled}
        if read_longtail(data.root) is not None:  # a long-tailed training split: accuracy by training count too
            lt = cfg.data.longtail
            counts = trained_class_counts(data, cfg.data)
            extra["longtail"] = longtail_report(report, data.class_names, counts, lt.many_above,
                                                lt.few_below, run_dir / "per_class_accuracy.png")
        metrics = write_report(run_dir, "", report, data.class_names, extra=extra)
        write_json(run_dir / "history.json", {"history": state.history})
        _plot_history(state.history, run_dir / "curves.png")
        print(f"\n{run_dir}: best epoch {state.best_epoch} (val top-1 {100 * state.best_val_top1:.2f}%)\n"
              f"test top-1 {100 * report.top1:.2f}%  top-5 {100 * report.top5:.2f}%  "
              f"mean class {100 * report.mean_class_accuracy:.2f}%  ({report.num_samples} test samples)")
        if "longtail" in extra:
            print(f"test top-1 by training count: {format_longtail(extra['longtail'])}")
    return metrics


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None,
                        help=f"YAML config (default: configs/{DEFAULT_CONFIG}, the built-in synthetic demo)")
    parser.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue a run from its state/")
    parser.add_argument("overrides", nargs="*", help="dotted.key=value overrides, e.g. optim.lr=0.05")


def cpu_processes() -> None:
    """Under ``torchrun`` (``WORLD_SIZE`` > 1) on a machine without an accelerator, join the processes over gloo
    (accelerate's state made with ``cpu=True``): otherwise accelerate runs each as a run of its own, all writing the
    same run directory. Call before anything else makes accelerate's state."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.accelerator.is_available():
        os.environ.setdefault("ACCELERATE_USE_CPU", "true")  # read by the Accelerator
        PartialState(cpu=True)


def run(args: argparse.Namespace) -> int:
    """``mmcl train`` / ``accelerate launch mmcl/train.py``: load the config, make the demo's data when the config
    asks for it, train."""
    from mmcl.engine.demo import prepare_demo

    cpu_processes()
    if args.resume:
        config = args.config or Path(args.resume) / "config.yaml"
        if not Path(config).is_file():
            raise CheckpointError(f"nothing to resume in {args.resume}: no config.yaml (not a run directory)")
    else:
        config = args.config or configs_dir() / DEFAULT_CONFIG
    cfg = load_config(config, args.overrides, checks=[check_model])
    prepare_demo(cfg)
    train(cfg, resume=args.resume)
    return 0
