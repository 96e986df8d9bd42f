"""The teacher feature cache: one directory per (dataset, teacher configuration), written in committed chunks.

Layout of ``<root>/<dataset>-<config name>-<hash>/`` (root: ``mmcl.paths.cache_dir() / "teachers"``)::

    key.json                 everything the features depend on; <hash> = sha256 of it (12 hex digits)
    config.yaml              the resolved config of the run that created the directory
    chunks/rRRR-cNNNNN-TTTTTTTT.safetensors   one committed chunk of rank RRR (TTTTTTTT: its writer's random token,
                             so two writers can never overwrite each other's chunks): per sample row
                                 visual (n, k, D) f32, text (n, P, D_t) f32, short_video (n,) bool,
                                 crop_box (n, 4) i32 (x0, y0, x1, y1 in video pixels), num_video_frames (n,) i32,
                                 answer_offsets (n*P + 1,) i64 into answer_bytes (UTF-8, all answers concatenated)
    chunks/rRRR-cNNNNN-TTTTTTTT.json  its record: names (row order), failed and uncropped samples with reasons, short
                             videos, timing; written after the safetensors file: the record is the commit
    classes.safetensors      name_embeddings (C, D_t), description_embeddings (C, D_t) when descriptions are given
    index.json               name -> (chunk, row), merged from the records
    manifest.json            models, prompts, versions, dims, counts, failures, short videos, timing; written last

A chunk is written to a temporary name and renamed (safetensors first, then its record), so a killed run leaves only
whole chunks; a chunk file without its record is ignored and overwritten. The key covers models (hub id + revision,
or a content fingerprint of local files), tuned adapters by content (``clip.adapter`` / ``llm.adapter``, only when set,
so tuned and untuned features never share a directory), prompts, sampling, crop, canvas, text encoder and dtypes, but
not batch sizes, workers or device (:class:`teachers.config.RuntimeConfig`), the tune settings (their result, the
adapters, is keyed) nor where the videos are found.

:func:`open_cache` reads it: lookups are O(1) through the index, and each read memory-maps only its chunk's rows.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from mmcl.errors import MmclError
from mmcl.io import atomic_path, atomic_write_text
from teachers.config import TeacherConfig, expand_prompts

CACHE_FORMAT = 1
FULL_HASH_LIMIT = 64 << 20
PARTIAL_HASH_BYTES = 8 << 20
MAX_OPEN_CHUNKS = 64
TIMING_KEYS = ("decode_s", "clip_s", "llm_s", "text_s")


class CacheError(MmclError, RuntimeError):
    """A teacher cache is missing, incomplete or inconsistent."""


def fingerprint_path(path: str | os.PathLike) -> str:
    """sha256 over a file or a directory tree (relative names, sizes and contents; hidden entries skipped).

    Files up to 64 MiB are hashed whole, larger ones by their size and first and last 8 MiB (weights of a 7B model
    would take minutes to hash; a changed checkpoint changes its head or tail in practice).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"cannot fingerprint {path}: not found")
    files = [path] if path.is_file() else sorted(
        p for p in path.rglob("*") if p.is_file() and not any(s.startswith(".") for s in p.relative_to(path).parts))
    h = hashlib.sha256()
    for f in files:
        size = f.stat().st_size
        h.update(f"{f.name if f == path else f.relative_to(path).as_posix()}\0{size}\0".encode())
        with open(f, "rb") as fh:
            if size <= FULL_HASH_LIMIT:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
            else:
                h.update(fh.read(PARTIAL_HASH_BYTES))
                fh.seek(size - PARTIAL_HASH_BYTES)
                h.update(fh.read(PARTIAL_HASH_BYTES))
    return h.hexdigest()


def _check_local(ref: str) -> None:
    """An absolute path (never a hub id or a tag) must exist: its content is part of the key."""
    if os.path.isabs(ref) and not os.path.exists(ref):
        hint = (" (the tiny teachers are built by `mmcl precompute` or `python -m teachers.tiny`)"
                if "tiny-teachers" in Path(ref).parts else "")
        raise CacheError(f"model file {ref} not found{hint}")


def model_source(ref: str, revision: str | None = None) -> dict:
    """How a model enters the key: a local path by its content fingerprint, a hub id by id and revision."""
    _check_local(ref)
    if os.path.exists(ref):
        return {"local_sha256": fingerprint_path(ref)}
    return {"hub": ref, "revision": revision or "main"}


