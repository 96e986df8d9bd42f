"""PSUMNet: parameter counts per stream next to CTR-GCN's four streams, the release's state dict, and equivalence with
a straightforward port of the release (tests/psumnet_reference.py); the part input against a direct computation and
against the release's feeder."""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import pytest
import torch

import ctrgcn_feeder_reference as ctrgcn_feeder
import psumnet_reference as ref
from mmcl.data.parts import PART_JOINTS, PartInput, part_layout
from mmcl.data.transforms import ClipTransform, Draws
from mmcl.models import create_model
from mmcl.models.checkpoint import load_reference_checkpoint, load_state_dict_flexible
from mmcl.models.psumnet import PSUMNet

STREAMS = ("body", "hand", "leg")
JOINTS = {"body": 25, "hand": 13, "leg": 9}
RELEASED_LEG = ref.KINECT_LEG_PAIRS
INTENDED_LEG = ((2, 1), (3, 2), (4, 3), (5, 4), (6, 1), (7, 6), (8, 7), (9, 8))

pytestmark = pytest.mark.usefixtures("one_thread")


def _port(stream: str, classes: int = 60, leg_pairs=RELEASED_LEG) -> ref.Model:
    return ref.Model(num_class=classes, num_point=JOINTS[stream], num_person=2, graph=ref.Graph(leg_pairs),
                     in_channels=12, stream=stream)


def _pair(stream: str, dtype=torch.float32, seed: int = 0):
    """mmcl model and release port with the same perturbed weights (alpha != 0, non-trivial BN affine), loaded
    into the port strictly from mmcl's state dict."""
    torch.manual_seed(seed)
    ours = create_model("psumnet", num_classes=10, stream=stream, leg_graph="released").to(dtype)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in ours.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen).to(dtype))
    port = _port(stream, 10).to(dtype)
    port.load_state_dict(ours.state_dict(), strict=True)
    return ours, port


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


# --- model ---------------------------------------------------------------------------------------------------------

def test_parameter_counts_next_to_ctrgcn():
    """The release's counts at 60 classes: 1,448,418 + 978,482 + 499,898 = 2,926,798, half of CTR-GCN's 4 streams."""
    counts = {s: sum(p.numel() for p in create_model("psumnet", num_classes=60, stream=s).parameters())
              for s in STREAMS}
    assert counts == {"body": 1_448_418, "hand": 978_482, "leg": 499_898}
    assert sum(counts.values()) == 2_926_798
    assert {s: sum(p.numel() for p in _port(s).parameters()) for s in STREAMS} == counts
    ctrgcn = sum(p.numel() for p in create_model("ctrgcn", num_classes=60).parameters())
    assert ctrgcn == 1_446_672 and 4 * ctrgcn == 5_786_688  # joint, bone, joint-motion, bone-motion
    assert create_model("psumnet", num_classes=60).in_channels == 12


@pytest.mark.parametrize("stream", STREAMS)
def test_release_state_dict_loads_strictly(stream, tmp_path):
    port = _port(stream)
    spec = {k: tuple(v.shape) for k, v in port.state_dict().items()}
    for leg_graph in ("intended", "released"):
        ours = create_model("psumnet", num_classes=60, stream=stream, leg_graph=leg_graph)
        assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == spec
    assert [k for k in spec if k.startswith("layers.") and k.endswith("gcn1.alpha")] == [
        f"layers.{i}.gcn1.alpha" for i in range(len(port.layers))]
    # a release checkpoint: torch.save of the DataParallel-stripped state dict, runs-<epoch>-<step>.pt
    gen = torch.Generator().manual_seed(3)
    state = OrderedDict((k, torch.randint(0, 9, v.shape, generator=gen) if k.endswith("num_batches_tracked")
                         else torch.rand(v.shape, generator=gen) + 0.5) for k, v in port.state_dict().items())
    path = tmp_path / "runs-60-12000.pt"
    torch.save(state, path)
    ours.load_state_dict(load_reference_checkpoint(path), strict=True)
    assert all(torch.equal(ours.state_dict()[k], v) for k, v in state.items())
    wrapped = OrderedDict((f"module.{k}", v) for k, v in state.items())  # as saved from DataParallel
    load_state_dict_flexible(create_model("psumnet", num_classes=60, stream=stream), wrapped, strict=True)


def test_wrong_stream_checkpoint_is_named():
    state = _port("hand").state_dict()
    with pytest.raises(ValueError, match="layers.0.gcn1.PA: checkpoint \\(3, 13, 13\\) vs model \\(3, 9, 9\\)"):
        load_state_dict_flexible(create_model("psumnet", num_classes=60, stream="leg"), state)


