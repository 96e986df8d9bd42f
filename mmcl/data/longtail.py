"""Long-tailed splits: NTU 60-LT / 120-LT from BRL's published lists, or an exponential profile drawn by seed.

BRL (Liu et al., 2023; public code firework8/BRL) subsamples a benchmark's training split so that class ``c``
(0-based, in label order) keeps :func:`class_counts` samples, ``int(n_max * (1 / r) ** (c / (C - 1)))``, with
``n_max = 600`` (400 for NTU-120 X-Set) and imbalance factor ``r`` in {10, 50, 100}; the test split stays balanced.
Its training lists are in ``../shared/longtail/`` (``NTU<60|120>_<benchmark>_exp_<r>.txt.gz``).

:func:`build_longtail` writes a long-tailed prepared dataset (:mod:`mmcl.data.prepared`) from a source prepared
dataset (the full benchmark):

- **train**: exactly the listed samples (a published list), or ``class_counts(C, n_max, r)`` samples per class drawn
  by seed from the source's training samples (its train and val splits) for data without a list;
- **val**: ``val_per_class`` samples of every class drawn by seed from the source's training samples that the
  training split leaves out: balanced, never trained on, so model selection and ensemble weights never see the test
  split (BRL's release validates on the test split);
- **test**: the source's test split, unchanged.

Every listed sample must be among the source's training samples; a build fails naming each one the source lacks (with
the reason the source skipped it, when it did) or holds in its test split. The samples are the source's own: the sample
files (names, labels, offsets, joints and the optional colour / frame files) are hard links to the source's (copies on
a filesystem without hard links), so a long-tailed set costs no disk space and keeps the source's sample names, which
also key teacher caches. Besides the usual files it holds ``longtail.json``: how it was made and the per-class
training counts.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from mmcl.data.prepared import PreparedData, PreparedInfo, check_splits
from mmcl.errors import DataError
from mmcl.io import atomic_write_text, replace_dir, write_json

LONGTAIL_FILE = "longtail.json"
# The sample files a long-tailed set shares with its source (the optional ones when the source has them).
SAMPLE_FILES = ("names.txt", "labels.npy", "offsets.npy", "joints.f32", "skipped.json")
OPTIONAL_SAMPLE_FILES = ("color.f32", "frames.i32")


class LongtailError(DataError):
    """A long-tailed split cannot be built as asked (missing samples, too few samples for a class, bad settings)."""


@dataclass
class LongtailConfig:
    """How a training run's long-tailed dataset is made, and how its accuracy is grouped by training count.

    ``list`` (a published training list) or ``imbalance`` with ``n_max`` (a draw by ``seed``) makes the run
    long-tailed; ``source`` is the full prepared dataset (empty with the synthetic dataset: the generated set).
    ``many_above`` / ``few_below``: classes with more than ``many_above`` training samples are many-shot, fewer than
    ``few_below`` few-shot, the rest medium-shot (NTU-LT: 100 and 20).
    """

    source: str = ""
    list: str = ""
    imbalance: float = 0.0
    n_max: int = 0
    seed: int = 0
    val_per_class: int = 20
    many_above: int = 100
    few_below: int = 20

    @property
    def enabled(self) -> bool:
        return bool(self.list) or self.imbalance > 0

    def validate(self, prefix: str = "longtail") -> None:
        from mmcl.config import check

        check(not (self.list and self.imbalance), f"{prefix}.imbalance", self.imbalance,
              f"0 when {prefix}.list is set (a list or a drawn profile, not both)")
        check(self.imbalance == 0 or self.imbalance >= 1, f"{prefix}.imbalance", self.imbalance, "0 (off) or >= 1")
        check(self.imbalance == 0 or self.n_max >= 1, f"{prefix}.n_max", self.n_max,
              f"at least 1 with {prefix}.imbalance")
        check(self.val_per_class >= 1, f"{prefix}.val_per_class", self.val_per_class, "at least 1")
        check(self.few_below <= self.many_above + 1, f"{prefix}.few_below", self.few_below,
              f"at most {prefix}.many_above + 1")


def class_counts(num_classes: int, n_max: int, imbalance: float) -> list[int]:
    """BRL's exponential profile: ``int(n_max * (1 / imbalance) ** (c / (num_classes - 1)))`` for c = 0 … C-1."""
    if num_classes < 1:
        raise LongtailError(f"num_classes must be at least 1, got {num_classes}")
    if n_max < 1:
        raise LongtailError(f"n_max must be at least 1, got {n_max}")
    if imbalance < 1:
        raise LongtailError(f"the imbalance factor must be at least 1 (n_max / n_min), got {imbalance}")
    if num_classes == 1:
        return [int(n_max)]
    return [int(n_max * (1 / imbalance) ** (c / (num_classes - 1))) for c in range(num_classes)]


