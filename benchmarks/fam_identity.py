"""What the skeleton feature of a trained model encodes: the action, the held object, or who performs it where.

    python benchmarks/fam_identity.py --runs runs/ablation-teachers --variants baseline fam tuned_fam \
        [--out benchmarks/results --name fam_identity]

FAM pulls the skeleton model's global feature g toward the teacher's visual feature. When the visual features cluster
by performer and room rather than by action (random teachers do: ``mmcl probe`` shows their nearest neighbours share
the performer, not the class), g is pulled toward identity. This measures it on each run's validation-selected model,
on the test split (performers never seen in training), with the features of the deterministic evaluation transform:

- nearest neighbour (cosine) of each test sample: how often it shares the class, the performer, the setup, against
  the rate expected by chance;
- held object: for each pair of classes only the RGB tells apart (cup / bottle, book / tablet), a linear probe of g
  fitted on the training split and scored on the test split, within the pair (chance 50%): what aligning g with a
  teacher that knows the object should raise;
- performer identity: a linear probe fitted on camera 1's test samples and scored on camera 2's (the same performers
  seen from another angle; chance 1 / number of test performers);
- test top-1 of the model itself (from its metrics.json).

Per variant, mean and std over the seeds found (``<variant>-seed<N>`` directories). Writes ``<name>.json``, ``.md``
and ``.png``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np
import torch

from mmcl.config import from_yaml
from mmcl.data.prepared import PreparedData
from mmcl.engine.data import build_dataset, build_loader
from mmcl.io import atomic_path, atomic_write_text, write_json
from mmcl.models.checkpoint import load_checkpoint
from teachers.probe import SYNTHETIC_PAIRS, Split, fixed_probe, name_fields, neighbour_structure, probe

ROOT = Path(__file__).resolve().parent.parent


@torch.no_grad()
def global_features(model: torch.nn.Module, cfg, data: PreparedData, split: str) -> tuple[np.ndarray, np.ndarray,
                                                                                          list[str]]:
    """(g (N, 256), labels, names) of one split of ``data`` through ``model`` (a run's best checkpoint, in eval mode)
    with the evaluation transform of its training config ``cfg``."""
    loader = build_loader(build_dataset(data, cfg.data, split, train=False), 64, 0)
    feats, labels, names = [], [], []
    backbone = getattr(model, "backbone", model)
    for batch in loader:
        feats.append(backbone.forward_features(batch["skeleton"])["global_feature"].float().numpy())
        labels.append(batch["label"].numpy())
        names.extend(data.names[int(i)] for i in batch["index"])
    return np.concatenate(feats), np.concatenate(labels), names


def identity_probe(g: np.ndarray, names: list[str]) -> dict:
    """Performer identity from g: a linear probe fitted on camera 1, scored on camera 2 (same performers)."""
    fields = name_fields(names)
    cam, performer = fields["camera"], fields["performer"]
    ids = {p: k for k, p in enumerate(sorted(set(performer)))}
    y = np.array([ids[p] for p in performer])
    a, b = cam == 1, cam == 2
    if not a.any() or not b.any():
        raise ValueError("the identity probe needs test samples from cameras 1 and 2")
    result = probe(Split(g[a], y[a], []), Split(g[b], y[b], []), None, len(ids))
    return {"top1": result["val_top1"], "chance": 1 / len(ids), "performers": len(ids)}


def object_probe(train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
                 class_names: list[str]) -> dict:
    """The held object from g: for each pair of classes only the RGB tells apart, a linear probe fitted on the
    training split's samples of the pair (one fixed regularisation, none chosen on the test split) and scored on the
    test split's (performers never seen in training). Returns the within-pair accuracy of each pair (chance 50%) and
    their mean."""
    def pair_split(split: tuple[np.ndarray, np.ndarray], ia: int, ib: int) -> tuple[np.ndarray, np.ndarray]:
        g, y = split
        keep = (y == ia) | (y == ib)
        return g[keep], (y[keep] == ib).astype(int)

    pairs = {}
    for a, b in SYNTHETIC_PAIRS:
        if a not in class_names or b not in class_names:
            continue
        ia, ib = class_names.index(a), class_names.index(b)
        (gx, gy), (tx, ty) = pair_split(train, ia, ib), pair_split(test, ia, ib)
        pairs[f"{a} / {b}"] = float((fixed_probe(gx, gy, tx, 2) == ty).mean())
    return {"pairs": pairs, "mean": float(np.mean(list(pairs.values()))) if pairs else None}


def analyse(run: Path) -> dict:
    model, info = load_checkpoint(run / "best.safetensors")
    model.eval()
    cfg = from_yaml(info.config_yaml)
    metrics = json.loads((run / "metrics.json").read_text())
    data = PreparedData(metrics["dataset"])
    g, labels, names = global_features(model, cfg, data, "test")
    train_g, train_labels, _ = global_features(model, cfg, data, "train")
    return {"run": str(run), "test_top1": metrics["top1"], "neighbours": neighbour_structure(g, labels, names),
            "identity_probe": identity_probe(g, names),
            "object_probe": object_probe((train_g, train_labels), (g, labels), list(info.class_names))}


def summarise(records: dict[str, list[dict]]) -> list[dict]:
    rows = []
    for variant, runs in records.items():
        def stat(values):
            v = np.asarray(values, dtype=float)
            return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else None}
        rows.append({"variant": variant, "seeds": len(runs),
                     "test_top1": stat([r["test_top1"] for r in runs]),
                     "identity_top1": stat([r["identity_probe"]["top1"] for r in runs]),
                     "identity_chance": runs[0]["identity_probe"]["chance"],
                     "object_top1": stat([r["object_probe"]["mean"] for r in runs]),
                     **{f"nn_{f}": stat([r["neighbours"][f]["nearest_shares"] for r in runs])
                        for f in ("class", "performer", "setup")},
                     **{f"nn_{f}_chance": runs[0]["neighbours"][f]["chance"] for f in ("class", "performer", "setup")}})
    return rows


def _fmt(s: dict) -> str:
    return f"{100 * s['mean']:.1f}" + ("" if s["std"] is None else f" ± {100 * s['std']:.1f}")


def markdown(rows: list[dict], command: str) -> str:
    lines = ["# What the skeleton feature encodes (test split, best epoch on validation)", "", f"`{command}`", "",
             "| variant | seeds | test top-1 (%) | held object from g, train -> test, within pair (%) | performer from "
             "g, camera 1 -> 2 (%) | nearest neighbour shares the class (%) | ... the performer (%) | ... the setup "
             "(%) |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['seeds']} | {_fmt(r['test_top1'])} | {_fmt(r['object_top1'])} "
                     f"(chance 50.0) | {_fmt(r['identity_top1'])} "
                     f"(chance {100 * r['identity_chance']:.1f}) | {_fmt(r['nn_class'])} | {_fmt(r['nn_performer'])} "
                     f"(chance {100 * r['nn_performer_chance']:.1f}) | {_fmt(r['nn_setup'])} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.6 * len(rows) + 3, 3.5))
    x = np.arange(len(rows))
    for j, (key, label) in enumerate((("test_top1", "test top-1"), ("object_top1", "held object from g"),
                                      ("identity_top1", "performer from g"), ("nn_class", "NN same class"),
                                      ("nn_performer", "NN same performer"))):
        ax.bar(x + 0.16 * j, [100 * r[key]["mean"] for r in rows], 0.16,
               yerr=[100 * (r[key]["std"] or 0) for r in rows], capsize=3, label=label)
    ax.set_xticks(x + 0.32, [r["variant"] for r in rows], rotation=15)
    ax.set_ylabel("%")
    ax.legend(fontsize=7)
    ax.set_title("skeleton feature g: action vs identity (test split)")
    fig.tight_layout()
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, required=True, help="directory holding <variant>-seed<N> runs")
    parser.add_argument("--variants", nargs="+", required=True)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--name", default="fam_identity")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    records: dict[str, list[dict]] = {}
    for variant in args.variants:
        runs = sorted(p for p in args.runs.glob(f"{variant}-seed*")
                      if re.fullmatch(rf"{re.escape(variant)}-seed\d+", p.name) and (p / "metrics.json").exists())
        if not runs:
            raise SystemExit(f"no finished run {variant}-seed<N> in {args.runs}")
        records[variant] = [analyse(r) for r in runs]
    rows = summarise(records)
    command = "python benchmarks/fam_identity.py " + " ".join(argv if argv is not None else sys.argv[1:])
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / f"{args.name}.json", {"command": command, "rows": rows, "runs": records})
    atomic_write_text(args.out / f"{args.name}.md", markdown(rows, command))
    plot(rows, args.out / f"{args.name}.png")
    print(markdown(rows, command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
