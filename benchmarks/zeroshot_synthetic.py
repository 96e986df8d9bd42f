"""Zero-shot figures on the synthetic UTD-style set: the README's counterpart of MMCL's UTD-MHAD table.

::

    python benchmarks/zeroshot_synthetic.py --raw cache/synthetic/raw-seed0 \\
        --runs runs/synthetic_ctrgcn_joint runs/synthetic_mmcl_joint [--out benchmarks/results/zeroshot_synthetic]

``--raw`` is the raw synthetic set (``mmcl synth``; its ``utd/`` folder is the UTD-style set: Kinect v1 joints, 8
classes, six of them mapped to source classes by ``configs/zeroshot/synthetic_utd.yaml``); ``--runs`` are synthetic
training runs (``mmcl train --config configs/synthetic/...``), each evaluated from its ``best.safetensors``.

1. The UTD-style set is prepared into ``<out>/utd-prepared`` (classes from ``utd/classes.json``).
2. For every co-learning run, the target clips' teacher features are precomputed with the run's own teacher config
   (person crop off: the UTD-style set has no colour-pixel joints) into ``<out>/teachers``; runs with the same teacher
   share the cache, and a finished cache is reused.
3. ``mmcl zeroshot`` on every clip: mapped (all runs); mapped w/ refine when the run trained FRM in refine mode;
   open-vocabulary when it trained the text-space projection. Outputs per run in ``<out>/<run name>/``.

The figures are printed as a markdown table and as JSON, and written to ``<out>/summary.md`` / ``summary.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from mmcl.config import from_yaml
from mmcl.data.prepared import PreparedData
from mmcl.data.utd_mhad import prepare_utd_mhad
from mmcl.io import atomic_write_text, write_json
from mmcl.models.checkpoint import read_checkpoint_info
from mmcl.paths import configs_dir
from mmcl.zeroshot import zeroshot
from mmcl.zeroshot.heads import heads_path
from mmcl.zeroshot.report import ROWS
from mmcl.zeroshot.teacher import source_teacher_config

MAPPING = configs_dir() / "zeroshot" / "synthetic_utd.yaml"


def prepared_utd(raw: Path, out: Path) -> PreparedData:
    """The UTD-style set of ``raw`` prepared into ``out/utd-prepared`` (reused when already there)."""
    path = out / "utd-prepared"
    if not (path / "meta.json").is_file():
        prepare_utd_mhad(raw / "utd", path, dataset_name="synthetic_utd")
    data = PreparedData(path)
    if Path(data.info.source) != (raw / "utd").resolve():
        raise ValueError(f"{path} was prepared from {data.info.source}, not {raw / 'utd'}; choose another --out")
    return data


def target_cache(run_config, data: PreparedData, raw: Path, out: Path) -> Path:
    """The UTD-style clips' teacher features, made with the run's teacher (person crop off)."""
    from teachers.precompute import precompute

    config = source_teacher_config(run_config, ["video.crop.enabled=false"])
    return precompute(config, data, raw / "utd", root=out / "teachers", descriptions_path=raw / "utd" / "classes.json")


def evaluate_run(run: Path, data: PreparedData, raw: Path, out: Path, batch_size: int) -> dict:
    """``mmcl zeroshot`` on one run: plain, and refined / open-vocabulary where the run has the heads."""
    checkpoint = run / "best.safetensors"
    cfg = from_yaml(read_checkpoint_info(checkpoint).config_yaml)
    refine = cfg.colearn.frm.enabled and cfg.colearn.frm.mode == "refine"
    openvocab = cfg.colearn.openvocab.enabled
    if (refine or openvocab) and not heads_path(checkpoint).is_file():
        raise FileNotFoundError(f"{run} trained co-learning heads but has no {heads_path(checkpoint).name}")
    cache = target_cache(cfg, data, raw, out) if refine or openvocab else None
    return zeroshot(checkpoint, "utd-mhad", data.root, mapping=MAPPING, out=out / run.name, refine=refine,
                    openvocab=openvocab, teacher_cache=cache, batch_size=batch_size)


def markdown(rows: list[dict]) -> str:
    lines = ["| run | protocol | clips | classes | top-1 (%) | top-5 (%) |", "|---|---|---:|---:|---:|---:|"]
    lines += [f"| {r['run']} | {r['protocol']} | {r['clips']} | {r['classes']} | {100 * r['top1']:.2f} | "
              f"{100 * r['top5']:.2f} |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", type=Path, required=True, help="the raw synthetic set (holding utd/)")
    parser.add_argument("--runs", type=Path, nargs="+", required=True, help="synthetic training run directories")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/zeroshot_synthetic"))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if not (args.raw / "utd" / "classes.json").is_file():
        print(f"error: {args.raw} holds no UTD-style set (utd/classes.json); write it with `mmcl synth`",
              file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    data = prepared_utd(args.raw, args.out)
    rows = []
    for run in args.runs:
        metrics = evaluate_run(run, data, args.raw, args.out, args.batch_size)
        rows += [{"run": run.name, "protocol": label, "clips": metrics[key]["num_clips"],
                  "classes": metrics[key]["num_classes"], "top1": metrics[key]["top1"], "top5": metrics[key]["top5"]}
                 for key, label in ROWS.items() if key in metrics]
    summary = {"raw": str(args.raw), "prepared": str(data.root), "mapping": str(MAPPING),
               "runs": [str(r) for r in args.runs], "rows": rows, "wall_s": round(time.perf_counter() - start, 1)}
    table = markdown(rows)
    write_json(args.out / "summary.json", summary)
    atomic_write_text(args.out / "summary.md", table + "\n")
    print(table)
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
