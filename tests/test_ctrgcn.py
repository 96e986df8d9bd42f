"""CTR-GCN: parameter counts, the reference's state-dict layout, checkpoint loading, and equivalence with a
straightforward port of the reference implementation (github.com/Uason-Chen/CTR-GCN, model/ctrgcn.py)."""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from mmcl.data.layouts import get_layout
from mmcl.models import create_model
from mmcl.models.checkpoint import load_reference_checkpoint, load_state_dict_flexible
from mmcl.models.ctrgcn import CTRGCN

# ---------------------------------------------------------------------------------------------------------------
# The reference's state-dict layout, as data read off model/ctrgcn.py (not generated from mmcl's model).
# Model.__init__: data_bn = BatchNorm1d(M*C*V); l1..l10 = TCN_GCN_unit(in, out, A, stride, residual);
# fc = Linear(256, num_class). TCN_GCN_unit: gcn1 = unit_gcn, tcn1 = MultiScale_TemporalConv (kernel 5, dilations
# [1, 2], residual=False), residual = lambda 0 / lambda x / unit_tcn(kernel 1, stride) (conv, bn).
# unit_gcn: PA, alpha (parameters, registered first), convs = 3 x CTRGC(conv1..conv4), down = Sequential(conv, bn)
# when in != out, bn. The graph A is an attribute of the Model's Graph object and not in the state dict.
# ---------------------------------------------------------------------------------------------------------------

REFERENCE_UNITS = (  # (name, in (None: the input channels), out, stride, residual)
    ("l1", None, 64, 1, "none"),
    ("l2", 64, 64, 1, "identity"),
    ("l3", 64, 64, 1, "identity"),
    ("l4", 64, 64, 1, "identity"),
    ("l5", 64, 128, 2, "unit_tcn"),
    ("l6", 128, 128, 1, "identity"),
    ("l7", 128, 128, 1, "identity"),
    ("l8", 128, 256, 2, "unit_tcn"),
    ("l9", 256, 256, 1, "identity"),
    ("l10", 256, 256, 1, "identity"),
)
BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def _bn(prefix: str, c: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.weight": (c,), f"{prefix}.bias": (c,), f"{prefix}.running_mean": (c,),
            f"{prefix}.running_var": (c,), f"{prefix}.num_batches_tracked": ()}


def _conv(prefix: str, cout: int, cin: int, kt: int = 1) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.weight": (cout, cin, kt, 1), f"{prefix}.bias": (cout,)}


def reference_shapes(num_class: int, num_point: int, num_person: int, in_channels: int = 3) -> dict:
    """Key -> shape of the reference Model's state dict."""
    shapes = _bn("data_bn", num_person * in_channels * num_point)
    for name, cin, cout, stride, residual in REFERENCE_UNITS:
        cin = in_channels if cin is None else cin
        g, t, bc = f"{name}.gcn1", f"{name}.tcn1.branches", cout // 4
        rel = 8 if cin in (3, 9) else cin // 8
        shapes[f"{g}.PA"] = (3, num_point, num_point)
        shapes[f"{g}.alpha"] = (1,)
        for i in range(3):
            shapes |= _conv(f"{g}.convs.{i}.conv1", rel, cin) | _conv(f"{g}.convs.{i}.conv2", rel, cin)
            shapes |= _conv(f"{g}.convs.{i}.conv3", cout, cin) | _conv(f"{g}.convs.{i}.conv4", cout, rel)
        if cin != cout:
            shapes |= _conv(f"{g}.down.0", cout, cin) | _bn(f"{g}.down.1", cout)
        shapes |= _bn(f"{g}.bn", cout)
        for b in (0, 1):  # Sequential(1x1 conv, BN, ReLU, TemporalConv(conv 5x1, bn))
            shapes |= _conv(f"{t}.{b}.0", bc, cout) | _bn(f"{t}.{b}.1", bc)
            shapes |= _conv(f"{t}.{b}.3.conv", bc, bc, 5) | _bn(f"{t}.{b}.3.bn", bc)
        shapes |= _conv(f"{t}.2.0", bc, cout) | _bn(f"{t}.2.1", bc) | _bn(f"{t}.2.4", bc)  # 1x1, BN, ReLU, pool, BN
        shapes |= _conv(f"{t}.3.0", bc, cout) | _bn(f"{t}.3.1", bc)  # strided 1x1, BN
        if residual == "unit_tcn":
            shapes |= _conv(f"{name}.residual.conv", cout, cin) | _bn(f"{name}.residual.bn", cout)
    shapes |= {"fc.weight": (num_class, 256), "fc.bias": (num_class,)}
    return shapes


