"""``mmcl probe``: can a teacher's features tell the classes apart? A linear probe, training split -> test split.

    mmcl probe --cache DIR [--cache DIR2 ...] [--data PREPARED] [--features visual,text] [--pair A:B ...]
               [--out DIR] [--name NAME]

This is how to learn whether a teacher can help before paying for co-learning runs. Per teacher cache and feature
kind (``visual``: the mean of the k frame embeddings, what FAM pools; ``text``: the mean of the P answer embeddings,
what FRM pools), the features are standardised with the training split's statistics and a multinomial logistic
regression (L-BFGS, L2) is fitted on the training split; its regularisation is chosen on the validation split, and
the chosen probe is evaluated once on the test split: top-1, per-class accuracy, and for each pair of classes that
only the RGB tells apart (``--pair``; on the synthetic set the held-object pairs by default) the accuracy over the
pair's test samples and the accuracy of telling the two apart (within-pair, chance 1/2). A one-sided binomial test
says whether the test top-1 is above chance (1 / number of classes). Samples the cache records as failed (their
video could not be read) are left out of every split and named in the record (``failed_in_cache``).

It also measures what else the features encode, on the training split (:func:`neighbour_structure`): how often a
sample's nearest neighbour (cosine) shares its class, its performer, its camera or its setup (NTU-style names), each
against the rate expected by chance. Features that cluster by performer or room pull a skeleton feature aligned with
them (FAM) toward identity rather than action.

Results: ``<name>.json``, ``<name>.md`` and ``<name>.png`` in ``--out`` (default: the first cache's directory).
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mmcl.data.prepared import PreparedData
from mmcl.errors import ConfigError, DataError
from mmcl.io import atomic_path, atomic_write_text, write_json
from mmcl.paths import shown_path

FEATURE_KINDS = ("visual", "text")
REGULARISATION = (1e-3, 1e-2, 1e-1, 1.0)  # L2 weight on the mean loss, chosen on validation
CHECK_L2 = 1e-2  # chance_check's one fixed regularisation: choosing it on the split it tests would flatter the probe
# The synthetic set's classes that differ only in the held object (mmcl.data.synthetic.actions).
SYNTHETIC_PAIRS = (("drink from a cup", "drink from a bottle"), ("read a book", "use a tablet"))
_NAME = re.compile(r"S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})")


def features(cache, names: list[str], kind: str) -> np.ndarray:
    """(N, D) probe inputs of ``names``: visual -> mean over frames, text -> mean over prompts."""
    if kind not in FEATURE_KINDS:
        raise ConfigError(f"feature kind must be one of {FEATURE_KINDS}, got {kind!r}")
    missing = [n for n in names if n not in cache]
    if missing:
        raise DataError(f"{len(missing)} samples have no features in the teacher cache {cache.path}, e.g. "
                       f"{missing[:3]}; run `mmcl precompute` for every split the probe reads")
    rows = [cache[n]["visual_mean"] if kind == "visual" else cache[n]["text"].mean(0) for n in names]
    return np.stack(rows).astype(np.float32)


def fit_linear(x: np.ndarray, y: np.ndarray, num_classes: int, l2: float, iters: int = 100) -> tuple[torch.Tensor, ...]:
    """Multinomial logistic regression on (N, D) standardised features: CE + ``l2`` * ||W||^2, full-batch L-BFGS.
    Returns (W (D, C), b (C,))."""
    xt, yt = torch.from_numpy(x).double(), torch.from_numpy(y).long()
    w = torch.zeros(x.shape[1], num_classes, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=iters, tolerance_grad=1e-9, tolerance_change=1e-12,
                            history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(xt @ w + b, yt) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()


def scores(x: np.ndarray, w: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """The probe's logits (N, C)."""
    return (torch.from_numpy(x).double() @ w + b).numpy()


@dataclass
class Split:
    x: np.ndarray
    y: np.ndarray
    names: list[str]


def fixed_probe(train_x: np.ndarray, train_y: np.ndarray, x: np.ndarray, num_classes: int, l2: float = CHECK_L2,
                iters: int = 100) -> np.ndarray:
    """Predicted classes of ``x`` from a linear probe fitted on ``train_x`` (standardised by its statistics) with one
    fixed regularisation: nothing is chosen on the split that is scored."""
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    w, b = fit_linear((train_x - mean) / std, train_y, num_classes, l2, iters=iters)
    return scores((x - mean) / std, w, b).argmax(1)


