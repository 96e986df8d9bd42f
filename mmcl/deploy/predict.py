"""``mmcl predict``: the top-5 classes of skeleton files, from a deployable checkpoint or its ONNX export.

    mmcl predict --checkpoint runs/x/best.safetensors S001C001P001R001A001.skeleton      # one file: printed
    mmcl predict --model runs/x/best.onnx skeletons/ more.npy --out predictions.csv       # files and directories
    mmcl predict --model runs/x/best.onnx --list files.txt --out predictions.json          # a list of files
    mmcl predict --checkpoint runs/x/best.safetensors --data cache/prepared/ntu60-xsub --split test --out test.csv

Accepted files: an NTU ``.skeleton`` (read exactly as ``mmcl prepare ntu`` reads it), or a ``.npy`` array of shape
(T, M, V, C) in the checkpoint's layout (the prepared format's per-sample layout; (T, V, C) for one person), or in
the layout named by ``--layout``; a directory gives its ``.skeleton`` and ``.npy`` files (recursively, sorted);
``--list`` a text file of paths, one a line (relative to the list's directory); ``--data DIR --split S`` the samples
of a prepared split (with their true labels).

:func:`preprocess` turns a sample into the model's input exactly as ``mmcl eval`` feeds a prepared sample of the test
split: the checkpoint's clip adapter (its config's ``data.layout`` / ``data.num_person`` / ``data.center``: joints
mapped by name to the checkpoint's layout, persons padded with zeros or, where training dropped them, cut, the clip
centred on actor 1's centre joint in frame 0 when training centred it), the checkpoint's stream, centre crop 0.95
resized to its window. The checkpoint and the ONNX model (``--model``, run by onnxruntime, which carries the
checkpoint's metadata and config) go through this same function, as does ``mmcl show``.

Samples are predicted in batches of ``--batch-size`` with a progress bar. ``--out`` (``.csv`` or ``.json``) gets one
row per sample: its name, source, true label when known, and the top-k labels and probabilities; a file that cannot
be read or does not fit the model (wrong shape, NaN / inf, all zeros) gets a row with status ``failed`` and the
reason, and the others are predicted. Without ``--out``, a single sample's top-k is printed.
"""

from __future__ import annotations

import argparse
import csv
import functools
import io
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml

from mmcl.data.adapt import ClipAdapter
from mmcl.data.layouts import get_layout
from mmcl.data.prepared import unusable_reason
from mmcl.data.streams import skeleton_channels, stream_transform
from mmcl.errors import CheckpointError, DataError, MmclError
from mmcl.io import atomic_write_text, write_json
from mmcl.models.checkpoint import CheckpointInfo, load_checkpoint

SUFFIXES = (".skeleton", ".npy")
OUT_SUFFIXES = (".csv", ".json")


def read_joints(path: str | os.PathLike) -> np.ndarray:
    """A ``.skeleton`` or ``.npy`` file as (T, M, V, C) float32; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"skeleton file not found: {path}")
    if path.suffix == ".skeleton":
        from mmcl.data.ntu import NoBodyError, read_skeleton

        try:
            return read_skeleton(path)
        except NoBodyError as e:
            raise DataError(str(e)) from None
    if path.suffix != ".npy":
        raise DataError(f"{path}: expected a .skeleton or .npy file")
    try:
        joints = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise DataError(f"{path}: not a readable .npy array ({type(e).__name__}: {e})") from None
    if joints.dtype.kind not in "fiu" or joints.ndim not in (3, 4):  # not bool, complex, strings, objects
        raise DataError(f"{path}: array of shape {joints.shape} ({joints.dtype}); expected real numbers of shape "
                        f"(T, M, V, C) or (T, V, C)")
    with np.errstate(over="ignore"):  # a value beyond float32 becomes inf, which preprocess refuses
        joints = joints.astype(np.float32)
    return joints[:, None] if joints.ndim == 3 else joints


@dataclass(frozen=True)
class TrainedInput:
    """How the checkpoint's training adapted the stored clips (its config's ``data.layout`` / ``data.num_person``
    / ``data.center``; :func:`mmcl.engine.data.build_adapter`)."""

    center: bool = False
    drops_persons: bool = False  # data.num_person was set: training kept the first persons and dropped the others


@functools.lru_cache(maxsize=8)
def trained_input(config_yaml: str) -> TrainedInput:
    """The :class:`TrainedInput` of a checkpoint's stored config, read as data (no training code imported)."""
    try:
        config = yaml.safe_load(config_yaml) or {}
    except yaml.YAMLError as e:
        raise CheckpointError(f"the checkpoint's stored config is not YAML: {' '.join(str(e).split())}") from None
    data = config.get("data") if isinstance(config, dict) else None
    data = data if isinstance(data, dict) else {}
    center = data.get("center", False)
    if not isinstance(center, bool):
        raise CheckpointError(f"the checkpoint's config has data.center {center!r}; expected true or false")
    return TrainedInput(center=center, drops_persons=bool(data.get("num_person")))