def _clip_weights(model: str, pretrained: str) -> dict:
    """open_clip's reading of ``pretrained``: a known tag of ``model`` first, else a checkpoint file."""
    import open_clip

    _check_local(pretrained)
    if open_clip.get_pretrained_cfg(model, pretrained) or not os.path.isfile(pretrained):
        return {"tag": pretrained}
    return {"local_sha256": fingerprint_path(pretrained)}


def _config_sha256(path: str | None) -> str | None:
    if not path:
        return None
    _check_local(path)
    return fingerprint_path(path)


def cache_key(config: TeacherConfig, dataset: str) -> dict:
    """Everything the features depend on (see the module docstring)."""
    c = config
    text = {"kind": c.text_encoder.kind, "pooling": c.text_encoder.pooling, "normalize": c.text_encoder.normalize,
            "max_length": c.text_encoder.max_length}
    if c.text_encoder.kind == "hf":
        text["model"] = model_source(c.text_encoder.model, c.text_encoder.revision)
    key = {
        "format": CACHE_FORMAT,
        "dataset": dataset,
        "video": {"num_frames": c.video.num_frames, "crop": asdict(c.video.crop)},
        "clip": {
            "model": c.clip.model,
            "model_config_sha256": _config_sha256(c.clip.model_config),
            "pretrained": _clip_weights(c.clip.model, c.clip.pretrained),
            "precision": c.clip.precision,
            "normalize": c.clip.normalize,
        },
        "llm": {
            "model": model_source(c.llm.model, c.llm.revision),
            "dtype": c.llm.dtype,
            "max_new_tokens": c.llm.max_new_tokens,
            "system_prompt": c.llm.system_prompt,
            "prompts": expand_prompts(c.llm),
            "canvas": asdict(c.llm.canvas),
        },
        "text_encoder": text,
    }
    for part, adapter in (("clip", c.clip.adapter), ("llm", c.llm.adapter)):
        if adapter:  # tuned weights by content (only then: untuned keys stay what they were)
            if not Path(adapter).is_dir():
                raise CacheError(f"{part}.adapter {adapter} is not a directory: tune the teacher first "
                                 f"(`mmcl tune-teacher --config {c.name} ...`)")
            key[part]["adapter_sha256"] = fingerprint_path(adapter)
    return key


def key_hash(key: dict) -> str:
    """12 hex digits of the sha256 of the key's canonical JSON."""
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]


def default_cache_root() -> Path:
    """``mmcl.paths.cache_dir() / "teachers"``."""
    from mmcl.paths import cache_dir

    return cache_dir() / "teachers"


def resolve_cache_dir(config: TeacherConfig, dataset_name: str, root: str | os.PathLike | None = None,
                      key: dict | None = None) -> Path:
    """``<root>/<dataset>-<config name>-<hash>`` for this config (root defaults to :func:`default_cache_root`);
    ``key``: :func:`cache_key` of the same config and dataset when already computed."""
    root = Path(root) if root is not None else default_cache_root()
    return root / f"{dataset_name}-{config.name}-{key_hash(key or cache_key(config, dataset_name))}"


