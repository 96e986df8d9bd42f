"""Configuration: one loader for every kind of config (training, teachers, ablation plans, pre-training...).

A kind of config is a dataclass, its *schema* (keys, types, defaults, an optional ``validate()``); YAML files and
dotted command-line overrides fill it::

    cfg = load_config("configs/ntu60/xsub_joint.yaml", ["optim.lr=0.05", "data.batch_size=32"])   # TrainConfig
    teacher = load_config(find_config("tiny", "teachers"), schema=TeacherConfig)
    plan = load_config("configs/ablation/synthetic.yaml", schema=AblationPlan)

- A file may start from others with ``_base_: path.yaml`` (or a list of paths, relative to the file); later files and
  then the command line override earlier ones.
- Every key is checked against the schema: an unknown key fails naming the file that holds it (or "the command line")
  and the closest valid key; a value of the wrong type fails naming its key and the file it came from; then the
  schema's ``validate()`` checks ranges and choices (:func:`check`), the error again naming the key's file.
- Interpolations: ``${pkgdir:PACKAGE}`` is the directory of an installed top-level package (found without importing
  it); the package that owns a resolver registers it (``${tiny:ITEM}``: :mod:`teachers.config`). Resolving a config
  has no side effects: it reads files and returns a dataclass.

Every error is a :class:`mmcl.errors.ConfigError`. A new kind of config needs a schema dataclass and nothing else.
"""

from __future__ import annotations

import difflib
import importlib.util
import math
import re
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TypeVar, get_type_hints

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from mmcl.brl.config import BRLConfig
from mmcl.colearn.config import ColearnConfig
from mmcl.data.layouts import LAYOUTS
from mmcl.data.longtail import LongtailConfig
from mmcl.data.streams import PSUMNET_MODEL, PSUMNET_STREAMS, STREAMS, stream_model_args
from mmcl.errors import ConfigError

COMMAND_LINE = "the command line"
DEFAULTS = "the defaults"


class ConfigValueError(ConfigError):
    """A value a schema's ``validate()`` refuses; ``key`` (dotted) lets the loader name the file that set it."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


def check(ok: bool, key: str, value: Any, expected: str) -> None:
    """For a schema's ``validate()``: unless ``ok``, fail with ``key = value; expected ...``."""
    if not ok:
        raise ConfigValueError(key, f"{key} = {value!r}; expected {expected}")


@dataclass
class DataConfig:
    """Which prepared dataset to read and how to sample it (CTR-GCN feeder semantics)."""

    dataset: str = "synthetic"
    root: str = ""  # prepared dataset directory; empty with dataset 'synthetic': the generated demo set in the cache
    stream: str = "joint"  # joint | bone | skip | joint_motion | bone_motion | skip_motion, or a PSUMNet part stream
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
    # Semi-supervised training: a class-stratified random fraction of the training split's labels, drawn with
    # label_seed (mmcl.data.subsets.stratified_subset); 1: every training sample.
    label_fraction: float = 1.0
    label_seed: int = 0
    longtail: LongtailConfig = field(default_factory=LongtailConfig)  # train on a long-tailed split (NTU-LT, BRL)


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
    # largest global gradient norm (accelerate's clip_grad_norm_, every parameter together); 0: no clipping. Off for
    # CTR-GCN as published; the M-Mixer configs set 10 (configs/synthetic/mmixer.yaml)
    clip_grad_norm: float = 0.0


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
    # on several processes, BatchNorm statistics over the global batch (what one process with it computes)
    sync_bn: bool = True
    eval_every: int = 1  # epochs between validation passes
    log_every: int = 20  # steps between TensorBoard scalars
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    colearn: ColearnConfig = field(default_factory=ColearnConfig)
    brl: BRLConfig = field(default_factory=BRLConfig)  # long-tailed learning (BRL's parts, each a switch)

    def __post_init__(self) -> None:
        # YAML reads an unquoted `no` as false: accept it for accelerate's "no"
        if str(self.mixed_precision).lower() in ("false", "no", "none"):
            self.mixed_precision = "no"

    def validate(self) -> None:
        """Every value in range before anything is made: a run that starts does not fail later on its config."""
        check(is_run_name(self.name), "name", self.name, RUN_NAME_RULE)
        check(bool(self.output_dir) and "\0" not in self.output_dir, "output_dir", self.output_dir,
              "a directory path")
        check(0 <= self.seed < 2**32, "seed", self.seed, "an integer in [0, 2**32)")
        check(self.mixed_precision in ("no", "bf16", "fp16"), "mixed_precision", self.mixed_precision,
              "no, bf16 or fp16")
        check(self.cpu_threads >= 0, "cpu_threads", self.cpu_threads, ">= 0 (0: the machine's share)")
        for key in ("grad_accum", "eval_every", "log_every"):
            check(getattr(self, key) >= 1, key, getattr(self, key), "an integer >= 1")
        validate_data(self.data)
        validate_optim(self.optim)
        _validate_colearn(self.colearn, self.model)
        self.data.longtail.validate("data.longtail")
        self.brl.validate("brl")
        check(not (self.brl.mixup.enabled and self.colearn.enabled), "brl.mixup.enabled", True,
              "false with co-learning: the teacher features describe the unmixed samples")
        part_stream = self.data.stream in PSUMNET_STREAMS
        check(part_stream == (self.model.name == PSUMNET_MODEL), "data.stream", self.data.stream,
              f"a PSUMNet part stream ({', '.join(PSUMNET_STREAMS)}) exactly when model.name is {PSUMNET_MODEL!r} "
              f"(model.name is {self.model.name!r})")
        part = PSUMNET_STREAMS.get(self.data.stream, ("body",))[0]
        check(not (self.brl.mixup.enabled and part != "body"), "brl.mixup.enabled", True,
              f"false with the {self.data.stream} stream: the mixup swaps the lower body of whole skeletons, which "
              f"the {part} part does not hold")
        implied = sorted(set(self.model.args) & set(stream_model_args(self.data.stream)))
        check(not implied, "model.args", self.model.args, f"no {', '.join(implied)}: data.stream sets them")


