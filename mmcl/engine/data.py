"""Datasets and loaders of a training run, built from its configuration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from mmcl.config import DataConfig
from mmcl.data.adapt import ClipAdapter
from mmcl.data.dataset import SkeletonDataset
from mmcl.data.prepared import PreparedData
from mmcl.data.subsets import stratified_subset
from mmcl.errors import ConfigError
from mmcl.paths import cache_dir
from mmcl.workers import DieWithParent


def synthetic_paths(seed: int) -> tuple[Path, Path]:
    """(raw directory, prepared directory) of the built-in synthetic set for ``seed`` under the cache."""
    root = cache_dir() / "synthetic"
    return root / f"raw-seed{seed}", root / f"prepared-seed{seed}"


def longtail_paths(cfg: DataConfig) -> tuple[Path, Path]:
    """(full dataset, long-tailed set) of a run with ``data.longtail``: ``data.longtail.source`` (the demo's synthetic
    set when empty and ``data.root`` is too) and ``data.root`` (by default beside the source)."""
    from mmcl.data.longtail import default_root

    if cfg.longtail.source:
        source = Path(cfg.longtail.source)
    elif cfg.dataset == "synthetic" and not cfg.root:
        source = synthetic_paths(cfg.synthetic_seed)[1]
    else:
        raise ConfigError("data.longtail.source is empty; set it to the full prepared dataset that the long-tailed "
                          "split is taken from (data.root is where the long-tailed set goes)")
    return source, Path(cfg.root) if cfg.root else default_root(source, cfg.longtail)


def resolve_data_root(cfg: DataConfig) -> Path:
    """The prepared dataset of a run: ``data.root``, or the demo's synthetic set in the cache when it is empty (made
    by the training entry point, :func:`mmcl.engine.demo.prepare_demo`); with ``data.longtail``, the long-tailed set
    (built by the entry point too, or by ``mmcl prepare longtail``)."""
    if cfg.longtail.enabled:
        from mmcl.data.longtail import longtail_built

        source, out = longtail_paths(cfg)
        if not longtail_built(cfg.longtail, source, out):
            raise FileNotFoundError(f"the long-tailed set of {source} is not built at {out}: `mmcl train` builds it, "
                                    f"or `mmcl prepare longtail --from {source} --out {out} ...`")
        return out
    if cfg.root:
        return Path(cfg.root)
    if cfg.dataset != "synthetic":
        raise ValueError(f"data.root is empty; set it to the prepared {cfg.dataset!r} dataset "
                         f"(see `mmcl prepare --help`)")
    _, prepared = synthetic_paths(cfg.synthetic_seed)
    if not (prepared / "meta.json").exists():
        raise FileNotFoundError(f"the synthetic set (seed {cfg.synthetic_seed}) is not prepared at {prepared}: "
                                f"`mmcl train` makes it, or call mmcl.engine.demo.prepare_demo(config)")
    return prepared


def build_adapter(data: PreparedData, cfg: DataConfig) -> ClipAdapter | None:
    """The clip adapter that ``data.layout`` / ``data.num_person`` / ``data.center`` ask for (None: as stored)."""
    if not (cfg.layout or cfg.num_person or cfg.center):
        return None
    return ClipAdapter(data.info.layout, cfg.layout or data.info.layout, cfg.num_person or data.info.num_person,
                       center=cfg.center)


def model_input(data: PreparedData, cfg: DataConfig) -> tuple[str, int]:
    """(layout, persons) of the clips a model trained on ``data`` with ``cfg`` sees."""
    return cfg.layout or data.info.layout, cfg.num_person or data.info.num_person


def train_indices(data: PreparedData, cfg: DataConfig) -> np.ndarray:
    """The training samples a run learns from: the training split, of which ``data.label_fraction`` is kept
    (class-stratified, drawn with ``data.label_seed``)."""
    indices = data.split("train")
    if cfg.label_fraction < 1:
        indices = indices[stratified_subset(data.labels[indices], cfg.label_fraction, cfg.label_seed)]
    return indices


def trained_class_counts(data: PreparedData, cfg: DataConfig) -> np.ndarray:
    """Samples per class (C,) among :func:`train_indices`: what BRL's class weights and mixup and the many /
    medium / few-shot groups count."""
    return np.bincount(data.labels[train_indices(data, cfg)], minlength=data.num_classes).astype(np.int64)


def build_dataset(data: PreparedData, cfg: DataConfig, split: str, train: bool, seed: int = 0) -> SkeletonDataset:
    """The skeleton dataset of one split; training mode samples and augments as CTR-GCN's feeder does. The training
    split holds :func:`train_indices`."""
    dataset = SkeletonDataset(
        data, split, stream=cfg.stream, window=cfg.window, train=train, p_interval=tuple(cfg.p_interval),
        random_rotation=cfg.random_rotation, rotation_range=cfg.rotation_range,
        repeat=cfg.repeat if train else 1, seed=seed, adapter=build_adapter(data, cfg))
    if split == "train":
        dataset.indices = train_indices(data, cfg)
    return dataset


class EpochShuffleSampler(Sampler[int]):
    """A permutation per epoch drawn from ``(seed, epoch)`` alone, so a resumed run sees the same order."""

    def __init__(self, num_samples: int, seed: int):
        self.num_samples = num_samples
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        g = torch.Generator()
        g.manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.num_samples, generator=g).tolist())

    def __len__(self) -> int:
        return self.num_samples


class GlobalBatchSampler(Sampler[list[int]]):
    """One process's training batches when a run trains on ``num_processes`` processes with ``batch_size`` each.

    The epoch's :class:`EpochShuffleSampler` permutation is cut into global batches of ``batch_size * num_processes``
    items, the batches one process with that batch size makes; process ``rank`` takes the ``rank``-th contiguous share
    of each. A shorter last global batch is shared as evenly as possible (:meth:`global_sizes` gives the trainer each
    step's global batch size, to weight the processes' losses by their share); fewer items than processes are left
    out of the epoch. Nothing is repeated to even the shares (accelerate's sharding repeats samples from the start of
    the epoch, which one process never sees). With one process: :class:`EpochShuffleSampler` in batches."""

    def __init__(self, num_samples: int, batch_size: int, seed: int, num_processes: int = 1, rank: int = 0):
        if not 0 <= rank < num_processes:
            raise ValueError(f"rank {rank} outside 0..{num_processes - 1}")
        self.order = EpochShuffleSampler(num_samples, seed)
        self.batch_size = batch_size
        self.num_processes = num_processes
        self.rank = rank

    def set_epoch(self, epoch: int) -> None:
        self.order.set_epoch(epoch)

    def global_sizes(self) -> list[int]:
        """The global batch size of each step of an epoch."""
        n, size = self.order.num_samples, self.batch_size * self.num_processes
        sizes = [size] * (n // size) + ([n % size] if n % size else [])
        return [k for k in sizes if k >= self.num_processes]

    def __iter__(self):
        order = list(self.order)
        size = self.batch_size * self.num_processes
        for start, k in zip(range(0, len(order), size), self.global_sizes()):
            share, extra = divmod(k, self.num_processes)
            first = start + self.rank * share + min(self.rank, extra)
            yield order[first:first + share + (self.rank < extra)]

    def __len__(self) -> int:
        return len(self.global_sizes())


def build_loader(dataset: Dataset, batch_size: int, num_workers: int, shuffle_seed: int | None = None,
                 drop_last: bool = False, shard: tuple[int, int] | None = None) -> DataLoader:
    """A loader; with ``shuffle_seed`` the order is an :class:`EpochShuffleSampler` permutation, and with ``shard``
    (processes, rank) this process's share of each global batch (:class:`GlobalBatchSampler`; not with
    ``drop_last``). Its workers die with the process (:class:`mmcl.workers.DieWithParent`)."""
    common = dict(num_workers=num_workers, pin_memory=torch.cuda.is_available(), persistent_workers=False,
                  worker_init_fn=DieWithParent() if num_workers else None)
    if shard is not None:
        if shuffle_seed is None or drop_last:
            raise ValueError("a sharded loader needs shuffle_seed and keeps every global batch (drop_last=False)")
        return DataLoader(dataset, batch_sampler=GlobalBatchSampler(len(dataset), batch_size, shuffle_seed, *shard),
                          **common)
    sampler = EpochShuffleSampler(len(dataset), shuffle_seed) if shuffle_seed is not None else None
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, shuffle=False, drop_last=drop_last, **common)
