"""Bringing datasets into the prepared format (:mod:`mmcl.data.prepared`).

Two kinds of input:

- **Raw datasets, one file per sample** (NW-UCLA, UTD-MHAD, SYSU-Action): each reader lists its files as
  :class:`RawSample` records and hands them with its per-file read function to :func:`import_samples`, which writes
  them resumably, lists samples without frames in ``skipped.json`` and builds the splits.
- **Datasets already converted by other projects**: CTR-GCN's ``.npz`` (:func:`import_ctrgcn_npz`) and pyskl /
  mmaction2 annotation pickles (:func:`import_pyskl`).

Validation splits are carved from the training split, deterministically (the reference code picks its best epoch on
the test set; mmcl picks it on ``val``):

- **by subject** for the one-file-per-sample readers (:func:`carve_val_by_subject`): the highest-numbered
  ``round(10%)`` of the training subjects, at least one and never all, become ``val``;
- **by NTU subject** for imported NTU-60/120 data whose sample names are NTU names (a pyskl pickle, or a CTR-GCN
  ``.npz`` with a names file): the validation subjects of ``mmcl prepare ntu``
  (:func:`mmcl.data.ntu.validation_subjects`), so every route to NTU gives the same ``val`` (:func:`carve_val`);
- **at random** otherwise, in particular for a CTR-GCN ``.npz`` alone, which holds no subject information: a
  fixed-seed (seed 0) sample of 5% of the training samples (:func:`carve_val_random`). This is *not* by subject: the
  same performers appear in ``train`` and ``val``, so validation accuracy reads higher than test accuracy.
"""

from __future__ import annotations

import os
import pickle
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
from tqdm import tqdm

from mmcl.data.layouts import get_layout
from mmcl.data.ntu_classes import NTU60_CLASSES, NTU120_CLASSES
from mmcl.data.prepared import PreparedInfo, PreparedWriter, check_sample_name, unusable_reason
from mmcl.data.transforms import valid_frame_count
from mmcl.errors import DataError

VAL_SUBJECT_FRACTION = 0.1
VAL_RANDOM_FRACTION = 0.05
VAL_RANDOM_SEED = 0
LAYOUT_BY_JOINTS = {25: "ntu25", 20: "kinect_v1_20"}


def carve_val_by_subject(train: Sequence[int], subjects: Sequence[int],
                         fraction: float = VAL_SUBJECT_FRACTION) -> tuple[list[int], list[int]]:
    """Split training indices into (train, val): val holds the highest-numbered ``round(fraction * n)`` (at least one)
    of the n training subjects. ``subjects[i]`` is sample i's subject."""
    train_subjects = sorted({int(subjects[i]) for i in train})
    if len(train_subjects) < 2:
        raise DataError(f"cannot carve a validation split by subject from {len(train_subjects)} training subject(s)")
    n_val = min(max(1, round(fraction * len(train_subjects))), len(train_subjects) - 1)
    val_subjects = set(train_subjects[-n_val:])
    return ([int(i) for i in train if subjects[i] not in val_subjects],
            [int(i) for i in train if subjects[i] in val_subjects])


def carve_val_random(train: Sequence[int], fraction: float = VAL_RANDOM_FRACTION,
                     seed: int = VAL_RANDOM_SEED) -> tuple[list[int], list[int]]:
    """Split training indices into (train, val) with a fixed-seed random sample of ``fraction`` of them as val."""
    train = np.asarray(train, dtype=np.int64)
    n_val = max(1, round(fraction * len(train)))
    if n_val >= len(train):
        raise DataError(f"cannot carve a validation split from {len(train)} training sample(s)")
    val = np.zeros(len(train), dtype=bool)
    val[np.random.default_rng(seed).choice(len(train), size=n_val, replace=False)] = True
    return train[~val].tolist(), train[val].tolist()