def probe(train: Split, val: Split, test: Split | None, num_classes: int) -> dict:
    """Fit on ``train`` for every regularisation, keep the best on ``val``, evaluate it once on ``test`` (when
    given). Returns the chosen l2, the validation top-1 of each, and the logits on val and test."""
    mean, std = train.x.mean(0), train.x.std(0) + 1e-6
    norm = lambda x: (x - mean) / std  # noqa: E731
    trials = []
    for l2 in REGULARISATION:
        w, b = fit_linear(norm(train.x), train.y, num_classes, l2)
        trials.append((float((scores(norm(val.x), w, b).argmax(1) == val.y).mean()), -l2, l2, w, b))
    val_top1, _, l2, w, b = max(trials, key=lambda t: (t[0], t[1]))  # ties: the stronger regularisation
    out = {"l2": l2, "val_top1": val_top1, "val_by_l2": {str(t[2]): t[0] for t in trials},
           "val_scores": scores(norm(val.x), w, b)}
    if test is not None:
        out["test_scores"] = scores(norm(test.x), w, b)
    return out


def above_chance(correct: int, total: int, chance: float) -> float:
    """One-sided binomial p-value of ``correct`` of ``total`` under the chance rate."""
    from scipy.stats import binomtest

    return float(binomtest(correct, total, chance, alternative="greater").pvalue) if total else 1.0


def pair_scores(logits: np.ndarray, y: np.ndarray, pairs: list[tuple[int, int]]) -> list[dict]:
    """For each pair (a, b) of class indices, over the test samples of a and b: ``top1`` (C-way), ``within_pair``
    (the probe scores the sample's own class above the other one of the pair; chance 1/2) and ``confused`` (the
    C-way prediction is the other class of the pair)."""
    pred = logits.argmax(1)
    out = []
    for a, b in pairs:
        mask = (y == a) | (y == b)
        n = int(mask.sum())
        if not n:
            out.append({"classes": [a, b], "samples": 0, "top1": None, "within_pair": None, "confused": None})
            continue
        ys, other = y[mask], np.where(y[mask] == a, b, a)
        rows = np.arange(n)
        own = logits[mask][rows, ys]
        alt = logits[mask][rows, other]
        out.append({"classes": [a, b], "samples": n, "top1": float((pred[mask] == ys).mean()),
                    "within_pair": float((own > alt).mean()), "confused": float((pred[mask] == other).mean())})
    return out


def name_fields(names: list[str]) -> dict[str, np.ndarray]:
    """Performer, camera and setup of NTU-style sample names (-1 where a name does not follow the pattern)."""
    parsed = [_NAME.match(n) for n in names]
    return {field: np.array([int(m[g]) if m else -1 for m in parsed])
            for field, g in (("setup", 1), ("camera", 2), ("performer", 3))}


def neighbour_structure(x: np.ndarray, labels: np.ndarray, names: list[str]) -> dict:
    """How often the nearest neighbour (cosine, itself excluded) of a sample shares its class / performer / camera /
    setup, and the rate expected if neighbours were drawn at random (the share of other samples sharing it)."""
    z = F.normalize(torch.from_numpy(x).double(), dim=1)
    sim = z @ z.T
    sim.fill_diagonal_(-2.0)
    nn_idx = sim.argmax(1).numpy()
    groups = {"class": labels, **name_fields(names)}
    out = {}
    for field, g in groups.items():
        if (g < 0).all():
            continue
        same = g[:, None] == g[None, :]
        np.fill_diagonal(same, False)
        out[field] = {"nearest_shares": float(np.mean(g[nn_idx] == g)),
                      "chance": float(same.sum() / (len(g) * (len(g) - 1)))}
    return out


def default_pairs(class_names: list[str]) -> list[tuple[str, str]]:
    """The synthetic held-object pairs when the dataset has those classes, else none."""
    return [p for p in SYNTHETIC_PAIRS if all(c in class_names for c in p)]


