"""``mmcl precompute``: run the CLIP and multimodal-LLM teachers over every video once and fill a feature cache.

Single process::

    mmcl precompute --config configs/teachers/tiny.yaml --data PREPARED --videos DIR [--out ROOT]
                    [--splits train,val] [--class-descriptions classes.json] [--retry-failed] [key.sub=value ...]

Many GPUs or machines (each process takes the samples at positions ``pos % world_size == rank`` of the selected
list that are not done yet, and writes its own chunks; the main process merges at the end)::

    accelerate launch --multi_gpu --num_processes N -m mmcl.cli precompute --config ... --data ... --videos ...
    accelerate launch --multi_gpu --num_machines 2 --machine_rank R --main_process_ip HOST --num_processes 16 \
        -m mmcl.cli precompute ...                       # the cache root must be on a shared filesystem
    torchrun --nproc_per_node N -m mmcl.cli precompute ...   # also on machines without GPUs (gloo, one CPU each)

(``accelerate launch --cpu --num_processes N`` starts a single process unless MPI is set up; use torchrun on CPUs.)

A killed run resumes where it stopped: committed chunks are kept and their samples skipped. Failed samples (missing,
empty or undecodable videos) are recorded with their reason and skipped on resume unless ``--retry-failed``.
Throughput: ``decode`` is the summed time of decoding, cropping and preprocessing (in data-loader workers, so it
overlaps the models when ``runtime.num_workers > 0``); ``CLIP``, ``LLM`` and ``text`` the models' time.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from mmcl.config import to_yaml
from mmcl.data.prepared import PreparedData, PreparedDataError
from mmcl.workers import DieWithParent
from teachers.cache import (CACHE_FORMAT, TIMING_KEYS, CacheError, CacheWriter, Chunk, cache_key, done_names,
                            key_hash, merge_index, read_class_strings, resolve_cache_dir, write_class_embeddings,
                            write_manifest)
from teachers.clip import ClipTeacher
from teachers.config import ConfigError, TeacherConfig, expand_prompts, load_config
from teachers.inputs import SampleInput, VideoInputs
from teachers.llm import LLMTeacher
from teachers.text import build_text_encoder
from teachers.tiny import ensure_tiny_teachers
from teachers.video import VideoError
from teachers.video import video_backend as video_backend_name


class Teachers:
    """The loaded teacher models of one config on one device."""

    def __init__(self, config: TeacherConfig, device: torch.device | str = "cpu"):
        self.config = config
        self.device = torch.device(device)
        r = config.runtime
        self.clip = ClipTeacher(config.clip, self.device)
        self.llm = LLMTeacher(config.llm, self.device, r.llm_batch_size)
        self.text = build_text_encoder(config.text_encoder, self.clip, self.device, r.text_batch_size)

    def serves(self, config: TeacherConfig) -> bool:
        """Whether these models are the ones ``config`` asks for (runtime and video settings may differ)."""
        c = self.config
        return (c.clip, c.llm, c.text_encoder) == (config.clip, config.llm, config.text_encoder)

    def encode(self, batch: list[SampleInput], chunk: Chunk) -> None:
        """Run the teachers on the decoded samples of ``batch`` and add results and failures to ``chunk``."""
        ok = [s for s in batch if s.error is None]
        for s in batch:
            chunk.timing["decode_s"] += s.decode_s
            if s.error is not None:
                chunk.fail(s.name, s.error)
        if not ok:
            return
        t0 = time.perf_counter()
        visual = self.clip.encode_images(torch.cat([s.pixels for s in ok])).cpu().numpy().reshape(len(ok), -1,
                                                                                                 self.clip.dim)
        t1 = time.perf_counter()
        answers = self.llm.answer([s.canvas for s in ok])
        t2 = time.perf_counter()
        text = self.text.encode([a for sample in answers for a in sample]).reshape(len(ok), len(self.llm.prompts),
                                                                                    self.text.dim)
        t3 = time.perf_counter()
        chunk.timing["clip_s"] += t1 - t0
        chunk.timing["llm_s"] += t2 - t1
        chunk.timing["text_s"] += t3 - t2
        for s, v, t, a in zip(ok, visual, text, answers):
            chunk.add(s.name, v, t, a, s.short, s.crop_box, s.num_video_frames, s.uncropped, s.truncated)


def select_indices(data: PreparedData, splits: list[str]) -> list[int]:
    """The sorted sample indices of the named splits."""
    if not splits:
        raise ValueError(f"no split selected in {data.root}")
    return sorted({int(i) for s in splits for i in data.split(s)})


def default_splits(data: PreparedData) -> list[str]:
    """The dataset's non-empty splits."""
    return [name for name, idx in data.splits.items() if len(idx)]


