"""benchmarks/probe_vs_gain.py: each teacher's probe set beside the gains measured with that teacher."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("probe_vs_gain", ROOT / "benchmarks" / "probe_vs_gain.py")
probe_vs_gain = importlib.util.module_from_spec(spec)
spec.loader.exec_module(probe_vs_gain)

FOCUS = ["cup", "bottle"]


def probe_record(teacher: str, visual: float, pairs: float, text: float, text_pairs: float = 0.25) -> dict:
    return {"teacher": teacher, "cache": f"cache/{teacher}",
            "features": {"visual": {"test_top1": visual, "pairs_top1": pairs},
                         "text": {"test_top1": text, "pairs_top1": text_pairs}}}


def row(variant: str, top1: float, focus: tuple[float, float], gain: float | None = None) -> dict:
    return {"variant": variant, "seeds": 3, "top1_mean": top1, "gain_mean": gain, "gain_std": None if gain is None
            else 0.01, "focus": dict(zip(FOCUS, focus))}


def test_rows_pair_each_variant_with_its_teachers_probe_and_the_reference(tmp_path):
    probe = {"records": [probe_record("tiny", 0.13, 0.18, 0.2), probe_record("tuned", 0.6, 0.96, 0.18)]}
    first = {"reference": "baseline",
             "variants": {"baseline": [], "fam": ["colearn.teacher.config=tiny", "colearn.fam.enabled=true"],
                          "tuned_fam": ["colearn.teacher.config=tuned", "colearn.fam.enabled=true"],
                          "other": ["colearn.teacher.config=unprobed", "colearn.fam.enabled=true"]},
             "rows": [row("baseline", 0.8, (0.5, 0.6)), row("fam", 0.82, (0.5, 0.7), 0.02),
                      row("tuned_fam", 0.78, (0.9, 0.6), -0.02), row("other", 0.7, (0.1, 0.1), -0.1)]}
    second = {"reference": "baseline",
              "variants": {"baseline": [], "fam": ["colearn.teacher.config=tiny", "colearn.fam.enabled=true"],
                           "fam_w1": ["colearn.teacher.config=tiny", "colearn.fam.enabled=true",
                                      "colearn.fam.weight=1.0"]},
              "rows": [row("baseline", 0.8, (0.5, 0.6)), row("fam", 0.0, (0.0, 0.0), 9.9),
                       row("fam_w1", 0.81, (0.55, 0.65), 0.01)]}
    rows = probe_vs_gain.collect(probe, [first, second])
    assert [r["variant"] for r in rows] == ["fam", "tuned_fam", "fam_w1"]  # no reference, no unprobed teacher
    fam, tuned, w1 = rows
    assert fam["top1_mean"] == 0.82  # the first file's row of a variant both files hold
    assert (fam["teacher"], fam["visual_pairs_top1"], fam["text_top1"]) == ("tiny", 0.18, 0.2)
    assert tuned["visual_pairs_top1"] == 0.96 and tuned["module"] == "colearn.fam.enabled=true"
    assert w1["module"] == "colearn.fam.enabled=true colearn.fam.weight=1.0"
    assert fam["focus_change"] == pytest.approx(0.05) and tuned["focus_change"] == pytest.approx(0.2)
    assert w1["focus_change"] == pytest.approx(0.05)

    paths = []
    for name, content in (("probe", probe), ("a", first), ("b", second)):
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(content))
    assert probe_vs_gain.main(["--probe", str(paths[0]), "--ablation", *map(str, paths[1:]), "--out",
                               str(tmp_path / "out")]) == 0
    expected = ("| tuned_fam | `colearn.fam.enabled=true` | tuned | 60.0 | 96.0 | 18.0 | 25.0 | 3 | 78.0 | "
                "-2.00 ± 1.00 | 75.0 | +20.0 |")
    assert expected in (tmp_path / "out" / "probe_vs_gain.md").read_text()
    assert (tmp_path / "out" / "probe_vs_gain.png").stat().st_size > 0


def test_bad_result_files_are_named(tmp_path):
    probe = tmp_path / "probe.json"
    probe.write_text(json.dumps({"records": [probe_record("tiny", 0.1, 0.2, 0.3)]}))
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text('{"rows": [')
    for path, message in ((tmp_path / "gone.json", "gone.json: no such file"), (corrupt, "corrupt.json: not JSON"),
                          (probe, r"probe.json: not an `mmcl ablate` summary \(no variants, rows, reference\)")):
        with pytest.raises(SystemExit, match=message):
            probe_vs_gain.main(["--probe", str(probe), "--ablation", str(path), "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()  # nothing written