def random_state_dict(shapes: dict, seed: int = 0) -> OrderedDict:
    gen = torch.Generator().manual_seed(seed)
    out = OrderedDict()
    for key, shape in shapes.items():
        if key.endswith("num_batches_tracked"):
            out[key] = torch.randint(0, 1000, shape, generator=gen)
        elif key.endswith("running_var"):
            out[key] = torch.rand(shape, generator=gen) + 0.5
        else:
            out[key] = torch.randn(shape, generator=gen)
    return out


# ---------------------------------------------------------------------------------------------------------------
# A straightforward port of the reference (structure, initialisation and forward as published; class names are
# the reference's).
# ---------------------------------------------------------------------------------------------------------------

def conv_init(conv):
    nn.init.kaiming_normal_(conv.weight, mode="fan_out")
    nn.init.constant_(conv.bias, 0)


def bn_init(bn, scale):
    nn.init.constant_(bn.weight, scale)
    nn.init.constant_(bn.bias, 0)


def weights_init(m):
    name = m.__class__.__name__
    if name.find("Conv") != -1 and hasattr(m, "weight"):
        nn.init.kaiming_normal_(m.weight, mode="fan_out")
        if m.bias is not None:
            nn.init.constant_(m.bias, 0)
    elif name.find("BatchNorm") != -1:
        m.weight.data.normal_(1.0, 0.02)
        m.bias.data.fill_(0)


class TemporalConv(nn.Module):
    def __init__(self, cin, cout, kernel_size, stride=1, dilation=1):
        super().__init__()
        pad = (kernel_size + (kernel_size - 1) * (dilation - 1) - 1) // 2
        self.conv = nn.Conv2d(cin, cout, (kernel_size, 1), padding=(pad, 0), stride=(stride, 1),
                              dilation=(dilation, 1))
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return self.bn(self.conv(x))


class MultiScale_TemporalConv(nn.Module):
    def __init__(self, cin, cout, kernel_size=5, stride=1, dilations=(1, 2)):
        super().__init__()
        bc = cout // (len(dilations) + 2)
        self.branches = nn.ModuleList([
            nn.Sequential(nn.Conv2d(cin, bc, 1), nn.BatchNorm2d(bc), nn.ReLU(inplace=True),
                          TemporalConv(bc, bc, kernel_size, stride, d)) for d in dilations])
        self.branches.append(nn.Sequential(nn.Conv2d(cin, bc, 1), nn.BatchNorm2d(bc), nn.ReLU(inplace=True),
                                           nn.MaxPool2d((3, 1), (stride, 1), (1, 0)), nn.BatchNorm2d(bc)))
        self.branches.append(nn.Sequential(nn.Conv2d(cin, bc, 1, stride=(stride, 1)), nn.BatchNorm2d(bc)))
        self.apply(weights_init)

    def forward(self, x):
        return torch.cat([branch(x) for branch in self.branches], 1)