def carve_val(names: Sequence[str], train: Sequence[int], num_classes: int) -> tuple[list[int], list[int], str]:
    """(train, val, rule) for imported data: NTU-60/120 samples with NTU names get the validation subjects of
    ``mmcl prepare ntu`` (:func:`mmcl.data.ntu.validation_subjects`); anything else a fixed-seed 5% of train."""
    dataset = {60: "ntu60", 120: "ntu120"}.get(num_classes)
    if dataset is not None:
        from mmcl.data.ntu import parse_name, validation_subjects

        try:
            performers = [parse_name(n).performer for n in names]
        except ValueError:
            performers = None
        if performers is not None:
            subjects = set(validation_subjects(names, dataset))
            return ([i for i in train if performers[i] not in subjects],
                    [i for i in train if performers[i] in subjects],
                    f"the training samples of {dataset} validation subjects {sorted(subjects)}")
    kept, val = carve_val_random(train)
    return kept, val, f"fixed-seed ({VAL_RANDOM_SEED}) {VAL_RANDOM_FRACTION:.0%} of train, not by subject"


@dataclass(frozen=True)
class RawSample:
    """One raw file of a one-file-per-sample dataset.

    Attributes:
        name: sample name (unique).
        label: 0-based class.
        subject: performer id, used to carve ``val``.
        test: whether the dataset's standard protocol puts it in ``test`` (otherwise ``train``).
        path: the file.
    """

    name: str
    label: int
    subject: int
    test: bool
    path: Path


def import_samples(out: str | os.PathLike, info: PreparedInfo, samples: Sequence[RawSample],
                   read: Callable[[Path], np.ndarray], split_protocol: str, overwrite: bool = False,
                   progress: bool = True) -> Path:
    """Write one-person samples read by ``read(path) -> (T, V, C)`` into a prepared dataset at ``out``.

    Samples with no frames are skipped (``skipped.json``); splits are the samples' standard train/test with ``val``
    carved by subject from train. A killed run resumes where it stopped.
    """
    if info.num_person != 1:
        raise DataError(f"import_samples writes one-person samples, got num_person={info.num_person}")
    by_name: dict[str, RawSample] = {}
    for s in samples:
        if s.name in by_name:
            raise DataError(f"sample {s.name!r} appears twice: {by_name[s.name].path} and {s.path}")
        if not 0 <= s.label < info.num_classes:
            raise DataError(f"sample {s.name!r} ({s.path}): label {s.label} outside 0..{info.num_classes - 1}")
        by_name[s.name] = s
    with PreparedWriter(out, info, overwrite=overwrite) as writer:
        for s in tqdm(samples, desc=f"prepare {info.dataset}", unit="sample", disable=not progress):
            if writer.done(s.name):
                continue
            joints = read(s.path)
            reason = unusable_reason(joints)
            if reason is not None:
                writer.skip(s.name, f"{reason} in {s.path}")
                continue
            writer.add(s.name, s.label, joints[:, None])
        unknown = [n for n in writer.names if n not in by_name]
        if unknown:
            raise DataError(f"{writer.partial} holds samples no longer in the raw data (e.g. {unknown[0]!r}); "
                             "delete it and prepare again")
        written = [by_name[n] for n in writer.names]
        subjects = [s.subject for s in written]
        train, val = carve_val_by_subject([i for i, s in enumerate(written) if not s.test], subjects)
        test = [i for i, s in enumerate(written) if s.test]
        val_subjects = sorted({subjects[i] for i in val})
        return writer.finalize({"train": train, "val": val, "test": test},
                               f"{split_protocol}; val = the training samples of subjects {val_subjects} (the "
                               f"highest-numbered {VAL_SUBJECT_FRACTION:.0%} of training subjects, at least one)")