def preprocess(joints: np.ndarray, info: CheckpointInfo, source: str | os.PathLike = "clip",
               layout: str | None = None) -> np.ndarray:
    """A clip (T, M, V, C) in ``layout`` (default: the checkpoint's) as the model input (C, window, V, M) float32 of
    the checkpoint ``info``: the one preprocessing of ``mmcl predict`` and ``mmcl show``, for checkpoints and ONNX
    models alike (see the module's docstring); errors name ``source``."""
    layout = layout or info.layout
    try:
        v = get_layout(layout).num_joints
    except KeyError as e:
        raise DataError(f"{source}: {e.args[0]}") from None
    m, c = info.num_person, skeleton_channels(info.stream, info.in_channels)
    if joints.ndim != 4 or joints.shape[2] != v or joints.shape[3] != c or joints.shape[0] == 0:
        hint = "" if layout != info.layout else " (a file in another layout: name it with --layout)"
        raise DataError(f"{source}: array of shape {joints.shape}; the checkpoint needs (T>0, M<={m}, {v}, {c}) in "
                        f"layout {layout!r}{hint}")
    reason = unusable_reason(joints)
    if reason is not None:
        raise DataError(f"{source}: {reason}")
    trained = trained_input(info.config_yaml)
    if joints.shape[1] > m and not trained.drops_persons:
        raise DataError(f"{source}: {joints.shape[1]} persons; the checkpoint takes at most {m}")
    try:
        adapter = ClipAdapter(layout, info.layout, m, center=trained.center)
    except KeyError as e:
        raise DataError(f"{source}: {e.args[0]}") from None
    joints = adapter(joints)
    transform = stream_transform(info.stream, info.window, get_layout(info.layout))
    return transform(joints.transpose(3, 0, 2, 1), joints.shape[0])


class Predictor:
    """A deployable model behind one call: clips (N, C, window, V, M) float32 -> logits (N, classes) float32.

    ``load(checkpoint=...)`` runs the PyTorch model, ``load(model=...)`` an ONNX export with onnxruntime; ``info``
    is the checkpoint's metadata either way (the ONNX file carries it).
    """

    def __init__(self, run: Callable[[np.ndarray], np.ndarray], info: CheckpointInfo, source: Path):
        self.run, self.info, self.source = run, info, source

    @classmethod
    def load(cls, checkpoint: str | os.PathLike | None = None, model: str | os.PathLike | None = None,
             threads: int | None = None) -> Predictor:
        if (checkpoint is None) == (model is None):
            raise ValueError("give a checkpoint (.safetensors) or an ONNX model (.onnx), not both")
        if model is not None:
            from mmcl.deploy.runtime import OnnxModel

            onnx_model = OnnxModel(model, threads)
            return cls(onnx_model, onnx_model.info, Path(model))
        net, info = load_checkpoint(checkpoint)

        @torch.no_grad()
        def run(batch: np.ndarray) -> np.ndarray:
            return net(torch.from_numpy(batch)).float().numpy()

        return cls(run, info, Path(checkpoint))

    def __call__(self, clips: np.ndarray) -> np.ndarray:
        return self.run(np.ascontiguousarray(clips, dtype=np.float32))


