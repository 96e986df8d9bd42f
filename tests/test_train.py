"""Training end to end on a small synthetic set: outputs, loss, exact resume, eval / predict / ensemble commands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from mmcl.cli import main
from mmcl.config import ConfigError, load_config
from mmcl.engine import trainer
from mmcl.engine.ensemble import search_weights
from mmcl.engine.metrics import load_scores, save_scores
from mmcl.engine.trainer import learning_rate, train
from mmcl.models.checkpoint import read_checkpoint_info


def small_config(prepared: Path, out: Path, *extra: str):
    return load_config(None, [f"data.root={prepared}", "data.window=16", "data.batch_size=8",
                              "data.eval_batch_size=16", "data.num_workers=0", "optim.epochs=3",
                              "optim.warmup_epochs=1", "optim.lr=0.05", "optim.scheduler=cosine", "log_every=1",
                              f"output_dir={out}", "name=small", *extra])


@pytest.fixture(scope="module")
def finished_run(small_prepared, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    train(small_config(small_prepared, out))
    return out / "small"


def test_a_run_writes_its_outputs_and_lowers_the_loss(finished_run: Path):
    for f in ("config.yaml", "best.safetensors", "last.safetensors", "metrics.json", "confusion.png",
              "test_scores.npz", "val_scores.npz", "history.json", "curves.png"):
        assert (finished_run / f).is_file(), f
    assert any((finished_run / "tensorboard").rglob("events.out.tfevents.*"))
    history = json.loads((finished_run / "history.json").read_text())["history"]
    assert len(history) == 3 and history[-1]["train_loss"] < history[0]["train_loss"]
    metrics = json.loads((finished_run / "metrics.json").read_text())
    assert metrics["selected_on"] == "val" and metrics["split"] == "test"
    assert 1 <= metrics["best_epoch"] <= 3
    assert metrics["best_epoch"] == max(history, key=lambda h: h["val_top1"])["epoch"]
    scores = load_scores(finished_run / "test_scores.npz")
    assert metrics["top1"] == pytest.approx(float((scores.scores.argmax(1) == scores.labels).mean()))
    assert set(metrics) >= {"top1", "top5", "mean_class_accuracy", "per_class_accuracy"}
    split = metrics["train_time_split_s"]  # where the epochs' time went, summed over them
    assert set(split) == {"data", "forward", "backward", "optimizer", "other", "validation", "checkpoint"}
    assert split["forward"] > 0 and split["backward"] > 0
    assert sum(split.values()) <= metrics["train_time_s"] + 0.5
    info = read_checkpoint_info(finished_run / "best.safetensors")
    assert info.extra["epoch"] == metrics["best_epoch"] and info.num_classes == 16 and info.window == 16
    for f in ("best.safetensors", "last.safetensors"):  # written through a temporary file, yet as readable as the rest
        assert (finished_run / f).stat().st_mode & 0o777 == (finished_run / "metrics.json").stat().st_mode & 0o777


def test_resume_continues_bit_for_bit(small_prepared, tmp_path, monkeypatch):
    straight = tmp_path / "straight"
    train(small_config(small_prepared, straight, "optim.epochs=2"))

    save_state = trainer.save_state
    calls = []

    def save_then_die(accelerator, run_dir, state):
        save_state(accelerator, run_dir, state)
        calls.append(run_dir)
        raise KeyboardInterrupt("simulated kill after epoch 1")

    monkeypatch.setattr(trainer, "save_state", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train(small_config(small_prepared, tmp_path / "killed", "optim.epochs=2"))
    monkeypatch.setattr(trainer, "save_state", save_state)
    run_dir = tmp_path / "killed" / "small"
    assert not (run_dir / "metrics.json").exists() and len(calls) == 1
    assert main(["train", "--resume", str(run_dir)]) == 0

    a, b = load_file(straight / "small" / "last.safetensors"), load_file(run_dir / "last.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k].numpy(), b[k].numpy()), k
    ha = json.loads((straight / "small" / "history.json").read_text())["history"]
    hb = json.loads((run_dir / "history.json").read_text())["history"]
    timings = [r.pop("time_s") for r in ha + hb]  # wall times differ from run to run; everything else is equal
    assert ha == hb
    assert all({"data", "forward", "backward", "optimizer", "other", "validation"} <= set(t) for t in timings)


def test_a_second_run_gets_its_own_directory(small_prepared, tmp_path):
    cfg = small_config(small_prepared, tmp_path, "optim.epochs=1")
    (tmp_path / "small").mkdir()
    assert trainer.resolve_run_dir(cfg) == tmp_path / "small-1"


def test_eval_and_predict_use_the_checkpoint_alone(finished_run: Path, small_prepared, small_synthetic, tmp_path,
                                                  capsys):
    out = tmp_path / "eval"
    assert main(["eval", "--checkpoint", str(finished_run / "best.safetensors"), "--data", str(small_prepared),
                 "--split", "test", "--out", str(out), "--workers", "0"]) == 0
    metrics = json.loads((out / "test_metrics.json").read_text())
    assert metrics["top1"] == pytest.approx(json.loads((finished_run / "metrics.json").read_text())["top1"])
    assert (out / "test_confusion.png").is_file()

    # predict on one test sample, given as the raw .skeleton file and as the prepared (T, M, V, C) array, gives the
    # logits `mmcl eval` gave that sample, and prints the top-5 of their softmax
    from mmcl.data.prepared import PreparedData
    from mmcl.deploy.predict import predict_logits
    from mmcl.models.checkpoint import load_checkpoint

    data = PreparedData(small_prepared)
    evaluated = load_scores(out / "test_scores.npz")
    row = 3
    name = evaluated.names[row]
    expected = evaluated.scores[row]
    sample = tmp_path / "sample.npy"
    np.save(sample, data.joints(data.names.index(name)))
    raw = small_synthetic / "skeletons" / f"{name}.skeleton"
    model, info = load_checkpoint(finished_run / "best.safetensors")
    logits = predict_logits(model, info, [raw, sample])
    np.testing.assert_allclose(logits, np.stack([expected, expected]), rtol=1e-4, atol=1e-4)

    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(finished_run / "best.safetensors"), str(raw)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    probs = np.exp(expected - expected.max()) / np.exp(expected - expected.max()).sum()
    top5 = np.argsort(-probs)[:5]
    assert [line.split(None, 1)[1].rsplit(None, 1)[0].strip() for line in lines] == [data.class_names[i] for i in top5]
    assert [float(line.split()[-1].rstrip("%")) for line in lines] == pytest.approx(100 * probs[top5], abs=0.006)


def test_eval_refuses_a_dataset_of_another_label_space(finished_run: Path, tmp_path, capsys):
    from mmcl.data.prepared import PreparedInfo, write_prepared

    other = write_prepared(tmp_path / "other", PreparedInfo("x", "ntu25", 2, ["a", "b"]),
                           [("s0", 0, np.ones((5, 2, 25, 3), np.float32))], {"train": [], "val": [], "test": [0]})
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(finished_run / "best.safetensors"), "--data", str(other)]) == 2
    err = capsys.readouterr().err
    assert f"{other} does not fit" in err and "2 classes" in err and "mmcl zeroshot" in err, err


def test_ensemble_weights_never_read_test_labels(tmp_path, capsys):
    rng = np.random.default_rng(0)
    classes = [f"c{i}" for i in range(4)]
    val_labels, test_labels = rng.integers(0, 4, 60), rng.integers(0, 4, 50)
    runs = []
    for k, noise in enumerate((0.5, 2.0)):
        run = tmp_path / f"stream{k}"
        run.mkdir()
        for split, labels in (("val", val_labels), ("test", test_labels)):
            scores = np.eye(4)[labels] + noise * rng.normal(size=(len(labels), 4))
            save_scores(run / f"{split}_scores.npz", [f"{split}{i}" for i in range(len(labels))], labels, scores,
                        classes)
        runs.append(run)
    val = [load_scores(r / "val_scores.npz") for r in runs]
    weights = search_weights([v.scores for v in val], val_labels)
    assert weights[0] > weights[1] and weights.sum() == pytest.approx(1)
    # Scramble the test labels: the chosen weights must not move.
    for run in runs:
        t = load_scores(run / "test_scores.npz")
        save_scores(run / "test_scores.npz", t.names, rng.permutation(t.labels), t.scores, classes)
    assert main(["ensemble", *map(str, runs), "--out", str(tmp_path / "ens")]) == 0
    result = json.loads((tmp_path / "ens" / "ensemble.json").read_text())
    assert [s["weight"] for s in result["streams"]] == pytest.approx(weights.tolist())
    assert result["weights_from"] == "validation search"
    assert "fusion" in capsys.readouterr().out


def test_learning_rate_schedule_matches_ctrgcn():
    cfg = load_config(None, []).optim  # lr 0.1, warm-up 5, x0.1 at 35 and 55
    assert [learning_rate(cfg, e) for e in (0, 4)] == pytest.approx([0.02, 0.1])
    assert [learning_rate(cfg, e) for e in (5, 34, 35, 54, 55, 64)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.001, 0.001])


@pytest.mark.parametrize("clip", [0.0, 1e-4])
def test_clip_grad_norm_bounds_every_step(small_prepared, tmp_path, clip):
    """Plain SGD moves the parameters by lr x the clipped gradient: at most lr x clip_grad_norm per step."""
    lr = 0.05
    run = trainer.setup(small_config(small_prepared, tmp_path, f"optim.clip_grad_norm={clip}", f"optim.lr={lr}",
                                     "optim.momentum=0", "optim.nesterov=false", "optim.weight_decay=0",
                                     "optim.warmup_epochs=0"))

    def params() -> torch.Tensor:
        return torch.cat([p.detach().flatten().clone() for p in run.module.parameters()])

    before = params()
    record = trainer.train_one_epoch(run, 0)
    moved = float((params() - before).norm())
    steps = len(run.train_loader)
    run.accelerator.end_training()
    if clip:
        assert record["clipped_steps"] == steps
        assert 0 < moved <= steps * lr * clip * (1 + 1e-4)
    else:
        assert "clipped_steps" not in record
        assert moved > 100 * steps * lr * 1e-4


def test_config_errors_name_the_key_and_path(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'optim.lr'"):
        load_config(None, ["optim.lrr=0.1"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  windw: 32\n")
    with pytest.raises(ConfigError, match=r"data\.windw.*bad\.yaml.*data\.window"):
        load_config(bad)
    with pytest.raises(Exception, match=str(tmp_path / "nowhere")):
        train(load_config(None, [f"data.root={tmp_path / 'nowhere'}", f"output_dir={tmp_path}"]))


def test_the_demo_set_is_generated_without_videos_until_teachers_need_them(monkeypatch, tmp_path):
    """Training reads skeletons only, so the main job skips rendering the videos; the teachers' step adds them."""
    from dataclasses import replace

    from mmcl.data.synthetic import SynthConfig
    from mmcl.engine import demo

    small = SynthConfig(subjects=4, cameras=1, classes=2, utd=False)
    monkeypatch.setattr("mmcl.data.synthetic.SynthConfig", lambda **kw: replace(small, **kw))
    monkeypatch.setenv("MMCL_CACHE", str(tmp_path))
    data = demo.ensure_synthetic(3)
    raw = tmp_path / "synthetic" / "raw-seed3"
    assert data.info.num_samples == 8 and not (raw / "videos").exists()
    assert demo.ensure_synthetic(3, videos=True).names == data.names
    assert sorted(p.name for p in (raw / "videos").iterdir()) == sorted(f"{n}_rgb.avi" for n in data.names)