class CTRGC(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        rel = 8 if cin in (3, 9) else cin // 8
        self.conv1, self.conv2 = nn.Conv2d(cin, rel, 1), nn.Conv2d(cin, rel, 1)
        self.conv3, self.conv4 = nn.Conv2d(cin, cout, 1), nn.Conv2d(rel, cout, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                conv_init(m)

    def forward(self, x, A, alpha):
        x1, x2, x3 = self.conv1(x).mean(-2), self.conv2(x).mean(-2), self.conv3(x)
        x1 = torch.tanh(x1.unsqueeze(-1) - x2.unsqueeze(-2))
        x1 = self.conv4(x1) * alpha + A.unsqueeze(0).unsqueeze(0)
        return torch.einsum("ncuv,nctv->nctu", x1, x3)


class unit_gcn(nn.Module):
    def __init__(self, cin, cout, A):
        super().__init__()
        self.convs = nn.ModuleList([CTRGC(cin, cout) for _ in range(A.shape[0])])
        self.down = nn.Sequential(nn.Conv2d(cin, cout, 1), nn.BatchNorm2d(cout)) if cin != cout else (lambda x: x)
        self.PA = nn.Parameter(torch.from_numpy(A.astype(np.float32)))
        self.alpha = nn.Parameter(torch.zeros(1))
        self.bn = nn.BatchNorm2d(cout)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                conv_init(m)
            elif isinstance(m, nn.BatchNorm2d):
                bn_init(m, 1)
        bn_init(self.bn, 1e-6)

    def forward(self, x):
        y = None
        for i in range(len(self.convs)):
            z = self.convs[i](x, self.PA[i], self.alpha)
            y = z + y if y is not None else z
        y = self.bn(y)
        y += self.down(x)
        return torch.relu(y)


class unit_tcn(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1, stride=(stride, 1))
        self.bn = nn.BatchNorm2d(cout)
        conv_init(self.conv)
        bn_init(self.bn, 1)

    def forward(self, x):
        return self.bn(self.conv(x))


class TCN_GCN_unit(nn.Module):
    def __init__(self, cin, cout, A, stride=1, residual=True):
        super().__init__()
        self.gcn1 = unit_gcn(cin, cout, A)
        self.tcn1 = MultiScale_TemporalConv(cout, cout, 5, stride, (1, 2))
        if not residual:
            self.residual = lambda x: 0
        elif cin == cout and stride == 1:
            self.residual = lambda x: x
        else:
            self.residual = unit_tcn(cin, cout, stride)

    def forward(self, x):
        return torch.relu(self.tcn1(self.gcn1(x)) + self.residual(x))


class ReferenceModel(nn.Module):
    def __init__(self, num_class, num_point, num_person, A, in_channels=3):
        super().__init__()
        self.data_bn = nn.BatchNorm1d(num_person * in_channels * num_point)
        self.l1 = TCN_GCN_unit(in_channels, 64, A, residual=False)
        self.l2, self.l3, self.l4 = TCN_GCN_unit(64, 64, A), TCN_GCN_unit(64, 64, A), TCN_GCN_unit(64, 64, A)
        self.l5 = TCN_GCN_unit(64, 128, A, stride=2)
        self.l6, self.l7 = TCN_GCN_unit(128, 128, A), TCN_GCN_unit(128, 128, A)
        self.l8 = TCN_GCN_unit(128, 256, A, stride=2)
        self.l9, self.l10 = TCN_GCN_unit(256, 256, A), TCN_GCN_unit(256, 256, A)
        self.fc = nn.Linear(256, num_class)
        nn.init.normal_(self.fc.weight, 0, math.sqrt(2.0 / num_class))
        bn_init(self.data_bn, 1)

    def forward(self, x):
        N, C, T, V, M = x.size()
        x = x.permute(0, 4, 3, 1, 2).contiguous().view(N, M * V * C, T)
        x = self.data_bn(x)
        x = x.view(N, M, V, C, T).permute(0, 1, 3, 4, 2).contiguous().view(N * M, C, T, V)
        for unit in (self.l1, self.l2, self.l3, self.l4, self.l5, self.l6, self.l7, self.l8, self.l9, self.l10):
            x = unit(x)
        x = x.view(N, M, x.size(1), -1).mean(3).mean(1)
        return self.fc(x)


CONFIGS = [("ntu25", 2, 60), ("nwucla20", 1, 10)]  # (layout, persons, classes)


pytestmark = pytest.mark.usefixtures("one_thread")


def _pair(layout: str, persons: int, classes: int, dtype=torch.float32, seed: int = 0):
    """mmcl model and reference port with the same, perturbed weights (alpha != 0, BN affine non-trivial)."""
    torch.manual_seed(seed)
    ours = CTRGCN(classes, layout, 3, persons).to(dtype)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in ours.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen).to(dtype))
    graph = get_layout(layout)
    ref = ReferenceModel(classes, graph.num_joints, persons, graph.adjacency()).to(dtype)
    ref.load_state_dict(ours.state_dict(), strict=True)
    return ours, ref


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("classes, expected", [(60, 1_446_672), (120, 1_462_092)])
def test_parameter_count_ntu(classes, expected):
    model = create_model("ctrgcn", num_classes=classes, layout="ntu25", num_person=2)
    assert sum(p.numel() for p in model.parameters()) == expected
    spec = reference_shapes(classes, 25, 2)
    assert sum(math.prod(s) for k, s in spec.items() if not k.endswith(BN_BUFFERS)) == expected


