"""A run's co-learning heads on disk: saved per head with its config and sizes, loaded back by name."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from mmcl.colearn.build import CoLearner
from mmcl.colearn.config import DeformableConfig, FAMConfig, FRMConfig, MMixerConfig, OpenVocabConfig
from mmcl.colearn.deformable import DeformableHead
from mmcl.colearn.fam import FAM
from mmcl.colearn.frm import FRM
from mmcl.colearn.heads import load_head, read_heads, save_heads
from mmcl.colearn.mmixer import MMixerHead
from mmcl.colearn.openvocab import OpenVocabHead
from mmcl.errors import CheckpointError
from mmcl.models.checkpoint import CheckpointInfo

pytestmark = pytest.mark.usefixtures("one_thread")

INFO = CheckpointInfo("ctrgcn", {}, [f"c{i}" for i in range(6)], "ntu25", 3, 2, "joint", 16, "name: x\n",
                      {"epoch": 3})


def _heads() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    heads = {
        "fam": FAM(FAMConfig(enabled=True, pool="attention", hidden=16), 12, 256),
        "frm": FRM(FRMConfig(enabled=True, hidden=8, pool="attention"), 10, 6),
        "openvocab": OpenVocabHead(OpenVocabConfig(enabled=True, hidden=16), 256, 10, torch.randn(6, 10)),
        "mmixer": MMixerHead(MMixerConfig(enabled=True, dim=16, heads=2, hallucinator_hidden=16, cfem=False), 6,
                             256, 3, 12),
        "deformable": DeformableHead(DeformableConfig(enabled=True, dim=16, heads=2, hallucinator_hidden=16,
                                                      readout="mean"), 6, 256, 3, 12, "kinect_v1_20"),
    }
    with torch.no_grad():  # move every parameter off its initial value, so a fresh head would differ
        for head in heads.values():
            for p in head.parameters():
                p.add_(torch.randn_like(p) * 0.1)
    return heads


def test_each_head_comes_back_by_name_with_its_config_and_weights(tmp_path):
    heads = _heads()
    path = save_heads(tmp_path / "best_heads.safetensors", CoLearner(heads), INFO)
    info, specs = read_heads(path)
    assert info == INFO and list(specs) == list(heads)
    assert specs["deformable"]["dims"] == {"num_classes": 6, "feature_dim": 256, "visual_frames": 3,
                                           "visual_dim": 12, "layout": "kinect_v1_20"}
    assert specs["mmixer"]["config"]["cfem"] is False and specs["frm"]["config"]["pool"] == "attention"
    with safe_open(str(path), framework="pt") as f:
        assert {k.split(".")[0] for k in f.keys()} == set(heads)
    for name, head in heads.items():
        loaded = load_head(path, name)
        assert type(loaded) is type(head) and loaded.cfg == head.cfg and loaded.dims == head.dims
        assert not loaded.training
        theirs = loaded.state_dict()
        assert theirs.keys() == head.state_dict().keys()
        for key, value in head.state_dict().items():
            assert torch.equal(theirs[key], value), (name, key)
    # a loaded head computes what the trained one does
    frm = load_head(path, "frm")
    logits, text = torch.randn(4, 6), torch.randn(4, 5, 10)
    assert torch.allclose(frm.refined(logits, text), heads["frm"].eval().refined(logits, text))
    features = torch.randn(4, 256)
    assert torch.allclose(load_head(path, "openvocab").project(features), heads["openvocab"].project(features))


def test_a_missing_head_or_an_old_heads_file_fails_naming_it(tmp_path):
    heads = _heads()
    path = save_heads(tmp_path / "best_heads.safetensors", CoLearner({"fam": heads["fam"]}), INFO)
    with pytest.raises(CheckpointError, match=r"holds no 'frm' head \(the run trained fam\); train with "
                                       r"colearn.frm.enabled=true"):
        load_head(path, "frm")
    old = tmp_path / "old_heads.safetensors"
    save_file({"heads.fam.proj.0.weight": torch.zeros(2, 2)}, str(old),
              metadata={"format": "mmcl-colearn-heads-v1", **INFO.to_metadata()})
    with pytest.raises(CheckpointError, match=rf"{old} was written by an older mmcl .* retrain"):
        load_head(old, "fam")
    checkpoint = tmp_path / "best.safetensors"
    save_file({"fc.weight": torch.zeros(2, 2)}, str(checkpoint),
              metadata={"format": "mmcl-skeleton-model-v1", **INFO.to_metadata()})
    with pytest.raises(CheckpointError, match="is not an mmcl heads file .* best_heads.safetensors holds"):
        load_head(checkpoint, "fam")
    with safe_open(str(path), framework="pt") as f:  # a config key this mmcl does not know
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    specs = json.loads(meta["heads"])
    specs["fam"]["config"]["bogus"] = 1
    save_file(tensors, str(tmp_path / "bogus.safetensors"), metadata={**meta, "heads": json.dumps(specs)})
    with pytest.raises(CheckpointError, match=r"bogus.safetensors: the 'fam' head's stored config has keys this mmcl does "
                                         r"not know: \['bogus'\]"):
        load_head(tmp_path / "bogus.safetensors", "fam")