def read_list(path: str | os.PathLike) -> list[str]:
    """Sample names, one per line, from a text file, gzipped or not (told by its content); blank lines are ignored."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"long-tail list not found: {path}")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise LongtailError(f"{path}: not a valid gzip file: {e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise LongtailError(f"{path}: not a text file of sample names: {e}") from None
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise LongtailError(f"{path}: no sample names")
    seen: set[str] = set()
    repeated = sorted({n for n in names if n in seen or seen.add(n)})
    if repeated:
        raise LongtailError(f"{path}: {len(repeated)} sample(s) listed more than once: {', '.join(repeated)}")
    return names


def training_pool(data: PreparedData) -> np.ndarray:
    """Indices of the source's training samples: its train split and the validation split carved from it."""
    if len(data.splits.get("train", ())) == 0:
        raise LongtailError(f"{data.root} has no training split to draw a long-tailed split from")
    return np.sort(np.concatenate([data.splits["train"], data.splits.get("val", np.zeros(0, np.int64))]))


def select_listed(data: PreparedData, names: Sequence[str], where: str = "the list") -> np.ndarray:
    """Indices of ``names`` in ``data``; fails naming every name that is not among its training samples."""
    pool = set(training_pool(data).tolist())
    test = set(data.splits.get("test", np.zeros(0, np.int64)).tolist())
    skipped = {s["name"]: s["reason"] for s in data.skipped()}
    missing, in_test, indices = [], [], []
    for name in names:
        try:
            i = data.index_of(name)
        except KeyError:
            missing.append(f"{name} (skipped when the source was prepared: {skipped[name]})" if name in skipped
                           else name)
            continue
        if i in pool:
            indices.append(i)
        elif i in test:
            in_test.append(name)
        else:
            missing.append(f"{name} (in no split of the source)")
    problems = []
    if missing:
        problems.append(f"{len(missing)} listed sample(s) missing from {data.root}: {', '.join(missing)}")
    if in_test:
        problems.append(f"{len(in_test)} listed sample(s) in the test split of {data.root} (a list of another "
                        f"benchmark?): {', '.join(in_test)}")
    if problems:
        raise LongtailError(f"{where}: " + "; ".join(problems))
    return np.asarray(indices, dtype=np.int64)


def _by_class(data: PreparedData, indices: np.ndarray) -> list[np.ndarray]:
    """``indices`` grouped by class, each group ordered by sample name (so draws do not depend on storage order)."""
    labels = data.labels[indices]
    groups = []
    for c in range(data.num_classes):
        members = indices[labels == c]
        groups.append(np.asarray(sorted(members.tolist(), key=lambda i: data.names[i]), dtype=np.int64))
    return groups


