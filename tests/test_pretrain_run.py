"""`mmcl pretrain` and `mmcl probe-encoder` end to end on the small synthetic set: outputs, exact resume after a kill,
the encoder checkpoint as a training initialisation, the protocols' results."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from mmcl.cli import main
from mmcl.config import load_config
from mmcl.errors import ConfigError
from mmcl.models import create_model
from mmcl.pretrain import run as pretrain_run
from mmcl.pretrain.config import PretrainConfig
from mmcl.pretrain.run import pretrain

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_GIN = "model.args={hidden_dim: 8, num_layers: 1, temporal_layers: 1}"


def small_overrides(prepared: Path, out: Path, method: str, *extra: str) -> list[str]:
    return [f"data.root={prepared}", "data.window=8", "data.batch_size=4", "data.eval_batch_size=32",
            "data.num_workers=0", "optim.epochs=2", "optim.lr=0.05", "model.name=skeletonmae", TINY_GIN,
            f"method={method}", "moco.queue_size=8", "moco.dim=8", "halp.start_epoch=1", "halp.prototype_keys=8",
            "halp.num_prototypes=3", "halp.num_positives=4", "halp.refresh_every=2", "eval_every=1", "log_every=1",
            "cpu_threads=1", f"output_dir={out}", "name=small", *extra]


def small_config(prepared: Path, out: Path, method: str, *extra: str) -> PretrainConfig:
    return load_config(None, small_overrides(prepared, out, method, *extra), schema=PretrainConfig)


@pytest.mark.parametrize("method", ["halp", "mae"])
def test_pretraining_resumes_bit_for_bit_after_a_kill(method, small_prepared, tmp_path, monkeypatch):
    straight = pretrain(small_config(small_prepared, tmp_path / "straight", method))
    run_dir = tmp_path / "straight" / "small"
    for f in ("config.yaml", "encoder.safetensors", "metrics.json", "history.json", "curves.png"):
        assert (run_dir / f).is_file(), f
    assert straight["method"] == method and straight["seconds_per_epoch"] > 0
    history = json.loads((run_dir / "history.json").read_text())["history"]
    assert straight["cpu_seconds_per_epoch"] == pytest.approx(np.mean([h["epoch_cpu_s"] for h in history]))
    assert all(h["epoch_cpu_s"] > 0 for h in history)
    assert [h["epoch"] for h in history] == [1, 2] and all(h["knn_val_top1"] is not None for h in history)
    if method == "halp":  # epoch 1 is MoCo, epoch 2 adds the hallucinated positives
        assert "halp" not in history[0]["losses"] and "halp" in history[1]["losses"]

    save_state = pretrain_run.save_state

    def save_then_die(accelerator, directory, state):
        save_state(accelerator, directory, state)
        raise KeyboardInterrupt("simulated kill after epoch 1")

    monkeypatch.setattr(pretrain_run, "save_state", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        pretrain(small_config(small_prepared, tmp_path / "killed", method))
    monkeypatch.setattr(pretrain_run, "save_state", save_state)
    killed = tmp_path / "killed" / "small"
    assert not (killed / "metrics.json").exists()
    assert main(["pretrain", "--resume", str(killed)]) == 0
    a, b = load_file(run_dir / "encoder.safetensors"), load_file(killed / "encoder.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    resumed = json.loads((killed / "history.json").read_text())["history"]
    for x, y in zip(history, resumed):
        assert (x["train_loss"], x["losses"], x["knn_val_top1"]) == (y["train_loss"], y["losses"], y["knn_val_top1"])


@pytest.fixture(scope="module")
def moco_encoder(small_prepared, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pretrain")
    pretrain(small_config(small_prepared, out, "moco", "optim.epochs=1", "eval_every=0"))
    return out / "small" / "encoder.safetensors"


@pytest.mark.parametrize("clip", [0.0, 1e-6])
def test_clip_grad_norm_bounds_every_pretraining_step(clip, moco_encoder, small_prepared, tmp_path):
    """From the same encoder, plain SGD moves the encoder's parameters by at most lr x clip_grad_norm per step (fewer
    than 100 steps here); unclipped, by far more."""
    lr = 0.05
    pretrain(small_config(small_prepared, tmp_path, "mae", "optim.epochs=1", "eval_every=0", f"optim.lr={lr}",
                          f"model.init={moco_encoder}", f"optim.clip_grad_norm={clip}", "optim.momentum=0",
                          "optim.weight_decay=0"))
    start, end = load_file(moco_encoder), load_file(tmp_path / "small" / "encoder.safetensors")
    names = [k for k in start if "running_" not in k and "num_batches_tracked" not in k]  # parameters, not BN stats
    moved = float(torch.cat([(end[k] - start[k]).flatten() for k in names]).norm())
    bound = 100 * lr * 1e-6
    assert (0 < moved <= bound) if clip else moved > 1000 * bound, moved


def test_the_encoder_checkpoint_starts_models_and_training(moco_encoder, small_prepared):
    weights = load_file(moco_encoder)
    model = create_model("skeletonmae", num_classes=16, init=str(moco_encoder), hidden_dim=8, num_layers=1,
                         temporal_layers=1)
    for key, value in model.state_dict().items():
        if not key.startswith("fc."):
            assert torch.equal(value, weights[key]), key
    fresh = create_model("skeletonmae", num_classes=16, hidden_dim=8, num_layers=1, temporal_layers=1)
    assert not torch.equal(model.encoder.layers[0].mlp[0].weight, fresh.encoder.layers[0].mlp[0].weight)
    with pytest.raises(Exception, match="shape"):
        create_model("skeletonmae", num_classes=16, init=str(moco_encoder), hidden_dim=16)


def test_probe_encoder_linear_knn_semi_and_transfer(moco_encoder, small_prepared, tmp_path):
    out = tmp_path / "probe"
    assert main(["probe-encoder", "--checkpoint", str(moco_encoder), "--protocols", "linear", "knn", "semi",
                 "--fractions", "0.5", "--k", "1", "3", "--seeds", "1", "--out", str(out),
                 "optim.epochs=1", "data.repeat=1", "data.batch_size=8"]) == 0
    results = json.loads((out / "metrics.json").read_text())
    assert results["transfer"] is False and results["method"] == "moco"
    assert 0 <= results["linear"]["1"]["test_top1"] <= 1 and set(results["knn"]["1"]) == {"k=1", "k=3"}
    semi = results["semi"]["0.5"]["1"]
    run = Path(semi["run"])
    config = load_config(run / "config.yaml")
    assert config.model.init == str(moco_encoder) and config.data.label_fraction == 0.5
    labelled = json.loads((run / "metrics.json").read_text())
    assert labelled["top1"] == semi["test_top1"]
    assert "| linear |" in (out / "summary.md").read_text()
    # transfer: the same protocols on another prepared dataset (here a copy of the same clips)
    other = Path(shutil.copytree(small_prepared, tmp_path / "other"))
    assert main(["probe-encoder", "--checkpoint", str(moco_encoder), "--data", str(other), "--protocols", "knn",
                 "--out", str(tmp_path / "transfer")]) == 0
    transfer = json.loads((tmp_path / "transfer" / "metrics.json").read_text())
    assert transfer["transfer"] is True and transfer["evaluated_on"] == str(other.resolve())


def test_random_init_semi_is_training_from_scratch_on_the_same_labels(moco_encoder, tmp_path):
    out = tmp_path / "scratch"
    assert main(["probe-encoder", "--random-init", str(moco_encoder.parent / "config.yaml"), "--protocols", "semi",
                 "--fractions", "0.5", "--seeds", "1", "--out", str(out), "optim.epochs=1", "data.repeat=1",
                 "data.batch_size=8"]) == 0
    results = json.loads((out / "metrics.json").read_text())
    assert results["method"] is None and "from scratch, 50 % labels" in results["summary"]
    config = load_config(Path(results["semi"]["0.5"]["1"]["run"]) / "config.yaml")
    assert config.model.init == "" and config.model.name == "skeletonmae" and config.model.args["hidden_dim"] == 8
    assert (config.data.label_fraction, config.data.label_seed) == (0.5, 1)


def test_config_errors_name_the_key(small_prepared, tmp_path):
    with pytest.raises(ConfigError, match="method"):
        small_config(small_prepared, tmp_path, "simclr")
    with pytest.raises(ConfigError, match="mae.ratio"):
        small_config(small_prepared, tmp_path, "mae", "mae.ratio=1.0")
    bigru = [o for o in small_overrides(small_prepared, tmp_path, "mae") if o != TINY_GIN]
    with pytest.raises(ConfigError, match="feature map"):
        pretrain(load_config(None, [*bigru, "model.name=bigru", "model.args={hidden_size: 4}"], schema=PretrainConfig))


def test_bad_inputs_are_one_line_errors(moco_encoder, tmp_path, capsys):
    from test_hostile_inputs import Case, assert_one_line_error, corruptions

    raw = moco_encoder.read_bytes()
    cases = {}
    for kind, data in corruptions(raw).items():
        if kind == "body-bit-flip":  # safetensors has no checksum: a flipped weight is a valid file
            continue

        def make(d: Path, data=data) -> list[str]:
            (d / "encoder.safetensors").write_bytes(data)
            return ["probe-encoder", "--checkpoint", str(d / "encoder.safetensors")]

        cases[f"encoder-{kind}"] = Case(make, ("{tmp}/encoder.safetensors",))

    def bad_key(d: Path) -> list[str]:
        (d / "bad.yaml").write_text("_base_: " + str(Path(__file__).parents[1] / "configs/pretrain/moco/synthetic.yaml")
                                    + "\nhalp:\n  num_prototype: 3\n")
        return ["pretrain", "--config", str(d / "bad.yaml")]

    def no_state(d: Path) -> list[str]:
        (d / "run").mkdir()
        return ["pretrain", "--resume", str(d / "run")]

    cases["config-unknown-key"] = Case(bad_key, ("{tmp}/bad.yaml", "halp.num_prototype", "halp.num_prototypes"))
    cases["resume-without-state"] = Case(no_state, ("{tmp}/run", "no state/"))
    for name, case in cases.items():
        target = tmp_path / name
        target.mkdir()
        assert_one_line_error(case, target, capsys)


def test_pretraining_stops_at_a_non_finite_loss_keeping_the_last_epoch(small_prepared, tmp_path, monkeypatch):
    """A NaN learning rate in epoch 2 makes the loss NaN at its second step: the run stops naming it, and the encoder
    and state of epoch 1 stay as epoch 1 wrote them."""
    from mmcl.engine.trainer import NonFiniteError

    schedule = pretrain_run.learning_rate
    monkeypatch.setattr(pretrain_run, "learning_rate", lambda cfg, epoch: schedule(cfg, epoch) if epoch == 0 else
                        float("nan"))
    run_dir = tmp_path / "small"
    with pytest.raises(NonFiniteError, match=r"non-finite loss at step \d+ \(epoch 2, lr nan\).*epoch 1"):
        pretrain(small_config(small_prepared, tmp_path, "mae"))
    assert json.loads((run_dir / "state" / "trainer_state.json").read_text())["epoch"] == 0
    assert all(torch.isfinite(t).all() for t in load_file(run_dir / "encoder.safetensors").values())