# A run name is one directory under output_dir: one file-name component, nothing that climbs out of it.
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+=,-]*")
RUN_NAME_RULE = ("one file-name component of letters, digits and _ . + = , - (not starting with a dot, no '..', "
                 "no path separator): the run is written to <output_dir>/<name>")


def is_run_name(name: object) -> bool:
    """Whether ``name`` names a directory directly inside the output folder (see :data:`RUN_NAME_RULE`)."""
    return isinstance(name, str) and bool(RUN_NAME.fullmatch(name)) and ".." not in name and len(name) <= 255


def validate_data(d: DataConfig) -> None:
    """Every ``data.*`` value in range (shared by the training and pre-training configs)."""
    check(d.stream in STREAMS, "data.stream", d.stream, " | ".join(STREAMS))
    check(bool(d.dataset), "data.dataset", d.dataset, "a dataset name")
    check(bool(d.root) or d.dataset == "synthetic", "data.root", d.root,
          f"the prepared {d.dataset!r} dataset's directory (see `mmcl prepare --help`)")
    for key in ("window", "repeat", "batch_size", "eval_batch_size"):
        check(getattr(d, key) >= 1, f"data.{key}", getattr(d, key), "an integer >= 1")
    for key in ("num_workers", "synthetic_seed", "num_person", "label_seed"):
        check(getattr(d, key) >= 0, f"data.{key}", getattr(d, key), "an integer >= 0")
    check(len(d.p_interval) == 2 and all(math.isfinite(p) for p in d.p_interval) and 0 < d.p_interval[0]
          <= d.p_interval[1] <= 1, "data.p_interval", list(d.p_interval), "[lo, hi] with 0 < lo <= hi <= 1")
    check(math.isfinite(d.rotation_range) and d.rotation_range >= 0, "data.rotation_range", d.rotation_range,
          "a finite number >= 0")
    check(not d.layout or d.layout in LAYOUTS, "data.layout", d.layout, f"empty or one of {', '.join(LAYOUTS)}")
    check(0 < d.label_fraction <= 1, "data.label_fraction", d.label_fraction, "a number in (0, 1]")