def _one_hot_labels(y: np.ndarray, path: Path, key: str) -> np.ndarray:
    if y.ndim != 2:
        raise DataError(f"{path}: {key} has shape {y.shape}, expected (N, num_classes) one-hot")
    counts = (y > 0).sum(1)
    bad = np.flatnonzero(counts != 1)
    if bad.size:
        raise DataError(f"{path}: {key} row {bad[0]} is not one-hot ({counts[bad[0]]} positive entries)")
    return (y > 0).argmax(1)


def _npz_rows(zf: zipfile.ZipFile, path: Path, key: str, chunk: int = 256) -> Iterator[tuple[int, np.ndarray]]:
    """Stream the rows of array ``key`` of an .npz, ``chunk`` at a time, without loading the whole array."""
    with zf.open(f"{key}.npy") as f:
        shape, fortran, dtype = _npy_header(f)
        if fortran or len(shape) != 3:
            raise DataError(
                f"{path}: {key} has shape {shape} (fortran order: {fortran}), expected C-order (N, T, 150)")
        row_items = shape[1] * shape[2]
        for start in range(0, shape[0], chunk):
            n = min(chunk, shape[0] - start)
            buf = f.read(n * row_items * dtype.itemsize)
            if len(buf) != n * row_items * dtype.itemsize:
                raise DataError(f"{path}: {key} is truncated at row {start}")
            yield start, np.frombuffer(buf, dtype=dtype).reshape(n, shape[1], shape[2]).astype(np.float32)


def _npy_header(f) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) of the .npy stream ``f``, leaving ``f`` at the start of the data."""
    version = np.lib.format.read_magic(f)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    return read_header(f)


def _npz_shape(zf: zipfile.ZipFile, key: str) -> tuple[int, ...]:
    with zf.open(f"{key}.npy") as f:
        return _npy_header(f)[0]


def ntu_class_names(num_classes: int, source: str) -> list[str]:
    """NTU-60 or NTU-120 class names for 60 or 120 classes; any other count needs explicit names."""
    names = {60: NTU60_CLASSES, 120: NTU120_CLASSES}.get(num_classes)
    if names is None:
        raise DataError(f"{source}: {num_classes} classes is neither NTU-60 nor NTU-120; pass the class names")
    return list(names)


def import_ctrgcn_npz(path: str | os.PathLike, out: str | os.PathLike, class_names: Sequence[str] | None = None,
                      names_file: str | os.PathLike | None = None, benchmark: str | None = None,
                      overwrite: bool = False, progress: bool = True) -> Path:
    """Import CTR-GCN's prepared ``.npz`` (``x_train`` (N, 300, 150) float32 with each frame ordered M, V, C;
    one-hot ``y_train``; ``x_test``; ``y_test``) into a prepared dataset at ``out``.

    A sample keeps its first ``valid`` frames, ``valid`` being the number of frames with a non-zero sum, exactly the
    frames the reference feeder crops from; a sample with no such frame is skipped. Names are ``train_000000`` /
    ``test_000000`` unless ``names_file`` lists them (one per line, the training samples then the test samples).
    Class names default to NTU-60's / NTU-120's for 60 / 120 classes. ``val`` is a fixed-seed 5% of the training
    samples, not by subject (the file holds no subject information), unless the names file gives NTU names
    (:func:`carve_val`). The arrays are streamed, never loaded whole.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CTR-GCN .npz not found: {path}")
    try:
        return _import_ctrgcn_npz(path, out, class_names, names_file, benchmark, overwrite, progress)
    except (zipfile.BadZipFile, EOFError, zlib.error, KeyError) as e:
        raise DataError(f"{path}: not a readable .npz ({type(e).__name__}: {e})") from None
    except ValueError as e:
        if isinstance(e, DataError):
            raise
        raise DataError(f"{path}: not a readable .npz ({e})") from None