def top_classes(logits: np.ndarray, class_names: Sequence[str], k: int = 5) -> list[tuple[str, float]]:
    """The ``k`` most probable (class name, softmax probability) pairs of one row of logits, most probable first."""
    probs = torch.softmax(torch.from_numpy(np.asarray(logits)).double(), dim=0)
    top = torch.topk(probs, min(k, len(class_names)))
    return [(class_names[i], float(p)) for p, i in zip(top.values, top.indices)]


@torch.no_grad()
def predict_logits(model: torch.nn.Module, info: CheckpointInfo, paths: Sequence[str | os.PathLike]) -> np.ndarray:
    """The PyTorch model's logits (N, classes) for skeleton files (:func:`read_joints`, :func:`preprocess`), one
    batch."""
    device = next(model.parameters()).device
    batch = np.stack([preprocess(read_joints(p), info, p) for p in paths])
    return model.eval()(torch.from_numpy(batch).to(device)).float().cpu().numpy()


@dataclass
class Sample:
    """One input of a batch prediction: its name, where it comes from, how to read it (joints in ``layout``; None:
    the checkpoint's), its true label if known."""

    name: str
    source: str
    read: Callable[[], np.ndarray]
    label: str | None = None
    layout: str | None = None


def file_samples(inputs: Iterable[str | os.PathLike], list_file: str | os.PathLike | None = None,
                 layout: str | None = None) -> list[Sample]:
    """Samples of skeleton files, directories (their ``.skeleton`` / ``.npy`` files, recursively, sorted) and the
    paths listed one a line in ``list_file`` (relative to its directory). A missing path becomes a sample whose read
    fails, so it is recorded like any other bad file."""
    paths: list[Path] = []
    for entry in inputs:
        entry = Path(entry)
        if entry.is_dir():
            found = sorted(p for p in entry.rglob("*") if p.suffix in SUFFIXES and p.is_file())
            if not found:
                raise DataError(f"{entry}: no .skeleton or .npy file in this directory")
            paths += found
        else:
            paths.append(entry)
    if list_file is not None:
        list_file = Path(list_file)
        try:
            lines = list_file.read_text().splitlines()
        except UnicodeDecodeError:
            raise DataError(f"{list_file}: not a text file of paths, one a line") from None
        for line in lines:
            if line.strip() and not line.lstrip().startswith("#"):
                path = Path(line.strip())
                paths.append(path if path.is_absolute() else list_file.parent / path)
    return [Sample(p.stem, str(p), lambda p=p: read_joints(p), layout=layout) for p in paths]


def prepared_samples(root: str | os.PathLike, split: str) -> list[Sample]:
    """The samples of one split of a prepared dataset, with their true labels."""
    from mmcl.data.prepared import PreparedData

    data = PreparedData(root)
    return [Sample(data.names[i], f"{data.root}:{split}", lambda i=int(i): data.joints(i),
                   data.class_names[int(data.labels[i])], data.info.layout) for i in data.split(split)]


def predict_samples(predictor: Predictor, samples: Sequence[Sample], batch_size: int = 32, k: int = 5,
                    progress: bool = True) -> list[dict]:
    """One row per sample, in order: ``name``, ``source``, ``label`` (true, or None), ``status`` (``ok`` /
    ``failed``), ``reason`` (why it failed) and ``top`` ([(class, probability)] * k). Samples are read and
    preprocessed one by one (a bad one is recorded and skipped) and run in batches."""
    from tqdm import tqdm

    rows: list[dict] = []
    pending: list[tuple[dict, np.ndarray]] = []

    def flush() -> None:
        logits = predictor(np.stack([clip for _, clip in pending]))
        for (row, _), row_logits in zip(pending, logits):
            row["top"] = top_classes(row_logits, predictor.info.class_names, k)
        pending.clear()

    for sample in tqdm(samples, desc=f"predicting ({predictor.source.name})", unit="sample", disable=not progress):
        row = {"name": sample.name, "source": sample.source, "label": sample.label, "status": "ok", "reason": "",
               "top": []}
        rows.append(row)
        try:
            pending.append((row, preprocess(sample.read(), predictor.info, sample.source, sample.layout)))
        except (MmclError, OSError, ValueError) as e:
            row["status"], row["reason"] = "failed", f"{type(e).__name__}: {' '.join(str(e).split())}"
            continue
        if len(pending) == batch_size:
            flush()
    if pending:
        flush()
    return rows