@dataclass
class Chunk:
    """Results of a run of consecutive samples, committed together."""

    names: list[str] = field(default_factory=list)
    visual: list[np.ndarray] = field(default_factory=list)
    text: list[np.ndarray] = field(default_factory=list)
    answers: list[list[str]] = field(default_factory=list)
    short: list[bool] = field(default_factory=list)
    crop_box: list[tuple[int, int, int, int]] = field(default_factory=list)
    num_video_frames: list[int] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)
    uncropped: list[dict[str, str]] = field(default_factory=list)
    truncated: list[dict[str, str]] = field(default_factory=list)
    timing: dict[str, float] = field(default_factory=lambda: dict.fromkeys(TIMING_KEYS, 0.0))

    def __len__(self) -> int:
        return len(self.names) + len(self.failed)

    def add(self, name: str, visual: np.ndarray, text: np.ndarray, answers: list[str], short: bool,
            crop_box: tuple[int, int, int, int], num_video_frames: int, uncropped: str | None = None,
            truncated: str | None = None) -> None:
        """One finished sample: ``visual`` (k, D), ``text`` (P, D_t), its P ``answers``; ``uncropped``: why the
        person crop fell back to the full frame, if it did; ``truncated``: why its video is shorter than its
        skeleton, if it is (encoded anyway: ``video.on_truncated=use``)."""
        if len(answers) != len(text):
            raise ValueError(f"sample {name!r}: {len(answers)} answers for {len(text)} text vectors")
        if not (np.isfinite(visual).all() and np.isfinite(text).all()):
            self.fail(name, "the teachers' features hold NaN or inf")  # recorded, never cached as a result
            return
        self.names.append(name)
        self.visual.append(np.asarray(visual, np.float32))
        self.text.append(np.asarray(text, np.float32))
        self.answers.append(list(answers))
        self.short.append(bool(short))
        self.crop_box.append(tuple(int(v) for v in crop_box))
        self.num_video_frames.append(int(num_video_frames))
        if uncropped:
            self.uncropped.append({"name": name, "reason": uncropped})
        if truncated:
            self.truncated.append({"name": name, "reason": truncated})

    def fail(self, name: str, reason: str) -> None:
        self.failed.append({"name": name, "reason": reason})

    def tensors(self) -> dict[str, np.ndarray]:
        flat = [a.encode() for answers in self.answers for a in answers]
        return {
            "visual": np.stack(self.visual),
            "text": np.stack(self.text),
            "short_video": np.asarray(self.short, dtype=bool),
            "crop_box": np.asarray(self.crop_box, dtype=np.int32).reshape(-1, 4),
            "num_video_frames": np.asarray(self.num_video_frames, dtype=np.int32),
            "answer_offsets": np.concatenate([[0], np.cumsum([len(b) for b in flat])]).astype(np.int64),
            "answer_bytes": np.frombuffer(b"".join(flat), dtype=np.uint8).copy(),
        }


class CacheWriter:
    """One process's writer: commits chunks under its own rank prefix; any number of ranks share a directory."""

    def __init__(self, path: str | os.PathLike, rank: int = 0, run_id: str = ""):
        self.path = Path(path)
        self.chunks = self.path / "chunks"
        if not (self.path / "key.json").exists():
            raise CacheError(f"{self.path} is not an initialised teacher cache (no key.json)")
        self.rank = rank
        self.run_id = run_id
        self.token = secrets.token_hex(4)
        for stray in self.chunks.glob(f"r{rank:03d}-c*.safetensors"):
            if not stray.with_suffix(".json").exists():
                stray.unlink()  # written by a killed run before its record: not committed
        for stray in self.chunks.glob(f"r{rank:03d}-c*.tmp"):
            stray.unlink()  # a write cut short by a kill
        self._next = 0

    @staticmethod
    def initialise(path: str | os.PathLike, key: dict, config_yaml: str) -> Path:
        """Create the directory with its key (main process, before any writer); an existing one must match."""
        path = Path(path)
        (path / "chunks").mkdir(parents=True, exist_ok=True)
        key_file = path / "key.json"
        if key_file.exists():
            stored = json.loads(key_file.read_text())
            if stored != key:
                raise CacheError(f"{key_file} does not match this configuration (a hash collision or an edited "
                                 f"file); move {path} away")
        else:
            atomic_write_text(path / "config.yaml", config_yaml)
            atomic_write_text(key_file, json.dumps(key, indent=1, sort_keys=True))
        return path

    def commit(self, chunk: Chunk) -> dict:
        """Write ``chunk`` atomically (data, then its record) and return the record."""
        from safetensors.numpy import save_file

        chunk_id = f"r{self.rank:03d}-c{self._next:05d}-{self.token}"
        digest = None
        if chunk.names:
            with atomic_path(self.chunks / f"{chunk_id}.safetensors") as tmp:
                save_file(chunk.tensors(), tmp)
                digest = _sha256(tmp)
        record = {"id": chunk_id, "sha256": digest, "run": self.run_id, "rank": self.rank, "names": chunk.names,
                  "failed": chunk.failed, "uncropped": chunk.uncropped, "truncated": chunk.truncated,
                  "short": [n for n, s in zip(chunk.names, chunk.short) if s], "timing": chunk.timing}
        atomic_write_text(self.chunks / f"{chunk_id}.json", json.dumps(record))
        self._next += 1
        return record


