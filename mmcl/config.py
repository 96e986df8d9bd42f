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
import re
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence, TypeVar, get_type_hints

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from mmcl.brl.config import BRLConfig
from mmcl.colearn.config import ColearnConfig
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
    brl: BRLConfig = field(default_factory=BRLConfig)  # long-tailed learning (BRL's parts, each a switch)

    def __post_init__(self) -> None:
        # YAML reads an unquoted `no` as false: accept it for accelerate's "no"
        if str(self.mixed_precision).lower() in ("false", "no", "none"):
            self.mixed_precision = "no"

    def validate(self) -> None:
        check(self.mixed_precision in ("no", "bf16", "fp16"), "mixed_precision", self.mixed_precision,
              "no, bf16 or fp16")
        check(self.optim.scheduler in ("step", "cosine"), "optim.scheduler", self.optim.scheduler, "step or cosine")
        check(0 < self.data.label_fraction <= 1, "data.label_fraction", self.data.label_fraction, "a number in (0, 1]")
        self.data.longtail.validate("data.longtail")
        self.brl.validate("brl")
        check(not (self.brl.mixup.enabled and self.colearn.enabled), "brl.mixup.enabled", True,
              "false with co-learning: the teacher features describe the unmixed samples")
        check(self.data.stream in STREAMS, "data.stream", self.data.stream, "one of " + ", ".join(STREAMS))
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
        node: Any = raw
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                break
            node = node[part]
        else:
            return where
    return _main_source(layers)


def _main_source(layers: Sequence[Layer]) -> str:
    """The last file read, else the command line."""
    files = [where for where, _ in layers if where not in (COMMAND_LINE, DEFAULTS)]
    return files[-1] if files else COMMAND_LINE


def build_config(schema: type[T], layers: Sequence[Layer]) -> T:
    """``schema`` filled from ``layers`` (later ones win), checked key by key and by the schema's ``validate()``."""
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
    if validate is not None:
        try:
            validate()
        except ConfigValueError as e:
            raise ConfigError(f"{_source(e.key, layers)}: {e}") from None
        except ConfigError as e:
            raise ConfigError(f"{_main_source(layers)}: {e}") from None
    return config


def load_config(path: str | Path | None = None, overrides: Sequence[str] = (), schema: type[T] = TrainConfig,
                defaults: Mapping[str, Any] | None = None) -> T:
    """Load ``schema`` from an optional YAML file (with its ``_base_`` files) and dotted overrides.

    ``defaults``: values under the file's (a teacher config's ``name`` is its file's stem).
    """
    layers: list[Layer] = [(DEFAULTS, dict(defaults))] if defaults else []
    if path is not None:
        layers += read_layers(path)
    if overrides:
        layers.append((COMMAND_LINE, parse_overrides(overrides)))
    return build_config(schema, layers)


def to_yaml(config: Any) -> str:
    """A resolved configuration as YAML text."""
    return OmegaConf.to_yaml(OmegaConf.structured(config))


def from_yaml(text: str, schema: type[T] = TrainConfig, where: str = "a stored configuration") -> T:
    """Inverse of :func:`to_yaml` (reads the configuration stored in a checkpoint)."""
    raw = yaml.safe_load(text) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping at the top level, got {type(raw).__name__}")
    return build_config(schema, [(where, raw)])