def test_the_demo_data_is_made_by_the_entry_point_not_by_train(small_synthetic, small_prepared, session_cache,
                                                                tmp_path, monkeypatch):
    from mmcl.engine import demo

    cfg = load_config(None, ["data.synthetic_seed=7", f"output_dir={tmp_path}", "colearn.teacher.config=tiny",
                             "colearn.frm.enabled=true"])
    with pytest.raises(FileNotFoundError, match=r"synthetic set \(seed 7\) is not prepared at .*`mmcl train`"):
        train(cfg)
    assert not (session_cache / "synthetic" / "raw-seed7").exists() and not list(tmp_path.iterdir())
    # the entry point's step finds the set (here: the small one put in its place) and precomputes its teachers
    (session_cache / "synthetic").mkdir(parents=True, exist_ok=True)
    (session_cache / "synthetic" / "raw-seed7").symlink_to(small_synthetic)
    (session_cache / "synthetic" / "prepared-seed7").symlink_to(small_prepared)
    calls = []
    monkeypatch.setattr("teachers.precompute.precompute", lambda *a, **k: calls.append((a, k)))
    demo.prepare_demo(cfg)
    (teacher, data, videos), kwargs = calls[0]
    raw = session_cache / "synthetic" / "raw-seed7"
    assert teacher.name == "tiny" and data.root == session_cache / "synthetic" / "prepared-seed7"
    assert videos == raw / "videos" and kwargs == {"descriptions_path": raw / "classes.json"}
    assert (session_cache / "tiny-teachers" / "tiny.json").is_file()  # built by this explicit step
    demo.prepare_demo(load_config(None, [f"data.root={small_prepared}", "colearn.teacher.config=tiny",
                                         "colearn.frm.enabled=true"]))  # a dataset of the user's: nothing to make
    assert len(calls) == 1