def validate_optim(o: OptimConfig) -> None:
    """Every ``optim.*`` value in range (shared by the training and pre-training configs)."""
    check(math.isfinite(o.lr) and o.lr > 0, "optim.lr", o.lr, "a finite number > 0")
    check(math.isfinite(o.momentum) and 0 <= o.momentum < 1, "optim.momentum", o.momentum, "a number in [0, 1)")
    check(not o.nesterov or o.momentum > 0, "optim.momentum", o.momentum,
          "> 0 with optim.nesterov (Nesterov momentum needs momentum; or set optim.nesterov=false)")
    check(math.isfinite(o.weight_decay) and o.weight_decay >= 0, "optim.weight_decay", o.weight_decay,
          "a finite number >= 0")
    check(o.epochs >= 1, "optim.epochs", o.epochs, "an integer >= 1")
    check(0 <= o.warmup_epochs <= o.epochs, "optim.warmup_epochs", o.warmup_epochs,
          f"an integer in [0, optim.epochs = {o.epochs}]")
    check(o.scheduler in ("step", "cosine"), "optim.scheduler", o.scheduler, "step or cosine")
    check(all(s >= 0 for s in o.steps) and list(o.steps) == sorted(o.steps), "optim.steps", list(o.steps),
          "increasing epochs >= 0")
    check(math.isfinite(o.gamma) and o.gamma > 0, "optim.gamma", o.gamma, "a finite number > 0")
    check(math.isfinite(o.clip_grad_norm) and o.clip_grad_norm >= 0, "optim.clip_grad_norm", o.clip_grad_norm,
          "a finite number >= 0 (0: no clipping)")
    check(math.isfinite(o.min_lr) and 0 <= o.min_lr <= o.lr, "optim.min_lr", o.min_lr, f"in [0, optim.lr = {o.lr}]")
    check(math.isfinite(o.label_smoothing) and 0 <= o.label_smoothing < 1, "optim.label_smoothing", o.label_smoothing,
          "a number in [0, 1)")


def _validate_colearn(c: ColearnConfig, model: ModelConfig) -> None:
    check(c.teacher.missing in ("error", "skip"), "colearn.teacher.missing", c.teacher.missing, "error or skip")
    heads = [f.name for f in fields(c) if getattr(getattr(c, f.name), "enabled", False)]
    check(not heads or bool(c.teacher.config or c.teacher.cache), f"colearn.{heads[0]}.enabled" if heads else "",
          True, "colearn.teacher.config (a teacher config name or YAML) or colearn.teacher.cache (a cache "
          "directory) to be set: co-learning needs teacher features")
    for head in ("fam", "frm", "openvocab", "mmixer", "deformable"):
        section = getattr(c, head)
        check(math.isfinite(section.weight) and section.weight >= 0, f"colearn.{head}.weight", section.weight,
              "a finite number >= 0")
    for key, value in (("fam.tau", c.fam.tau), ("frm.temperature", c.frm.temperature),
                       ("openvocab.tau", c.openvocab.tau)):
        check(math.isfinite(value) and value > 0, f"colearn.{key}", value, "a finite number > 0")
    answer = c.openvocab.answer_weight
    check(math.isfinite(answer) and answer >= 0, "colearn.openvocab.answer_weight", answer, "a finite number >= 0")
    for key, value in (("fam.hidden", c.fam.hidden), ("frm.hidden", c.frm.hidden),
                       ("openvocab.hidden", c.openvocab.hidden)):
        check(value >= 1, f"colearn.{key}", value, "an integer >= 1")
    for key, value in (("fam.visual_dim", c.fam.visual_dim), ("frm.text_dim", c.frm.text_dim)):
        check(value >= 0, f"colearn.{key}", value, "an integer >= 0 (0: the cache's)")
    for key, value in (("fam.pool", c.fam.pool), ("frm.pool", c.frm.pool)):
        check(value in ("mean", "attention"), f"colearn.{key}", value, "mean or attention")
    check(c.frm.mode in ("refine", "soft_label"), "colearn.frm.mode", c.frm.mode, "refine or soft_label")
    check(c.openvocab.target in ("description", "name"), "colearn.openvocab.target", c.openvocab.target,
          "description or name")
    paths = [head for head in ("mmixer", "deformable") if getattr(c, head).enabled]
    check(len(paths) <= 1, f"colearn.{paths[-1]}.enabled" if paths else "colearn", True,
          "one cross-modal variant at a time (mmixer or deformable): each deploys a skeleton-only path of its own")
    for head in paths:
        try:
            getattr(c, head).validate(f"colearn.{head}")
        except ValueError as e:
            raise ConfigValueError(f"colearn.{head}", str(e)) from None
        check(model.name == "ctrgcn", "model.name", model.name, f"ctrgcn: colearn.{head} deploys CTR-GCN backbones")