def process_shard(teachers: Teachers, config: TeacherConfig, data: PreparedData, videos: str | Path,
                  cache_path: Path, indices: list[int], rank: int = 0, world_size: int = 1, run_id: str = "",
                  retry_failed: bool = False, show_progress: bool = True) -> int:
    """Rank ``rank``'s share of ``indices`` (positions ``pos % world_size == rank``), minus samples already done;
    decoded by a data loader, encoded, committed chunk by chunk. Returns the number of samples handled."""
    done = done_names(cache_path, include_failed=not retry_failed)
    mine = [i for pos, i in enumerate(indices) if pos % world_size == rank and data.names[i] not in done]
    writer = CacheWriter(cache_path, rank, run_id)
    inputs = VideoInputs(data, mine, videos, config.video, config.llm.canvas, teachers.clip.preprocess,
                         config.runtime.video_backend)
    loader = torch.utils.data.DataLoader(inputs, batch_size=config.runtime.batch_size,
                                         num_workers=config.runtime.num_workers, collate_fn=list,
                                         worker_init_fn=DieWithParent() if config.runtime.num_workers else None)
    bar = tqdm(total=len(mine), unit="sample", desc=f"teachers, rank {rank}/{world_size}",
               disable=not show_progress, dynamic_ncols=True)
    chunk = Chunk()
    for batch in loader:
        stop = next((s.truncated for s in batch if s.truncated and config.video.on_truncated == "fail"), None)
        if stop:
            raise VideoError(f"{stop}; video.on_truncated=fail stops here (skip: record it as failed, use: encode "
                             f"what decodes)")
        teachers.encode(batch, chunk)
        bar.update(len(batch))
        if len(chunk) >= config.runtime.chunk_size:
            writer.commit(chunk)
            chunk = Chunk()
    if len(chunk):
        writer.commit(chunk)
    bar.close()
    return len(mine)


def load_descriptions(path: str | Path, class_names: list[str]) -> list[str]:
    """Descriptions of ``class_names`` from a JSON list of {"name", "description"}; every class must be there."""
    path = Path(path)
    try:
        items = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"class descriptions {path}: {exc}") from None
    if not isinstance(items, list):
        raise ConfigError(f"class descriptions {path}: expected a JSON list of {{\"name\", \"description\"}}")
    table = {}
    for n, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not isinstance(
                item.get("description"), str):
            raise ConfigError(f"class descriptions {path}: item {n} needs string fields 'name' and 'description'")
        table[item["name"]] = item["description"]
    missing = [c for c in class_names if c not in table]
    if missing:
        raise ConfigError(f"class descriptions {path}: no description for class(es) {', '.join(map(repr, missing))}")
    return [table[c] for c in class_names]


def embed_classes(teachers: Teachers, cache_path: Path, class_names: list[str],
                  descriptions: list[str] | None) -> None:
    """Write the class name (and description) embeddings, unless the cache already holds these exact strings."""
    if read_class_strings(cache_path) == (class_names, descriptions):
        return
    names_emb = teachers.text.encode(class_names)
    desc_emb = teachers.text.encode(descriptions) if descriptions is not None else None
    write_class_embeddings(cache_path, class_names, names_emb, descriptions, desc_emb)