def test_initialisation_is_the_release_for_body():
    torch.manual_seed(11)
    port = _port("body")
    torch.manual_seed(11)
    ours = create_model("psumnet", num_classes=60, stream="body")
    theirs = port.state_dict()
    assert all(torch.equal(v, theirs[k]) for k, v in ours.state_dict().items())


@pytest.mark.parametrize("stream", STREAMS)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_logits_match_release(stream, mode):
    ours, port = _pair(stream)
    ours.train(mode == "train")
    port.train(mode == "train")
    x = torch.randn(3, 12, 12, JOINTS[stream], 2, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert _rel(ours(x), port(x)) < 1e-4
    if mode == "train":  # running statistics move as in the release
        theirs = port.state_dict()
        for key, value in ours.state_dict().items():
            torch.testing.assert_close(value, theirs[key], rtol=1e-4, atol=1e-6, msg=key)


@pytest.mark.parametrize("stream", STREAMS)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_gradients_match_release(stream, mode):
    """In float64 (see test_ctrgcn.test_gradients_match_reference for why not fp32)."""
    ours, port = _pair(stream, dtype=torch.float64)
    ours.train(mode == "train")
    port.train(mode == "train")
    x = torch.randn(2, 12, 8, JOINTS[stream], 2, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    x_ours, x_port = x.clone().requires_grad_(), x.clone().requires_grad_()
    target = torch.randn(2, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    ((ours(x_ours) - target) ** 2).sum().backward()
    ((port(x_port) - target) ** 2).sum().backward()
    assert _rel(x_ours.grad, x_port.grad) < 1e-6
    theirs = dict(port.named_parameters())
    scale = max(p.grad.abs().max().item() for p in port.parameters())
    for name, p in ours.named_parameters():
        g_ref = theirs[name].grad
        err = (p.grad - g_ref).abs().max().item()
        assert err <= 1e-6 * max(g_ref.abs().max().item(), 1e-6 * scale), name


def test_forward_features_and_errors():
    model = create_model("psumnet", num_classes=5, stream="hand").eval()
    assert (model.feature_dim, model.num_joints, model.layout_name, model.stream) == (256, 13, "ntu25", "hand")
    x = torch.randn(2, 12, 16, 13, 2)
    with torch.no_grad():
        out = model.forward_features(x)
    assert out["feature_map"].shape == (4, 256, 4, 13) and out["global_feature"].shape == (2, 256)
    torch.testing.assert_close(out["logits"], model.classify(out["global_feature"]))
    with pytest.raises(ValueError, match=r"PSUMNet\(hand\) expects .*V=13.*\(2, 12, 16, 25, 2\)"):
        model(torch.randn(2, 12, 16, 25, 2))
    with pytest.raises(ValueError, match="unknown PSUMNet part stream 'arm'"):
        create_model("psumnet", num_classes=5, stream="arm")
    with pytest.raises(ValueError, match="unknown leg_graph 'fixed'"):
        create_model("psumnet", num_classes=5, stream="leg", leg_graph="fixed")
    with pytest.raises(ValueError, match="defined on the ntu25 layout.*kinect_v1_20"):
        create_model("psumnet", num_classes=5, layout="kinect_v1_20")


# --- graphs and input ----------------------------------------------------------------------------------------------

def test_part_graphs():
    assert PART_JOINTS["hand"] == (20, 4, 5, 6, 7, 21, 22, 8, 9, 10, 11, 23, 24)
    assert PART_JOINTS["leg"] == (0, 12, 13, 14, 15, 16, 17, 18, 19)
    np.testing.assert_array_equal(part_layout("body").adjacency(), ref.Graph().A.astype(np.float32))
    np.testing.assert_array_equal(part_layout("hand").adjacency(), ref.Graph().hand_A.astype(np.float32))
    np.testing.assert_array_equal(part_layout("leg", "released").adjacency(), ref.Graph().leg_A.astype(np.float32))
    intended = part_layout("leg").adjacency()
    np.testing.assert_array_equal(intended, ref.spatial_graph(9, INTENDED_LEG).astype(np.float32))
    # released: the right foot (8) has no edge, the left foot (4) hangs off the spine base (0) and the left ankle
    released = part_layout("leg", "released").adjacency()
    assert released[1:, 8, :].sum() == released[1:, :, 8].sum() == 0 and released[1, 0, 4] == released[1, 3, 4] == 0.5
    assert intended[1, 0, 5] == intended[1, 7, 8] == 1  # intended: right hip -> spine base, right foot -> ankle
    model = create_model("psumnet", num_classes=5, stream="leg", leg_graph="released")
    torch.testing.assert_close(model.layers[2].gcn1.PA.detach(), torch.from_numpy(released))


def _direct_input(x: np.ndarray, stream: str, pairs) -> np.ndarray:
    """The definition, joint by joint: part joints, bones x[j] - x[parent] (later pairs win), forward differences."""
    idx = PART_JOINTS[stream]
    c, t, _, m = x.shape
    joint = np.stack([x[:, :, j] for j in idx], axis=2).astype(np.float64)
    bone = np.zeros_like(joint)
    for child, parent in pairs:
        bone[:, :, child - 1] = joint[:, :, child - 1] - joint[:, :, parent - 1]
    out = np.zeros((12, t, len(idx), m))
    for k, arr in enumerate((joint, bone)):
        out[3 * k:3 * k + 3] = arr
        for f in range(t - 1):
            out[6 + 3 * k:9 + 3 * k, f] = arr[:, f + 1] - arr[:, f]
    return out


@pytest.mark.parametrize("stream, leg_graph, pairs", [
    ("body", "intended", ref.NTU_PAIRS), ("hand", "intended", ref.KINECT_HAND_PAIRS),
    ("leg", "intended", INTENDED_LEG), ("leg", "released", RELEASED_LEG)])
def test_part_input_direct(stream, leg_graph, pairs):
    x = np.random.default_rng(0).normal(size=(3, 10, 25, 2)).astype(np.float32)
    got = PartInput(stream, leg_graph)(x)
    assert got.dtype == np.float32 and got.shape == (12, 10, JOINTS[stream], 2)
    np.testing.assert_allclose(got, _direct_input(x, stream, pairs), rtol=1e-6, atol=1e-7)
    assert not got[6:, -1].any()  # last motion frame is zero
    if stream == "leg":  # the joint without a bone: spine base; released also the right foot (9th)
        no_bone = [0, 8] if leg_graph == "released" else [0]
        assert [v for v in range(9) if not got[3:6, :, v].any()] == no_bone


@pytest.mark.parametrize("stream", STREAMS)
@pytest.mark.parametrize("train", [False, True])
def test_part_input_matches_release_feeder(stream, train):
    """Crop-resize (+ rotation) with mmcl's transform, then the part input, against the release's feeder given
    the same draws; the leg with the released pairs."""
    rng = np.random.default_rng(3)
    valid = 90
    x = np.zeros((3, 300, 25, 2), dtype=np.float32)
    x[:, :valid] = rng.normal(0, 0.5, size=(3, valid, 25, 2)).astype(np.float32)
    crop = ClipTransform(window=64, stream="joint", train=train)
    draws = crop.draw(valid, rng) if train else None
    if train:
        draws = Draws(draws.p, draws.start, tuple(float(np.float32(a)) for a in draws.angles))
    ours = PartInput(stream, "released")(crop(x, valid, draws=draws))
    if train:
        clip = ctrgcn_feeder.valid_crop_resize(x, valid, [0.5, 1], 64, p=draws.p, bias=draws.start)
        clip = np.asarray(ctrgcn_feeder.random_rot(clip, draws.angles))
    else:
        clip = ctrgcn_feeder.valid_crop_resize(x, valid, [0.95], 64)
    expected = ref.feeder_part_input(clip, stream)
    assert ours.shape == expected.shape == (12, 64, JOINTS[stream], 2)
    np.testing.assert_allclose(ours, expected, rtol=0, atol=2e-6)  # crop and rotation agree to ~1e-7 (test_transforms)
    # on the same cropped clip, hand and leg are bit-identical (the release computes them in float64, as mmcl does);
    # the release's body stays float32, a rounding apart in the bone motion
    np.testing.assert_allclose(PartInput(stream, "released")(clip), expected, rtol=0,
                               atol=0 if stream != "body" else 1e-6)


def test_part_input_rejects_other_layouts():
    with pytest.raises(ValueError, match=r"NTU-25 clip \(3, T, 25, M\), got shape \(3, 10, 20, 1\)"):
        PartInput("hand")(np.zeros((3, 10, 20, 1), dtype=np.float32))
    assert PartInput("leg").channels == 12 and math.prod(PartInput("hand")(np.ones((3, 4, 25, 1))).shape) == 624