def test_parameter_count_nwucla():
    model = create_model("ctrgcn", num_classes=10, layout="nwucla20", num_person=1)
    assert sum(p.numel() for p in model.parameters()) == 1_426_892


@pytest.mark.parametrize("layout, persons, classes", CONFIGS)
def test_state_dict_layout_is_the_reference(layout, persons, classes):
    spec = reference_shapes(classes, get_layout(layout).num_joints, persons)
    model = CTRGCN(classes, layout, 3, persons)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == spec
    state = random_state_dict(spec)
    load_state_dict_flexible(model, state, strict=True)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
    port = ReferenceModel(classes, get_layout(layout).num_joints, persons, get_layout(layout).adjacency())
    assert {k: tuple(v.shape) for k, v in port.state_dict().items()} == spec


def test_module_prefix_and_reference_checkpoint(tmp_path):
    spec = reference_shapes(60, 25, 2)
    state = random_state_dict(spec, seed=3)
    model = CTRGCN(60)
    load_state_dict_flexible(model, OrderedDict((f"module.{k}", v) for k, v in state.items()))
    assert torch.equal(model.l5.residual.conv.weight, state["l5.residual.conv.weight"])
    path = tmp_path / "runs-65-40000.pt"
    torch.save(OrderedDict((f"module.{k}", v) for k, v in state.items()), path)
    loaded = load_reference_checkpoint(path)
    assert list(loaded) == list(state)
    other = CTRGCN(60)
    load_state_dict_flexible(other, loaded)
    assert all(torch.equal(other.state_dict()[k], v) for k, v in state.items())


def test_reference_checkpoint_rejects_non_state_dict(tmp_path):
    path = tmp_path / "bad.pt"
    torch.save({"epoch": 3, "state_dict": {"fc.weight": torch.zeros(2, 2)}}, path)
    with pytest.raises(ValueError, match="bad.pt.*epoch"):
        load_reference_checkpoint(path)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="garbage.pt: not a readable torch checkpoint"):
        load_reference_checkpoint(garbage)


def test_shape_mismatch_names_key_and_shapes():
    state = random_state_dict(reference_shapes(60, 25, 2))
    with pytest.raises(ValueError) as err:
        load_state_dict_flexible(CTRGCN(120), state)
    message = str(err.value)
    assert "fc.weight: checkpoint (60, 256) vs model (120, 256)" in message and "class count" in message
    with pytest.raises(ValueError) as err:
        load_state_dict_flexible(CTRGCN(60, "nwucla20", 3, 1), state)
    message = str(err.value)
    assert "l1.gcn1.PA: checkpoint (3, 25, 25) vs model (3, 20, 20)" in message and "joints" in message
    assert "data_bn.weight: checkpoint (150,) vs model (60,)" in message and "persons" in message
    incomplete = OrderedDict(list(state.items())[:-1])
    with pytest.raises(RuntimeError, match="fc.bias"):
        load_state_dict_flexible(CTRGCN(60), incomplete)


