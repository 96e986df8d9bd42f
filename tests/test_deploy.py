"""ONNX export (``mmcl export``): onnxruntime parity with PyTorch for the deployable models, the metadata a runtime
needs, and the failure when parity does not hold. Needs the ``deploy`` extra (part of ``dev``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from mmcl.cli import main
from mmcl.deploy import export
from mmcl.deploy.runtime import OnnxModel
from mmcl.models import create_model
from mmcl.models.checkpoint import CheckpointInfo, load_checkpoint, save_checkpoint

CLASSES = ["wave", "clap", "kick", "sit down"]
DEPLOYABLE = ["ctrgcn", "ctrgcn_mmixer"]


def tiny_checkpoint(path: Path, model: str, class_names=CLASSES, layout: str = "kinect_v1_20", num_person: int = 1,
                    window: int = 8, stream: str = "joint") -> Path:
    torch.manual_seed(0)
    net = create_model(model, num_classes=len(class_names), layout=layout, num_person=num_person)
    for module in net.modules():  # non-trivial batch-norm statistics, as a trained model has
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    info = CheckpointInfo(model, net.registry_args, list(class_names), layout, 3, num_person, stream, window,
                          "seed: 0\n", {"epoch": 1})
    return save_checkpoint(path, net, info)


@pytest.fixture(scope="module")
def exported(small_prepared, tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """Each deployable model as a checkpoint and its export by `mmcl export` (CTR-GCN: the small synthetic set's
    layout and classes, bone-motion stream, opset 18; the others: Kinect v1, one person, joint stream)."""
    from mmcl.data.prepared import PreparedData

    root = tmp_path_factory.mktemp("export")
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    out = {}
    for name in DEPLOYABLE:
        if name == "ctrgcn":
            checkpoint = tiny_checkpoint(root / f"{name}.safetensors", name, PreparedData(small_prepared).class_names,
                                         "ntu25", 2, stream="bone_motion")
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
