"""Pre-training configuration (``mmcl pretrain --config configs/pretrain/<method>/<dataset>.yaml``): a schema for
:func:`mmcl.config.load_config`, sharing the training config's ``data``, ``model`` and ``optim`` sections.

Defaults are the public HaLP release's NTU-60 single-modality settings (``scripts/ntu60_xsub_single_modality.sh``):
BiGRU encoder, batch 64, SGD lr 0.01 (momentum 0.9, weight decay 1e-4), MoCo queue 16384, temperature 0.07,
momentum 0.999, projection MLP to 128; HaLP from epoch 200 to 451, lr x0.1 at 351. SkeletonMAE's keys are the
choices listed in :mod:`mmcl.pretrain.skeletonmae`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mmcl.config import (RUN_NAME_RULE, DataConfig, ModelConfig, OptimConfig, check, is_run_name, validate_data,
                         validate_optim)

METHODS = ("moco", "halp", "mae")


@dataclass
class AugmentConfig:
    """The contrastive views (:class:`mmcl.pretrain.augment.ContrastiveAugment`); MAE reads ``data.*`` instead."""

    crop: list[float] = field(default_factory=lambda: [0.1, 1.0])  # the release's l_ratio
    min_length: int = 0  # floor of the crop length; 0: the window (the release: 64 = its window)
    shear: float = 1.0
    corrupt_fraction: float = 0.6  # 15 of NTU's 25 joints
    p_shear: float = 0.5


@dataclass
class MoCoConfig:
    dim: int = 128
    queue_size: int = 16384
    momentum: float = 0.999
    temperature: float = 0.07
    mlp: bool = True


@dataclass
class HaLPConfig:
    start_epoch: int = 200  # plain MoCo before this epoch (0-based), as the release resumes HaLP from MoCo's epoch 200
    num_prototypes: int = 20
    prototype_keys: int = 256  # the most recent queue keys clustered
    refresh_every: int = 10  # steps between prototype refreshes
    num_positives: int = 100
    num_candidates: int = 20  # target prototypes: this many after the skipped closest ones
    skip_closest: int = 1
    lam_max: float = 0.8
    weight: float = 2.0  # the release's mu


@dataclass
class MAEConfig:
    """SkeletonMAE's pre-training choices (no code was released; see :mod:`mmcl.pretrain.skeletonmae`)."""

    segment: int = 4  # frames per node target; the encoder's T / T' (CTR-GCN: 4; skeletonmae: its model.args.segment)
    ratio: float = 0.4  # fraction of the joints masked per sample, region by region
    gamma: float = 2.0  # exponent of the scaled cosine error
    edge_weight: float = 1.0  # weight of the edge (bone) reconstruction term


def _release_optim() -> OptimConfig:
    return OptimConfig(lr=0.01, momentum=0.9, nesterov=False, weight_decay=1e-4, epochs=451, warmup_epochs=0,
                       scheduler="step", steps=[351], gamma=0.1)


@dataclass
class PretrainConfig:
    """Everything a pre-training run needs; saved, resolved, into its encoder checkpoint."""

    name: str = "pretrain"
    output_dir: str = "runs"  # the run writes to <output_dir>/<name>
    method: str = "moco"  # moco | halp | mae
    seed: int = 1
    deterministic: bool = True
    mixed_precision: str = "no"  # no | bf16 | fp16
    cpu_threads: int = 0
    grad_accum: int = 1
    log_every: int = 20
    eval_every: int = 5  # epochs between kNN monitors on the validation split (0: only at the end)
    knn_k: int = 1  # the monitor's neighbours (the release: 1)
    data: DataConfig = field(default_factory=lambda: DataConfig(window=64, batch_size=64))
    model: ModelConfig = field(default_factory=lambda: ModelConfig(name="bigru"))
    optim: OptimConfig = field(default_factory=_release_optim)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    moco: MoCoConfig = field(default_factory=MoCoConfig)
    halp: HaLPConfig = field(default_factory=HaLPConfig)
    mae: MAEConfig = field(default_factory=MAEConfig)

    def __post_init__(self) -> None:
        if str(self.mixed_precision).lower() in ("false", "no", "none"):  # YAML reads an unquoted `no` as false
            self.mixed_precision = "no"

    def validate(self) -> None:
        check(is_run_name(self.name), "name", self.name, RUN_NAME_RULE)
        check(0 <= self.seed < 2**32, "seed", self.seed, "an integer in [0, 2**32)")
        for key in ("grad_accum", "log_every"):
            check(getattr(self, key) >= 1, key, getattr(self, key), "an integer >= 1")
        check(self.eval_every >= 0, "eval_every", self.eval_every, "an integer >= 0 (0: the last epoch only)")
        check(self.cpu_threads >= 0, "cpu_threads", self.cpu_threads, ">= 0 (0: the machine's share)")
        validate_data(self.data)
        validate_optim(self.optim)
        check(self.method in METHODS, "method", self.method, " | ".join(METHODS))
        check(self.mixed_precision in ("no", "bf16", "fp16"), "mixed_precision", self.mixed_precision,
              "no, bf16 or fp16")
        check(self.optim.scheduler in ("step", "cosine"), "optim.scheduler", self.optim.scheduler, "step or cosine")
        check(self.knn_k >= 1, "knn_k", self.knn_k, "at least 1")
        check(self.data.label_fraction == 1, "data.label_fraction", self.data.label_fraction,
              "1 (pre-training reads no labels; the semi-supervised protocol is `mmcl probe-encoder --protocols semi`)")
        lo, hi = (self.augment.crop + [0, 0])[:2]
        check(len(self.augment.crop) == 2 and 0 < lo <= hi <= 1, "augment.crop", self.augment.crop,
              "[lo, hi] with 0 < lo <= hi <= 1")
        check(0 <= self.augment.corrupt_fraction <= 1, "augment.corrupt_fraction", self.augment.corrupt_fraction,
              "a fraction in [0, 1]")
        check(0 <= self.augment.p_shear <= 1, "augment.p_shear", self.augment.p_shear, "a probability")
        check(self.moco.queue_size >= 1, "moco.queue_size", self.moco.queue_size, "at least 1")
        check(0 <= self.moco.momentum <= 1, "moco.momentum", self.moco.momentum, "a number in [0, 1]")
        check(self.moco.temperature > 0, "moco.temperature", self.moco.temperature, "a positive number")
        h = self.halp
        check(h.num_prototypes <= h.prototype_keys <= self.moco.queue_size, "halp.prototype_keys", h.prototype_keys,
              f"between halp.num_prototypes ({h.num_prototypes}) and moco.queue_size ({self.moco.queue_size})")
        check(0 < h.skip_closest < h.num_prototypes, "halp.skip_closest", h.skip_closest,
              f"in 1..halp.num_prototypes - 1 ({h.num_prototypes - 1})")
        check(0 <= h.lam_max <= 1, "halp.lam_max", h.lam_max, "a number in [0, 1]")
        check(h.refresh_every >= 1 and h.num_positives >= 1 and h.num_candidates >= 1, "halp.refresh_every",
              h.refresh_every, "refresh_every, num_positives and num_candidates of at least 1")
        check(0 < self.mae.ratio < 1, "mae.ratio", self.mae.ratio, "a fraction strictly between 0 and 1")
        check(self.mae.segment >= 1 and self.data.window % self.mae.segment == 0, "mae.segment", self.mae.segment,
              f"a divisor of data.window ({self.data.window})")
        check(self.mae.gamma >= 1, "mae.gamma", self.mae.gamma, "at least 1 (the scaled cosine error's exponent)")
