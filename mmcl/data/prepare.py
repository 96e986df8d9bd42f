"""``mmcl prepare``: convert a raw dataset into mmcl's prepared format (:mod:`mmcl.data.prepared`).

::

    mmcl prepare {ntu,synthetic,nwucla,utd-mhad,sysu,npz,pyskl} --raw PATH --out DIR
                 [--benchmark xsub|xview|xset] [--overwrite] [--workers N]
    mmcl prepare longtail --from PREPARED --out DIR (--list FILE | --imbalance R --n-max N) [--seed S]
                 [--val-per-class K]

``--raw`` is the raw dataset: the ``.skeleton`` folder (ntu), the synthetic dataset's root or its ``skeletons`` folder
(synthetic; class names come from ``classes.json`` beside the skeleton files or in their parent), the folder of sample
files (nwucla, utd-mhad, sysu), or the file itself (npz: CTR-GCN's ``.npz``; pyskl: an annotation pickle).
Options that apply to some datasets only are refused for the others. ``longtail`` reads no raw data: it writes the
long-tailed version of an already prepared dataset (:mod:`mmcl.data.longtail`), whose training split is a published
list (BRL's NTU-LT lists, gzipped or not) or a profile drawn by seed.

Every dataset is written into ``<out>.partial`` and moved to ``<out>`` when complete; running the same command again
after a kill resumes where it stopped. The command ends with a summary: samples, split sizes, skipped, time.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Callable

from mmcl.data.layouts import LAYOUTS
from mmcl.data.longtail import read_longtail
from mmcl.data.prepared import PreparedData
from mmcl.errors import MmclError

DATASETS = ("ntu", "synthetic", "nwucla", "utd-mhad", "sysu", "npz", "pyskl", "longtail")
# Options that only some datasets take: option -> datasets.
SPECIFIC_OPTIONS = {
    "benchmark": ("ntu", "synthetic", "npz"),
    "name": ("utd-mhad", "sysu"),
    "workers": ("ntu", "synthetic"),
    "ntu_dataset": ("ntu",),
    "names": ("npz",),
    "class_names": ("npz", "pyskl"),
    "split_prefix": ("pyskl",),
    "layout": ("pyskl",),
    "persons": ("pyskl",),
    "pad_2d": ("pyskl",),
    "raw": tuple(d for d in DATASETS if d != "longtail"),
    "source": ("longtail",),
    "list": ("longtail",),
    "imbalance": ("longtail",),
    "n_max": ("longtail",),
    "seed": ("longtail",),
    "val_per_class": ("longtail",),
}
FLAGS = {"source": "--from"}  # options whose flag is not their name


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", choices=DATASETS, help="which reader to use")
    parser.add_argument("--raw", type=Path,
                        help="the raw dataset: .skeleton folder (ntu); root or skeletons/ folder (synthetic); folder "
                             "of sample files (nwucla, utd-mhad, sysu); CTR-GCN .npz file (npz); annotation pickle "
                             "(pyskl)")
    parser.add_argument("--out", type=Path, required=True, help="prepared dataset directory to create")
    parser.add_argument("--benchmark", choices=("xsub", "xview", "xset"),
                        help="ntu / synthetic: split protocol (default xsub); npz: recorded in meta.json")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing prepared dataset at --out")
    parser.add_argument("--name", help="utd-mhad, sysu: the dataset's name in its metadata, which keys its teacher "
                                       "caches (e.g. synthetic_utd for the synthetic UTD-style set)")
    parser.add_argument("--workers", type=int, help="ntu / synthetic: parallel file readers (default 2)")
    parser.add_argument("--ntu-dataset", choices=("auto", "ntu60", "ntu120"),
                        help="ntu: NTU-60 or NTU-120 (default auto: from the setups present)")
    parser.add_argument("--names", type=Path, help="npz: sample names, one per line, training then test samples")
    parser.add_argument("--class-names", type=Path,
                        help="npz / pyskl: class names, one per line (default: NTU-60/120 names by class count)")
    parser.add_argument("--split-prefix", help="pyskl: use splits <prefix>_train / <prefix>_val (default xsub)")
    parser.add_argument("--layout", choices=sorted(LAYOUTS), help="pyskl: joint layout (default: by joint count)")
    parser.add_argument("--persons", type=int, help="pyskl: persons kept per frame (default 2)")
    parser.add_argument("--pad-2d", action="store_true", help="pyskl: store 2D keypoints with a zero third channel")
    parser.add_argument("--from", dest="source", type=Path, help="longtail: the full prepared dataset")
    parser.add_argument("--list", type=Path,
                        help="longtail: training list, one sample name per line, gzipped or not (e.g. "
                             "../shared/longtail/NTU60_xsub_exp_100.txt.gz)")
    parser.add_argument("--imbalance", type=float,
                        help="longtail without a list: imbalance factor r (class c keeps int(n_max * (1/r) ** "
                             "(c / (C - 1))) training samples)")
    parser.add_argument("--n-max", type=int, help="longtail without a list: training samples of class 0")
    parser.add_argument("--seed", type=int, help="longtail: seed of the drawn training and validation samples "
                                                 "(default 0)")
    parser.add_argument("--val-per-class", type=int,
                        help="longtail: validation samples per class, from the training samples the long-tailed "
                             "split leaves out (default 20)")


def synthetic_inputs(raw: Path) -> tuple[Path, list[str]]:
    """(skeleton folder, class names) of a synthetic dataset given its root or its ``skeletons`` folder."""
    skeletons = raw / "skeletons" if (raw / "skeletons").is_dir() else raw
    if not skeletons.is_dir():
        raise FileNotFoundError(f"synthetic dataset not found: {raw}")
    candidates = (skeletons / "classes.json", skeletons.parent / "classes.json")
    classes = next((c for c in candidates if c.is_file()), None)
    if classes is None:
        raise FileNotFoundError(f"no classes.json in {candidates[0].parent} or {candidates[1].parent}")
    try:
        entries = json.loads(classes.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{classes}: not valid JSON: {e}") from None
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{classes}: expected a non-empty list of class names or of objects with a 'name' key")
    names = []
    for k, entry in enumerate(entries):
        name = entry.get("name") if isinstance(entry, dict) else entry
        if not isinstance(name, str) or not name:
            raise ValueError(f"{classes}: entry {k} has no class name (a string or an object with a 'name' key)")
        names.append(name)
    return skeletons, names


def _class_names(path: Path | None) -> list[str] | None:
    if path is None:
        return None
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not names:
        raise ValueError(f"{path}: no class names")
    return names


def _ntu(args: argparse.Namespace) -> Path:
    from mmcl.data.ntu import prepare_ntu

    return prepare_ntu(args.raw, args.out, benchmark=args.benchmark or "xsub", dataset=args.ntu_dataset or "auto",
                       workers=args.workers or 2, overwrite=args.overwrite)


def prepare_synthetic(raw: str | os.PathLike, out: str | os.PathLike, benchmark: str = "xsub", workers: int = 2,
                      overwrite: bool = False, progress: bool = True) -> Path:
    """Prepare the built-in synthetic set (its root or ``skeletons`` folder) with the NTU reader and its own classes."""
    from mmcl.data.ntu import prepare_ntu

    skeletons, class_names = synthetic_inputs(Path(raw))
    return prepare_ntu(skeletons, out, benchmark=benchmark, class_names=class_names, workers=workers,
                       overwrite=overwrite, progress=progress, dataset_name="synthetic")


def _synthetic(args: argparse.Namespace) -> Path:
    return prepare_synthetic(args.raw, args.out, benchmark=args.benchmark or "xsub", workers=args.workers or 2,
                             overwrite=args.overwrite)


def _nwucla(args: argparse.Namespace) -> Path:
    from mmcl.data.nwucla import prepare_nwucla

    return prepare_nwucla(args.raw, args.out, overwrite=args.overwrite)


def _utd_mhad(args: argparse.Namespace) -> Path:
    from mmcl.data.utd_mhad import prepare_utd_mhad

    return prepare_utd_mhad(args.raw, args.out, overwrite=args.overwrite, dataset_name=args.name or "utd_mhad")


def _sysu(args: argparse.Namespace) -> Path:
    from mmcl.data.sysu import prepare_sysu

    return prepare_sysu(args.raw, args.out, overwrite=args.overwrite, dataset_name=args.name or "sysu")


def _npz(args: argparse.Namespace) -> Path:
    from mmcl.data.importers import import_ctrgcn_npz

    return import_ctrgcn_npz(args.raw, args.out, class_names=_class_names(args.class_names), names_file=args.names,
                             benchmark=args.benchmark, overwrite=args.overwrite)


def _pyskl(args: argparse.Namespace) -> Path:
    from mmcl.data.importers import import_pyskl

    return import_pyskl(args.raw, args.out, split_prefix=args.split_prefix or "xsub", layout=args.layout,
                        num_person=2 if args.persons is None else args.persons, pad_2d=args.pad_2d,
                        class_names=_class_names(args.class_names), overwrite=args.overwrite)


def _longtail(args: argparse.Namespace) -> Path:
    from mmcl.data.longtail import build_longtail

    if args.source is None:
        raise MmclError("longtail needs --from, the full prepared dataset")
    if (args.imbalance is None) != (args.n_max is None):
        raise MmclError("--imbalance and --n-max go together")
    if (args.list is None) == (args.imbalance is None):
        raise MmclError("longtail needs either --list FILE or --imbalance R with --n-max N")
    return build_longtail(args.source, args.out, list_path=args.list, imbalance=args.imbalance, n_max=args.n_max,
                          seed=args.seed or 0, val_per_class=20 if args.val_per_class is None else args.val_per_class,
                          overwrite=args.overwrite)


PREPARERS: dict[str, Callable[[argparse.Namespace], Path]] = {
    "ntu": _ntu, "synthetic": _synthetic, "nwucla": _nwucla, "utd-mhad": _utd_mhad, "sysu": _sysu, "npz": _npz,
    "pyskl": _pyskl, "longtail": _longtail,
}


def summary(data: PreparedData, seconds: float) -> str:
    """A few lines describing a prepared dataset and how long preparing it took."""
    info = data.info
    sizes = ", ".join(f"{k} {v}" for k, v in info.split_sizes.items())
    lines = [
        f"prepared {info.dataset} -> {data.root}",
        f"  layout {info.layout}, {info.num_person} person(s), {info.channels} channels, {info.num_classes} classes",
        f"  samples {info.num_samples} ({sizes}), frames {info.num_frames}, skipped {info.num_skipped}",
    ]
    if info.split_protocol:
        lines.append(f"  splits: {info.split_protocol}")
    longtail = read_longtail(data.root)
    if longtail is not None:
        counts = longtail["train_class_counts"]
        lines.append(f"  long-tailed: training samples per class from {max(counts)} down to {min(counts)} (ratio "
                     f"{longtail['imbalance_ratio']:.1f}); sample files: {longtail['storage']}")
    lines.append(f"  time {seconds:.1f} s")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Prepare the dataset and print the summary (errors reach the command line's one-line report)."""
    wrong = [FLAGS.get(opt, f"--{opt.replace('_', '-')}") for opt, datasets in SPECIFIC_OPTIONS.items()
             if getattr(args, opt) not in (None, False) and args.dataset not in datasets]
    if wrong:
        raise MmclError(f"{', '.join(wrong)} does not apply to {args.dataset}")
    if args.raw is None and args.dataset != "longtail":
        raise MmclError(f"{args.dataset} needs --raw")
    if args.workers is not None and args.workers < 1:
        raise MmclError(f"--workers must be at least 1, got {args.workers}")
    start = time.perf_counter()
    out = PREPARERS[args.dataset](args)
    print(summary(PreparedData(out), time.perf_counter() - start))
    return 0