def probe_cache(cache_dir: str | Path, data: PreparedData | None = None, kinds: tuple[str, ...] = FEATURE_KINDS,
                pairs: list[tuple[str, str]] | None = None) -> dict:
    """Probe one teacher cache (see the module docstring); returns its result record."""
    from teachers.cache import open_cache

    cache = open_cache(cache_dir)
    data = data or PreparedData(cache.manifest["prepared"])
    classes = data.class_names
    pairs = default_pairs(classes) if pairs is None else pairs
    unknown = [c for p in pairs for c in p if c not in classes]
    if unknown:
        raise ConfigError(f"--pair names unknown classes {unknown}; the classes are {classes}")
    pair_ids = [(classes.index(a), classes.index(b)) for a, b in pairs]
    splits, failed = {}, cache.failures  # samples whose video failed in precompute: left out, counted
    for split in ("train", "val", "test"):
        idx = [int(i) for i in data.split(split) if data.names[int(i)] not in failed]
        splits[split] = ([data.names[i] for i in idx], np.asarray([int(data.labels[i]) for i in idx]))
    if not len(splits["train"][0]) or not len(splits["val"][0]):
        raise DataError(f"{data.root}: the probe needs non-empty train and val splits")
    record = {"cache": shown_path(cache.path), "teacher": cache.manifest.get("config_name"),
              "key_hash": cache.manifest.get("key_hash"), "dataset": shown_path(data.root), "num_classes": len(classes),
              "classes": classes, "pairs": [list(p) for p in pairs],
              "split_sizes": {s: len(v[0]) for s, v in splits.items()},
              "failed_in_cache": sorted(set(failed) & set(data.names)), "features": {}}
    for kind in kinds:
        sets = {s: Split(features(cache, names, kind), y, names) for s, (names, y) in splits.items()}
        test = sets["test"] if len(sets["test"].names) else None
        result = probe(sets["train"], sets["val"], test, len(classes))
        entry = {"dim": int(sets["train"].x.shape[1]), "l2": result["l2"], "val_top1": result["val_top1"],
                 "val_by_l2": result["val_by_l2"],
                 "neighbours_train": neighbour_structure(sets["train"].x, sets["train"].y, sets["train"].names)}
        if test is not None:
            logits, y = result["test_scores"], test.y
            pred = logits.argmax(1)
            correct = int((pred == y).sum())
            per_class = {c: float((pred[y == k] == k).mean()) for k, c in enumerate(classes) if (y == k).any()}
            pair_list = pair_scores(logits, y, pair_ids)
            pair_mask = np.isin(y, [k for p in pair_ids for k in p])
            entry.update({
                "test_top1": correct / len(y), "chance": 1 / len(classes),
                "p_above_chance": above_chance(correct, len(y), 1 / len(classes)),
                "per_class": per_class, "pairs": pair_list,
                "pairs_top1": float((pred[pair_mask] == y[pair_mask]).mean()) if pair_mask.any() else None})
        record["features"][kind] = entry
    return record


def chance_check(cache, data: PreparedData, kinds: tuple[str, ...], alpha: float = 0.01) -> dict[str, dict]:
    """Whether a teacher cache's features tell the classes apart, from the training and validation splits only (the
    test split is never read; samples the cache lacks are left out): per feature kind, the validation top-1 of a probe
    fitted on the training split with one fixed regularisation (nothing is chosen on the split that is tested),
    chance, the one-sided binomial p-value, ``at_chance`` (p > ``alpha``), and the training split's
    nearest-neighbour structure."""
    out = {}
    splits = {}
    for split in ("train", "val"):
        idx = [int(i) for i in data.split(split) if data.names[int(i)] in cache]
        splits[split] = ([data.names[i] for i in idx], np.asarray([int(data.labels[i]) for i in idx]))
    if not len(splits["train"][0]) or not len(splits["val"][0]):
        raise DataError(f"the teacher cache {cache.path} holds no features of {data.root}'s train or val split")
    for kind in kinds:
        train, val = (Split(features(cache, names, kind), y, names) for names, y in splits.values())
        correct = int((fixed_probe(train.x, train.y, val.x, data.num_classes, iters=50) == val.y).sum())
        p = above_chance(correct, len(val.y), 1 / data.num_classes)
        out[kind] = {"val_top1": correct / max(len(val.y), 1), "chance": 1 / data.num_classes, "p_above_chance": p,
                     "val_samples": len(val.y), "at_chance": p > alpha,
                     "neighbours_train": neighbour_structure(train.x, train.y, train.names)}
    return out


