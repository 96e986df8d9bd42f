"""``mmcl ensemble``: weighted fusion of several streams' scores.

The weights are searched on the validation scores alone (a grid over the simplex); only then are they applied to
the test scores, which are read after the search::

    mmcl ensemble runs/ntu60_xsub_joint runs/ntu60_xsub_bone runs/ntu60_xsub_joint_motion runs/ntu60_xsub_bone_motion

Each argument is a run directory holding ``val_scores.npz`` and ``test_scores.npz`` (written at the end of training
or by ``mmcl eval``). Runs trained on a long-tailed split (their ``metrics.json`` has ``longtail``) also get many /
medium / few-shot top-1, per stream and fused, and the fusion's ``per_class_accuracy.png``; BRL's six streams::

    mmcl ensemble runs/lt/joint runs/lt/bone runs/lt/skip runs/lt/joint_motion runs/lt/bone_motion runs/lt/skip_motion

``--compare-weights`` reports a published set of fixed weights beside the searched ones (e.g. PSUMNet's part
streams, NTU-60 X-Sub: ``--compare-weights 2 1.8 0.7``); the searched weights stay the chosen ones.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path
from typing import Sequence

import numpy as np

from mmcl.engine.metrics import (SHOT_GROUPS, Scores, classification_report, format_longtail, load_scores,
                                 longtail_report, save_scores, topk_accuracy)
from mmcl.errors import ConfigError, DataError
from mmcl.io import write_json


def simplex_grid(num_streams: int, step: float) -> np.ndarray:
    """All weight vectors with entries in multiples of ``step`` that sum to 1, (K, num_streams)."""
    n = round(1 / step) if 0 < step <= 1 else 0
    if n < 1 or abs(n * step - 1) > 1e-9:
        raise ConfigError(f"--step {step}: the grid step must divide 1 (0.1, 0.05, ...)")
    rows = [c for c in itertools.product(range(n + 1), repeat=num_streams) if sum(c) == n]
    return np.asarray(rows, dtype=np.float64) / n


def fuse(scores: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """Weighted sum of per-stream scores (N, C)."""
    return sum(w * s for w, s in zip(weights, scores))


def search_weights(val_scores: Sequence[np.ndarray], val_labels: np.ndarray, step: float = 0.1) -> np.ndarray:
    """The grid weights with the best validation top-1 (ties: the most even weights win)."""
    grid = simplex_grid(len(val_scores), step)
    stacked = np.stack(val_scores)  # (S, N, C)
    best, best_acc, best_spread = None, -1.0, np.inf
    for w in grid:
        acc = float((np.tensordot(w, stacked, axes=1).argmax(1) == val_labels).mean())
        spread = float(np.abs(w - 1 / len(w)).sum())
        if acc > best_acc + 1e-12 or (abs(acc - best_acc) <= 1e-12 and spread < best_spread):
            best, best_acc, best_spread = w, acc, spread
    return best


def _aligned(runs: Sequence[Path], split: str) -> list[Scores]:
    loaded = []
    for run in runs:
        path = run / f"{split}_scores.npz" if run.is_dir() else run
        loaded.append(load_scores(path))
    ref = loaded[0]
    order_ref = np.argsort(ref.names)
    for run, s in zip(runs, loaded):
        if sorted(s.names) != sorted(ref.names):
            raise DataError(f"{run}: its {split} samples differ from those of {runs[0]}")
        if s.class_names != ref.class_names:
            raise DataError(f"{run}: its class names differ from those of {runs[0]}")
    out = []
    for s in loaded:
        order = np.argsort(s.names)
        out.append(Scores([ref.names[i] for i in order_ref], s.labels[order], s.scores[order], s.class_names))
    return out


def runs_longtail(runs: Sequence[Path]) -> dict | None:
    """The long-tail settings (training counts, thresholds) the runs share, from their ``metrics.json``; None when
    none of them trained on a long-tailed split."""
    found = []
    for run in runs:
        path = (run if run.is_dir() else run.parent) / "metrics.json"
        found.append(json.loads(path.read_text()).get("longtail") if path.is_file() else None)
    if all(lt is None for lt in found):
        return None
    for run, lt in zip(runs, found):
        if lt is None:
            raise DataError(f"{run} has no long-tail metrics in its metrics.json, unlike "
                             f"{runs[next(i for i, x in enumerate(found) if x is not None)]}")
        if (lt["train_class_counts"], lt["thresholds"]) != (found[0]["train_class_counts"], found[0]["thresholds"]):
            raise DataError(f"{run} trained on another long-tailed split (or other shot thresholds) than {runs[0]}")
    return found[0]


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _pct(x: float | None) -> str:
    return "   n/a" if x is None else f"{100 * x:5.1f}%"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", type=Path, help="run directories (with val_scores.npz and test_scores.npz)")
    parser.add_argument("--weights", nargs="+", type=float, default=None,
                        help="fixed weights instead of the validation search (e.g. 0.6 0.6 0.4 0.4)")
    parser.add_argument("--compare-weights", nargs="+", type=float, default=None,
                        help="also report these fixed weights (e.g. a paper's: PSUMNet NTU-60 X-Sub body/hand/leg "
                             "2 1.8 0.7) beside the chosen ones, as a comparison; they are never chosen")
    parser.add_argument("--step", type=float, default=0.1, help="grid step of the weight search")
    parser.add_argument("--softmax", action="store_true", help="fuse softmax probabilities instead of logits")
    parser.add_argument("--out", type=Path, default=None, help="where to write ensemble.json and the fused scores")


def run(args: argparse.Namespace) -> int:
    post = _softmax if args.softmax else (lambda x: x)
    for option, given in (("--weights", args.weights), ("--compare-weights", args.compare_weights)):
        if given is not None and len(given) != len(args.runs):
            raise ConfigError(f"{option}: {len(given)} weights for {len(args.runs)} runs")
        if given is not None and not np.isfinite(given).all():
            raise ConfigError(f"{option}: {given} must be finite numbers")
    val = _aligned(args.runs, "val")
    if args.weights is not None:
        weights, chosen = np.asarray(args.weights, dtype=np.float64), "given"
    else:
        weights, chosen = search_weights([post(s.scores) for s in val], val[0].labels, args.step), "validation search"
    # The test scores are read only now, after the weights are fixed.
    test = _aligned(args.runs, "test")
    longtail = runs_longtail(args.runs)
    out = args.out or args.runs[0].parent / "ensemble"
    out.mkdir(parents=True, exist_ok=True)

    def by_count(report, plot=None) -> dict:
        return longtail_report(report, test[0].class_names, longtail["train_class_counts"],
                               longtail["thresholds"]["many_above"], longtail["thresholds"]["few_below"], plot)

    rows = []
    for run_dir, v, t, w in zip(args.runs, val, test, weights):
        rows.append({"run": str(run_dir), "weight": float(w),
                     "val_top1": topk_accuracy(v.scores, v.labels), "test_top1": topk_accuracy(t.scores, t.labels)})
        if longtail is not None:
            lt = by_count(classification_report(t.scores, t.labels, t.class_names))
            rows[-1].update({f"test_{g}_shot_top1": lt[f"{g}_shot_top1"] for g in SHOT_GROUPS})
    fused_val = fuse([post(s.scores) for s in val], weights)
    fused_test = fuse([post(s.scores) for s in test], weights)
    report = classification_report(fused_test, test[0].labels, test[0].class_names)
    result = {"weights_from": chosen, "streams": rows,
              "fused": {"val_top1": topk_accuracy(fused_val, val[0].labels), "test_top1": report.top1,
                        "test_top5": report.top5, "test_mean_class_accuracy": report.mean_class_accuracy}}
    if longtail is not None:
        result["fused"]["longtail"] = by_count(report, out / "per_class_accuracy.png")
    width = max(len("fusion, compared"), *(len(str(r)) for r in args.runs))
    shots = longtail is not None
    print(f"{'stream':<{width}}  weight  val top-1  test top-1" + ("   many  medium     few" if shots else ""))
    for r in rows:
        extra = "".join(f"  {_pct(r[f'test_{g}_shot_top1'])}" for g in SHOT_GROUPS) if shots else ""
        print(f"{r['run']:<{width}}  {r['weight']:6.2f}  {100 * r['val_top1']:8.2f}%  {100 * r['test_top1']:9.2f}%"
              + extra)
    f = result["fused"]
    print(f"{'fusion':<{width}}  {'':6}  {100 * f['val_top1']:8.2f}%  {100 * f['test_top1']:9.2f}%  "
          f"(weights from {chosen})")
    if shots:
        print(f"fusion, test top-1 by training count: {format_longtail(f['longtail'])}")
    if args.compare_weights is not None:
        w = np.asarray(args.compare_weights, dtype=np.float64)
        result["comparison"] = {
            "weights": w.tolist(), "chosen": False,
            "val_top1": topk_accuracy(fuse([post(s.scores) for s in val], w), val[0].labels),
            "test_top1": topk_accuracy(fuse([post(s.scores) for s in test], w), test[0].labels)}
        c = result["comparison"]
        print(f"{'fusion, compared':<{width}}  {'':6}  {100 * c['val_top1']:8.2f}%  {100 * c['test_top1']:9.2f}%  "
              f"(fixed weights {'/'.join(f'{x:g}' for x in w)}, for comparison only)")
    write_json(out / "ensemble.json", result)
    save_scores(out / "test_scores.npz", test[0].names, test[0].labels, fused_test, test[0].class_names)
    print(f"wrote {out / 'ensemble.json'}")
    return 0