T = TypeVar("T")
Layer = tuple[str, dict]  # (where it comes from: a file path or COMMAND_LINE, its nested keys)


def _package_dir(package: str) -> str:
    """``${pkgdir:PACKAGE}``: the directory of an installed top-level package, found without importing it."""
    if "." in package:
        raise ConfigError(f"${{pkgdir:{package}}}: name a top-level package (finding a subpackage imports its parent)")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"${{pkgdir:{package}}}: no installed package named {package!r}")
    return str(Path(list(spec.submodule_search_locations)[0]))


if not OmegaConf.has_resolver("pkgdir"):
    OmegaConf.register_resolver("pkgdir", _package_dir)


def find_config(name_or_path: str | Path, folder: str) -> Path:
    """A YAML path as given, or ``configs/<folder>/<name>.yaml`` for a bare name (``tiny`` -> teachers/tiny.yaml)."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        return path
    from mmcl.paths import configs_dir

    candidate = configs_dir() / folder / f"{name_or_path}.yaml"
    if not candidate.is_file():
        known = sorted(p.stem for p in (configs_dir() / folder).glob("*.yaml"))
        raise ConfigError(f"no config {str(name_or_path)!r} in {configs_dir() / folder}; known: {', '.join(known)}")
    return candidate


def read_layers(path: str | Path, seen: tuple[Path, ...] = ()) -> list[Layer]:
    """The YAML file ``path`` as layers in merge order: its ``_base_`` files' layers first, then its own keys."""
    path = Path(path).resolve()
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
    layers = []
    for base in [bases] if isinstance(bases, str) else bases:
        layers += read_layers(path.parent / base, seen + (path,))
    return layers + [(str(path), raw)]