def _versions(video_backend: str) -> dict[str, str]:
    import accelerate
    import av
    import open_clip
    import transformers

    versions = {"python": platform.python_version(), "torch": torch.__version__,
                "transformers": transformers.__version__, "open_clip": open_clip.__version__, "av": av.__version__,
                "accelerate": accelerate.__version__, "numpy": np.__version__,
                "video_backend": video_backend_name(video_backend)}
    if versions["video_backend"] == "decord":
        import decord

        versions["decord"] = decord.__version__
    return versions


def throughput(timing: dict[str, float], wall_s: float) -> dict[str, float]:
    """Per-sample times and rates of one run from its summed timing."""
    n = max(timing["samples"], 1)
    busy = sum(timing[k] for k in TIMING_KEYS) or 1.0
    return {
        "samples": int(timing["samples"]), "wall_s": wall_s, "samples_per_s": timing["samples"] / max(wall_s, 1e-9),
        **{f"{k[:-2]}_ms_per_sample": 1000 * timing[k] / n for k in TIMING_KEYS},
        "decode_share": timing["decode_s"] / busy, "encode_share": 1 - timing["decode_s"] / busy,
    }


def format_throughput(t: dict[str, float]) -> str:
    return (f"{t['samples']} samples in {t['wall_s']:.1f} s = {t['samples_per_s']:.2f} samples/s; per sample: "
            f"decode {t['decode_ms_per_sample']:.0f} ms, CLIP {t['clip_ms_per_sample']:.0f} ms, "
            f"LLM {t['llm_ms_per_sample']:.0f} ms, text {t['text_ms_per_sample']:.0f} ms; "
            f"decoding {100 * t['decode_share']:.0f}% / encoding {100 * t['encode_share']:.0f}% of the work")


def finish(teachers: Teachers, config: TeacherConfig, data: PreparedData, videos: str | Path, cache_path: Path,
           key: dict, splits: list[str], run_id: str, wall_s: float, world_size: int,
           descriptions: list[str] | None) -> dict:
    """Main process, after every rank: merge the index, embed the classes, write the manifest."""
    summary = merge_index(cache_path)
    embed_classes(teachers, cache_path, data.class_names, descriptions)
    previous = cache_path / "manifest.json"
    earlier_splits = json.loads(previous.read_text()).get("splits", []) if previous.exists() else []
    run_timing = summary.pop("timing_by_run").get(run_id, dict.fromkeys((*TIMING_KEYS, "samples"), 0.0))
    manifest = {
        "format": CACHE_FORMAT,
        "dataset": data.info.dataset,
        "config_name": config.name,
        "key_hash": key_hash(key),
        "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "prepared": str(data.root),
        "source": data.info.source,
        "videos": str(videos),
        "splits": sorted(set(earlier_splits) | set(splits)),
        "models": {
            "clip": {"model": config.clip.model, "pretrained": config.clip.pretrained,
                     "model_config": config.clip.model_config, "precision": config.clip.precision},
            "llm": {"model": config.llm.model, "revision": config.llm.revision, "dtype": config.llm.dtype,
                    "max_new_tokens": config.llm.max_new_tokens, "canvas": key["llm"]["canvas"]},
            "text_encoder": {"kind": config.text_encoder.kind, "model": config.text_encoder.model,
                             "pooling": config.text_encoder.pooling, "normalize": config.text_encoder.normalize},
        },
        "prompts": expand_prompts(config.llm),
        "versions": _versions(config.runtime.video_backend),
        "visual_dim": teachers.clip.dim, "text_dim": teachers.text.dim, "num_frames": config.video.num_frames,
        "num_prompts": len(teachers.llm.prompts),
        **summary,
        "classes": {"names": data.class_names, "descriptions": descriptions},
        "last_run": {"id": run_id, "world_size": world_size, **throughput(run_timing, wall_s)},
    }
    write_manifest(cache_path, manifest)
    return manifest


