"""Model registry: every registered model builds, runs forward and backward for every layout (timm style)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from mmcl.data.layouts import get_layout
from mmcl.models import create_model, list_models, register_model
from mmcl.models.registry import _FACTORIES

LAYOUTS = [("ntu25", 2), ("nwucla20", 1), ("kinect_v1_20", 1)]  # (layout, persons)
SMALL = {"bigru": {"hidden_size": 16}}  # models whose default size is slow on a CPU
PSUMNET_JOINTS = {"body": 25, "hand": 13, "leg": 9}

# (model, layout, persons, factory arguments, input channels, joints): the other models on every layout with xyz
# input; PSUMNet (parts cut from NTU-25) on each part stream with its default 12-channel input.
CASES = [pytest.param(name, layout, persons, {"in_channels": 3, **SMALL.get(name, {})}, 3,
                      get_layout(layout).num_joints, id=f"{name}-{layout}")
         for name in list_models() if name != "psumnet" for layout, persons in LAYOUTS]
CASES += [pytest.param("psumnet", "ntu25", 2, {"stream": stream}, 12, joints, id=f"psumnet-{stream}")
          for stream, joints in PSUMNET_JOINTS.items()]


pytestmark = pytest.mark.usefixtures("one_thread")


def test_registered_models():
    assert {"ctrgcn", "psumnet"} <= set(list_models())
    assert list_models() == sorted(list_models())
    assert {case.values[0] for case in CASES} == set(list_models())


@pytest.mark.parametrize("name, layout, persons, kwargs, channels, joints", CASES)
def test_every_model_runs_forward_and_backward(name, layout, persons, kwargs, channels, joints):
    """Every registered model (a new one is picked up by CASES without a line of test): built for each layout it
    takes, tiny input, output shapes, and a gradient for every trainable parameter."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=7, layout=layout, num_person=persons, **kwargs)
    assert (model.num_classes, model.layout_name, model.num_person) == (7, layout, persons)
    expected_args = {k: v for k, v in kwargs.items() if k != "in_channels"}  # in_channels is not a registry argument
    assert (model.registry_name, model.registry_args) == (name, expected_args)
    x = torch.randn(2, channels, 8, joints, persons)
    logits = model(x)
    assert logits.shape == (2, 7) and torch.isfinite(logits).all()
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 3])).backward()
    trainable = [(param_name, p) for param_name, p in model.named_parameters() if p.requires_grad]
    assert trainable
    for param_name, p in trainable:
        assert p.grad is not None and torch.isfinite(p.grad).all(), param_name
    assert sum(p.grad.abs().sum() for _, p in trainable) > 0
    features = model.forward_features(x)
    assert features["logits"].shape == (2, 7)
    assert features["global_feature"].shape == (2, model.feature_dim)
    if "feature_map" in features:  # per-joint maps of graph models (the BiGRU reads a frame as one vector)
        assert features["feature_map"].shape[:2] == (2 * persons, model.feature_dim)


def test_kwargs_reach_the_factory():
    model = create_model("ctrgcn", num_classes=4, drop_rate=0.3)
    assert model.drop_out.p == 0.3


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(KeyError, match="unknown model 'nope'.*ctrgcn"):
        create_model("nope", num_classes=3)


def test_duplicate_registration_is_refused():
    def ctrgcn(**kwargs):  # same name as the real factory
        raise AssertionError("never called")

    with pytest.raises(ValueError, match="already registered"):
        register_model(ctrgcn)
    assert _FACTORIES["ctrgcn"] is not ctrgcn


def test_registry_import_is_cheap():
    code = "import sys, mmcl.models; assert 'torch' not in sys.modules, 'torch imported'; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
