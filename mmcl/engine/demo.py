"""The built-in demo's data step: the synthetic set and its demo teacher features, made when a run needs them.

``mmcl train`` (and ``accelerate launch mmcl/train.py``) calls :func:`prepare_demo` before
:func:`mmcl.engine.trainer.train`; the library's ``train()`` itself only reads what exists. For a config on the
synthetic set without ``data.root`` it generates and prepares the set into the cache (once, on the main process) and,
with co-learning, runs the configured teachers over it (sharded over the launched processes; the tiny demo teachers
are built first, and a config that names tuned adapters not made yet, ``tiny_tuned``, has them tuned on the set's
training split). A config with ``data.longtail`` gets its long-tailed set built from the full one.
"""

from __future__ import annotations

import json
from pathlib import Path

from accelerate import PartialState

from mmcl.config import TrainConfig
from mmcl.data.prepared import PreparedData
from mmcl.engine.data import longtail_paths, synthetic_paths


def uses_demo_data(cfg: TrainConfig) -> bool:
    """Whether ``cfg`` trains on the generated synthetic set (``data.dataset: synthetic`` and no ``data.root``)."""
    return cfg.data.dataset == "synthetic" and not cfg.data.root


def ensure_synthetic(seed: int, videos: bool = False) -> PreparedData:
    """Generate and prepare the built-in synthetic set if it is not in the cache yet; returns it.

    Without ``videos`` the raw set is generated without its RGB videos (rendering them is most of the generation
    time, and training reads skeletons only); a later call with ``videos`` adds them to the same set.
    """
    from mmcl.data.prepare import prepare_synthetic
    from mmcl.data.synthetic import SynthConfig, generate
    from mmcl.data.synthetic.answers import ANSWERS_FILE

    raw, prepared = synthetic_paths(seed)
    manifest = raw / "manifest.json"
    has_videos = manifest.exists() and json.loads(manifest.read_text())["config"]["video"]
    if (not manifest.exists() and not (prepared / "meta.json").exists()) or (videos and not has_videos):
        print(f"generating the synthetic dataset (seed {seed}, {'with' if videos else 'without'} videos) into {raw}")
        generate(raw, SynthConfig(seed=seed, video=videos))
    elif manifest.exists() and not (raw / ANSWERS_FILE).exists():
        generate(raw, SynthConfig(seed=seed, video=has_videos))  # a set made before the answers file existed: adds it
    if not (prepared / "meta.json").exists():
        print(f"preparing {raw} -> {prepared}")
        prepare_synthetic(raw, prepared)
    return PreparedData(prepared)


def ensure_teacher_features(cfg: TrainConfig, data: PreparedData) -> None:
    """Run the teachers of ``colearn.teacher.config`` over the synthetic set unless their cache is complete."""
    from teachers.cache import resolve_cache_dir
    from teachers.config import load_config
    from teachers.precompute import precompute
    from teachers.tiny import ensure_tiny_teachers
    from teachers.tune import ensure_tuned_teachers

    teacher = load_config(cfg.colearn.teacher.config)
    raw, _ = synthetic_paths(cfg.data.synthetic_seed)
    with PartialState().main_process_first():
        ensure_tiny_teachers(teacher)  # before the cache key, which fingerprints their files
        if any(a and not Path(a).is_dir() for a in (teacher.clip.adapter, teacher.llm.adapter)):
            ensure_synthetic(cfg.data.synthetic_seed, videos=True)  # tuning watches the training videos
        ensure_tuned_teachers(teacher, data, raw / "videos", raw / "answers.jsonl", raw / "classes.json")
    path = resolve_cache_dir(teacher, data.info.dataset)
    if (path / "manifest.json").exists():
        return
    with PartialState().main_process_first():
        ensure_synthetic(cfg.data.synthetic_seed, videos=True)  # the teachers watch the videos
    print(f"precomputing the teacher features of the synthetic set ({cfg.colearn.teacher.config}) into {path}")
    precompute(teacher, data, raw / "videos", descriptions_path=raw / "classes.json")


def prepare_demo(cfg: TrainConfig) -> None:
    """Make the demo data ``cfg`` trains on, if it does: the synthetic set, then its teacher features when a
    co-learning head is on and no explicit cache is named; and, for any dataset, the long-tailed set that
    ``data.longtail`` asks for (:mod:`mmcl.data.longtail`). Every launched process calls it."""
    state = PartialState()
    if uses_demo_data(cfg):
        with state.main_process_first():
            data = ensure_synthetic(cfg.data.synthetic_seed)
        if cfg.colearn.enabled and not cfg.colearn.teacher.cache:
            ensure_teacher_features(cfg, data)
    if cfg.data.longtail.enabled:
        from mmcl.data.longtail import ensure_longtail

        with state.main_process_first():
            ensure_longtail(cfg.data.longtail, *longtail_paths(cfg.data))