def draw_per_class(data: PreparedData, indices: np.ndarray, counts: Sequence[int], seed: int, stream: int,
                   what: str) -> np.ndarray:
    """``counts[c]`` samples of each class ``c`` drawn from ``indices`` with ``default_rng([seed, stream, c])``;
    fails naming every class that has too few."""
    groups = _by_class(data, indices)
    short = [f"{data.class_names[c]!r} (class {c}): {len(g)} < {counts[c]}" for c, g in enumerate(groups)
             if len(g) < counts[c]]
    if short:
        raise LongtailError(f"{data.root}: too few samples for {what}: " + "; ".join(short))
    chosen = [np.random.default_rng([seed, stream, c]).choice(g, size=counts[c], replace=False)
              for c, g in enumerate(groups)]
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def longtail_splits(data: PreparedData, names: Sequence[str] | None = None, imbalance: float | None = None,
                    n_max: int | None = None, seed: int = 0, val_per_class: int = 20,
                    where: str = "the list") -> dict[str, np.ndarray]:
    """train / val / test indices of the long-tailed version of ``data`` (see the module docstring)."""
    if (names is None) == (imbalance is None):
        raise LongtailError("give either the listed sample names or an imbalance factor (with n_max)")
    if val_per_class < 1:
        raise LongtailError(f"val_per_class must be at least 1, got {val_per_class}")
    pool = training_pool(data)
    if names is not None:
        train = np.sort(select_listed(data, names, where))
    else:
        if n_max is None:
            raise LongtailError("a drawn long-tailed split needs n_max")
        counts = class_counts(data.num_classes, n_max, imbalance)
        train = draw_per_class(data, pool, counts, seed, 0, f"a long-tailed training split (n_max {n_max}, "
                                                              f"imbalance {imbalance:g})")
    left = np.setdiff1d(pool, train)
    val = draw_per_class(data, left, [val_per_class] * data.num_classes, seed, 1,
                         f"{val_per_class} validation samples per class from the training samples left out of "
                         f"the long-tailed split (lower val_per_class)")
    test = np.sort(data.splits.get("test", np.zeros(0, np.int64)))
    if len(test) == 0:
        raise LongtailError(f"{data.root} has no test split")
    return {"train": train, "val": val, "test": test}