def parse_overrides(overrides: Sequence[str]) -> dict:
    """``["optim.lr=0.05", "data.stream=bone"]`` -> nested dict (values parsed as YAML)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} on {COMMAND_LINE} is not of the form dotted.key=value")
    try:
        return OmegaConf.to_container(OmegaConf.from_dotlist(list(overrides)))
    except OmegaConfBaseException as e:
        raise ConfigError(f"{COMMAND_LINE}: {_first_line(e)}") from None


def _sub_schemas(schema: type) -> dict[str, type]:
    """The fields of ``schema`` whose type is itself a dataclass, with that type."""
    hints = get_type_hints(schema)
    return {f.name: hints[f.name] for f in fields(schema) if is_dataclass(hints.get(f.name))}


def _all_keys(schema: type, prefix: str = "") -> list[str]:
    keys = []
    subs = _sub_schemas(schema)
    for f in fields(schema):
        keys.append(prefix + f.name)
        if f.name in subs:
            keys += _all_keys(subs[f.name], f"{prefix}{f.name}.")
    return keys


def _closest(dotted: str, siblings: list[str], everywhere: list[str]) -> str | None:
    """The valid key a misspelt ``dotted`` most likely meant: a close sibling, else a key anywhere with that leaf."""
    close = difflib.get_close_matches(dotted, siblings, n=1, cutoff=0.5)
    if close:
        return close[0]
    leaf = dotted.rsplit(".", 1)[-1]
    same_leaf = [k for k in everywhere if k.rsplit(".", 1)[-1] == leaf]
    if same_leaf:
        return same_leaf[0]
    close = difflib.get_close_matches(dotted, everywhere, n=1, cutoff=0.75)
    return close[0] if close else None


def _check_keys(schema: type, raw: Any, where: str, root: type, prefix: str = "") -> None:
    """Fail on a key that ``schema`` does not have, naming ``where`` and the closest valid key."""
    if not isinstance(raw, dict):
        return
    valid = [f.name for f in fields(schema)]
    subs = _sub_schemas(schema)
    for key, value in raw.items():
        dotted = f"{prefix}{key}"
        if key not in valid:
            siblings = [f"{prefix}{k}" for k in valid]
            close = _closest(dotted, siblings, _all_keys(root))
            hint = f"; did you mean {close!r}?" if close else f"; valid keys here: {', '.join(siblings)}"
            raise ConfigError(f"unknown config key {dotted!r} in {where}{hint}")
        if key in subs:
            _check_keys(subs[key], value, where, root, dotted + ".")


def _first_line(e: Exception) -> str:
    msg = (getattr(e, "msg", None) or str(e)).splitlines()[0]
    return re.sub(r"^\w+ raised while resolving interpolation: ", "", msg)


def _source(key: str, layers: Sequence[Layer]) -> str:
    """Where the value of the dotted ``key`` comes from: the last layer that sets it, else the last file read (a
    value missing there), else the command line."""
    for where, raw in reversed(layers):
        if _sets(raw, key.split(".")):
            return where
    return _main_source(layers)


def _sets(node: Any, parts: list[str]) -> bool:
    """Whether the nested ``node`` holds the dotted key ``parts`` (a key may itself hold dots: ``model.args``)."""
    if not parts:
        return True
    return isinstance(node, dict) and any(
        ".".join(parts[:j]) in node and _sets(node[".".join(parts[:j])], parts[j:]) for j in range(1, len(parts) + 1))


def _main_source(layers: Sequence[Layer]) -> str:
    """The last file read, else the command line."""
    files = [where for where, _ in layers if where not in (COMMAND_LINE, DEFAULTS)]
    return files[-1] if files else COMMAND_LINE


def build_config(schema: type[T], layers: Sequence[Layer], checks: Sequence[Callable[[T], None]] = ()) -> T:
    """``schema`` filled from ``layers`` (later ones win), checked key by key, by the schema's ``validate()`` and then
    by each of ``checks`` (a :class:`mmcl.errors.ConfigError` with a ``key`` attribute names the file that set it)."""
    merged = OmegaConf.structured(schema)
    for where, raw in layers:
        _check_keys(schema, raw, where, schema)
        try:
            merged = OmegaConf.merge(merged, raw)
        except OmegaConfBaseException as e:  # a value of the wrong type, named with the file it is in
            raise ConfigError(f"{where}: invalid value for config key {getattr(e, 'full_key', '?')!r}: "
                              f"{_first_line(e)}") from None
    try:
        config = OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:  # a missing value or an interpolation that does not resolve
        key = getattr(e, "full_key", None) or "?"
        raise ConfigError(f"{_source(key, layers)}: config key {key!r}: {_first_line(e)}") from None
    validate = getattr(config, "validate", None)
    for step in ([validate] if validate is not None else []) + [lambda c=check: c(config) for check in checks]:
        try:
            step()
        except ConfigError as e:
            key = getattr(e, "key", None)
            raise ConfigError(f"{_source(key, layers) if key else _main_source(layers)}: {e}") from None
    return config


def load_config(path: str | Path | None = None, overrides: Sequence[str] = (), schema: type[T] = TrainConfig,
                defaults: Mapping[str, Any] | None = None, checks: Sequence[Callable[[T], None]] = ()) -> T:
    """Load ``schema`` from an optional YAML file (with its ``_base_`` files) and dotted overrides.

    ``defaults``: values under the file's (a teacher config's ``name`` is its file's stem). ``checks``: more checks
    after the schema's ``validate()``, for those that need code a config must not import (a training config's model
    arguments against the model's signature, :func:`check_model`); their errors name the file like the others.
    """
    layers: list[Layer] = [(DEFAULTS, dict(defaults))] if defaults else []
    if path is not None:
        layers += read_layers(path)
    if overrides:
        layers.append((COMMAND_LINE, parse_overrides(overrides)))
    return build_config(schema, layers, checks)


def check_model(cfg: TrainConfig) -> None:
    """``model.name`` is registered and ``model.args`` fit its factory (imports the model code: torch)."""
    from mmcl.models.registry import check_model_args

    check_model_args(cfg.model.name, cfg.model.args)


def to_yaml(config: Any) -> str:
    """A resolved configuration as YAML text."""
    return OmegaConf.to_yaml(OmegaConf.structured(config))


def from_yaml(text: str, schema: type[T] = TrainConfig, where: str = "a stored configuration") -> T:
    """Inverse of :func:`to_yaml` (reads the configuration stored in a checkpoint)."""
    raw = yaml.safe_load(text) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping at the top level, got {type(raw).__name__}")
    return build_config(schema, [(where, raw)])
