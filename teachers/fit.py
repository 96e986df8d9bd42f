"""The resumable training loop of ``mmcl tune-teacher``: AdamW, cosine decay, a saved state after every epoch.

The example order of an epoch and the random state are drawn from (seed, epoch) alone, and the state saved after
each epoch holds the trainable parameters, the optimizer and the progress, so a killed run started again with the
same command ends where an uninterrupted one does (up to float rounding). A state saved with other settings or data
(its fingerprint differs) is never resumed.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from mmcl.errors import ConfigError
from mmcl.io import atomic_path


def fingerprint(**parts) -> str:
    """sha256 of everything a saved state depends on (settings, teacher config, the samples' names digest)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The example order of one epoch, drawn from (seed, epoch) alone so a resumed run repeats it."""
    g = torch.Generator()
    g.manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g).tolist()


@dataclass
class FitState:
    """Progress of one part, saved after every epoch."""

    epoch: int = 0  # finished epochs
    step: int = 0
    losses: list[float] = field(default_factory=list)  # per step
    epoch_losses: list[float] = field(default_factory=list)
    seconds: float = 0.0


def trainable(module: nn.Module) -> dict[str, torch.Tensor]:
    """The parameters that are trained (requires_grad), by name."""
    return {n: p for n, p in module.named_parameters() if p.requires_grad}


def _save_state(path: Path, module: nn.Module, optimizer, state: FitState, fingerprint: str) -> None:
    payload = {"fingerprint": fingerprint, "progress": asdict(state),
               "trainable": {n: p.detach().cpu() for n, p in trainable(module).items()},
               "optimizer": optimizer.state_dict()}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def _load_state(path: Path, module: nn.Module, optimizer, fingerprint: str) -> FitState:
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if payload["fingerprint"] != fingerprint:
        raise ConfigError(f"{path} was saved by a tuning run with other settings or data; delete it (or choose "
                          f"another --out) to start over")
    params = trainable(module)
    if set(params) != set(payload["trainable"]):
        raise ConfigError(f"{path}: its trainable parameters do not match this model")
    with torch.no_grad():
        for n, p in params.items():
            p.copy_(payload["trainable"][n])
    optimizer.load_state_dict(payload["optimizer"])
    return FitState(**payload["progress"])


def fit(name: str, module: nn.Module, step_fn: Callable[[list], torch.Tensor], dataset, batch_size: int,
        epochs: int, lr: float, weight_decay: float, seed: int, state_path: Path, fingerprint: str,
        collate: Callable[[list], list] = list, num_workers: int = 0, progress: bool = True) -> FitState:
    """AdamW with a cosine decay over all steps on ``module``'s trainable parameters; ``step_fn(batch)`` -> loss.

    The state is saved to ``state_path`` after every epoch; an existing state with the same ``fingerprint`` is
    resumed (the order of each epoch and the random state depend on (seed, epoch) only, so a resumed run ends where
    an uninterrupted one does).
    """
    params = list(trainable(module).values())
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(len(dataset) / batch_size)
    total = steps_per_epoch * epochs
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    state = FitState()
    if state_path.exists():
        state = _load_state(state_path, module, optimizer, fingerprint)
        schedule.last_epoch = state.step
        for group in optimizer.param_groups:
            group["lr"] = lr * schedule.lr_lambdas[0](state.step)
        if state.epoch < epochs:
            print(f"{name}: resuming after epoch {state.epoch}/{epochs}", file=sys.stderr)
    module.train()
    for epoch in range(state.epoch, epochs):
        torch.manual_seed(seed * 1_000_003 + epoch)
        start = time.perf_counter()
        order = epoch_order(len(dataset), seed, epoch)
        batches = [order[s:s + batch_size] for s in range(0, len(order), batch_size)]
        loader = torch.utils.data.DataLoader(batches, batch_size=None, num_workers=num_workers,
                                             collate_fn=lambda idx: collate([dataset[i] for i in idx]))
        bar = tqdm(loader, total=len(batches), desc=f"{name} epoch {epoch + 1}/{epochs}", disable=not progress,
                   leave=False, dynamic_ncols=True)
        epoch_losses = []
        for batch in bar:
            loss = step_fn(batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            state.step += 1
            epoch_losses.append(float(loss.detach()))
            bar.set_postfix(loss=f"{np.mean(epoch_losses):.4f}")
        state.losses.extend(epoch_losses)
        state.epoch_losses.append(float(np.mean(epoch_losses)))
        state.epoch = epoch + 1
        state.seconds += time.perf_counter() - start
        _save_state(state_path, module, optimizer, state, fingerprint)
        print(f"{name} epoch {epoch + 1}/{epochs}: loss {state.epoch_losses[-1]:.4f}", file=sys.stderr)
    module.eval()
    return state


def summary(state: FitState) -> dict:
    """The record of a finished part for ``tune.json``."""
    return {"epochs": state.epoch, "steps": state.step, "epoch_losses": state.epoch_losses,
            "final_loss": state.epoch_losses[-1] if state.epoch_losses else None, "seconds": round(state.seconds, 1)}


def plot_losses(states: dict[str, dict], path: Path) -> None:
    """Per-step training loss of each tuned part (one panel each)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(states), figsize=(5 * len(states), 3.5), squeeze=False)
    for ax, (part, s) in zip(axes[0], states.items()):
        losses = np.asarray(s["losses"])
        ax.plot(losses, lw=0.6, alpha=0.5, label="step")
        if len(losses) >= 10:
            w = max(len(losses) // 50, 5)
            ax.plot(np.arange(w - 1, len(losses)), np.convolve(losses, np.ones(w) / w, "valid"), label=f"mean of {w}")
        ax.set_title(f"{part} teacher: training loss")
        ax.set_xlabel("step")
        ax.set_yscale("log")
        ax.legend()
    fig.tight_layout()
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