def markdown(records: list[dict]) -> str:
    """One row per (cache, feature kind): test top-1, chance, pair classes."""
    pairs = records[0]["pairs"] if records else []
    focus = [c for p in pairs for c in p]
    head = ("| teacher | features | test top-1 (%) | chance (%) | held-object pairs top-1 (%) |"
            + "".join(f" {c} (%) |" for c in focus) + " val top-1 (%) | nearest neighbour: class / performer / setup |")
    lines = [head, "|---|---|---:|---:|---:|" + "---:|" * len(focus) + "---:|---|"]
    for r in records:
        for kind, e in r["features"].items():
            pc = e.get("per_class", {})
            nb = e["neighbours_train"]
            shares = " / ".join(f"{100 * nb[f]['nearest_shares']:.0f}% (chance {100 * nb[f]['chance']:.0f}%)"
                                for f in ("class", "performer", "setup") if f in nb)
            top1 = f"{100 * e['test_top1']:.1f}" if "test_top1" in e else "-"
            ptop = f"{100 * e['pairs_top1']:.1f}" if e.get("pairs_top1") is not None else "-"
            lines.append(f"| {r['teacher']} | {kind} | {top1} | {100 / r['num_classes']:.1f} | {ptop} |"
                         + "".join(f" {100 * pc[c]:.1f} |" if c in pc else " - |" for c in focus)
                         + f" {100 * e['val_top1']:.1f} | {shares} |")
    return "\n".join(lines) + "\n"


def plot(records: list[dict], path: Path) -> None:
    """Per-class test accuracy of every (cache, feature kind), the pair classes marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = records[0]["classes"]
    focus = {c for p in records[0]["pairs"] for c in p}
    rows = [(f"{r['teacher']} / {k}", e) for r in records for k, e in r["features"].items() if "per_class" in e]
    fig, ax = plt.subplots(figsize=(max(8, 0.6 * len(classes) * max(1, len(rows)) / 2), 4))
    width = 0.8 / max(len(rows), 1)
    x = np.arange(len(classes))
    for j, (label, e) in enumerate(rows):
        ax.bar(x + j * width, [100 * e["per_class"].get(c, np.nan) for c in classes], width,
               label=f"{label}: {100 * e['test_top1']:.1f}%")
    ax.axhline(100 / len(classes), color="grey", ls="--", lw=1, label="chance")
    ax.set_xticks(x + 0.4 - width / 2, [("* " if c in focus else "") + c for c in classes], rotation=60, ha="right",
                  fontsize=7)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("linear probe of teacher features (train -> test; * held-object pairs)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def write_results(records: list[dict], out: str | Path, name: str, command: str = "") -> Path:
    """``<out>/<name>.json``, ``.md`` (with the command) and ``.png``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / f"{name}.json", {"command": command, "records": records})
    intro = f"# Linear probe of teacher features\n\n`{command}`\n\n" if command else "# Linear probe of teacher features\n\n"
    atomic_write_text(out / f"{name}.md", intro + markdown(records))
    plot(records, out / f"{name}.png")
    return out / f"{name}.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache", action="append", required=True, help="teacher cache directory (repeatable)")
    parser.add_argument("--data", default=None, help="prepared dataset (default: the one the cache was made from)")
    parser.add_argument("--features", default="visual,text", help="comma-separated: visual, text")
    parser.add_argument("--pair", action="append", default=None, metavar="A:B",
                        help="two classes only the RGB tells apart (repeatable; default on the synthetic set: the "
                             "held-object pairs)")
    parser.add_argument("--out", default=None, help="output directory (default: the first cache's directory)")
    parser.add_argument("--name", default="probe", help="file stem of the results (default %(default)s)")


def run(args: argparse.Namespace) -> int:
    kinds = tuple(k for k in args.features.split(",") if k)
    pairs = None
    if args.pair:
        pairs = []
        for p in args.pair:
            if p.count(":") != 1:
                raise ConfigError(f"--pair {p!r}: expected two class names separated by ':'")
            pairs.append(tuple(p.split(":")))
    data = PreparedData(args.data) if args.data else None
    records = [probe_cache(c, data, kinds, pairs) for c in args.cache]
    command = "mmcl probe " + " ".join(sys.argv[2:]) if len(sys.argv) > 2 else ""
    path = write_results(records, args.out or args.cache[0], args.name, command)
    print(markdown(records))
    print(f"written: {path} (+ .md, .png)", file=sys.stderr)
    return 0
