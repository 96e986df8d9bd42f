"""Share a teacher cache as a Hugging Face ``datasets`` folder, and open one back as a cache.

    mmcl teacher-cache export CACHE_DIR OUT_DIR
    mmcl teacher-cache import DATASET_DIR [--out ROOT]

Features computed once on GPUs can then be shared like any dataset: the folder holds two Arrow tables written by
``Dataset.save_to_disk`` and the cache's identity::

    samples/   one row per cached sample: name, visual (k, D) float32, text (P, D_t) float32, answers (P strings),
               short_video, crop_box (4,) int32, num_video_frames
    classes/   one row per class: name, description, name_embedding, description_embedding
    teacher_cache.json   key, manifest and resolved config of the cache (the key says what the features depend on)

Each table can be pushed to the hub (``datasets.load_from_disk(OUT/"samples").push_to_hub(repo,
config_name="samples")``, the same for ``classes``, and ``teacher_cache.json`` uploaded beside them), and read by
anyone with ``datasets`` alone. ``import`` writes an ordinary cache directory (the same ``<dataset>-<config>-<hash>``
name, key, manifest, class embeddings and features, bit for bit) that training and ``mmcl probe`` read as usual.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from mmcl.io import write_json
from teachers.cache import (CacheError, CacheWriter, Chunk, default_cache_root, key_hash, merge_index, open_cache,
                            write_class_embeddings, write_manifest)

IDENTITY_FILE = "teacher_cache.json"
EXPORT_FORMAT = 1


def _features(k: int, d: int, p: int, dt: int):
    from datasets import Array2D, Features, Sequence, Value

    return Features({
        "name": Value("string"), "visual": Array2D((k, d), "float32"), "text": Array2D((p, dt), "float32"),
        "answers": Sequence(Value("string"), length=p), "short_video": Value("bool"),
        "crop_box": Sequence(Value("int32"), length=4), "num_video_frames": Value("int32"),
    })


def export_cache(cache_dir: str | Path, out: str | Path) -> Path:
    """Write the cache at ``cache_dir`` as a ``datasets`` folder ``out`` (see the module docstring)."""
    from datasets import Dataset, Features, Sequence, Value

    cache = open_cache(cache_dir)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty; choose a new directory")
    m = cache.manifest
    features = _features(int(m["num_frames"]), int(m["visual_dim"]), int(m["num_prompts"]), int(m["text_dim"]))

    def rows():
        for name in cache.names:
            e = cache[name]
            yield {"name": name, "visual": e["visual"], "text": e["text"], "answers": e["answers"],
                   "short_video": e["short_video"], "crop_box": e["crop_box"],
                   "num_video_frames": e["num_video_frames"]}

    Dataset.from_generator(rows, features=features).save_to_disk(str(out / "samples"))
    if (cache.path / "classes.safetensors").exists():
        classes = cache.class_embeddings()
        descriptions = classes.get("descriptions")
        table = {"name": classes["names"], "name_embedding": list(classes["name_embeddings"]),
                 "description": descriptions if descriptions is not None else [None] * len(classes["names"]),
                 "description_embedding": (list(classes["description_embeddings"]) if descriptions is not None
                                           else [None] * len(classes["names"]))}
        vec = Sequence(Value("float32"))
        Dataset.from_dict(table, features=Features({"name": Value("string"), "name_embedding": vec,
                                                    "description": Value("string"), "description_embedding": vec})
                          ).save_to_disk(str(out / "classes"))
    write_json(out / IDENTITY_FILE, {
        "format": EXPORT_FORMAT, "directory": cache.path.name,
        "key": json.loads((cache.path / "key.json").read_text()), "manifest": m,
        "config_yaml": (cache.path / "config.yaml").read_text()})
    return out


def import_cache(dataset_dir: str | Path, root: str | Path | None = None, chunk_size: int = 256) -> Path:
    """Write the ``datasets`` folder ``dataset_dir`` back as a cache directory under ``root`` (default: the teacher
    cache root); returns it. An existing cache of the same key must already hold exactly these samples."""
    from datasets import load_from_disk

    dataset_dir = Path(dataset_dir)
    ident_file = dataset_dir / IDENTITY_FILE
    if not ident_file.is_file():
        raise CacheError(f"{dataset_dir} is not an exported teacher cache (no {IDENTITY_FILE})")
    try:
        ident = json.loads(ident_file.read_text())
        key, manifest = ident["key"], ident["manifest"]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise CacheError(f"{ident_file} is not a teacher-cache identity file ({type(exc).__name__}: {exc})") from None
    if ident.get("format") != EXPORT_FORMAT:
        raise CacheError(f"{ident_file}: export format {ident.get('format')}, this mmcl reads {EXPORT_FORMAT}")
    if key_hash(key) != manifest.get("key_hash"):
        raise CacheError(f"{ident_file}: the key does not hash to the manifest's key_hash (an edited file?)")
    path = Path(root) if root is not None else default_cache_root()
    path = path / ident["directory"]
    if (path / "manifest.json").exists():
        raise FileExistsError(f"{path} already holds a finished cache; remove it to import again")
    CacheWriter.initialise(path, key, ident["config_yaml"])
    samples = load_from_disk(str(dataset_dir / "samples")).with_format("numpy")
    writer = CacheWriter(path, rank=0, run_id="import")
    uncropped = {u["name"]: u["reason"] for u in manifest.get("uncropped", [])}
    chunk = Chunk()
    for failure in manifest.get("failures", []):
        chunk.fail(failure["name"], failure["reason"])
    for start in range(0, len(samples), chunk_size):
        batch = samples[start:start + chunk_size]
        for j, name in enumerate(batch["name"]):
            chunk.add(str(name), batch["visual"][j], batch["text"][j], [str(a) for a in batch["answers"][j]],
                      bool(batch["short_video"][j]), tuple(int(v) for v in batch["crop_box"][j]),
                      int(batch["num_video_frames"][j]), uncropped.get(str(name)))
        writer.commit(chunk)
        chunk = Chunk()
    if len(chunk):
        writer.commit(chunk)
    merge_index(path)
    if (dataset_dir / "classes").is_dir():
        classes = load_from_disk(str(dataset_dir / "classes")).with_format("numpy")
        names = [str(n) for n in classes["name"]]
        has_desc = classes[0]["description"] is not None
        write_class_embeddings(path, names, np.stack(classes["name_embedding"]),
                               [str(d) for d in classes["description"]] if has_desc else None,
                               np.stack(classes["description_embedding"]) if has_desc else None)
    write_manifest(path, manifest)
    return path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    exp = sub.add_parser("export", help="write a cache as a Hugging Face datasets folder")
    exp.add_argument("cache", help="teacher cache directory")
    exp.add_argument("out", help="new output directory")
    imp = sub.add_parser("import", help="write an exported folder back as a teacher cache")
    imp.add_argument("dataset", help="folder written by `mmcl teacher-cache export`")
    imp.add_argument("--out", default=None, help="cache root (default: <cache>/teachers)")


def run(args: argparse.Namespace) -> int:
    if args.action == "export":
        print(f"exported to {export_cache(args.cache, args.out)}")
    else:
        print(f"imported into {import_cache(args.dataset, args.out)}")
    return 0
