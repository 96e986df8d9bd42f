"""``mmcl synth``: write the built-in synthetic dataset (NTU-style raw files and videos, plus a UTD-MHAD-style set)."""

from __future__ import annotations

import argparse
import time
from dataclasses import fields, replace

from mmcl.data.synthetic.dataset import SynthConfig, generate


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = SynthConfig()
    parser.add_argument("--out", required=True, help="output directory (created; written atomically)")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="random seed (default %(default)s)")
    parser.add_argument("--subjects", type=int, default=defaults.subjects, help="performers (default %(default)s)")
    parser.add_argument("--cameras", type=int, default=defaults.cameras, help="cameras (default %(default)s)")
    parser.add_argument("--replications", type=int, default=defaults.replications,
                        help="replications per performer and class (default %(default)s)")
    parser.add_argument("--classes", type=int, default=defaults.classes,
                        help="use the first N source classes (default %(default)s, all)")
    parser.add_argument("--utd-subjects", type=int, default=defaults.utd_subjects,
                        help="subjects of the UTD-style set (default %(default)s)")
    parser.add_argument("--utd-trials", type=int, default=defaults.utd_trials,
                        help="trials per UTD-style subject and class (default %(default)s)")
    parser.add_argument("--no-utd", action="store_true", help="skip the UTD-MHAD-style set")
    parser.add_argument("--no-video", action="store_true", help="write skeletons only (much faster)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default %(default)s)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing dataset made with other settings")


def config_from_args(args: argparse.Namespace) -> SynthConfig:
    """The :class:`SynthConfig` the command line asks for."""
    names = {f.name for f in fields(SynthConfig)}
    given = {k: v for k, v in vars(args).items() if k in names}
    return replace(SynthConfig(), **given, video=not args.no_video, utd=not args.no_utd)


def run(args: argparse.Namespace) -> int:
    try:
        cfg = config_from_args(args)
    except ValueError as e:
        raise SystemExit(f"mmcl synth: {e}") from None
    start = time.perf_counter()
    try:
        out = generate(args.out, cfg, workers=args.workers, overwrite=args.overwrite)
    except FileExistsError as e:
        raise SystemExit(f"mmcl synth: {e}") from None
    print(f"synthetic dataset in {out} ({time.perf_counter() - start:.1f} s)")
    return 0