def _import_ctrgcn_npz(path: Path, out: str | os.PathLike, class_names: Sequence[str] | None,
                       names_file: str | os.PathLike | None, benchmark: str | None, overwrite: bool,
                       progress: bool) -> Path:
    with np.load(path, allow_pickle=False) as z:
        missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in z.files]
        if missing:
            raise DataError(f"{path}: missing arrays {missing}; it holds {z.files}")
        y = {part: z[f"y_{part}"] for part in ("train", "test")}
    labels = {part: _one_hot_labels(y[part], path, f"y_{part}") for part in ("train", "test")}
    num_classes = y["train"].shape[1]
    if y["test"].shape[1] != num_classes:
        raise DataError(f"{path}: y_train has {num_classes} classes but y_test {y['test'].shape[1]}")
    m, v, c = 2, 25, 3
    with zipfile.ZipFile(path) as zf:
        for part in ("train", "test"):
            shape = _npz_shape(zf, f"x_{part}")
            if len(shape) != 3 or shape[2] != m * v * c or shape[0] != len(labels[part]):
                raise DataError(f"{path}: x_{part} has shape {shape}, expected ({len(labels[part])}, T, {m * v * c})")
    if names_file is None:
        names = {part: [f"{part}_{i:06d}" for i in range(len(labels[part]))] for part in ("train", "test")}
    else:
        lines = Path(names_file).read_text().splitlines()
        n_train, n_test = len(labels["train"]), len(labels["test"])
        if len(lines) != n_train + n_test:
            raise DataError(f"{names_file}: {len(lines)} names, expected {n_train} training + {n_test} test")
        if len(set(lines)) != len(lines):
            raise DataError(f"{names_file}: sample names are not unique")
        for k, line in enumerate(lines):
            check_sample_name(line, f"{names_file}:{k + 1}")
        names = {"train": lines[:n_train], "test": lines[n_train:]}
    names_list = list(class_names) if class_names is not None else ntu_class_names(num_classes, str(path))
    if len(names_list) != num_classes:
        raise DataError(f"{path}: {num_classes} classes in y_train but {len(names_list)} class names given")
    info = PreparedInfo(dataset={60: "ntu60", 120: "ntu120"}.get(num_classes, path.stem), layout="ntu25",
                        num_person=m, class_names=names_list, benchmark=benchmark, source=str(path.resolve()))
    part_of = {n: part for part in ("train", "test") for n in names[part]}
    total = len(labels["train"]) + len(labels["test"])
    with PreparedWriter(out, info, overwrite=overwrite) as writer, zipfile.ZipFile(path) as zf, \
            tqdm(total=total, desc=f"import {path.name}", unit="sample", disable=not progress) as bar:
        for part in ("train", "test"):
            for start, rows in _npz_rows(zf, path, f"x_{part}"):
                for j, row in enumerate(rows):
                    name = names[part][start + j]
                    bar.update()
                    if writer.done(name):
                        continue
                    clip = row.reshape(row.shape[0], m, v, c)
                    reason = unusable_reason(clip)
                    if reason is not None:
                        writer.skip(name, reason)
                        continue
                    valid = valid_frame_count(clip.transpose(3, 0, 2, 1))
                    writer.add(name, int(labels[part][start + j]), clip[:valid])
        train = [i for i, n in enumerate(writer.names) if part_of[n] == "train"]
        test = [i for i, n in enumerate(writer.names) if part_of[n] == "test"]
        train, val, rule = carve_val(writer.names, train, num_classes)
        return writer.finalize({"train": train, "val": val, "test": test},
                               f"CTR-GCN npz {path.name}: its train / test; val = {rule}")


# The globals a pyskl / mmaction2 annotation pickle needs: containers and numpy arrays, nothing that runs code.
PICKLE_GLOBALS = frozenset({
    ("builtins", n) for n in ("dict", "list", "tuple", "set", "frozenset", "str", "bytes", "bytearray", "int",
                              "float", "complex", "bool", "slice", "range")
} | {("collections", "OrderedDict"), ("collections", "defaultdict"), ("_codecs", "encode")} | {
    (module, n) for module in ("numpy.core.multiarray", "numpy._core.multiarray") for n in ("_reconstruct", "scalar")
} | {("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"), ("numpy", "ndarray"),
     ("numpy", "dtype")} | {
    ("numpy.dtypes", n) for n in ("Float32DType", "Float64DType", "Float16DType", "Int64DType", "Int32DType",
                                  "Int16DType", "Int8DType", "UInt8DType", "BoolDType", "StrDType", "BytesDType",
                                  "ObjectDType")})