def write_rows(path: str | os.PathLike, rows: Sequence[dict], k: int, source: Path) -> Path:
    """Write prediction rows as CSV (one line per sample, columns ``top{i}_label`` / ``top{i}_score``) or JSON,
    atomically."""
    path = Path(path)
    if path.suffix not in OUT_SUFFIXES:
        raise DataError(f"{path}: write predictions to a .csv or a .json file")
    if path.suffix == ".json":
        return write_json(path, {"model": str(source), "samples": len(rows),
                                 "failed": sum(r["status"] == "failed" for r in rows),
                                 "rows": [{**r, "top": [{"label": c, "score": p} for c, p in r["top"]]}
                                          for r in rows]})
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["name", "source", "label", "status", "reason"]
                    + [f"top{i}_{field}" for i in range(1, k + 1) for field in ("label", "score")])
    for r in rows:
        top = [x for c, p in r["top"] for x in (c, f"{p:.6f}")]
        writer.writerow([r["name"], r["source"], r["label"] or "", r["status"], r["reason"]]
                        + top + [""] * (2 * k - len(top)))
    return atomic_write_text(path, buffer.getvalue())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--checkpoint", type=Path, help="deployable checkpoint (.safetensors)")
    model.add_argument("--model", type=Path, help="ONNX model written by `mmcl export` (run by onnxruntime)")
    parser.add_argument("inputs", nargs="*", type=Path, help=".skeleton / .npy files and directories of them")
    parser.add_argument("--list", type=Path, default=None, help="text file listing skeleton files, one a line")
    parser.add_argument("--layout", default=None,
                        help="layout of the files when not the checkpoint's (mapped by joint name, as data.layout)")
    parser.add_argument("--data", type=Path, default=None, help="prepared dataset: predict the samples of --split")
    parser.add_argument("--split", default="test", help="split of --data")
    parser.add_argument("--out", type=Path, default=None, help="write one row per sample to this .csv or .json")
    parser.add_argument("--topk", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime threads (default: all cores)")


def run(args: argparse.Namespace) -> int:
    if args.out is not None and args.out.suffix not in OUT_SUFFIXES:
        raise DataError(f"--out {args.out}: write predictions to a .csv or a .json file")
    if args.topk < 1 or args.batch_size < 1:
        raise DataError(f"--topk and --batch-size must be at least 1, got {args.topk} and {args.batch_size}")
    samples = file_samples(args.inputs, args.list, args.layout)
    if args.data is not None:
        samples += prepared_samples(args.data, args.split)
    if not samples:
        raise DataError("nothing to predict: give skeleton files, directories, --list FILE or --data DIR")
    if args.out is None and len(samples) > 1:
        raise DataError(f"{len(samples)} samples; write their rows with --out FILE.csv or FILE.json")
    predictor = Predictor.load(args.checkpoint, args.model, args.threads)
    if args.out is None:  # one sample, printed; an error is the command's error
        sample = samples[0]
        clip = preprocess(sample.read(), predictor.info, sample.source, sample.layout)
        for rank, (name, prob) in enumerate(top_classes(predictor(clip[None])[0], predictor.info.class_names,
                                                        args.topk), 1):
            print(f"{rank}. {name:<40} {100 * prob:6.2f}%")
        return 0
    rows = predict_samples(predictor, samples, args.batch_size, args.topk)
    write_rows(args.out, rows, args.topk, predictor.source)
    failed = [r for r in rows if r["status"] == "failed"]
    for r in failed:
        print(f"failed: {r['source']}: {r['reason']}")
    print(f"{len(rows) - len(failed)} of {len(rows)} samples predicted ({len(failed)} failed) -> {args.out}")
    return 0 if len(failed) < len(rows) else 1