def read_records(path: str | os.PathLike) -> list[dict]:
    """The committed chunk records of a cache directory, in name order."""
    return [json.loads(p.read_text()) for p in sorted((Path(path) / "chunks").glob("r*-c*.json"))]


def done_names(path: str | os.PathLike, include_failed: bool = True) -> set[str]:
    """Samples with a committed result (and, unless ``include_failed`` is False, a committed failure)."""
    done: set[str] = set()
    for rec in read_records(path):
        done.update(rec["names"])
        if include_failed:
            done.update(f["name"] for f in rec["failed"])
    return done


def merge_index(path: str | os.PathLike) -> dict:
    """Merge the chunk records into ``index.json``; return counts, failures, short videos and per-run timing.

    A sample committed twice is an error (every sample is done exactly once); a failure followed by a later success
    (``--retry-failed``) keeps the success.
    """
    path = Path(path)
    records = read_records(path)
    chunks: list[str] = []
    sums: list[str | None] = []
    rows: dict[str, tuple[int, int]] = {}
    failures: dict[str, str] = {}
    uncropped: dict[str, str] = {}
    truncated: dict[str, str] = {}
    short: list[str] = []
    timing: dict[str, dict[str, float]] = {}
    for rec in records:
        run = timing.setdefault(rec["run"], dict.fromkeys((*TIMING_KEYS, "samples"), 0.0))
        for k in TIMING_KEYS:
            run[k] += rec["timing"][k]
        run["samples"] += len(rec["names"])
        if rec["names"]:
            chunks.append(rec["id"])
            sums.append(rec.get("sha256"))
        for row, name in enumerate(rec["names"]):
            if name in rows:
                raise CacheError(f"{path}: sample {name!r} was committed twice (chunks {chunks[rows[name][0]]} "
                                 f"and {rec['id']})")
            rows[name] = (len(chunks) - 1, row)
        failures.update((f["name"], f["reason"]) for f in rec["failed"])
        uncropped.update((f["name"], f["reason"]) for f in rec["uncropped"])
        truncated.update((f["name"], f["reason"]) for f in rec.get("truncated", []))
        short.extend(rec["short"])
    failures = {n: r for n, r in failures.items() if n not in rows}
    atomic_write_text(path / "index.json", json.dumps({"chunks": chunks, "sha256": sums, "rows": rows}))
    return {
        "num_samples": len(rows),
        "num_failed": len(failures),
        "failures": [{"name": n, "reason": r} for n, r in sorted(failures.items())],
        "uncropped": [{"name": n, "reason": r} for n, r in sorted(uncropped.items()) if n in rows],
        "truncated_videos": [{"name": n, "reason": r} for n, r in sorted(truncated.items()) if n in rows],
        "short_videos": sorted(short),
        "timing_by_run": timing,
    }


def write_class_embeddings(path: str | os.PathLike, names: list[str], name_embeddings: np.ndarray,
                           descriptions: list[str] | None = None,
                           description_embeddings: np.ndarray | None = None) -> None:
    """Write ``classes.safetensors`` (the strings go into its metadata and into the manifest)."""
    from safetensors.numpy import save_file

    tensors = {"name_embeddings": np.asarray(name_embeddings, np.float32)}
    meta = {"names": json.dumps(names)}
    if descriptions is not None:
        tensors["description_embeddings"] = np.asarray(description_embeddings, np.float32)
        meta["descriptions"] = json.dumps(descriptions)
    with atomic_path(Path(path) / "classes.safetensors") as tmp:
        save_file(tensors, tmp, metadata=meta)


def read_class_strings(path: str | os.PathLike) -> tuple[list[str], list[str] | None] | None:
    """The (names, descriptions) stored in ``classes.safetensors``, or None when it does not exist."""
    from safetensors import safe_open

    file = Path(path) / "classes.safetensors"
    if not file.exists():
        return None
    with safe_open(file, framework="np") as f:
        meta = f.metadata()
    return json.loads(meta["names"]), json.loads(meta["descriptions"]) if "descriptions" in meta else None


def write_manifest(path: str | os.PathLike, manifest: dict) -> None:
    atomic_write_text(Path(path) / "manifest.json", json.dumps(manifest, indent=1))


