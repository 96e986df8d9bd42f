"""Training configuration: plain dataclasses, loaded from YAML with dotted command-line overrides.

A YAML file may start from other files with ``_base_: path.yaml`` (or a list of paths, relative to the file); later
files and then the command line override earlier ones::

    accelerate launch mmcl/train.py --config configs/ntu60/xsub_joint.yaml optim.lr=0.05 data.batch_size=32

Every key is checked against the dataclasses below: an unknown key fails naming it and the closest valid key.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Sequence, TypeVar

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from mmcl.colearn.config import ColearnConfig


class ConfigError(ValueError):
    """A configuration file or override is invalid."""


@dataclass
class DataConfig:
    """Which prepared dataset to read and how to sample it (CTR-GCN feeder semantics)."""

    dataset: str = "synthetic"
    root: str = ""  # prepared dataset directory; empty with dataset 'synthetic': generated into the cache
    stream: str = "joint"  # joint | bone | joint_motion | bone_motion
    window: int = 64
    p_interval: list[float] = field(default_factory=lambda: [0.5, 1.0])
    random_rotation: bool = True
    rotation_range: float = 0.3
    repeat: int = 1  # repeat the training split per epoch (NW-UCLA: 5)
    batch_size: int = 64
    eval_batch_size: int = 128
    num_workers: int = 2
    synthetic_seed: int = 0  # used when the synthetic set is generated
    # Cross-dataset use (mmcl.data.adapt): map the stored joints to another layout by joint name, pad/trim persons,
    # centre on actor 1's centre joint in frame 0. Empty / 0 / false: as stored.
    layout: str = ""
    num_person: int = 0
    center: bool = False


@dataclass
class ModelConfig:
    name: str = "ctrgcn"
    args: dict[str, Any] = field(default_factory=dict)  # extra keyword arguments of the model factory
    init: str = ""  # start from a deployable checkpoint (fine-tuning); its classifier is kept only if the classes match


@dataclass
class OptimConfig:
    """SGD with Nesterov momentum, linear warm-up, then step or cosine decay (per epoch, as CTR-GCN)."""

    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 4e-4
    epochs: int = 65
    warmup_epochs: int = 5
    scheduler: str = "step"  # step | cosine
    steps: list[int] = field(default_factory=lambda: [35, 55])
    gamma: float = 0.1
    min_lr: float = 0.0  # cosine floor
    label_smoothing: float = 0.0


@dataclass
class TrainConfig:
    """Everything a training run needs; saved, resolved, into every checkpoint."""

    name: str = "run"
    output_dir: str = "runs"  # the run writes to <output_dir>/<name>
    seed: int = 1
    deterministic: bool = True
    mixed_precision: str = "no"  # no | bf16 | fp16 (accelerate)
    cpu_threads: int = 0  # on a CPU: torch threads per process; 0: the machine's cores shared among local processes
    grad_accum: int = 1
    eval_every: int = 1  # epochs between validation passes
    log_every: int = 20  # steps between TensorBoard scalars
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    colearn: ColearnConfig = field(default_factory=ColearnConfig)

    def __post_init__(self) -> None:
        # YAML reads an unquoted `no` as false: accept it for accelerate's "no"
        if str(self.mixed_precision).lower() in ("false", "no", "none"):
            self.mixed_precision = "no"
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise ConfigError(f"mixed_precision must be no, bf16 or fp16, got {self.mixed_precision!r}")


T = TypeVar("T")


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    path = path.resolve()
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    if path in seen:
        raise ConfigError(f"config {path} includes itself through _base_")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    bases = raw.pop("_base_", [])
    merged = OmegaConf.create()
    for base in [bases] if isinstance(bases, str) else bases:
        merged = OmegaConf.merge(merged, _read_yaml(path.parent / base, seen + (path,)))
    return OmegaConf.to_container(OmegaConf.merge(merged, raw))


def _check_keys(schema: Any, raw: Any, where: str, prefix: str = "") -> None:
    """Fail on keys that ``schema`` (a dataclass type) does not have, suggesting the closest one."""
    if not isinstance(raw, dict):
        return
    valid = {f.name: f for f in fields(schema)}
    for key, value in raw.items():
        dotted = f"{prefix}{key}"
        if key not in valid:
            candidates = [f"{prefix}{k}" for k in valid]
            close = difflib.get_close_matches(dotted, candidates, n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys here: {', '.join(candidates)}"
            raise ConfigError(f"unknown config key {dotted!r} in {where}{hint}")
        sub = valid[key].default_factory() if callable(valid[key].default_factory) else None
        if is_dataclass(sub):
            _check_keys(type(sub), value, where, dotted + ".")


def parse_overrides(overrides: Sequence[str]) -> dict:
    """``["optim.lr=0.05", "data.stream=bone"]`` -> nested dict (values parsed as YAML)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form dotted.key=value")
    return OmegaConf.to_container(OmegaConf.from_dotlist(list(overrides)))


def load_config(path: str | Path | None = None, overrides: Sequence[str] = (), schema: type[T] = TrainConfig) -> T:
    """Load ``schema`` from an optional YAML file plus dotted overrides; unknown keys and bad types fail."""
    layers = []
    if path is not None:
        raw = _read_yaml(Path(path))
        _check_keys(schema, raw, str(path))
        layers.append(raw)
    if overrides:
        raw = parse_overrides(overrides)
        _check_keys(schema, raw, "the command line")
        layers.append(raw)
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), *layers)
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:  # a value of the wrong type
        key = getattr(e, "full_key", None) or "?"
        msg = (getattr(e, "msg", None) or str(e)).splitlines()[0]
        raise ConfigError(f"invalid value for config key {key!r}{f' (from {path})' if path else ''}: {msg}") from None


def to_yaml(config: Any) -> str:
    """The resolved configuration as YAML text."""
    return OmegaConf.to_yaml(OmegaConf.structured(config))


def from_yaml(text: str, schema: type[T] = TrainConfig) -> T:
    """Inverse of :func:`to_yaml` (used to read the configuration stored in a checkpoint)."""
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), yaml.safe_load(text)))
