"""Long-tailed training end to end on a tiny synthetic set: BRL's switches on two registered backbones, long-tail
metrics in metrics.json, and the skip stream fused with `mmcl ensemble`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmcl.cli import main
from mmcl.config import ConfigError, load_config
from mmcl.data.longtail import build_longtail
from mmcl.engine.trainer import train

SHOTS = ("many_shot_top1", "medium_shot_top1", "few_shot_top1")


@pytest.fixture(scope="module")
def small_longtail(small_prepared, tmp_path_factory) -> Path:
    """The small synthetic set with class 0 keeping 2 training samples and every other class 1 (val: 1 per class)."""
    return build_longtail(small_prepared, tmp_path_factory.mktemp("lt") / "small-lt", imbalance=2, n_max=2,
                          val_per_class=1)


def lt_config(root: Path, out: Path, name: str, *extra: str):
    return load_config(None, [f"data.root={root}", "data.window=16", "data.batch_size=8", "data.eval_batch_size=16",
                              "data.num_workers=0", "optim.epochs=2", "optim.warmup_epochs=1", "optim.lr=0.05",
                              "optim.scheduler=cosine", "data.longtail.many_above=1", "data.longtail.few_below=2",
                              f"output_dir={out}", f"name={name}", *extra])


BRL = ["brl.mixup.enabled=true", "brl.mixup.ratio=0.5", "brl.drw.enabled=true", "brl.drw.start_epoch=2",
       "brl.action_aware.enabled=true"]


@pytest.fixture(scope="module")
def brl_runs(small_longtail, tmp_path_factory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("lt-runs")
    train(lt_config(small_longtail, out, "joint", *BRL))
    train(lt_config(small_longtail, out, "skip", *BRL, "data.stream=skip", "model.name=bigru", "optim.epochs=1",
                    "brl.drw.start_epoch=1", "model.args.hidden_size=16", "model.args.num_layers=1"))
    return out / "joint", out / "skip"


def test_brl_run_reports_accuracy_by_training_count(brl_runs):
    for run in brl_runs:
        metrics = json.loads((run / "metrics.json").read_text())
        lt = metrics["longtail"]
        assert lt["train_class_counts"] == [2] + [1] * 15 and lt["thresholds"] == {"many_above": 1, "few_below": 2}
        assert lt["classes"]["many"] == [0] and lt["classes"]["few"] == list(range(1, 16))
        assert lt["medium_shot_top1"] is None and 0 <= lt["few_shot_top1"] <= 1
        per_class = list(metrics["per_class_accuracy"].values())  # in class order
        assert lt["many_shot_top1"] == per_class[0]
        assert lt["few_shot_top1"] == pytest.approx(sum(per_class[1:]) / 15)
        assert metrics["brl"] == {"mixup": True, "drw": True, "action_aware": True}
        assert (run / "per_class_accuracy.png").read_bytes()[:4] == b"\x89PNG"
    for run, switched in zip(brl_runs, ([False, True], [True])):
        history = json.loads((run / "history.json").read_text())["history"]
        assert [h["class_weights"] for h in history] == switched  # deferred to the configured epoch
        assert all(h["train_loss"] == h["train_loss"] for h in history)  # finite (not NaN)


def test_eval_reports_the_same_shots(brl_runs, small_longtail, tmp_path, capsys):
    run = brl_runs[0]
    assert main(["eval", "--checkpoint", str(run / "best.safetensors"), "--data", str(small_longtail),
                 "--out", str(tmp_path), "--workers", "0"]) == 0
    assert "top-1 by training count" in capsys.readouterr().out
    evaluated = json.loads((tmp_path / "test_metrics.json").read_text())["longtail"]
    assert evaluated == json.loads((run / "metrics.json").read_text())["longtail"]
    assert (tmp_path / "test_per_class_accuracy.png").is_file()


def test_streams_fused_with_shots(brl_runs, tmp_path, capsys):
    assert main(["ensemble", *map(str, brl_runs), "--out", str(tmp_path / "fused")]) == 0
    out = capsys.readouterr().out
    assert "by training count" in out and "few-shot" in out
    result = json.loads((tmp_path / "fused" / "ensemble.json").read_text())
    assert set(result["fused"]["longtail"]) >= set(SHOTS)
    assert all(f"test_{s}" in row for row in result["streams"] for s in SHOTS)
    assert (tmp_path / "fused" / "per_class_accuracy.png").is_file()


def test_brl_switches_are_checked(small_longtail, tmp_path):
    with pytest.raises(ConfigError, match="brl.mixup.partner"):
        lt_config(small_longtail, tmp_path, "x", "brl.mixup.partner=tail")
    with pytest.raises(ConfigError, match="brl.mixup.enabled"):
        lt_config(small_longtail, tmp_path, "x", "brl.mixup.enabled=true", "colearn.fam.enabled=true",
                  "colearn.teacher.config=tiny")
    with pytest.raises(ConfigError, match="brl.drw.start_epoch"):
        lt_config(small_longtail, tmp_path, "x", "brl.drw.start_epoch=0")