class TeacherCache:
    """Read access to a finished teacher cache: ``cache[name]`` -> that sample's features, O(1), memory-mapped."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        manifest = self.path / "manifest.json"
        if not manifest.exists():
            hint = " (precompute has not finished: run it again to resume)" if (self.path / "key.json").exists() else ""
            raise CacheError(f"{self.path} is not a finished teacher cache: no manifest.json{hint}")
        self.manifest: dict = _read_json(manifest)
        index = _read_json(self.path / "index.json")
        if not (isinstance(self.manifest, dict) and isinstance(index, dict) and "num_prompts" in self.manifest
                and {"chunks", "rows"} <= set(index)):
            raise CacheError(f"{self.path}: manifest.json or index.json lacks its fields (an edited or foreign file); "
                             f"precompute the cache again")
        self._chunks: list[str] = index["chunks"]
        self._rows: dict[str, list[int]] = index["rows"]
        self._failed = {f["name"]: f["reason"] for f in self.manifest.get("failures", [])}
        self._num_prompts = int(self.manifest["num_prompts"])
        self._open: OrderedDict[int, object] = OrderedDict()
        self._pid = os.getpid()
        verify_chunks(self.path, self.manifest, index)

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, name: object) -> bool:
        return name in self._rows

    def __iter__(self) -> Iterator[str]:
        return iter(self._rows)

    def __repr__(self) -> str:
        m = self.manifest
        return (f"TeacherCache({self.path}, {len(self)} samples, visual {m['num_frames']}x{m['visual_dim']}, "
                f"text {m['num_prompts']}x{m['text_dim']})")

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_open"] = OrderedDict()
        return state

    @property
    def names(self) -> list[str]:
        return list(self._rows)

    @property
    def failures(self) -> dict[str, str]:
        """Samples that could not be processed -> reason."""
        return dict(self._failed)

    def _chunk(self, i: int):
        from safetensors import safe_open

        if self._pid != os.getpid():  # a forked data-loader worker: open its own handles
            self._open, self._pid = OrderedDict(), os.getpid()
        if i in self._open:
            self._open.move_to_end(i)
            return self._open[i]
        handle = safe_open(self.path / "chunks" / f"{self._chunks[i]}.safetensors", framework="np")
        self._open[i] = handle
        if len(self._open) > MAX_OPEN_CHUNKS:
            self._open.popitem(last=False)
        return handle

    def __getitem__(self, name: str) -> dict:
        """``visual`` (k, D) and its mean ``visual_mean`` (D,), ``text`` (P, D_t) float32, ``answers`` (P strings),
        ``short_video``, ``crop_box`` (4,) and ``num_video_frames``."""
        if name not in self._rows:
            why = f": it failed ({self._failed[name]})" if name in self._failed else ""
            raise KeyError(f"sample {name!r} is not in the teacher cache {self.path}{why}")
        chunk, row = self._rows[name]
        f = self._chunk(chunk)
        p = self._num_prompts
        offsets = f.get_slice("answer_offsets")[row * p:(row + 1) * p + 1]
        text_bytes = (f.get_slice("answer_bytes")[int(offsets[0]):int(offsets[-1])].tobytes()
                      if offsets[-1] > offsets[0] else b"")
        rel = offsets - offsets[0]
        visual = f.get_slice("visual")[row]
        return {
            "visual": visual,
            "visual_mean": visual.mean(0),
            "text": f.get_slice("text")[row],
            "answers": [text_bytes[rel[j]:rel[j + 1]].decode() for j in range(p)],
            "short_video": bool(f.get_slice("short_video")[row]),
            "crop_box": f.get_slice("crop_box")[row],
            "num_video_frames": int(f.get_slice("num_video_frames")[row]),
        }

    def class_embeddings(self) -> dict:
        """``names``, ``name_embeddings`` (C, D_t) and, when descriptions were given, ``descriptions`` and
        ``description_embeddings`` (C, D_t)."""
        from safetensors.numpy import load_file

        file = self.path / "classes.safetensors"
        if not file.exists():
            raise CacheError(f"{self.path} holds no class embeddings (classes.safetensors)")
        out: dict = dict(load_file(file))
        names, descriptions = read_class_strings(self.path)
        out["names"] = names
        if descriptions is not None:
            out["descriptions"] = descriptions
        return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_chunks(path: Path, manifest: dict, index: dict) -> None:
    """Check every chunk of a finished cache as its index and manifest describe it: the checksum its record gave
    (caches written before checksums: none), tensors of the manifest's shapes and dtypes, finite features, answer
    offsets within the bytes, every answer UTF-8, index rows inside their chunk. A bad one is a :class:`CacheError`
    naming the shard (reads the whole cache once)."""
    from safetensors import safe_open

    try:
        k, d, p, dt = (int(manifest[key]) for key in ("num_frames", "visual_dim", "num_prompts", "text_dim"))
        chunks, sums, rows = index["chunks"], index.get("sha256") or [None] * len(index["chunks"]), index["rows"]
        used = [0] * len(chunks)
        for chunk, row in rows.values():
            used[chunk] = max(used[chunk], int(row) + 1)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise CacheError(f"{path}: manifest.json or index.json lacks its fields or points outside its chunks "
                         f"({type(exc).__name__}: {exc}); precompute the cache again") from None
    for i, chunk_id in enumerate(chunks):
        file = path / "chunks" / f"{chunk_id}.safetensors"
        if not file.is_file():
            raise CacheError(f"{file} is missing: the teacher cache {path} is incomplete; precompute it again")
        if sums[i] and _sha256(file) != sums[i]:
            raise CacheError(f"{file}: its checksum differs from the one recorded when it was written (a damaged "
                             f"or replaced shard); precompute the cache again")
        try:
            with safe_open(file, framework="np") as f:
                tensors = {key: f.get_tensor(key) for key in f.keys()}
        except Exception as exc:  # safetensors' SafetensorError of a truncated or random file, OSError
            raise CacheError(f"{file}: not a readable shard ({type(exc).__name__}: {exc}); precompute the cache "
                             f"again") from None
        n = len(tensors["visual"]) if "visual" in tensors else 0
        wanted = {"visual": ((n, k, d), np.float32), "text": ((n, p, dt), np.float32), "short_video": ((n,), bool),
                  "crop_box": ((n, 4), np.int32), "num_video_frames": ((n,), np.int32),
                  "answer_offsets": ((n * p + 1,), np.int64), "answer_bytes": (None, np.uint8)}
        found = {key: f"{v.shape} {v.dtype}" for key, v in tensors.items()}
        bad = [f"{key} {found.get(key, 'missing')}, expected {shape or '(bytes,)'} {np.dtype(dtype)}"
               for key, (shape, dtype) in wanted.items()
               if key not in tensors or (shape is not None and tensors[key].shape != shape)
               or tensors[key].dtype != dtype] + [f"unexpected {key}" for key in tensors if key not in wanted]
        if bad or n < used[i]:
            raise CacheError(f"{file}: does not fit the cache's manifest ({'; '.join(bad) or f'{n} rows'}; "
                             f"{k} frames x {d} visual, {p} prompts x {dt} text); precompute the cache again")
        for key in ("visual", "text"):
            if not np.isfinite(tensors[key]).all():
                rows_bad = np.flatnonzero(~np.isfinite(tensors[key].reshape(n, -1)).all(1))
                raise CacheError(f"{file}: the {key} features of {len(rows_bad)} sample(s) hold NaN or inf (rows "
                                 f"{rows_bad[:5].tolist()}); precompute the cache again")
        offsets, raw = tensors["answer_offsets"], tensors["answer_bytes"].tobytes()
        if offsets[0] != 0 or offsets[-1] != len(raw) or np.any(np.diff(offsets) < 0):
            raise CacheError(f"{file}: answer offsets do not index its {len(raw)} answer bytes; precompute the cache "
                             f"again")
        try:
            for a, b in zip(offsets[:-1], offsets[1:]):
                raw[a:b].decode()
        except UnicodeDecodeError as exc:
            raise CacheError(f"{file}: an answer is not UTF-8 ({exc}); precompute the cache again") from None


def _read_json(path: Path):
    """A cache's JSON file; an unreadable one is a :class:`CacheError` naming it."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CacheError(f"{path} is missing: the teacher cache {path.parent} is incomplete") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CacheError(f"{path} is corrupt ({type(exc).__name__}: {exc}); precompute the cache again") from None


def open_cache(path: str | os.PathLike) -> TeacherCache:
    """Open a finished teacher cache directory."""
    return TeacherCache(path)
