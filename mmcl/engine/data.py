"""Datasets and loaders of a training run, built from its configuration."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from mmcl.config import DataConfig, TrainConfig
from mmcl.data.adapt import ClipAdapter
from mmcl.data.dataset import SkeletonDataset
from mmcl.data.prepared import PreparedData
from mmcl.paths import cache_dir


def synthetic_paths(seed: int) -> tuple[Path, Path]:
    """(raw directory, prepared directory) of the built-in synthetic set for ``seed`` under the cache."""
    root = cache_dir() / "synthetic"
    return root / f"raw-seed{seed}", root / f"prepared-seed{seed}"


def ensure_synthetic(seed: int) -> Path:
    """Generate and prepare the built-in synthetic set if it is not in the cache yet; returns the prepared dir."""
    from mmcl.data.synthetic import SynthConfig, generate
    from mmcl.data.prepare import prepare_synthetic

    raw, prepared = synthetic_paths(seed)
    if not (prepared / "meta.json").exists():
        if not (raw / "manifest.json").exists():
            print(f"generating the synthetic dataset (seed {seed}) into {raw}")
            generate(raw, SynthConfig(seed=seed))
        print(f"preparing {raw} -> {prepared}")
        prepare_synthetic(raw, prepared)
    return prepared


def resolve_data_root(cfg: DataConfig) -> Path:
    """The prepared dataset of a run: ``data.root``, or the generated synthetic set when it is empty."""
    if cfg.root:
        return Path(cfg.root)
    if cfg.dataset != "synthetic":
        raise ValueError(f"data.root is empty; set it to the prepared {cfg.dataset!r} dataset "
                         f"(see `mmcl prepare --help`)")
    return ensure_synthetic(cfg.synthetic_seed)


def ensure_teacher_cache(cfg: TrainConfig, data: PreparedData, accelerator=None) -> None:
    """Precompute the teacher features of the generated synthetic set when its cache is missing (the demo), sharded
    over the processes of ``accelerator``; for any other dataset a missing cache is an error raised when the
    co-learner opens it."""
    from mmcl.colearn import teacher_cache_dir

    if not cfg.colearn.enabled or cfg.data.root or cfg.data.dataset != "synthetic" or cfg.colearn.teacher.cache:
        return
    from teachers.config import load_config
    from teachers.precompute import precompute
    from teachers.tiny import ensure_tiny_teachers

    with accelerator.main_process_first():
        ensure_tiny_teachers(load_config(cfg.colearn.teacher.config))  # the cache key fingerprints their files
    path = teacher_cache_dir(cfg.colearn, data.info.dataset)
    if (path / "manifest.json").exists():
        return

    raw, _ = synthetic_paths(cfg.data.synthetic_seed)
    print(f"precomputing the teacher features of the synthetic set ({cfg.colearn.teacher.config}) into {path}")
    precompute(load_config(cfg.colearn.teacher.config), data, raw / "videos", accelerator=accelerator,
               descriptions_path=raw / "classes.json")


def build_adapter(data: PreparedData, cfg: DataConfig) -> ClipAdapter | None:
    """The clip adapter that ``data.layout`` / ``data.num_person`` / ``data.center`` ask for (None: as stored)."""
    if not (cfg.layout or cfg.num_person or cfg.center):
        return None
    return ClipAdapter(data.info.layout, cfg.layout or data.info.layout, cfg.num_person or data.info.num_person,
                       center=cfg.center)


def model_input(data: PreparedData, cfg: DataConfig) -> tuple[str, int]:
    """(layout, persons) of the clips a model trained on ``data`` with ``cfg`` sees."""
    return cfg.layout or data.info.layout, cfg.num_person or data.info.num_person


def build_dataset(data: PreparedData, cfg: DataConfig, split: str, train: bool, seed: int = 0) -> SkeletonDataset:
    """The skeleton dataset of one split; training mode samples and augments as CTR-GCN's feeder does."""
    return SkeletonDataset(
        data, split, stream=cfg.stream, window=cfg.window, train=train, p_interval=tuple(cfg.p_interval),
        random_rotation=cfg.random_rotation, rotation_range=cfg.rotation_range,
        repeat=cfg.repeat if train else 1, seed=seed, adapter=build_adapter(data, cfg))


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


def build_loader(dataset: Dataset, batch_size: int, num_workers: int, shuffle_seed: int | None = None,
                 drop_last: bool = False) -> DataLoader:
    """A loader; with ``shuffle_seed`` the order is an :class:`EpochShuffleSampler` permutation."""
    sampler = EpochShuffleSampler(len(dataset), shuffle_seed) if shuffle_seed is not None else None
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, shuffle=False, num_workers=num_workers,
                      drop_last=drop_last, pin_memory=torch.cuda.is_available(),
                      persistent_workers=False)
