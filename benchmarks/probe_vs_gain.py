"""What a teacher's probe predicts about co-learning's gain: each teacher's linear probe (``mmcl probe``) beside the
gains the ablations measured with that teacher.

    python benchmarks/probe_vs_gain.py --probe benchmarks/results/teacher_probe.json \
        --ablation benchmarks/results/ablation_teachers.json benchmarks/results/ablation_fam_weight.json \
        [--out benchmarks/results --name probe_vs_gain]

Every ablation variant whose overrides name a teacher (``colearn.teacher.config=<name>``) that the probe file holds
becomes a row: the module switched on (its other overrides), the teacher, the teacher's probe (visual features: test
top-1 and held-object pairs top-1; text features: the same), the variant's gain over the ablation's reference
(test top-1, paired by seed) and the change of its mean accuracy on the focus classes (the held-object pairs) against
the reference's. A variant found in several ablation files (runs shared through the same output directory) is taken
from the first. Writes ``<name>.json``, ``.md`` and ``.png`` (gain and focus-class change against the visual probe on
the held-object pairs, one line per module, and the gain of the modules that read the text features, FRM's, against
the text probe on those pairs).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from mmcl.io import atomic_path, atomic_write_text, write_json

TEACHER_KEY = "colearn.teacher.config="


def probe_figures(probe: dict) -> dict[str, dict]:
    """Teacher name -> its probe's headline figures (fractions)."""
    out = {}
    for record in probe["records"]:
        visual, text = record["features"].get("visual", {}), record["features"].get("text", {})
        out[record["teacher"]] = {"visual_top1": visual.get("test_top1"), "visual_pairs_top1": visual.get("pairs_top1"),
                                  "text_top1": text.get("test_top1"), "text_pairs_top1": text.get("pairs_top1"),
                                  "cache": record["cache"]}
    return out


def focus_mean(row: dict) -> float | None:
    return float(np.mean(list(row["focus"].values()))) if row.get("focus") else None


def collect(probe: dict, ablations: list[dict]) -> list[dict]:
    """The rows (module docstring), in the order the ablation files list their variants."""
    teachers = probe_figures(probe)
    rows, seen = [], set()
    for ablation in ablations:
        by_variant = {r["variant"]: r for r in ablation["rows"]}
        reference = by_variant.get(ablation["reference"])
        for variant, overrides in ablation["variants"].items():
            named = [o[len(TEACHER_KEY):] for o in overrides if o.startswith(TEACHER_KEY)]
            if variant in seen or variant not in by_variant or not named or named[0] not in teachers:
                continue
            seen.add(variant)
            row = by_variant[variant]
            focus, ref_focus = focus_mean(row), focus_mean(reference) if reference else None
            rows.append({"variant": variant, "teacher": named[0],
                         "module": " ".join(o for o in overrides if not o.startswith(TEACHER_KEY)),
                         **{k: v for k, v in teachers[named[0]].items() if k != "cache"},
                         "seeds": row["seeds"], "top1_mean": row["top1_mean"], "gain_mean": row.get("gain_mean"),
                         "gain_std": row.get("gain_std"), "focus_mean": focus,
                         "focus_change": None if focus is None or ref_focus is None else focus - ref_focus})
    return rows


def _pct(value: float | None, sign: bool = False) -> str:
    return "-" if value is None else f"{100 * value:+.1f}" if sign else f"{100 * value:.1f}"


