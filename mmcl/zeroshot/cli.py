"""``mmcl zeroshot``: a frozen source checkpoint evaluated on UTD-MHAD or SYSU-Action.

::

    mmcl zeroshot --checkpoint runs/ntu120_xsub_mmcl_joint/best.safetensors --dataset utd-mhad --data DIR
                  [--mapping configs/zeroshot/utd_mhad_ntu120.yaml] [--out DIR] [--split all|train|val|test]
                  [--refine] [--openvocab] [--teacher-cache DIR] [--heads FILE] [--openvocab-text name|description]
                  [--batch-size N] [--workers N] [--device cpu|cuda]

``--data`` is a prepared dataset or the raw one (prepared into ``<out>/prepared``). Without ``--mapping`` the
published UTD-MHAD -> NTU-120 mapping or mmcl's SYSU -> NTU-120 mapping is used. ``--refine`` and ``--openvocab``
need the source run's heads (``best_heads.safetensors`` beside ``best.safetensors``) and the target clips' teacher
features (:mod:`mmcl.zeroshot.teacher`). Writes ``metrics.json``, ``scores.npz`` and confusion matrices into
``--out`` (default ``<checkpoint dir>/zeroshot-<dataset>``) and prints the top-1 / top-5 table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mmcl.zeroshot.protocol import SPLITS
from mmcl.zeroshot.targets import TARGETS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, type=Path, help="deployable source checkpoint (.safetensors)")
    parser.add_argument("--dataset", required=True, choices=sorted(TARGETS), help="target dataset")
    parser.add_argument("--data", required=True, type=Path,
                        help="prepared target dataset, or the raw one (then prepared into <out>/prepared)")
    parser.add_argument("--mapping", type=Path, default=None,
                        help="label mapping YAML (default: configs/zeroshot/utd_mhad_ntu120.yaml or sysu_ntu120.yaml)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output directory (default: <checkpoint dir>/zeroshot-<dataset>)")
    parser.add_argument("--split", default="all", choices=SPLITS, help="target clips to use (default: all)")
    parser.add_argument("--refine", action="store_true",
                        help="also score with the run's FRM applied to the target clips' teacher text")
    parser.add_argument("--openvocab", action="store_true",
                        help="also score every target class by similarity in the teacher's text space")
    parser.add_argument("--teacher-cache", type=Path, default=None,
                        help="the target's teacher cache (default: the source run's teacher config's cache for the "
                             "target dataset)")
    parser.add_argument("--heads", type=Path, default=None,
                        help="the run's heads file (default: <checkpoint stem>_heads.safetensors)")
    parser.add_argument("--openvocab-text", choices=("name", "description"), default=None,
                        help="target class text to score against (default: what the projection was trained on)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=0, help="data-loader workers")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")


def run(args: argparse.Namespace) -> int:
    """Evaluate; a user error prints one line naming its cause and returns 1."""
    from mmcl.config import ConfigError
    from mmcl.data.prepared import PreparedDataError
    from mmcl.zeroshot.evaluate import zeroshot
    from teachers.cache import CacheError

    try:
        zeroshot(args.checkpoint, args.dataset, args.data, mapping=args.mapping, out=args.out, split=args.split,
                 refine=args.refine, openvocab=args.openvocab, teacher_cache=args.teacher_cache, heads=args.heads,
                 openvocab_text=args.openvocab_text, batch_size=args.batch_size,
                 num_workers=args.workers, device=args.device)
    except (ValueError, KeyError, FileNotFoundError, FileExistsError, PreparedDataError, CacheError,
            ConfigError) as e:
        message = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"mmcl zeroshot: error: {message}", file=sys.stderr)
        return 1
    return 0
