"""The target clips' teacher features, checked to come from the source run's teacher.

Refinement feeds FRM the LLM answers' text embeddings of the target clips, and open-vocabulary scoring compares the
projected skeleton feature with text embeddings of the target classes; both are read from a teacher cache filled for
the target dataset by ``mmcl precompute`` with the source run's teacher config (on UTD-MHAD / SYSU, which store no
colour-pixel joints, with ``video.crop.enabled=false``)::

    mmcl precompute --config tiny --data <prepared target> --videos <target videos> \\
        --class-descriptions <classes.json> video.crop.enabled=false
    # SYSU keeps <name>.mp4 / <name>.avi beside the samples: add 'video.patterns=["{name}.mp4","{name}.avi"]'

The features only mean something in the space the source run's heads were trained in, so the target cache's key must
equal the source teacher's in its text encoder (open-vocabulary) and also in its LLM, prompts and canvas
(refinement). The source teacher's key is read from the run's teacher cache (``colearn.teacher.cache``) or computed
from its teacher config (``colearn.teacher.config``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from mmcl.config import TrainConfig
from mmcl.data.prepared import PreparedData


def source_teacher_key(run: TrainConfig) -> tuple[dict, str]:
    """The cache key of the source run's teacher (:func:`teachers.cache.cache_key`) and a phrase naming it."""
    teacher = run.colearn.teacher
    if teacher.cache:
        key_file = Path(teacher.cache) / "key.json"
        if not key_file.is_file():
            raise FileNotFoundError(f"cannot check the target's teacher features against the source run's teacher: "
                                    f"its teacher cache {teacher.cache} is gone (no key.json)")
        return json.loads(key_file.read_text()), f"the teacher of cache {teacher.cache}"
    if teacher.config:
        from teachers.cache import cache_key
        from teachers.config import load_config

        return cache_key(load_config(teacher.config), "source"), f"teacher config {teacher.config!r}"
    raise ValueError("the source run names no teacher (colearn.teacher.config or colearn.teacher.cache)")


def source_teacher_config(run: TrainConfig, overrides: Sequence[str] = ()):
    """The source run's teacher config (``colearn.teacher.config``, or the resolved copy its teacher cache keeps),
    with ``overrides``: what ``mmcl precompute`` needs to fill the target's cache with the same teacher."""
    from teachers.config import load_config

    teacher = run.colearn.teacher
    if teacher.cache:
        path = Path(teacher.cache) / "config.yaml"
        if not path.is_file():
            raise FileNotFoundError(f"the source run's teacher cache {teacher.cache} is gone (no config.yaml)")
        return load_config(path, list(overrides))
    if teacher.config:
        return load_config(teacher.config, list(overrides))
    raise ValueError("the source run names no teacher (colearn.teacher.config or colearn.teacher.cache)")


def open_target_cache(path: str | os.PathLike | None, run: TrainConfig, data: PreparedData):
    """The target's teacher cache: ``path``, or where ``mmcl precompute`` puts it for the source run's teacher
    config and the target dataset."""
    from teachers.cache import open_cache, resolve_cache_dir

    if path is None:
        if not run.colearn.teacher.config:
            raise ValueError("pass --teacher-cache: the source run named its teacher cache directly, so the target's "
                             "cache cannot be derived from its teacher config")
        from teachers.config import load_config

        path = resolve_cache_dir(load_config(run.colearn.teacher.config), data.info.dataset)
        if not (Path(path) / "manifest.json").is_file():
            raise FileNotFoundError(
                f"no teacher cache for {data.root} at {path}; fill it with `mmcl precompute --config "
                f"{run.colearn.teacher.config} --data {data.root} --videos <videos> video.crop.enabled=false "
                f"[--class-descriptions FILE]` or pass --teacher-cache")
    return open_cache(path)


def check_same_teacher(cache, run: TrainConfig, parts: Sequence[str], purpose: str) -> None:
    """The target cache's key must equal the source teacher's in ``parts`` (``text_encoder``, ``llm``)."""
    key_file = Path(cache.path) / "key.json"
    if not key_file.is_file():
        raise FileNotFoundError(f"{cache.path} has no key.json: cannot tell which teacher made it")
    target = json.loads(key_file.read_text())
    source, name = source_teacher_key(run)
    differ = [p for p in parts if target.get(p) != source.get(p)]
    if differ:
        raise ValueError(f"{purpose}: the target teacher cache {cache.path} was not made with the source run's "
                         f"teacher ({name}): its {' and '.join(differ)} differ. Precompute the target features with "
                         f"the source run's teacher config")


def clip_text(cache, names: Sequence[str]) -> np.ndarray:
    """The answers' text embeddings (N, P, D_t) of the clips ``names``; clips without features fail, listed."""
    missing = [n for n in names if n not in cache]
    if missing:
        failures = cache.failures
        listed = "; ".join(f"{n} ({failures[n]})" if n in failures else n for n in missing[:10])
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise KeyError(f"{len(missing)} of {len(names)} target clips have no features in the teacher cache "
                       f"{cache.path}: {listed}{more}")
    return np.stack([np.asarray(cache[n]["text"], dtype=np.float32) for n in names])


def class_text(cache, class_names: Sequence[str], kind: str) -> np.ndarray:
    """The target classes' name or description embeddings (C, D_t) from the cache, for exactly ``class_names``."""
    if kind not in ("name", "description"):
        raise ValueError(f"class text must be 'name' or 'description', got {kind!r}")
    classes = cache.class_embeddings()
    if list(classes["names"]) != list(class_names):
        raise ValueError(f"the class embeddings of {cache.path} are for other classes ({', '.join(classes['names'])})"
                         f" than the target's ({', '.join(class_names)})")
    if f"{kind}_embeddings" not in classes:
        raise ValueError(f"the teacher cache {cache.path} holds no class descriptions; precompute it with "
                         f"--class-descriptions, or score against the class names (--openvocab-text name)")
    return np.asarray(classes[f"{kind}_embeddings"], dtype=np.float32)
