"""Model registry (timm style): ``@register_model`` on a factory, ``create_model(name, ...)`` to build one.

Importing this module is cheap (no torch): the modules that define models are imported on the first
:func:`create_model` / :func:`list_models` call. A new model file registers itself with the decorator and is added
to :data:`MODEL_MODULES`.
"""

from __future__ import annotations

import importlib
import inspect
import typing
from collections.abc import Callable, Mapping
from typing import Any

from mmcl.errors import ConfigError

# Modules whose import registers models; all of them in mmcl.models (the registry imports no training code).
MODEL_MODULES: tuple[str, ...] = ("mmcl.models.ctrgcn", "mmcl.models.ctrgcn_mmixer", "mmcl.models.ctrgcn_deformable")
MODEL_MODULES += ("mmcl.models.bigru", "mmcl.models.skeletonmae")  # self-supervised pre-training encoders
MODEL_MODULES += ("mmcl.models.psumnet",)  # PSUMNet part streams

_FACTORIES: dict[str, Callable[..., Any]] = {}

# Arguments every factory takes from the data (and the checkpoint), never from a config's model arguments.
DATA_ARGUMENTS = ("num_classes", "layout", "in_channels", "num_person")


class ModelArgsError(ConfigError):
    """A model name or argument the registry refuses; ``key`` is the config key (``model.args.<name>``)."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


def register_model(factory: Callable[..., Any]) -> Callable[..., Any]:
    """Register ``factory`` under its function name. It must accept ``num_classes``, ``layout``, ``in_channels``
    and ``num_person`` keywords and return an ``nn.Module``."""
    name = factory.__name__
    if name in _FACTORIES and _FACTORIES[name] is not factory:
        raise ValueError(f"model {name!r} is already registered by {_FACTORIES[name].__module__}")
    _FACTORIES[name] = factory
    return factory


def _import_model_modules() -> None:
    for module in MODEL_MODULES:
        importlib.import_module(module)


def list_models() -> list[str]:
    """Names of the registered models, sorted."""
    _import_model_modules()
    return sorted(_FACTORIES)


def create_model(name: str, num_classes: int, layout: str = "ntu25", in_channels: int | None = None,
                 num_person: int = 2, init: str | None = None, **kwargs: Any) -> Any:
    """Build a registered model.

    Args:
        name: registered name (see :func:`list_models`).
        num_classes: number of action classes.
        layout: joint layout name (:mod:`mmcl.data.layouts`).
        in_channels: channels per joint (3 for xyz; 6 or 12 for stacked streams); ``None``: the factory's default
            (3 for CTR-GCN, 12 for PSUMNet).
        num_person: persons per sample (M).
        init: a checkpoint (deployable model or pre-trained encoder, ``.safetensors``) to start from; every tensor
            must fit, the classifier too unless the class count differs or the file is an encoder checkpoint of
            ``mmcl pretrain`` (its classifier was never trained): then it keeps its fresh initialisation.
        **kwargs: passed to the model's factory (e.g. ``drop_rate``).

    The model records how it was built (``registry_name``, ``registry_args``: the extra keyword arguments), which
    is what a deployable checkpoint stores to rebuild it.
    """
    _import_model_modules()
    if name not in _FACTORIES:
        raise KeyError(f"unknown model {name!r}; registered models: {', '.join(sorted(_FACTORIES))}")
    channels = {} if in_channels is None else {"in_channels": in_channels}
    model = _FACTORIES[name](num_classes=num_classes, layout=layout, num_person=num_person, **channels, **kwargs)
    model.registry_name, model.registry_args = name, dict(kwargs)
    if init:
        from mmcl.models.checkpoint import init_from_checkpoint

        init_from_checkpoint(model, init)
    return model


def check_model_args(name: str, args: Mapping[str, Any], key: str = "model") -> None:
    """Fail, naming the argument, unless ``create_model(name, ..., **args)`` takes ``args``: every argument is one of
    the factory's keywords (not one of :data:`DATA_ARGUMENTS`) and a plain ``int`` / ``float`` / ``bool`` / ``str``
    one has a value of that type. ``key``: the config section, for the error (``model.name``, ``model.args.x``)."""
    _import_model_modules()
    if name not in _FACTORIES:
        raise ModelArgsError(f"{key}.name", f"{key}.name = {name!r}: unknown model; registered models: "
                                            f"{', '.join(sorted(_FACTORIES))}")
    factory = _FACTORIES[name]
    params = {n: p for n, p in inspect.signature(factory).parameters.items() if n not in DATA_ARGUMENTS}
    hints = typing.get_type_hints(factory)
    for arg, value in args.items():
        if arg in DATA_ARGUMENTS:
            raise ModelArgsError(f"{key}.args.{arg}", f"{key}.args.{arg}: set from the data, not in {key}.args")
        if arg not in params:
            raise ModelArgsError(f"{key}.args.{arg}", f"{key}.args.{arg}: model {name!r} takes no argument {arg!r}; "
                                                      f"its arguments: {', '.join(params) or 'none'}")
        expected = hints.get(arg)
        ok = {bool: lambda v: isinstance(v, bool), int: lambda v: isinstance(v, int) and not isinstance(v, bool),
              float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
              str: lambda v: isinstance(v, str)}.get(expected)
        if ok is not None and not ok(value):
            raise ModelArgsError(f"{key}.args.{arg}", f"{key}.args.{arg} = {value!r}: model {name!r} expects "
                                                      f"{expected.__name__}")
