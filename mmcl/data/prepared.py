"""The prepared-dataset format: every reader in :mod:`mmcl.data` writes it, every consumer reads it.

A prepared dataset is a directory::

    meta.json      PreparedInfo: dataset, layout, persons, class names, split sizes, counts; written last
    names.txt      one sample name per line
    labels.npy     (N,) int64, 0-based
    offsets.npy    (N + 1,) int64: sample i holds frames offsets[i]:offsets[i + 1]
    joints.f32     raw little-endian float32, shape (F, M, V, C): all samples' frames, concatenated
    color.f32      optional, (F, M, V, 2): colour-image pixel coordinates of each joint (NTU colorX/colorY)
    frames.i32     optional, (F,) int32: each stored frame's index in the original recording (video)
    splits.json    {"train": [...], "val": [...], "test": [...]}: sample indices; val is carved from training
    skipped.json   [{"name", "reason"}]: samples that were not written (no body, unreadable, ...)

Frames are stored ragged (no padding), so a sample is read with one ``pread`` of its own bytes: iterating the whole of
NTU-120 keeps the process's memory flat. ``joints_memmap()`` gives the whole array as a read-only ``np.memmap`` for
users who want it.

:class:`PreparedWriter` writes into ``<out>.partial/`` with an append-only journal, so a killed run resumes where it
stopped, and moves the directory into place only when it is complete.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from mmcl.data.layouts import LAYOUTS, Layout, get_layout
from mmcl.errors import DataError, MmclError
from mmcl.io import atomic_write_text, replace_dir

FORMAT_VERSION = 1
SPLIT_NAMES = ("train", "val", "test")


class PreparedDataError(MmclError, RuntimeError):
    """A prepared dataset is missing, incomplete or inconsistent."""


@dataclass
class PreparedInfo:
    """Contents of ``meta.json``."""

    dataset: str
    layout: str
    num_person: int
    class_names: list[str]
    benchmark: str | None = None
    channels: int = 3
    has_color: bool = False
    has_frames: bool = False
    source: str = ""
    split_protocol: str = ""
    num_samples: int = 0
    num_frames: int = 0
    split_sizes: dict[str, int] = field(default_factory=dict)
    num_skipped: int = 0
    format_version: int = FORMAT_VERSION

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def frame_shape(self) -> tuple[int, int, int]:
        """(M, V, C) of one stored frame."""
        return (self.num_person, get_layout(self.layout).num_joints, self.channels)


class PreparedWriter:
    """Append samples to a prepared dataset, atomically and resumably.

    Use as::

        with PreparedWriter(out, info) as w:
            for name, label, joints in samples:
                if not w.done(name):
                    w.add(name, label, joints)
            w.finalize(splits)

    If the process dies before :meth:`finalize`, ``<out>.partial`` keeps what was written; a new writer on the same
    ``out`` continues from there (``resume=True``). ``<out>`` itself appears only once complete. An error raised
    inside the ``with`` block before any sample was handled removes ``<out>.partial`` again.
    """

    def __init__(self, out: str | os.PathLike, info: PreparedInfo, overwrite: bool = False, resume: bool = True):
        self.out = Path(out)
        self.info = info
        self.partial = self.out.with_name(self.out.name + ".partial")
        self._frame_shape = info.frame_shape()
        if (self.out / "meta.json").exists() and not overwrite:
            raise FileExistsError(f"prepared dataset already exists: {self.out} (pass overwrite to replace it)")
        self.names: list[str] = []
        self.labels: list[int] = []
        self.lengths: list[int] = []
        self.skipped: list[dict[str, str]] = []
        if self.partial.exists() and resume:
            self._load_journal()
        else:
            if self.partial.exists():
                shutil.rmtree(self.partial)
            self.partial.mkdir(parents=True)
            (self.partial / "info.json").write_text(json.dumps(asdict(info)))
        self._done = set(self.names) | {s["name"] for s in self.skipped}
        self._joints = open(self.partial / "joints.f32", "ab")
        self._color = open(self.partial / "color.f32", "ab") if info.has_color else None
        self._frames = open(self.partial / "frames.i32", "ab") if info.has_frames else None
        self._journal = open(self.partial / "journal.jsonl", "a")

    def _load_journal(self) -> None:
        stored = json.loads((self.partial / "info.json").read_text())
        if stored != asdict(self.info):
            raise PreparedDataError(
                f"{self.partial} was started with other settings ({stored}); delete it or pass resume=False")
        journal = self.partial / "journal.jsonl"
        lines = journal.read_text().splitlines() if journal.exists() else []
        good = []
        for line in lines:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                break  # a line cut by a kill: everything after it is discarded
            good.append(line)
            if "skipped" in row:
                self.skipped.append({"name": row["name"], "reason": row["skipped"]})
            else:
                self.names.append(row["name"])
                self.labels.append(row["label"])
                self.lengths.append(row["frames"])
        atomic_write_text(journal, "".join(line + "\n" for line in good))
        frames = sum(self.lengths)
        m, v, c = self._frame_shape
        self._truncate("joints.f32", frames * m * v * c * 4)
        if self.info.has_color:
            self._truncate("color.f32", frames * m * v * 2 * 4)
        if self.info.has_frames:
            self._truncate("frames.i32", frames * 4)

    def _truncate(self, filename: str, size: int) -> None:
        path = self.partial / filename
        if not path.exists():
            path.touch()
        if path.stat().st_size < size:
            raise PreparedDataError(f"{path} is shorter than its journal says; delete {self.partial} and start again")
        os.truncate(path, size)

    def __enter__(self) -> "PreparedWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()
        if exc_type is not None and not self._done and self.partial.exists():
            shutil.rmtree(self.partial)  # failed before the first sample: nothing to resume, leave nothing behind

    def close(self) -> None:
        for f in (self._joints, self._color, self._frames, self._journal):
            if f is not None and not f.closed:
                f.close()

    def done(self, name: str) -> bool:
        """Whether ``name`` was already written or skipped (by this run or the one it resumes)."""
        return name in self._done

    def add(self, name: str, label: int, joints: np.ndarray, color: np.ndarray | None = None,
            frames: np.ndarray | None = None) -> None:
        """Append one sample: ``joints`` (T, M, V, C); ``color`` (T, M, V, 2); ``frames`` (T,) video frame indices."""
        if name in self._done:
            raise PreparedDataError(f"sample {name!r} was already written to {self.partial}")
        check_sample_name(name)
        if not 0 <= int(label) < self.info.num_classes:
            raise ValueError(f"sample {name!r}: label {label} outside 0..{self.info.num_classes - 1}")
        joints = np.ascontiguousarray(joints, dtype="<f4")
        if joints.ndim != 4 or joints.shape[1:] != self._frame_shape or joints.shape[0] == 0:
            raise ValueError(
                f"sample {name!r}: joints of shape {joints.shape}, expected (T>0, {', '.join(map(str, self._frame_shape))})")
        reason = unusable_reason(joints)
        if reason is not None:
            raise DataError(f"sample {name!r}: {reason}; skip it instead (PreparedWriter.skip)")
        t = joints.shape[0]
        if self._color is not None:
            if color is None or color.shape != (t, *self._frame_shape[:2], 2):
                raise ValueError(f"sample {name!r}: color of shape {None if color is None else color.shape}, "
                                 f"expected {(t, *self._frame_shape[:2], 2)}")
            self._color.write(np.ascontiguousarray(color, dtype="<f4").tobytes())
        if self._frames is not None:
            if frames is None or np.shape(frames) != (t,):
                raise ValueError(f"sample {name!r}: frames of shape {np.shape(frames)}, expected ({t},)")
            self._frames.write(np.ascontiguousarray(frames, dtype="<i4").tobytes())
        self._joints.write(joints.tobytes())
        for f in (self._joints, self._color, self._frames):
            if f is not None:
                f.flush()
        self._journal.write(json.dumps({"name": name, "label": int(label), "frames": t}) + "\n")
        self._journal.flush()
        self.names.append(name)
        self.labels.append(int(label))
        self.lengths.append(t)
        self._done.add(name)

    def skip(self, name: str, reason: str) -> None:
        """Record a sample that is not written (it appears in ``skipped.json`` with its reason)."""
        if name in self._done:
            raise PreparedDataError(f"sample {name!r} was already handled in {self.partial}")
        self._journal.write(json.dumps({"name": name, "skipped": reason}) + "\n")
        self._journal.flush()
        self.skipped.append({"name": name, "reason": reason})
        self._done.add(name)

    def finalize(self, splits: Mapping[str, Sequence[int]], split_protocol: str = "") -> Path:
        """Write the index files and move the dataset into place. ``splits`` maps split name -> sample indices."""
        n = len(self.names)
        if n == 0:
            raise PreparedDataError(f"no sample was written to {self.out}; skipped: {len(self.skipped)}")
        check_splits(splits, n, where=str(self.out))
        self.close()
        p = self.partial
        (p / "names.txt").write_text("".join(name + "\n" for name in self.names))
        np.save(p / "labels.npy", np.asarray(self.labels, dtype=np.int64))
        np.save(p / "offsets.npy", np.concatenate([[0], np.cumsum(self.lengths, dtype=np.int64)]))
        (p / "splits.json").write_text(json.dumps({k: [int(i) for i in v] for k, v in splits.items()}))
        (p / "skipped.json").write_text(json.dumps(self.skipped, indent=1))
        self.info.num_samples = n
        self.info.num_frames = int(sum(self.lengths))
        self.info.split_sizes = {k: len(v) for k, v in splits.items()}
        self.info.num_skipped = len(self.skipped)
        self.info.split_protocol = split_protocol or self.info.split_protocol
        for f in ("journal.jsonl", "info.json"):
            (p / f).unlink()
        for f in p.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        atomic_write_text(p / "meta.json", json.dumps(asdict(self.info), indent=1))
        return replace_dir(p, self.out)


# A sample name becomes part of file names (its video, its cache rows): one path component, no hidden or parent names.
SAMPLE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+=,-]*")


def check_sample_name(name: str, where: str = "") -> str:
    """``name`` if it is a valid sample name, else a :class:`DataError` naming it (and ``where`` it came from)."""
    if not isinstance(name, str) or not SAMPLE_NAME.fullmatch(name) or ".." in name or len(name) > 255:
        raise DataError(f"{where + ': ' if where else ''}invalid sample name {name!r}: a name is one file-name "
                        "component of letters, digits and _ . + = , - (not starting with a dot, no '..', no path "
                        "separator)")
    return name


def unusable_reason(joints: np.ndarray) -> str | None:
    """Why a sample's joints (T, ...) cannot be trained on, or None: no frames, non-finite values, all zero.

    Every reader skips such a sample and records this reason in ``skipped.json``.
    """
    if len(joints) == 0:
        return "no frames"
    finite = np.isfinite(joints)
    if not finite.all():
        frame = int(np.flatnonzero(~finite.reshape(len(joints), -1).all(1))[0])
        return f"non-finite values (NaN or inf) in frame {frame}"
    if not np.any(joints):
        return "all joints are zero"
    return None


def check_splits(splits: Mapping[str, Sequence[int]], num_samples: int, where: str = "") -> None:
    """Splits must be named train/val/test, index valid samples and be pairwise disjoint."""
    seen: dict[int, str] = {}
    for split, idx in splits.items():
        if split not in SPLIT_NAMES:
            raise PreparedDataError(f"{where}: unknown split {split!r}; expected {SPLIT_NAMES}")
        for i in idx:
            if not 0 <= int(i) < num_samples:
                raise PreparedDataError(f"{where}: split {split!r} has index {i} outside 0..{num_samples - 1}")
            if int(i) in seen:
                raise PreparedDataError(f"{where}: sample {i} is in both {seen[int(i)]!r} and {split!r}")
            seen[int(i)] = split


class PreparedData:
    """Read access to a prepared dataset; per-sample reads, never the whole array in memory."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        meta = self.root / "meta.json"
        if not self.root.is_dir():
            raise PreparedDataError(f"prepared dataset not found: {self.root}")
        if not meta.exists():
            partial = " (an unfinished prepare left it; run prepare again to resume)" if self.root.name.endswith(
                ".partial") else ""
            raise PreparedDataError(f"{self.root} is not a complete prepared dataset: no meta.json{partial}")
        raw = self._file("meta.json", lambda f: json.loads(f.read_text()))
        if not isinstance(raw, dict) or raw.get("format_version") != FORMAT_VERSION:
            found = raw.get("format_version") if isinstance(raw, dict) else type(raw).__name__
            raise PreparedDataError(f"{meta}: format version {found}, expected {FORMAT_VERSION}")
        self.info = self._file("meta.json", lambda f: PreparedInfo(**raw))
        i = self.info
        if not (i.layout in LAYOUTS and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in (
                i.num_person, i.channels, i.num_samples, i.num_frames)) and isinstance(i.class_names, list)
                and i.class_names and all(isinstance(c, str) for c in i.class_names)):
            raise PreparedDataError(f"{meta}: a field has a wrong type or value (layout {i.layout!r}, persons, "
                                    f"channels, counts, class names); prepare the dataset again")
        self.names: list[str] = self._file("names.txt", lambda f: f.read_text().splitlines())
        for name in self.names:
            check_sample_name(name, str(self.root / "names.txt"))
        self.labels: np.ndarray = self._file("labels.npy", lambda f: np.load(f, allow_pickle=False))
        self.offsets: np.ndarray = self._file("offsets.npy", lambda f: np.load(f, allow_pickle=False))
        splits = self._file("splits.json", lambda f: json.loads(f.read_text()))
        if not isinstance(splits, dict) or not all(isinstance(v, list) for v in splits.values()):
            raise PreparedDataError(f"{self.root / 'splits.json'}: expected {{split: [sample indices]}}")
        if not (len(self.names) == len(self.labels) == len(self.offsets) - 1 == self.info.num_samples):
            raise PreparedDataError(f"{self.root}: names, labels and offsets disagree on the sample count")
        if self.labels.dtype.kind not in "iu" or (len(self.labels) and not (
                0 <= self.labels.min() and self.labels.max() < self.info.num_classes)):
            raise PreparedDataError(f"{self.root / 'labels.npy'}: labels must be integers in "
                                    f"0..{self.info.num_classes - 1}")
        if (self.offsets.dtype.kind not in "iu" or self.offsets[0] != 0 or np.any(np.diff(self.offsets) < 0)
                or self.offsets[-1] != self.info.num_frames):
            raise PreparedDataError(f"{self.root / 'offsets.npy'}: offsets must rise from 0 to the "
                                    f"{self.info.num_frames} frames of meta.json")
        check_splits(splits, len(self.names), str(self.root / "splits.json"))
        self.splits: dict[str, np.ndarray] = {k: np.asarray(v, dtype=np.int64) for k, v in splits.items()}
        m, v, c = self.info.frame_shape()
        for filename, per_frame, wanted in (("joints.f32", m * v * c, True), ("color.f32", m * v * 2,
                                             self.info.has_color), ("frames.i32", 1, self.info.has_frames)):
            path = self.root / filename
            if wanted and (not path.is_file() or path.stat().st_size != self.info.num_frames * per_frame * 4):
                size = f"{path.stat().st_size} bytes" if path.is_file() else "missing"
                raise PreparedDataError(f"{path}: {size}, expected {self.info.num_frames * per_frame * 4} "
                                        f"({self.info.num_frames} frames); the dataset is truncated or damaged, "
                                        f"prepare it again")
        self._fds: dict[str, int] = {}
        self._pid = os.getpid()
        self._index: dict[str, int] | None = None

    def _file(self, name: str, read):
        """``read(path)`` of one of the dataset's files; a missing or unreadable one is named."""
        path = self.root / name
        try:
            return read(path)
        except FileNotFoundError:
            raise PreparedDataError(f"{path} is missing; prepare the dataset again") from None
        except (OSError, ValueError, TypeError, KeyError, EOFError, ZeroDivisionError) as e:
            raise PreparedDataError(f"{path} is corrupt ({type(e).__name__}: {' '.join(str(e).split())[:200]}); "
                                    f"prepare the dataset again") from None

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={v}" for k, v in self.info.split_sizes.items())
        return f"PreparedData({self.root}, {self.info.dataset}, {len(self)} samples, {sizes})"

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_fds"] = {}
        return state

    def __del__(self) -> None:
        if getattr(self, "_pid", None) == os.getpid():
            for fd in getattr(self, "_fds", {}).values():
                os.close(fd)

    @property
    def layout(self) -> Layout:
        return get_layout(self.info.layout)

    @property
    def class_names(self) -> list[str]:
        return list(self.info.class_names)

    @property
    def num_classes(self) -> int:
        return self.info.num_classes

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def split(self, name: str) -> np.ndarray:
        """Sample indices of a split; an unknown or empty split is an error naming this dataset."""
        if name not in self.splits:
            raise PreparedDataError(f"{self.root} has no split {name!r}; splits: {', '.join(self.splits)}")
        if len(self.splits[name]) == 0:
            raise PreparedDataError(f"split {name!r} of {self.root} is empty")
        return self.splits[name]

    def index_of(self, name: str) -> int:
        if self._index is None:
            self._index = {n: i for i, n in enumerate(self.names)}
        if name not in self._index:
            raise KeyError(f"no sample {name!r} in {self.root}")
        return self._index[name]

    def _read(self, filename: str, i: int, per_frame: tuple[int, ...], dtype: str) -> np.ndarray:
        if os.getpid() != self._pid:  # forked (DataLoader worker): file descriptors are not shared
            self._fds, self._pid = {}, os.getpid()
        if filename not in self._fds:
            self._fds[filename] = os.open(self.root / filename, os.O_RDONLY)
        start, stop = int(self.offsets[i]), int(self.offsets[i + 1])
        frame_bytes = int(np.prod(per_frame)) * 4
        buf = os.pread(self._fds[filename], (stop - start) * frame_bytes, start * frame_bytes)
        if len(buf) != (stop - start) * frame_bytes:
            raise PreparedDataError(f"{self.root / filename} is truncated at sample {self.names[i]!r}")
        return np.frombuffer(buf, dtype=dtype).reshape(stop - start, *per_frame).copy()

    def joints(self, i: int) -> np.ndarray:
        """Sample ``i``'s joints, (T, M, V, C) float32."""
        return self._read("joints.f32", i, self.info.frame_shape(), "<f4")

    def color(self, i: int) -> np.ndarray:
        """Sample ``i``'s colour pixel coordinates, (T, M, V, 2) float32."""
        if not self.info.has_color:
            raise PreparedDataError(f"{self.root} stores no colour coordinates")
        m, v, _ = self.info.frame_shape()
        return self._read("color.f32", i, (m, v, 2), "<f4")

    def frames(self, i: int) -> np.ndarray:
        """Sample ``i``'s original frame indices, (T,) int32."""
        if not self.info.has_frames:
            raise PreparedDataError(f"{self.root} stores no frame indices")
        return self._read("frames.i32", i, (), "<i4")

    def joints_memmap(self) -> np.memmap:
        """All frames as one read-only memory map of shape (F, M, V, C)."""
        return np.memmap(self.root / "joints.f32", dtype="<f4", mode="r",
                         shape=(self.info.num_frames, *self.info.frame_shape()))

    def skipped(self) -> list[dict[str, str]]:
        return json.loads((self.root / "skipped.json").read_text())


def write_prepared(out: str | os.PathLike, info: PreparedInfo,
                   samples: Iterable[tuple[str, int, np.ndarray]],
                   splits: Mapping[str, Sequence[int]], overwrite: bool = False) -> Path:
    """Write a small prepared dataset in one call from (name, label, joints) triples."""
    with PreparedWriter(out, info, overwrite=overwrite, resume=False) as w:
        for name, label, joints in samples:
            w.add(name, label, joints)
        return w.finalize(splits)