def precompute(config: TeacherConfig, data: PreparedData, videos: str | Path, root: str | Path | None = None,
               splits: list[str] | None = None, accelerator=None, retry_failed: bool = False,
               descriptions_path: str | Path | None = None, show_progress: bool = True,
               teachers: Teachers | None = None) -> Path:
    """Fill (or complete) the teacher cache of ``config`` for ``data``; returns the cache directory.

    ``splits``: the splits to process (default: all of the dataset's). Runs on every process of ``accelerator`` (an
    ``accelerate`` Accelerator or PartialState; default: the launch's PartialState), each on its own shard. The tiny
    demo teachers are built first when ``config`` names them.
    ``teachers``: models already loaded for this config (else they are loaded on the accelerator's device).
    """
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list

    # A PartialState, not an Accelerator: it fixes no mixed precision for a training run later in this process.
    acc = accelerator or PartialState(cpu=not torch.accelerator.is_available())  # cpu=True: torchrun on CPUs shards
    splits = default_splits(data) if splits is None else list(splits)
    videos = Path(videos)
    if not videos.is_dir():
        raise FileNotFoundError(f"videos directory not found: {videos}")
    if config.video.crop.enabled and not (data.info.has_color and data.info.has_frames):
        raise ConfigError(f"{data.root} stores no colour coordinates or frame indices, needed by the person crop; "
                          f"prepare it with them or set video.crop.enabled=false")
    indices = select_indices(data, splits)
    with acc.main_process_first():
        ensure_tiny_teachers(config)
    descriptions_path = descriptions_path or config.classes.descriptions
    descriptions = load_descriptions(descriptions_path, data.class_names) if descriptions_path else None
    key = cache_key(config, data.info.dataset)
    path = resolve_cache_dir(config, data.info.dataset, root, key)
    if acc.is_main_process:
        CacheWriter.initialise(path, key, to_yaml(config))
    run_id = [datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")]
    if acc.num_processes > 1:
        broadcast_object_list(run_id)
    acc.wait_for_everyone()
    if teachers is None:
        teachers = Teachers(config, acc.device)
    elif not teachers.serves(config):
        raise ValueError("the given teachers were loaded for another configuration")
    start = time.perf_counter()
    process_shard(teachers, config, data, videos, path, indices, acc.process_index, acc.num_processes, run_id[0],
                  retry_failed, show_progress and acc.is_main_process)
    acc.wait_for_everyone()
    if acc.is_main_process:
        manifest = finish(teachers, config, data, videos, path, key, splits, run_id[0], time.perf_counter() - start,
                          acc.num_processes, descriptions)
        print(f"teacher cache: {path}\n{manifest['num_samples']} samples cached, {manifest['num_failed']} failed, "
              f"{len(manifest['short_videos'])} short videos, {len(manifest['truncated_videos'])} truncated or damaged "
              f"videos used (video.on_truncated=use)\nthroughput: {format_throughput(manifest['last_run'])}",
              file=sys.stderr)
    acc.wait_for_everyone()
    return path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="teacher config: a YAML path or a name in configs/teachers")
    parser.add_argument("--data", required=True, help="prepared dataset directory")
    parser.add_argument("--videos", required=True, help="directory holding the videos")
    parser.add_argument("--out", default=None,
                        help="cache root (default: <cache>/teachers); the cache is <out>/<dataset>-<config>-<hash>")
    parser.add_argument("--splits", default=None, help="comma-separated splits to process (default: all)")
    parser.add_argument("--class-descriptions", default=None,
                        help="JSON list of {name, description} for the class embeddings (overrides the config)")
    parser.add_argument("--retry-failed", action="store_true", help="process again the samples that failed before")
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides")


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config, args.overrides)
        data = PreparedData(args.data)
        splits = [s for s in args.splits.split(",") if s] if args.splits else None
        precompute(config, data, args.videos, root=args.out, splits=splits,
                   retry_failed=args.retry_failed, descriptions_path=args.class_descriptions)
    except (ConfigError, CacheError, PreparedDataError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
