"""ONNX export (``mmcl export``) and inference (``mmcl predict --model``): onnxruntime parity with PyTorch for every
registered deployable model, the metadata a runtime needs, the failure when parity does not hold, the same top-5 as
the checkpoint on the synthetic test set, and batch prediction that records bad files and predicts the rest. Needs
the ``deploy`` extra (part of ``dev``)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from mmcl.cli import main
from mmcl.data.prepared import PreparedData
from mmcl.data.streams import input_channels, stream_model_args
from mmcl.deploy import export
from mmcl.deploy.runtime import OnnxModel
from mmcl.models import create_model, list_models
from mmcl.models.checkpoint import CheckpointInfo, load_checkpoint, save_checkpoint

CLASSES = ["wave", "clap", "kick", "sit down"]
DEPLOYABLE = list_models()  # every registered model is a deployable one
SMALL = {"bigru": {"hidden_size": 32, "num_layers": 1}}  # the same architecture, quicker to trace


def tiny_checkpoint(path: Path, model: str, class_names=CLASSES, layout: str = "kinect_v1_20", num_person: int = 1,
                    window: int = 8, stream: str = "joint") -> Path:
    torch.manual_seed(0)
    net = create_model(model, num_classes=len(class_names), layout=layout, num_person=num_person,
                       **SMALL.get(model, {}), **stream_model_args(stream))
    for module in net.modules():  # non-trivial batch-norm statistics, as a trained model has
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    info = CheckpointInfo(model, net.registry_args, list(class_names), layout, input_channels(stream, 3), num_person,
                          stream, window,
                          "seed: 0\n", {"epoch": 1})
    return save_checkpoint(path, net, info)


@pytest.fixture(scope="module")
def exported(small_prepared, tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """Each deployable model as a checkpoint and its export by `mmcl export` (CTR-GCN and PSUMNet: the small
    synthetic set's layout and classes, bone-motion / hand part stream, opset 18; the others: Kinect v1, one person,
    joint stream)."""
    root = tmp_path_factory.mktemp("export")
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    out = {}
    for name in DEPLOYABLE:
        if name in ("ctrgcn", "psumnet"):  # PSUMNet: the hand part stream (13 of the 25 joints, 12 channels)
            checkpoint = tiny_checkpoint(root / f"{name}.safetensors", name, PreparedData(small_prepared).class_names,
                                         "ntu25", 2, stream="bone_motion" if name == "ctrgcn" else "psumnet_hand")
            args = ["--opset", "18"]
        else:
            checkpoint, args = tiny_checkpoint(root / f"{name}.safetensors", name), []
        assert main(["export", "--checkpoint", str(checkpoint), "--format", "onnx", *args]) == 0
        out[name] = checkpoint, checkpoint.with_suffix(".onnx")
    torch.set_num_threads(previous)
    return out


@pytest.mark.parametrize("name", DEPLOYABLE)
def test_export_matches_pytorch_with_a_dynamic_batch(name, exported, one_thread):
    checkpoint, path = exported[name]
    onnx_model = OnnxModel(path, threads=1)
    torch_model, info = load_checkpoint(checkpoint)
    assert onnx_model.info == info  # the checkpoint's metadata, class names and layout included
    verification = json.loads(onnx_model.metadata["verification"])
    assert {c["shape"][0] for c in verification["checks"]} >= {1, 3}
    assert all(c["max_rel_diff"] < export.TOLERANCE for c in verification["checks"])
    _, c, t, v, m = onnx_model.input["shape"]
    t = info.window
    # fresh inputs of batch sizes the export never saw
    for batch in (1, 5):
        x = torch.randn(batch, c, t, v, m, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            expected = torch_model(x).numpy()
        got = onnx_model(x.numpy())
        assert got.shape == (batch, info.num_classes)
        assert np.abs(got - expected).max() / np.abs(expected).max() < export.TOLERANCE
    if onnx_model.dynamic_time:
        x = torch.randn(2, c, 20, v, m)
        with torch.no_grad():
            expected = torch_model(x).numpy()
        assert np.abs(onnx_model(x.numpy()) - expected).max() / np.abs(expected).max() < export.TOLERANCE
    else:
        with pytest.raises(ValueError, match=rf"takes skeleton of shape \(batch, {c}, {t}, {v}, {m}\)"):
            onnx_model(np.zeros((1, c, t + 4, v, m), np.float32))


def test_ctrgcn_exports_a_dynamic_time_axis_and_describes_its_input(exported, capsys):
    model = OnnxModel(exported["ctrgcn"][1])
    assert model.dynamic_time and model.input["shape"] == ["batch", 3, "time", 25, 2]
    assert json.loads(model.metadata["verification"])["time_axis"].startswith("dynamic")
    prep = json.loads(model.metadata["preprocessing"])
    assert prep["stream"] == "bone_motion" and prep["crop"]["keep"] == 0.95 and prep["resize"]["frames"] == 8
    assert [20, 20] in prep["bones"]["pairs"] and "motion" in prep
    assert "opset 18" in model.metadata["exporter"] and len(model.metadata["source_sha256"]) == 64
    assert model.metadata["layout"] == "ntu25" and len(json.loads(model.metadata["class_names"])) == 16


def test_psumnet_part_stream_exports_its_part_input(exported):
    model = OnnxModel(exported["psumnet"][1])
    assert model.input["shape"][1:] == [12, "time" if model.dynamic_time else 8, 13, 2]
    prep = json.loads(model.metadata["preprocessing"])
    assert prep["stream"] == "psumnet_hand" and "C=3" in prep["joints"] and "bones" not in prep
    assert prep["part"]["joints"] == [20, 4, 5, 6, 7, 21, 22, 8, 9, 10, 11, 23, 24]
    assert [1, 0] in prep["part"]["bones"]["pairs"] and prep["crop"]["keep"] == 0.95


class MeanPool(torch.nn.Module):
    """A tiny stand-in deployable model (clips -> logits) for the export logic around the trace."""

    def __init__(self, classes: int):
        super().__init__()
        self.fc = torch.nn.Linear(3, classes)

    def forward(self, x):
        return self.fc(x.mean((2, 3, 4)))


def test_export_fails_and_writes_nothing_when_parity_does_not_hold(tmp_path, monkeypatch):
    checkpoint = tiny_checkpoint(tmp_path / "c.safetensors", "ctrgcn")
    _, info = load_checkpoint(checkpoint)
    monkeypatch.setattr(export, "load_checkpoint", lambda path: (MeanPool(len(CLASSES)), info))
    result = export.export_onnx(checkpoint, tmp_path / "ok.onnx")
    assert result.path.is_file() and result.dynamic_time and result.max_rel < export.TOLERANCE
    monkeypatch.setattr(export, "TOLERANCE", 0.0)
    with pytest.raises(export.ExportError, match=r"relative difference .* >= 0e\+00.*c.onnx not written"):
        export.export_onnx(checkpoint, tmp_path / "c.onnx")
    assert not list(tmp_path.glob("c.onnx*"))


def test_onnx_model_rejects_other_files(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(ValueError, match="bad.onnx: not a readable ONNX model"):
        OnnxModel(bad)
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        OnnxModel(tmp_path / "missing.onnx")


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("name", ["ctrgcn", "psumnet"])
def test_onnx_and_checkpoint_give_the_same_top5_on_the_test_set(name, exported, small_prepared, tmp_path, one_thread):
    checkpoint, onnx_path = exported[name]
    out = {}
    for flag, path in (("--checkpoint", checkpoint), ("--model", onnx_path)):
        out[flag] = tmp_path / f"{flag[2:]}.csv"
        assert main(["predict", flag, str(path), "--data", str(small_prepared), "--split", "test", "--batch-size",
                     "5", "--out", str(out[flag]), "--threads", "1"]) == 0
    torch_rows, onnx_rows = read_csv(out["--checkpoint"]), read_csv(out["--model"])
    data = PreparedData(small_prepared)
    test = data.split("test")
    assert [r["name"] for r in torch_rows] == [data.names[i] for i in test]
    assert [r["label"] for r in torch_rows] == [data.class_names[data.labels[i]] for i in test]
    for a, b in zip(torch_rows, onnx_rows, strict=True):
        assert a["status"] == b["status"] == "ok"
        assert [a[f"top{i}_label"] for i in range(1, 6)] == [b[f"top{i}_label"] for i in range(1, 6)]
        assert np.allclose([float(a[f"top{i}_score"]) for i in range(1, 6)],
                           [float(b[f"top{i}_score"]) for i in range(1, 6)], atol=1e-5)


def test_batch_predict_records_bad_files_and_predicts_the_rest(exported, small_prepared, tmp_path, one_thread,
                                                               capsys):
    checkpoint, onnx_path = exported["ctrgcn"]
    data = PreparedData(small_prepared)
    test = [int(i) for i in data.split("test")]
    folder = tmp_path / "clips"
    (folder / "more").mkdir(parents=True)
    np.save(folder / "a.npy", data.joints(test[0]))
    np.save(folder / "more" / "b.npy", data.joints(test[1])[:, :1])  # one person of two: padded
    np.save(folder / "wrong_joints.npy", np.zeros((10, 1, 20, 3), np.float32))
    (folder / "broken.skeleton").write_text("12\n1\nnot a body line\n")
    np.save(tmp_path / "c.npy", data.joints(test[2])[:, 0])  # (T, V, C)
    listed = tmp_path / "list.txt"
    listed.write_text("c.npy\n# a comment\nmissing.npy\n")
    out = tmp_path / "predictions.json"
    capsys.readouterr()
    assert main(["predict", "--model", str(onnx_path), str(folder), "--list", str(listed), "--out", str(out),
                 "--batch-size", "2", "--threads", "1"]) == 0
    result = json.loads(out.read_text())
    rows = {Path(r["source"]).relative_to(tmp_path).as_posix(): r for r in result["rows"]}
    assert list(rows) == ["clips/a.npy", "clips/broken.skeleton", "clips/more/b.npy", "clips/wrong_joints.npy",
                          "c.npy", "missing.npy"]
    assert [s for s, r in rows.items() if r["status"] == "ok"] == ["clips/a.npy", "clips/more/b.npy", "c.npy"]
    assert "wrong_joints.npy: array of shape (10, 1, 20, 3)" in rows["clips/wrong_joints.npy"]["reason"]
    assert "broken.skeleton" in rows["clips/broken.skeleton"]["reason"]
    assert "FileNotFoundError" in rows["missing.npy"]["reason"] and result["failed"] == 3
    assert "3 of 6 samples predicted (3 failed)" in capsys.readouterr().out
    # the predicted rows are the checkpoint's top-5 of the same files
    from mmcl.deploy.predict import Predictor, predict_logits, top_classes

    model, info = load_checkpoint(checkpoint)
    logits = predict_logits(model, info, [folder / "a.npy", folder / "more" / "b.npy", tmp_path / "c.npy"])
    for row, expected in zip([rows["clips/a.npy"], rows["clips/more/b.npy"], rows["c.npy"]], logits):
        top = top_classes(expected, info.class_names)
        assert [t["label"] for t in row["top"]] == [c for c, _ in top]
        assert np.allclose([t["score"] for t in row["top"]], [p for _, p in top], atol=1e-5)
    with pytest.raises(ValueError, match="not both"):
        Predictor.load(checkpoint, onnx_path)


def adapted_checkpoint(path: Path, data: PreparedData, data_cfg) -> Path:
    """A CTR-GCN checkpoint as `mmcl train` writes it for ``data`` read through the clip adapter of ``data_cfg``."""
    from mmcl.config import TrainConfig, to_yaml
    from mmcl.engine.data import model_input

    layout, num_person = model_input(data, data_cfg)
    torch.manual_seed(0)
    net = create_model("ctrgcn", num_classes=data.num_classes, layout=layout, num_person=num_person)
    info = CheckpointInfo("ctrgcn", net.registry_args, data.class_names, layout, data.info.channels, num_person,
                          data_cfg.stream, data_cfg.window, to_yaml(TrainConfig(data=data_cfg)), {})
    return save_checkpoint(path, net, info)


def test_predict_applies_the_checkpoints_clip_adapter_as_eval_does(small_prepared, tmp_path, one_thread, capsys):
    """A checkpoint trained on NTU-25 clips mapped to Kinect v1, one person, centred: predict's preprocessing of the
    stored clips is eval's item for item, and so are its predictions."""
    from mmcl.config import DataConfig
    from mmcl.deploy.predict import preprocess
    from mmcl.engine.data import build_dataset

    data = PreparedData(small_prepared)
    cfg = DataConfig(window=8, layout="kinect_v1_20", num_person=1, center=True)
    checkpoint = adapted_checkpoint(tmp_path / "adapted.safetensors", data, cfg)
    _, info = load_checkpoint(checkpoint)
    test = build_dataset(data, cfg, "test", train=False)
    two_persons = 0
    for item in test:
        joints = data.joints(item["index"])
        two_persons += bool((joints[:, 1] != 0).any())  # a second person, which training dropped
        np.testing.assert_array_equal(preprocess(joints, info, item["name"], data.info.layout),
                                      item["skeleton"].numpy())
    assert two_persons >= 1
    # the same through the command (an ONNX export carries the same config: test_export_matches_pytorch...)
    model, _ = load_checkpoint(checkpoint)
    with torch.no_grad():
        expected = model(torch.stack([test[k]["skeleton"] for k in range(len(test))])).numpy()
    assert main(["predict", "--checkpoint", str(checkpoint), "--data", str(small_prepared), "--out",
                 str(tmp_path / "p.csv")]) == 0
    assert [r["top1_label"] for r in read_csv(tmp_path / "p.csv")] == [info.class_names[i] for i in expected.argmax(1)]
    # a clip in the checkpoint's layout is taken as it is; one in the layout training mapped from needs --layout
    np.save(tmp_path / "ntu.npy", data.joints(test[0]["index"]))
    with pytest.raises(ValueError, match=r"ntu.npy: array of shape .*in layout 'kinect_v1_20' \(a file in another "
                                         r"layout: name it with --layout\)"):
        main(["predict", "--checkpoint", str(checkpoint), str(tmp_path / "ntu.npy"), "--debug"])
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(checkpoint), str(tmp_path / "ntu.npy"), "--layout", "ntu25"]) == 0
    top1 = capsys.readouterr().out.splitlines()[0]
    assert top1.startswith(f"1. {info.class_names[expected[0].argmax()]} ")


def test_a_checkpoint_without_an_adapter_refuses_extra_persons(small_prepared, tmp_path):
    from mmcl.deploy.predict import preprocess

    data = PreparedData(small_prepared)
    checkpoint = tiny_checkpoint(tmp_path / "one.safetensors", "ctrgcn", data.class_names, "ntu25", 1)
    _, info = load_checkpoint(checkpoint)
    two = data.joints(int(data.split("test")[0]))
    with pytest.raises(ValueError, match="s1: 2 persons; the checkpoint takes at most 1"):
        preprocess(two, info, "s1")
    padded = preprocess(two[:, :1], info)
    assert padded.shape == (3, 8, 25, 1) and np.isfinite(padded).all()