def markdown(rows: list[dict], command: str) -> str:
    lines = ["# What the teacher probe predicts about co-learning's gain", "", f"`{command}`", "",
             "Probe: linear probe train -> test of the teacher cache (`mmcl probe`). Gain: the variant's test top-1 "
             "minus the reference's, paired by seed (mean ± std). Focus change: the mean accuracy over the "
             "held-object classes minus the reference's.", "",
             "| variant | module | teacher | probe visual top-1 (%) | probe visual held-object pairs (%) | "
             "probe text top-1 (%) | probe text held-object pairs (%) | seeds | test top-1 (%) | gain (pp) | "
             "focus classes (%) | focus change (pp) |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        gain = "-" if r["gain_mean"] is None else (
            f"{100 * r['gain_mean']:+.2f}" + ("" if r["gain_std"] is None else f" ± {100 * r['gain_std']:.2f}"))
        lines.append(f"| {r['variant']} | `{r['module']}` | {r['teacher']} | {_pct(r['visual_top1'])} | "
                     f"{_pct(r['visual_pairs_top1'])} | {_pct(r['text_top1'])} | {_pct(r['text_pairs_top1'])} | "
                     f"{r['seeds']} | "
                     f"{_pct(r['top1_mean'])} | {gain} | {_pct(r['focus_mean'])} | "
                     f"{_pct(r['focus_change'], sign=True)} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    panels = (("visual_pairs_top1", "gain_mean", lambda m: True),
              ("visual_pairs_top1", "focus_change", lambda m: True),
              ("text_pairs_top1", "gain_mean", lambda m: "colearn.frm.enabled=true" in m))
    for ax, (x_key, y_key, shown) in zip(axes, panels):
        for module in dict.fromkeys(r["module"] for r in rows):
            if not shown(module):
                continue
            pts = sorted((r for r in rows if r["module"] == module and r[x_key] is not None), key=lambda r: r[x_key])
            x, y = [100 * r[x_key] for r in pts], [100 * (r[y_key] or 0) for r in pts]
            label = module.replace("colearn.", "").replace(".enabled=true", "")
            if y_key == "gain_mean":
                ax.errorbar(x, y, yerr=[100 * (r["gain_std"] or 0) for r in pts], marker="o", capsize=3, label=label)
            else:
                ax.plot(x, y, marker="o", label=label)
        ax.axhline(0, color="grey", lw=1, ls="--")
        ax.set_xlabel(f"teacher's {x_key.split('_')[0]} probe on the held-object pairs (%)")
        ax.set_ylabel("held-object classes: change (pp)" if y_key == "focus_change"
                      else "test top-1 gain over the baseline (pp)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6)
    axes[2].set_title("modules reading the text features", fontsize=9)
    fig.suptitle("Teacher probe against co-learning gain (mean over seeds)", fontsize=10)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def read_result(path: str, keys: tuple[str, ...], what: str) -> dict:
    """A results file, checked to be ``what`` (holding ``keys``); an error naming the file otherwise."""
    try:
        result = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise SystemExit(f"{path}: no such file ({what} expected)")
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SystemExit(f"{path}: not JSON ({e}); {what} expected")
    missing = [k for k in keys if not isinstance(result, dict) or k not in result]
    if missing:
        raise SystemExit(f"{path}: not {what} (no {', '.join(missing)})")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--probe", required=True, help="an `mmcl probe` result (JSON)")
    parser.add_argument("--ablation", nargs="+", required=True, help="`mmcl ablate` summaries (JSON)")
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--name", default="probe_vs_gain")
    args = parser.parse_args(argv)
    probe = read_result(args.probe, ("records",), "an `mmcl probe` result")
    rows = collect(probe, [read_result(p, ("variants", "rows", "reference"), "an `mmcl ablate` summary")
                           for p in args.ablation])
    if not rows:
        raise SystemExit(f"no ablation variant names a teacher of {args.probe} "
                         f"({', '.join(probe_figures(probe))})")
    command = "python benchmarks/probe_vs_gain.py " + " ".join(sys.argv[1:] if argv is None else argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / f"{args.name}.json", {"command": command, "probe": args.probe, "ablations": args.ablation,
                                            "rows": rows})
    atomic_write_text(out / f"{args.name}.md", markdown(rows, command))
    plot(rows, out / f"{args.name}.png")
    print(markdown(rows, command))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