def test_initialisation_is_the_reference():
    """Same seed, same weights: the module order and init calls replay the reference's RNG use exactly."""
    graph = get_layout("ntu25")
    torch.manual_seed(7)
    port = ReferenceModel(60, 25, 2, graph.adjacency())
    torch.manual_seed(7)
    ours = CTRGCN(60)
    theirs = port.state_dict()
    assert all(torch.equal(v, theirs[k]) for k, v in ours.state_dict().items())
    assert torch.all(ours.l3.gcn1.bn.weight == 1e-6) and ours.l3.gcn1.alpha.item() == 0
    assert torch.equal(ours.l3.gcn1.PA.detach(), torch.from_numpy(graph.adjacency()))
    tcn_bn = ours.l3.tcn1.branches[0][1].weight.detach()
    assert 0.9 < tcn_bn.min() < 1 < tcn_bn.max() < 1.1  # N(1, 0.02)
    fc_std = ours.fc.weight.detach().std().item()
    assert abs(fc_std - math.sqrt(2 / 60)) < 0.02


@pytest.mark.parametrize("layout, persons, classes", CONFIGS)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_forward_matches_reference_fp32(layout, persons, classes, mode):
    ours, ref = _pair(layout, persons, classes)
    ours.train(mode == "train")
    ref.train(mode == "train")
    x = torch.randn(3, 3, 12, get_layout(layout).num_joints, persons, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert _rel(ours(x), ref(x)) < 1e-4
    if mode == "train":  # running statistics move as in the reference
        theirs = ref.state_dict()
        for key, value in ours.state_dict().items():
            torch.testing.assert_close(value, theirs[key], rtol=1e-4, atol=1e-6, msg=key)


@pytest.mark.parametrize("layout, persons, classes", CONFIGS)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_gradients_match_reference(layout, persons, classes, mode):
    """In float64: fp32 gradients of the reference itself differ from its float64 ones by ~1e-2 in train mode
    (BN with gamma 1e-6), so fp32 gradients cannot be compared to 1e-4."""
    ours, ref = _pair(layout, persons, classes, dtype=torch.float64)
    ours.train(mode == "train")
    ref.train(mode == "train")
    x = torch.randn(2, 3, 12, get_layout(layout).num_joints, persons, dtype=torch.float64,
                    generator=torch.Generator().manual_seed(6))
    x_ours, x_ref = x.clone().requires_grad_(), x.clone().requires_grad_()
    target = torch.randn(2, classes, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    ((ours(x_ours) - target) ** 2).sum().backward()
    ((ref(x_ref) - target) ** 2).sum().backward()
    assert _rel(x_ours.grad, x_ref.grad) < 1e-4
    theirs = dict(ref.named_parameters())
    scale = max(p.grad.abs().max().item() for p in ref.parameters())
    for name, p in ours.named_parameters():
        assert p.grad is not None, name
        g_ref = theirs[name].grad
        err = (p.grad - g_ref).abs().max().item()
        # conv biases in front of a BN have a zero gradient in train mode: compare those on the global scale
        assert err <= 1e-4 * max(g_ref.abs().max().item(), 1e-6 * scale), name


def _random_running_stats(model: nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(0.3 * torch.randn(m.running_mean.shape, generator=gen))
                m.running_var.copy_(0.5 + 1.5 * torch.rand(m.running_var.shape, generator=gen))


@pytest.mark.parametrize("layout, persons, classes", CONFIGS)
@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_folded_batch_norms_compute_the_reference(layout, persons, classes, dtype, tolerance):
    """Evaluation with every batch norm folded into its convolution (the default) and without (``fold_bn=False``)
    gives the reference's logits: to rounding in float64, within 1e-5 relative in fp32."""
    ours, ref = _pair(layout, persons, classes, dtype=dtype, seed=2)
    _random_running_stats(ours, seed=3)
    ref.load_state_dict(ours.state_dict())
    ours.eval()
    ref.eval()
    x = torch.randn(2, 3, 12, get_layout(layout).num_joints, persons, dtype=dtype,
                    generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected = ref(x)
        assert ours.fold_bn
        folded = ours(x)
        ours.fold_bn = False
        unfolded = ours(x)
    assert not any(getattr(m, "fold_bn", False) for m in ours.modules())
    assert _rel(folded, expected) < tolerance
    assert _rel(unfolded, expected) < tolerance


def test_fold_switch_is_a_model_argument_and_leaves_training_alone():
    folded = create_model("ctrgcn", num_classes=6, layout="ntu25", num_person=2)
    plain = create_model("ctrgcn", num_classes=6, layout="ntu25", num_person=2, fold_bn=False)
    assert folded.fold_bn and not plain.fold_bn and plain.registry_args == {"fold_bn": False}
    plain.load_state_dict(folded.state_dict())
    assert list(folded.state_dict()) == list(plain.state_dict())
    x = torch.randn(2, 3, 8, 25, 2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(folded.train()(x), plain.train()(x))  # train mode: batch statistics, nothing folded


def test_logits_regression():
    """Fixed seed and input, weights perturbed as in the equivalence tests (so alpha and the refinement matter), eval
    and train mode: mmcl's fp32 logits against an independent computation, the reference port run in float64 with the
    same weights (the largest difference is about 1e-6 of the largest logit)."""
    model, _ = _pair("ntu25", 2, 60)
    graph = get_layout("ntu25")
    port = ReferenceModel(60, 25, 2, graph.adjacency()).double()
    port.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(2, 3, 16, 25, 2, generator=torch.Generator().manual_seed(0))
    for mode in ("eval", "train"):
        model.train(mode == "train")
        port.train(mode == "train")
        with torch.no_grad():
            ours, reference = model(x).double(), port(x.double())
        assert reference.abs().max() > 1 and reference.std() > 1, mode  # not a degenerate output
        assert _rel(ours, reference) < 1e-5, mode


def test_forward_features():
    model = create_model("ctrgcn", num_classes=60, layout="ntu25", num_person=2, drop_rate=0.5).eval()
    assert (model.num_person, model.layout_name, model.num_classes, model.feature_dim) == (2, "ntu25", 60, 256)
    x = torch.randn(3, 3, 16, 25, 2)
    with torch.no_grad():
        out = model.forward_features(x)
        assert out["feature_map"].shape == (6, 256, 4, 25)
        assert out["global_feature"].shape == (3, 256)
        torch.testing.assert_close(out["global_feature"], out["feature_map"].view(3, 2, 256, -1).mean(3).mean(1))
        torch.testing.assert_close(out["logits"], model.classify(out["global_feature"]))
        torch.testing.assert_close(model(x), out["logits"])


def test_bad_input_shape_is_named():
    model = CTRGCN(60)
    with pytest.raises(ValueError, match=r"V=25.*\(2, 3, 16, 20, 2\)"):
        model(torch.randn(2, 3, 16, 20, 2))


@pytest.mark.parametrize("in_channels", [6, 12])
def test_other_input_channels(in_channels):
    model = create_model("ctrgcn", num_classes=5, layout="kinect_v1_20", in_channels=in_channels, num_person=1)
    model(torch.randn(2, in_channels, 8, 20, 1)).sum().backward()
    assert model.l1.gcn1.convs[0].conv1.out_channels == (8 if in_channels == 6 else 1)


def test_bf16_autocast_close_to_fp32():
    torch.manual_seed(0)
    model = CTRGCN(60)
    x = torch.randn(2, 3, 16, 25, 2)
    with torch.no_grad():
        full = model(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = model(x)
    assert low.dtype == torch.bfloat16
    assert _rel(low.float(), full) < 5e-2
    low.float().sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all()
               for p in model.parameters())