def _link_or_copy(src: Path, dst: Path) -> str:
    try:
        os.link(src, dst)
        return "hard links to"
    except OSError:  # another filesystem, or one without hard links
        shutil.copyfile(src, dst)
        return "copies of"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_longtail(source: str | os.PathLike, out: str | os.PathLike, list_path: str | os.PathLike | None = None,
                   imbalance: float | None = None, n_max: int | None = None, seed: int = 0, val_per_class: int = 20,
                   overwrite: bool = False) -> Path:
    """Write the long-tailed version of the prepared dataset ``source`` to ``out``; returns ``out``.

    Give ``list_path`` (a published list: the training split is exactly that list) or ``imbalance`` and ``n_max``
    (the training split drawn by ``seed``). ``out`` appears complete or not at all.
    """
    data = PreparedData(source)
    out = Path(out)
    if (out / "meta.json").exists() and not overwrite:
        raise FileExistsError(f"prepared dataset already exists: {out} (pass overwrite to replace it)")
    if out.resolve() == data.root.resolve():
        raise LongtailError(f"the long-tailed set cannot replace its source {data.root}")
    names = read_list(list_path) if list_path is not None else None
    splits = longtail_splits(data, names, imbalance, n_max, seed, val_per_class,
                             where=str(list_path) if list_path is not None else "")
    check_splits(splits, len(data), where=str(out))
    counts = np.bincount(data.labels[splits["train"]], minlength=data.num_classes)
    if list_path is not None:
        made = {"mode": "list", "list": str(Path(list_path).resolve()), "list_sha256": _sha256(Path(list_path))}
        protocol = f"long-tailed: training split = the {len(names)} samples of {Path(list_path).name}"
    else:
        made = {"mode": "draw", "imbalance": float(imbalance), "n_max": int(n_max), "seed": int(seed)}
        protocol = (f"long-tailed: training split drawn by seed {seed}, class c keeps int({n_max} * (1/{imbalance:g})"
                    f" ** (c / {data.num_classes - 1}))")
    protocol += (f"; validation: {val_per_class} per class drawn by seed {seed} from the source's training samples "
                 f"left out; test: the source's test split; source: {data.info.split_protocol}")

    partial = out.with_name(out.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    files = list(SAMPLE_FILES) + [f for f in OPTIONAL_SAMPLE_FILES if (data.root / f).exists()]
    storage = {_link_or_copy(data.root / f, partial / f) for f in files}
    info = PreparedInfo(**{**asdict(data.info), "source": str(data.root.resolve()), "split_protocol": protocol,
                           "split_sizes": {k: int(len(v)) for k, v in splits.items()}})
    atomic_write_text(partial / "splits.json", json.dumps({k: v.tolist() for k, v in splits.items()}))
    write_json(partial / LONGTAIL_FILE, {
        "source": str(data.root.resolve()), **made, "val_per_class": int(val_per_class),
        "train_class_counts": counts.tolist(), "imbalance_ratio": float(counts.max() / max(counts.min(), 1)),
        "storage": " and ".join(sorted(storage)) + " of the source's sample files"})
    atomic_write_text(partial / "meta.json", json.dumps(asdict(info), indent=1))
    return replace_dir(partial, out)


def read_longtail(root: str | os.PathLike) -> dict | None:
    """``longtail.json`` of a prepared dataset, or None when it is not a long-tailed set."""
    path = Path(root) / LONGTAIL_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def train_class_counts(data: PreparedData) -> np.ndarray:
    """Training samples per class of a prepared dataset, (C,) int64."""
    return np.bincount(data.labels[data.split("train")], minlength=data.num_classes).astype(np.int64)


def default_root(source: str | os.PathLike, cfg: LongtailConfig) -> Path:
    """Where a training run keeps the long-tailed version of ``source`` when ``data.root`` does not say:
    ``<source>-lt-<list name>`` or ``<source>-lt-r<r>-n<n_max>-seed<seed>``, with ``-val<k>``, beside the source."""
    source = Path(source)
    tag = (Path(cfg.list).name.split(".")[0] if cfg.list
           else f"r{cfg.imbalance:g}-n{cfg.n_max}-seed{cfg.seed}")
    return source.with_name(f"{source.name}-lt-{tag}-val{cfg.val_per_class}")


def longtail_built(cfg: LongtailConfig, source: str | os.PathLike, out: str | os.PathLike) -> bool:
    """Whether the long-tailed set ``cfg`` asks for is at ``out``; one made from other settings is an error."""
    out = Path(out)
    if not (out / "meta.json").exists():
        return False
    made = read_longtail(out)
    if made is None:
        raise LongtailError(f"{out} is not a long-tailed dataset (no {LONGTAIL_FILE}); set data.root to another "
                            f"directory or turn data.longtail off")
    wanted = {"source": str(Path(source).resolve()), "val_per_class": cfg.val_per_class}
    if cfg.list:
        wanted.update(mode="list", list_sha256=_sha256(Path(cfg.list)))
    else:
        wanted.update(mode="draw", imbalance=float(cfg.imbalance), n_max=cfg.n_max, seed=cfg.seed)
    differ = {k: (made.get(k), v) for k, v in wanted.items() if made.get(k) != v}
    if differ:
        details = ", ".join(f"{k}: {a!r} there, {b!r} asked" for k, (a, b) in differ.items())
        raise LongtailError(f"{out} was built with other settings ({details}); delete it or set data.root")
    return True


def ensure_longtail(cfg: LongtailConfig, source: str | os.PathLike, out: str | os.PathLike) -> Path:
    """The long-tailed set ``cfg`` asks for at ``out``, built from ``source`` when it is not there yet."""
    if not longtail_built(cfg, source, out):
        print(f"building the long-tailed split of {source} into {out}")
        build_longtail(source, out, list_path=cfg.list or None, imbalance=cfg.imbalance or None,
                       n_max=cfg.n_max or None, seed=cfg.seed, val_per_class=cfg.val_per_class)
    return Path(out)