class _AnnotationUnpickler(pickle.Unpickler):
    """An unpickler that builds only :data:`PICKLE_GLOBALS`; any other global (a function, a class that runs code
    when built) fails, naming it."""

    def __init__(self, file, path: Path):
        super().__init__(file)
        self.path = path

    def find_class(self, module: str, name: str):
        if (module, name) not in PICKLE_GLOBALS:
            raise DataError(f"{self.path}: the pickle asks for {module}.{name}, which an annotation file never holds; "
                            "refusing to load it (a crafted pickle runs code when loaded)")
        return super().find_class(module, name)


def load_annotation_pickle(path: str | os.PathLike) -> object:
    """Read a pyskl / mmaction2 annotation pickle with :class:`_AnnotationUnpickler`: only builtin containers,
    numbers, strings and numpy arrays are built, so a crafted file cannot run code. A corrupt file is a
    :class:`DataError` naming it."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return _AnnotationUnpickler(f, path).load()
    except DataError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            UnicodeDecodeError, MemoryError, OverflowError) as e:
        raise DataError(f"{path}: not a readable annotation pickle ({type(e).__name__}: {e})") from None


def import_pyskl(path: str | os.PathLike, out: str | os.PathLike, split_prefix: str = "xsub",
                 layout: str | None = None, num_person: int = 2, pad_2d: bool = False,
                 class_names: Sequence[str] | None = None, dataset: str | None = None,
                 overwrite: bool = False, progress: bool = True) -> Path:
    """Import a pyskl / mmaction2 skeleton annotation pickle into a prepared dataset at ``out``.

    The pickle is ``{'split': {name: [frame_dir, ...]}, 'annotations': [{'frame_dir', 'label', 'total_frames',
    'keypoint' (M, T, V, C), ...}]}``. ``<split_prefix>_train`` becomes ``train`` and ``<split_prefix>_val`` (pyskl's
    name for the test split) becomes ``test``; other annotations are not written. ``val`` is carved as
    :func:`carve_val` says (NTU subjects for NTU-60/120, else a fixed-seed 5% of train).

    - Layout: ``layout`` if given, else by joint count (25: ``ntu25``, 20: ``kinect_v1_20``); others are an error.
    - Persons: the first ``num_person`` are kept (as pyskl's ``FormatGCNInput``), fewer are zero-padded.
    - 2D keypoints (C=2) are stored with ``channels=2``, or with a zero third channel when ``pad_2d`` (for 3-channel
      models; note rotation then mixes the zero depth into x and y). ``keypoint_score`` is not stored.
    - A sample whose keypoints are all zero or that has no frames is skipped.

    The pickle is loaded whole (pickle cannot be streamed), through :func:`load_annotation_pickle`, which builds
    only containers, numbers, strings and numpy arrays: a crafted file cannot run code.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation pickle not found: {path}")
    if num_person < 1:
        raise DataError(f"num_person must be at least 1, got {num_person}")
    data = load_annotation_pickle(path)
    if not isinstance(data, dict) or "split" not in data or "annotations" not in data:
        keys = list(data) if isinstance(data, dict) else type(data).__name__
        raise DataError(f"{path}: expected a dict with 'split' and 'annotations', got {keys}")
    parts = {"train": f"{split_prefix}_train", "test": f"{split_prefix}_val"}
    for key in parts.values():
        if key not in data["split"]:
            raise DataError(f"{path}: no split {key!r}; splits: {', '.join(data['split'])}")
    by_dir: dict[str, dict] = {}
    for k, ann in enumerate(data["annotations"]):
        for field in ("frame_dir", "label", "keypoint"):
            if field not in ann:
                raise DataError(f"{path}: annotation {k} has no {field!r}")
        by_dir[ann["frame_dir"]] = ann
    order = [(name, part) for part, key in parts.items() for name in data["split"][key]]
    part_of = dict(order)
    if len(part_of) != len(order):
        raise DataError(f"{path}: a sample is listed twice in {parts['train']!r} / {parts['test']!r}")
    for name, _ in order:
        if name not in by_dir:
            raise DataError(f"{path}: split lists {name!r} but no annotation has that frame_dir")
    first = np.asarray(by_dir[order[0][0]]["keypoint"])
    if first.ndim != 4:
        raise DataError(f"{path}: {order[0][0]}: keypoint has shape {first.shape}, expected (M, T, V, C)")
    v, c = first.shape[2:]
    layout = layout or LAYOUT_BY_JOINTS.get(v)
    if layout is None:
        raise DataError(f"{path}: {v} joints per person matches no built-in layout "
                         f"({', '.join(f'{n}: {name}' for n, name in LAYOUT_BY_JOINTS.items())}); pass a layout")
    if get_layout(layout).num_joints != v:
        raise DataError(f"{path}: {v} joints per person but layout {layout!r} has {get_layout(layout).num_joints}")
    if c not in (2, 3):
        raise DataError(f"{path}: keypoints with {c} channels; expected 2 (2D) or 3 (3D)")
    channels = 3 if c == 3 or pad_2d else 2
    if class_names is None:
        class_names = ntu_class_names(1 + max(int(by_dir[n]["label"]) for n, _ in order), str(path))
    for name, _ in order:
        ann = by_dir[name]
        if not 0 <= int(ann["label"]) < len(class_names):
            raise DataError(f"{path}: sample {name!r}: label {ann['label']} outside 0..{len(class_names) - 1}")
        shape = np.shape(ann["keypoint"])
        if len(shape) != 4 or tuple(shape[2:]) != (v, c):
            raise DataError(f"{path}: {name}: keypoint has shape {shape}, expected (M, T, {v}, {c})")
        if "total_frames" in ann and int(ann["total_frames"]) != shape[1]:
            raise DataError(f"{path}: {name}: total_frames {ann['total_frames']} but keypoint has {shape[1]} frames")
    dataset = dataset or {60: "ntu60", 120: "ntu120"}.get(len(class_names), path.stem)
    info = PreparedInfo(dataset=dataset, layout=layout, num_person=num_person, class_names=list(class_names),
                        benchmark=split_prefix, channels=channels, source=str(path.resolve()))
    with PreparedWriter(out, info, overwrite=overwrite) as writer:
        for name, _ in tqdm(order, desc=f"import {path.name}", unit="sample", disable=not progress):
            if writer.done(name):
                continue
            ann = by_dir[name]
            kp = np.asarray(ann["keypoint"], dtype=np.float32)
            reason = unusable_reason(kp.transpose(1, 0, 2, 3))
            if reason is not None:
                writer.skip(name, reason)
                continue
            joints = np.zeros((kp.shape[1], num_person, v, channels), dtype=np.float32)
            kept = kp[:num_person].transpose(1, 0, 2, 3)
            joints[:, :kept.shape[1], :, :c] = kept
            writer.add(name, int(ann["label"]), joints)
        train = [i for i, n in enumerate(writer.names) if part_of[n] == "train"]
        test = [i for i, n in enumerate(writer.names) if part_of[n] == "test"]
        train, val, rule = carve_val(writer.names, train, len(class_names))
        return writer.finalize({"train": train, "val": val, "test": test},
                               f"pyskl {parts['train']} -> train, {parts['test']} -> test; val = {rule}")
