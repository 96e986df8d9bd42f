"""`mmcl ablate`: plans, reading finished runs back instead of retraining, the summary table and plot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import mmcl.engine.ablate
from mmcl.config import ConfigError
from mmcl.engine.ablate import launch_run, load_plan, run_ablation
from mmcl.paths import configs_dir

FOCUS = ["read a book", "use a tablet"]


def write_plan(tmp_path: Path) -> Path:
    plan = tmp_path / "plan.yaml"
    plan.write_text(f"base: {configs_dir() / 'synthetic' / 'ctrgcn_joint.yaml'}\nseeds: [1, 2]\n"
                    f"focus_classes: {json.dumps(FOCUS)}\n"
                    "variants:\n  baseline: []\n  frm: [colearn.teacher.config=tiny, colearn.frm.enabled=true]\n")
    return plan


def finished_run(out: Path, name: str, top1: float, book: float) -> None:
    (out / name).mkdir(parents=True)
    (out / name / "metrics.json").write_text(json.dumps({
        "top1": top1, "val_top1": top1 + 0.01, "per_class_accuracy": {"read a book": book, "use a tablet": 0.5}}))


def test_finished_runs_are_read_back_and_summarised(tmp_path, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(mmcl.engine.ablate, "launch_run", no_training)
    out = tmp_path / "out"
    finished_run(out, "baseline-seed1", 0.80, 0.2)
    finished_run(out, "baseline-seed2", 0.90, 0.4)
    finished_run(out, "frm-seed1", 0.85, 1.0)
    rows = run_ablation(load_plan(write_plan(tmp_path)), seeds=[1, 2], variants=["baseline"], out=out)
    assert rows[0]["top1_mean"] == pytest.approx(0.85) and rows[0]["top1_std"] == pytest.approx(0.0707107, rel=1e-5)
    assert rows[0]["focus"]["read a book"] == pytest.approx(0.3)
    rows = run_ablation(load_plan(write_plan(tmp_path)), seeds=[1], out=out)
    assert [r["variant"] for r in rows] == ["baseline", "frm"] and rows[1]["top1_std"] is None
    table = (out / "ablation.md").read_text().splitlines()
    assert table[0] == ("| variant | seeds | test top-1 (%) | vs baseline (pp) | val top-1 (%) | read a book | "
                        "use a tablet | train time (min) |")
    assert table[2] == "| baseline | 1 | 80.00 | - | 81.00 | 20.0 | 50.0 | - |"  # one seed: no spread is claimed
    assert table[3] == "| frm | 1 | 85.00 | +5.00 | 86.00 | 100.0 | 50.0 | - |"
    assert (out / "ablation.png").stat().st_size > 0
    assert json.loads((out / "ablation.json").read_text())["seeds"] == [1]
    for cwd, base in ((configs_dir().parent, "configs/synthetic/ctrgcn_joint.yaml"),  # below it: relative
                      (tmp_path, str(configs_dir() / "synthetic" / "ctrgcn_joint.yaml"))):  # elsewhere: as is
        monkeypatch.chdir(cwd)
        run_ablation(load_plan(write_plan(tmp_path)), seeds=[1], out=out)
        assert json.loads((out / "ablation.json").read_text())["base"] == base


def test_each_run_is_an_mmcl_train_process_that_resumes_a_killed_run(tmp_path, monkeypatch):
    commands = []
    monkeypatch.setattr(mmcl.engine.ablate.subprocess, "run", lambda cmd: commands.append(cmd) or
                        subprocess.CompletedProcess(cmd, 0))
    plan = load_plan(write_plan(tmp_path))
    run_dir = tmp_path / "out" / "frm-seed2"
    overrides = [*plan.variants["frm"], "seed=2", "name=frm-seed2", f"output_dir={tmp_path / 'out'}"]
    launch_run(plan.base, overrides, run_dir)
    assert commands[-1] == [sys.executable, "-m", "mmcl.cli", "train", "--config", plan.base, *overrides]
    (run_dir / "state").mkdir(parents=True)
    launch_run(plan.base, overrides, run_dir)
    assert commands[-1][-2:] == ["--resume", str(run_dir)]
    (run_dir / "state").rmdir()  # a run killed before its first epoch ended starts again in the same directory
    launch_run(plan.base, overrides, run_dir)
    assert commands[-1] == commands[0] and not run_dir.exists()
    with pytest.raises(ConfigError, match="colearn.frm.enabeld"):
        launch_run(plan.base, ["colearn.frm.enabeld=true"], run_dir)
    assert len(commands) == 3


def test_plan_errors_name_the_file_and_key(tmp_path):
    plan = write_plan(tmp_path)
    with pytest.raises(ValueError, match=r"unknown variants \['fam'\]"):
        run_ablation(load_plan(plan), variants=["fam"], out=tmp_path / "out")
    bad = tmp_path / "bad.yaml"
    bad.write_text("base: x.yaml\nseeds: [1]\nvariants: {}\nfocus: []\n")
    with pytest.raises(ConfigError, match=rf"unknown config key 'focus' in {bad}; did you mean 'focus_classes'"):
        load_plan(bad)
    bad.write_text("base: x.yaml\nseeds: [1]\nvariants: {}\n")
    with pytest.raises(ConfigError, match=rf"{bad}: variants = {{}}; expected at least one variant"):
        load_plan(bad)
    bad.write_text("base: x.yaml\nvariants: {a: []}\n")
    with pytest.raises(ConfigError, match=f"{bad}: config key 'seeds'.*missing"):
        load_plan(bad)
    with pytest.raises(ConfigError, match=r"the command line: invalid value for config key 'seeds\[0\]'"):
        load_plan(bad, ["seeds=[x]"])
    with pytest.raises(ConfigError, match="config file not found"):
        load_plan(tmp_path / "missing.yaml")
    bad.write_text("base: x.yaml\nseeds: [1]\nvariants: {plain: [], other: []}\n")
    assert load_plan(bad).reference == ""  # no baseline variant: no gains, unless the plan names its reference
    assert load_plan(write_plan(tmp_path)).reference == "baseline"
    with pytest.raises(ConfigError, match=rf"{bad}: reference = 'baseline'; expected one of the plan's variants"):
        bad.write_text(bad.read_text() + "reference: baseline\n")
        load_plan(bad)


def test_gains_are_paired_by_seed_and_compared_side_by_side(tmp_path, monkeypatch):
    monkeypatch.setattr(mmcl.engine.ablate, "launch_run", lambda *a: (_ for _ in ()).throw(AssertionError("trained")))
    out = tmp_path / "out"
    for seed, (base, frm, other) in enumerate([(0.80, 0.83, 0.70), (0.90, 0.95, 0.91), (0.85, 0.86, 0.86)], 1):
        finished_run(out, f"baseline-seed{seed}", base, 0.5)
        finished_run(out, f"frm-seed{seed}", frm, 0.5)
        finished_run(out, f"other-seed{seed}", other, 0.5)
    plan = tmp_path / "plan.yaml"
    plan.write_text(write_plan(tmp_path).read_text() + "  other: [colearn.frm.enabled=true]\n"
                    "compare:\n  first: [frm]\n  second: [other]\n")
    rows = run_ablation(load_plan(plan), seeds=[1, 2, 3], out=out, results_dir=tmp_path / "results", name="x",
                        command="mmcl ablate --plan plan.yaml")
    frm = rows[1]
    assert frm["gain_mean"] == pytest.approx(0.03) and frm["gain_seeds"] == 3
    assert frm["gain_std"] == pytest.approx(0.02, abs=1e-9)  # std of the per-seed gains 0.03, 0.05, 0.01
    assert rows[2]["gain_mean"] == pytest.approx((-0.10 + 0.01 + 0.01) / 3)
    text = (tmp_path / "results" / "x.md").read_text()
    assert text.startswith("`mmcl ablate --plan plan.yaml`")
    assert "| frm / other | 88.00 ± 6.24 | +3.00 ± 2.00 | 50.0 | 82.33 ± 10.97 | -2.67 ± 6.35 | 50.0 |" in text
    assert json.loads((tmp_path / "results" / "x.json").read_text())["compare"] == {"first": ["frm"],
                                                                                    "second": ["other"]}


def test_finished_only_summarises_what_ran_and_names_what_did_not(tmp_path, monkeypatch):
    monkeypatch.setattr(mmcl.engine.ablate, "launch_run", lambda *a: (_ for _ in ()).throw(AssertionError("trained")))
    out = tmp_path / "out"
    finished_run(out, "baseline-seed1", 0.80, 0.2)
    finished_run(out, "baseline-seed2", 0.90, 0.4)
    finished_run(out, "frm-seed1", 0.85, 1.0)
    metrics = json.loads((out / "frm-seed1" / "metrics.json").read_text())
    (out / "frm-seed1" / "metrics.json").write_text(json.dumps({**metrics, "train_time_s": 90.0}))
    rows = run_ablation(load_plan(write_plan(tmp_path)), seeds=[1, 2], out=out, finished_only=True,
                        overrides=["optim.epochs=8"])
    assert [(r["variant"], r["seed_list"]) for r in rows] == [("baseline", [1, 2]), ("frm", [1])]
    assert rows[1]["gain_mean"] == pytest.approx(0.05) and rows[1]["gain_seeds"] == 1  # paired on seed 1 only
    text = (out / "ablation.md").read_text()
    assert "| frm | 1 | 85.00 | +5.00 | 86.00 | 100.0 | 50.0 | 1.5 |" in text
    assert "Not run (the ablation was cut short): frm-seed2." in text
    summary = json.loads((out / "ablation.json").read_text())
    assert summary["missing"] == ["frm-seed2"] and summary["overrides"] == ["optim.epochs=8"]
    with pytest.raises(FileNotFoundError, match="no finished run"):
        run_ablation(load_plan(write_plan(tmp_path)), seeds=[3], out=out, finished_only=True)


def test_lock_is_held_for_each_run_only(tmp_path, monkeypatch):
    import fcntl

    lock = tmp_path / "heavy.lock"
    held_during = []

    def probe_lock(*args):
        with open(lock) as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                held_during.append(False)
            except BlockingIOError:
                held_during.append(True)
        (args[2]).mkdir(parents=True)
        (args[2] / "metrics.json").write_text(json.dumps({"top1": 0.5, "val_top1": 0.5, "per_class_accuracy": {
            c: 0.5 for c in FOCUS}}))

    monkeypatch.setattr(mmcl.engine.ablate, "launch_run", probe_lock)
    run_ablation(load_plan(write_plan(tmp_path)), seeds=[1], out=tmp_path / "out", lock=lock)
    assert held_during == [True, True]
    with open(lock) as fh:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released after the runs
