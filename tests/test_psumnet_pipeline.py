"""PSUMNet in the pipeline: part streams in the dataset, configs, a short synthetic training run with FAM + FRM whose
deployable checkpoint is PSUMNet alone, and the three-stream ensemble with the release's weights as a comparison."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from mmcl.cli import main
from mmcl.config import ConfigError, load_config
from mmcl.data.dataset import SkeletonDataset
from mmcl.data.parts import PART_JOINTS, PartInput
from mmcl.data.prepared import PreparedData
from mmcl.data.streams import PSUMNET_STREAMS, input_channels, stream_model_args
from mmcl.data.transforms import ClipTransform
from mmcl.engine.ensemble import fuse, search_weights
from mmcl.engine.metrics import load_scores, save_scores
from mmcl.engine.trainer import train
from mmcl.models import create_model
from mmcl.models.checkpoint import read_checkpoint_info
from mmcl.paths import configs_dir

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("stream, part, leg_graph", [("psumnet_hand", "hand", "intended"),
                                                     ("psumnet_leg_released", "leg", "released")])
@pytest.mark.parametrize("train", [True, False])
def test_dataset_part_stream_is_crop_rotation_then_part_input(small_prepared, stream, part, leg_graph, train):
    ds = SkeletonDataset(small_prepared, "train", stream=stream, window=16, train=train, seed=4)
    item = ds[5]
    index = item["index"]
    clip = PreparedData(small_prepared).joints(index).transpose(3, 0, 2, 1)
    crop = ClipTransform(window=16, stream="joint", train=train)
    expected = PartInput(part, leg_graph)(crop(clip, clip.shape[1], rng=ds.rng(index) if train else None))
    np.testing.assert_array_equal(item["skeleton"].numpy(), expected)
    assert item["skeleton"].shape == (12, 16, len(PART_JOINTS[part]), 2)


def test_stream_names_imply_the_model_arguments():
    assert stream_model_args("psumnet_leg_released") == {"stream": "leg", "leg_graph": "released"}
    assert stream_model_args("psumnet_body") == {"stream": "body", "leg_graph": "intended"}
    assert stream_model_args("bone") == {} and input_channels("bone", 3) == 3
    assert input_channels("psumnet_hand", 3) == 12
    with pytest.raises(ValueError, match="reads xyz joints"):
        input_channels("psumnet_hand", 2)
    with pytest.raises(ConfigError, match="data.stream = 'joint'.*model.name is 'psumnet'"):
        load_config(None, ["model.name=psumnet"])
    with pytest.raises(ConfigError, match="data.stream = 'psumnet_leg'.*model.name is 'ctrgcn'"):
        load_config(None, ["data.stream=psumnet_leg"])
    with pytest.raises(ConfigError, match="model.args.*no leg_graph: data.stream sets them"):
        load_config(None, ["model.name=psumnet", "data.stream=psumnet_leg", "model.args={leg_graph: released}"])
    # BRL's partial mixup swaps the NTU-25 lower body: the body stream holds it, the hand and leg parts do not
    load_config(None, ["model.name=psumnet", "data.stream=psumnet_body", "brl.mixup.enabled=true"])
    with pytest.raises(ConfigError, match="brl.mixup.enabled.*psumnet_hand stream.*hand part does not hold"):
        load_config(None, ["model.name=psumnet", "data.stream=psumnet_hand", "brl.mixup.enabled=true"])


def test_configs_have_the_release_hyperparameters():
    files = sorted((configs_dir() / "psumnet").rglob("*.yaml"))
    assert len(files) == 16  # NTU-60 X-Sub/X-View, NTU-120 X-Sub/X-Set x body, hand, leg, leg_released
    for path in files:
        cfg = load_config(path)
        o = cfg.optim
        assert (cfg.model.name, o.lr, o.weight_decay, o.nesterov, o.steps, o.warmup_epochs, o.epochs) == (
            "psumnet", 0.1, 0.0005, True, [35, 55], 5, 65), path
        assert (cfg.data.batch_size, cfg.data.window, cfg.data.p_interval) == (200, 64, [0.5, 1.0]), path
        benchmark, stream = path.stem.split("_", 1)
        root = f"cache/prepared/{path.parent.name}-{benchmark}"
        assert (cfg.data.stream, cfg.data.root) == (f"psumnet_{stream}", root), path
    main_job = load_config(configs_dir() / "synthetic" / "ctrgcn_joint.yaml")
    for part in ("body", "hand", "leg"):
        cfg = load_config(configs_dir() / "synthetic" / f"psumnet_{part}.yaml")
        assert cfg.data.stream == f"psumnet_{part}" and cfg.model.name == "psumnet"
        assert (cfg.data.window, cfg.optim, cfg.mixed_precision) == (main_job.data.window, main_job.optim,
                                                                     main_job.mixed_precision)
    mmcl = load_config(configs_dir() / "synthetic" / "psumnet_mmcl.yaml")
    assert mmcl.colearn.fam.enabled and mmcl.colearn.frm.enabled and mmcl.data.stream == "psumnet_body"


def test_training_with_fam_frm_deploys_psumnet_alone(small_prepared, small_synthetic, small_teacher_cache, tmp_path):
    """The leg stream with the release's leg bones, 2 epochs with FAM and FRM: the checkpoint holds exactly PSUMNet's
    tensors, rebuilds the model from its metadata, and evaluates and predicts without the teacher cache."""
    cache = tmp_path / "cache-copy"
    shutil.copytree(small_teacher_cache, cache)
    train(load_config(None, [
        f"data.root={small_prepared}", "data.window=16", "data.batch_size=8", "data.eval_batch_size=16",
        "data.num_workers=0", "optim.epochs=2", "optim.warmup_epochs=1", "optim.lr=0.05", f"output_dir={tmp_path}",
        "name=leg", "model.name=psumnet", "data.stream=psumnet_leg_released", f"colearn.teacher.cache={cache}",
        "colearn.fam.enabled=true", "colearn.frm.enabled=true"]))
    run = tmp_path / "leg"
    info = read_checkpoint_info(run / "best.safetensors")
    assert (info.model, info.model_args, info.in_channels, info.stream) == (
        "psumnet", {"stream": "leg", "leg_graph": "released"}, 12, "psumnet_leg_released")
    weights = load_file(run / "best.safetensors")
    reference = create_model("psumnet", num_classes=16, stream="leg", leg_graph="released")
    assert {k: tuple(v.shape) for k, v in weights.items()} == {k: tuple(v.shape)
                                                               for k, v in reference.state_dict().items()}
    state = load_file(run / "state" / "model.safetensors")
    assert any(k.startswith("colearner.heads.fam.") for k in state)
    shutil.rmtree(cache)
    out = tmp_path / "eval"
    assert main(["eval", "--checkpoint", str(run / "best.safetensors"), "--data", str(small_prepared),
                 "--out", str(out), "--workers", "0"]) == 0
    metrics = json.loads((out / "test_metrics.json").read_text())
    assert metrics["top1"] == pytest.approx(json.loads((run / "metrics.json").read_text())["top1"])
    # predict on a raw .skeleton file gives the logits eval gave that sample
    from mmcl.deploy.predict import predict_logits
    from mmcl.models.checkpoint import load_checkpoint

    evaluated = load_scores(out / "test_scores.npz")
    model, info = load_checkpoint(run / "best.safetensors")
    logits = predict_logits(model, info, [small_synthetic / "skeletons" / f"{evaluated.names[2]}.skeleton"])
    np.testing.assert_allclose(logits[0], evaluated.scores[2], rtol=1e-4, atol=1e-4)


def test_ensemble_of_three_part_streams_reports_the_published_weights_without_choosing_them(tmp_path, capsys):
    rng = np.random.default_rng(1)
    classes = [f"c{i}" for i in range(5)]
    labels = {"val": rng.integers(0, 5, 80), "test": rng.integers(0, 5, 70)}
    runs = []
    for stream, noise in zip(PSUMNET_STREAMS, (0.6, 0.9, 3.0)):  # body, hand, leg: the leg is nearly noise
        run = tmp_path / stream
        run.mkdir()
        for split, y in labels.items():
            save_scores(run / f"{split}_scores.npz", [f"{split}{i:03d}" for i in range(len(y))], y,
                        np.eye(5)[y] + noise * rng.normal(size=(len(y), 5)), classes)
        runs.append(run)
    out = tmp_path / "ensemble"
    assert main(["ensemble", *map(str, runs), "--compare-weights", "2", "1.8", "0.7", "--out", str(out)]) == 0
    result = json.loads((out / "ensemble.json").read_text())
    searched = search_weights([load_scores(r / "val_scores.npz").scores for r in runs], labels["val"])
    assert result["weights_from"] == "validation search"
    assert [s["weight"] for s in result["streams"]] == pytest.approx(searched.tolist())
    assert result["comparison"]["weights"] == [2.0, 1.8, 0.7] and result["comparison"]["chosen"] is False
    test = [load_scores(r / "test_scores.npz").scores for r in runs]
    expected = (fuse(test, [2.0, 1.8, 0.7]).argmax(1) == labels["test"]).mean()
    assert result["comparison"]["test_top1"] == pytest.approx(expected)
    np.testing.assert_allclose(load_scores(out / "test_scores.npz").scores, fuse(test, searched), rtol=1e-6)  # chosen
    assert "for comparison only" in capsys.readouterr().out
