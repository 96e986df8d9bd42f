"""The cross-modal co-learning variants (M-Mixer, 3D deformable): normalised-time alignment, deformable sampling,
attention partitions, shapes for 25- and 20-joint layouts, missing visual features, gradients, the deployed
skeleton-only model (registry round trip, evaluation with the teacher cache deleted) and short training runs."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import fields, replace

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from mmcl.cli import main
from mmcl.colearn.build import CoLearner
from mmcl.colearn.config import DeformableConfig, MMixerConfig
from mmcl.colearn.deformable import DeformableHead
from mmcl.colearn.mmixer import MMixerHead
from mmcl.config import load_config
from mmcl.data.layouts import get_layout
from mmcl.engine.trainer import train
from mmcl.models import create_model
from mmcl.models.crossmodal import align_frames, grid_points, sample_tokens, skeleton_features, token_centres
from mmcl.models.crossmodal_config import DeformablePathConfig, MMixerPathConfig
from mmcl.models.ctrgcn_deformable import (PartitionAttention, TokenSearch, joint_groups, joint_stride_keys, partition,
                                           partition_mask, temporal_stride_keys)

K, D, CLASSES = 5, 32, 16  # visual frames, visual feature size, classes
LAYOUTS = [("ntu25", 2), ("kinect_v1_20", 1)]


pytestmark = pytest.mark.usefixtures("one_thread")


def _head(variant: str, backbone, **cfg):
    if variant == "mmixer":
        return MMixerHead(MMixerConfig(enabled=True, dim=32, heads=2, hallucinator_hidden=64, **cfg), CLASSES,
                          backbone.feature_dim, K, D)
    return DeformableHead(DeformableConfig(enabled=True, dim=32, heads=2, hallucinator_hidden=64, **cfg), CLASSES,
                          backbone.feature_dim, K, D, backbone.layout_name)


def _batch(layout="ntu25", persons=2, n=4, frames=16, missing=(3,), seed=0):
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(n, dtype=torch.bool)
    mask[list(missing)] = False
    visual = torch.randn(n, K, D, generator=g) * mask[:, None, None]  # missing rows are zeros, as TeacherFeatures
    return {"skeleton": torch.randn(n, 3, frames, get_layout(layout).num_joints, persons, generator=g),
            "label": torch.arange(n) % CLASSES, "visual": visual, "teacher_mask": mask}


def _losses(head, backbone, batch):
    return head(backbone.forward_features(batch["skeleton"]), batch)


# --- normalised time, sampling, partitions -------------------------------------------------------------------------

def test_time_axes_align_by_normalised_time():
    assert torch.allclose(token_centres(4), torch.tensor([0.125, 0.375, 0.625, 0.875]))
    frames = torch.arange(4.0).view(1, 4, 1)  # step i sits at (i + 0.5) / 4
    # visual frames of k = 2 sit at 0.25 and 0.75: 0.25 * 4 - 0.5 = 0.5 and 0.75 * 4 - 0.5 = 2.5 skeleton steps
    assert torch.allclose(align_frames(frames, 2).flatten(), torch.tensor([0.5, 2.5]))
    # k = 5 > T' = 4: centres 0.1, 0.3, ... 0.9; the ends take the border value
    assert torch.allclose(align_frames(frames, 5).flatten(), torch.tensor([0.0, 0.7, 1.5, 2.3, 3.0]))


def _ramp_grid(frames: int, side: int) -> torch.Tensor:
    """A token grid (1, frames, side, side, 2): channel 0 = 100 t + 10 y + x (grid indices), channel 1 = t."""
    t, y, x = torch.meshgrid(torch.arange(float(frames)), torch.arange(float(side)), torch.arange(float(side)),
                             indexing="ij")
    return torch.stack([100 * t + 10 * y + x, t], dim=-1).unsqueeze(0)


def _expected(points: torch.Tensor, frames: int, side: int) -> torch.Tensor:
    """Linear interpolation of :func:`_ramp_grid` at normalised points, border-clamped."""
    t = (points[..., 0] * frames - 0.5).clamp(0, frames - 1)
    y = (points[..., 1] * side - 0.5).clamp(0, side - 1)
    x = (points[..., 2] * side - 0.5).clamp(0, side - 1)
    return torch.stack([100 * t + 10 * y + x, t], dim=-1)


def test_sample_tokens_reads_the_grid_at_normalised_points():
    frames_only = _ramp_grid(5, 1)
    points = torch.tensor([[[0.1, 0.5, 0.5], [0.2, 0.5, 0.5], [0.55, 0.5, 0.5], [0.0, 0.5, 0.5], [1.3, 0.5, 0.5]]])
    assert torch.allclose(sample_tokens(frames_only, points)[..., 1], torch.tensor([[0.0, 0.5, 2.25, 0.0, 4.0]]))
    grid = _ramp_grid(3, 4)
    points = torch.tensor([[[0.5, 0.125, 0.875], [0.3, 0.4, 0.6], [0.9, 0.0, 1.0], [1 / 6, 0.375, 0.625]]])
    assert torch.allclose(sample_tokens(grid, points), _expected(points, 3, 4), atol=1e-4)
    # exactly on a token centre: that token
    assert torch.allclose(sample_tokens(grid, points[:, 3:]), grid[0, 0, 1, 2].view(1, 1, 2), atol=1e-5)


@pytest.mark.parametrize("spatial", [False, True])
def test_token_search_samples_where_the_offsets_say(spatial):
    frames, side, offset_range = 5, 4 if spatial else 1, 0.5
    reference = grid_points(frames, side)
    search = TokenSearch(2, reference, spatial, offset_range)
    wanted = torch.tensor([0.13, -0.07, 0.21])[: 3 if spatial else 1]  # normalised (time, y, x) offsets
    with torch.no_grad():  # a constant offset: zero weights, bias = atanh(offset / range)
        search.offsets[-1].weight.zero_()
        search.offsets[-1].bias.copy_(torch.atanh(wanted / offset_range))
    tokens = _ramp_grid(frames, side)
    with torch.no_grad():
        sampled, points = search(tokens)
    shift = F.pad(wanted, (0, 3 - wanted.numel()))
    assert torch.allclose(points[0], reference + shift, atol=1e-6)
    assert torch.allclose(sampled[0], _expected(reference + shift, frames, side), atol=1e-3)
    # e.g. the first reference point (t = 0.1) moved by +0.13 in time lands 0.65 frames after frame 0
    assert sampled[0, 0, 1] == pytest.approx((0.1 + 0.13) * frames - 0.5, abs=1e-4)
    # a fresh search (zero-initialised offsets) samples the tokens at the reference points: the grid itself
    with torch.no_grad():
        fresh = TokenSearch(2, reference, spatial, offset_range)(tokens)[0]
    assert torch.allclose(fresh, tokens.flatten(1, 3), atol=1e-4)


@pytest.mark.parametrize("layout", ["ntu25", "kinect_v1_20"])
def test_joint_groups_partition_the_layout(layout):
    lay = get_layout(layout)
    groups = joint_groups(layout)
    assert groups.shape == (lay.num_joints,)
    for g, joints in enumerate(lay.groups.values()):
        assert sorted(torch.nonzero(groups == g).flatten().tolist()) == sorted(joints)


def test_a_layout_whose_groups_overlap_is_refused(monkeypatch):
    import mmcl.data.layouts as layouts

    bad = replace(layouts.KINECT_V1_20, name="bad", groups={"a": (0, 1, 2), "b": (2, *range(3, 20))})
    monkeypatch.setitem(layouts.LAYOUTS, "bad", bad)
    with pytest.raises(ValueError, match="in two body-part groups"):
        joint_groups("bad")


@pytest.mark.parametrize("layout", ["ntu25", "kinect_v1_20"])
@pytest.mark.parametrize("scope", ["frame", "clip"])
def test_joint_stride_mask_is_body_part_groups(layout, scope):
    groups, frames, c = joint_groups(layout), 3, 2
    v = groups.numel()
    mask = partition_mask(joint_stride_keys(groups, frames, scope), c)
    assert mask.shape == (c + frames * v,) * 2
    assert mask[:c].all() and mask[:, :c].all()  # cross-modal tokens see and are seen by every token
    for i in range(frames * v):
        for j in range(frames * v):
            same = groups[i % v] == groups[j % v] and (scope == "clip" or i // v == j // v)
            assert bool(mask[c + i, c + j]) == bool(same), (i, j)


@pytest.mark.parametrize("scope", ["joint", "frame"])
def test_temporal_stride_mask_is_frames_congruent_mod_s(scope):
    frames, joints, stride, c = 7, 4, 3, 2
    mask = partition_mask(temporal_stride_keys(frames, joints, stride, scope), c)
    assert mask[:c].all() and mask[:, :c].all()
    for i in range(frames * joints):
        for j in range(frames * joints):
            (ti, vi), (tj, vj) = divmod(i, joints), divmod(j, joints)
            same = (ti - tj) % stride == 0 and (scope == "frame" or vi == vj)
            assert bool(mask[c + i, c + j]) == same, (i, j)


@pytest.mark.parametrize("keys", [joint_stride_keys(joint_groups("ntu25"), 4, "frame"),
                                  temporal_stride_keys(6, 20, 4, "joint"), temporal_stride_keys(5, 3, 2, "frame")])
def test_partition_attention_is_the_masked_attention(keys):
    members, slot = partition(keys)
    assert torch.equal(members.flatten()[slot], torch.arange(keys.numel()))  # every token in exactly one slot
    torch.manual_seed(0)
    attn = PartitionAttention(16, 4)
    x = torch.randn(3, 2 + keys.numel(), 16)
    q, k, v = attn.qkv(x).view(3, x.shape[1], 3, 4, 4).permute(2, 0, 3, 1, 4)
    dense = F.scaled_dot_product_attention(q, k, v, attn_mask=partition_mask(keys, 2))
    expected = attn.proj(dense.transpose(1, 2).reshape(x.shape))
    assert torch.allclose(attn(x, 2, members, slot), expected, atol=1e-5)


# --- heads ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", ["mmixer", "deformable"])
@pytest.mark.parametrize("layout, persons", LAYOUTS)
def test_shapes_and_losses_for_each_layout(variant, layout, persons):
    torch.manual_seed(0)
    backbone = create_model("ctrgcn", num_classes=CLASSES, layout=layout, num_person=persons)
    head = _head(variant, backbone)
    batch = _batch(layout, persons)
    out = backbone.forward_features(batch["skeleton"])
    joints, frames, global_feature = skeleton_features(out)
    assert joints.shape == (4, 4, get_layout(layout).num_joints, 256) and frames.shape == (4, 4, 256)
    skeleton = head.path.encode(out)
    hallucinated = head.path.hallucinate(skeleton)
    assert hallucinated.shape == (4, K, 1, 1, 32) == head.visual(batch).shape
    assert head.path.classify(skeleton, hallucinated).shape == (4, CLASSES)
    losses = head(out, batch)
    assert set(losses) == {f"{variant}_{k}" for k in ("fused", "skeleton", "hallucinate", "distill")}
    assert all(torch.isfinite(v) and v.ndim == 0 for v in losses.values())


@pytest.mark.parametrize("variant", ["mmixer", "deformable"])
def test_missing_visual_features_are_never_used(variant):
    torch.manual_seed(0)
    backbone = create_model("ctrgcn", num_classes=CLASSES).eval()
    head = _head(variant, backbone).eval()  # eval: no modality dropout, so the result is deterministic
    batch = _batch(missing=(1, 3))
    reference = _losses(head, backbone, batch)
    changed = {**batch, "visual": batch["visual"].clone()}
    changed["visual"][[1, 3]] = 1e3  # the rows without teacher features
    for name, value in _losses(head, backbone, changed).items():
        assert torch.allclose(value, reference[name]), name
    changed["visual"][0] += 1.0  # a row with features does count
    assert not torch.allclose(_losses(head, backbone, changed)[f"{variant}_fused"], reference[f"{variant}_fused"])
    # a batch without any teacher feature trains the skeleton path alone; the hallucination/distillation terms are 0
    none = {**batch, "teacher_mask": torch.zeros(4, dtype=torch.bool)}
    losses = _losses(head, backbone, none)
    assert losses[f"{variant}_hallucinate"].item() == 0 == losses[f"{variant}_distill"].item()
    assert torch.allclose(losses[f"{variant}_fused"], losses[f"{variant}_skeleton"])


def test_modality_dropout_swaps_real_tokens_for_hallucinated_ones():
    torch.manual_seed(0)
    backbone = create_model("ctrgcn", num_classes=CLASSES).eval()
    batch = _batch(missing=())
    always = _head("mmixer", backbone, modality_dropout=0.999, dropout=0.0)
    losses = _losses(always.train(), backbone.eval(), batch)
    assert torch.allclose(losses["mmixer_fused"], losses["mmixer_skeleton"], atol=1e-6)  # every row was dropped
    never = _head("mmixer", backbone, modality_dropout=0.0, dropout=0.0).train()
    never.load_state_dict(always.state_dict())
    assert not torch.allclose(_losses(never, backbone, batch)["mmixer_fused"], losses["mmixer_fused"])


@pytest.mark.parametrize("variant", ["mmixer", "deformable"])
def test_gradient_reaches_the_backbone_and_every_head_parameter(variant):
    torch.manual_seed(0)
    backbone = create_model("ctrgcn", num_classes=CLASSES)
    head = _head(variant, backbone)
    for batch in (_batch(), _batch(missing=(0, 1, 2, 3))):  # every parameter is in the graph, with or without video
        backbone.zero_grad(set_to_none=True)
        head.zero_grad(set_to_none=True)
        sum(_losses(head, backbone, batch).values()).backward()
        for name, p in head.named_parameters():
            assert p.grad is not None, name
        reached = ["l1.gcn1.convs.0.conv3.weight", "l10.tcn1.branches.0.0.weight"]
        reached += ["fc.weight"] if batch["teacher_mask"].any() else []  # CTR-GCN's classifier: by distillation
        for name in reached:
            grad = dict(backbone.named_parameters())[name].grad
            assert grad is not None and grad.abs().sum() > 0, name
    # the skeleton-only loss alone trains the backbone too
    backbone.zero_grad(set_to_none=True)
    _losses(head, backbone, _batch())[f"{variant}_skeleton"].backward()
    assert backbone.l1.gcn1.convs[0].conv3.weight.grad.abs().sum() > 0


def test_patch_tokens_take_the_spatial_path():
    torch.manual_seed(0)
    backbone = create_model("ctrgcn", num_classes=CLASSES)
    head = _head("deformable", backbone, patch_dim=12, patch_grid=2, ref_space=2)
    assert all(block.search.spatial for block in head.path.blocks)
    batch = _batch()
    batch["visual_patches"] = torch.randn(4, K, 4, 12) * batch["teacher_mask"][:, None, None, None]
    out = backbone.forward_features(batch["skeleton"])
    assert head.visual(batch).shape == (4, K, 2, 2, 32) == head.path.hallucinate(head.path.encode(out)).shape
    losses = head(out, batch)
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in head.parameters())
    with pytest.raises(KeyError, match="visual_patches"):
        head({**out}, {k: v for k, v in batch.items() if k != "visual_patches"})
    with pytest.raises(ValueError, match=r"expected \(N, 5, 4, 12\)"):
        head(out, {**batch, "visual_patches": torch.randn(4, K, 9, 12)})
    with pytest.raises(ValueError, match="patch_dim .* and .*patch_grid .* go together"):
        _head("deformable", backbone, patch_dim=12)
    with pytest.raises(ValueError, match="ref_space is 3 but there is no spatial token grid"):
        _head("deformable", backbone, ref_space=3)


@pytest.mark.parametrize("key, value, message", [
    ("deploy_logits", "both", "deploy_logits must be one of"), ("joint_scope", "body", "joint_scope must be one of"),
    ("temporal_scope", "x", "temporal_scope must be one of"), ("readout", "last", "readout must be one of"),
    ("modality_dropout", 1.0, r"modality_dropout must be in \[0, 1\)"), ("heads", 3, "dim .* multiple of"),
    ("temporal_stride", 0, "temporal_stride must be >= 1")])
def test_bad_config_values_fail_naming_the_key(key, value, message):
    backbone = create_model("ctrgcn", num_classes=CLASSES)
    with pytest.raises(ValueError, match=f"colearn.deformable.{message}"):
        DeformableHead(replace(DeformableConfig(enabled=True), **{key: value}), CLASSES, backbone.feature_dim, K, D,
                       backbone.layout_name)


# --- deployment ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", ["mmixer", "deformable"])
@pytest.mark.parametrize("layout, persons", LAYOUTS)
def test_deployed_model_is_backbone_plus_path_and_rebuilds_from_the_registry(variant, layout, persons):
    torch.manual_seed(0)
    backbone = create_model("ctrgcn", num_classes=CLASSES, layout=layout, num_person=persons, drop_rate=0.1)
    head = _head(variant, backbone, deploy_logits="mean")
    deployed = head.deployable(backbone)
    assert deployed.backbone is backbone and deployed.path is head.path  # shared, trained in place
    keys = set(deployed.state_dict())
    assert keys == {f"backbone.{k}" for k in backbone.state_dict()} | {f"path.{k}" for k in head.path.state_dict()}
    assert not {id(p) for p in head.visual.parameters()} & {id(p) for p in deployed.parameters()}  # stays behind
    args = json.loads(json.dumps(deployed.registry_args))  # as the checkpoint metadata stores them
    path_class = MMixerPathConfig if variant == "mmixer" else DeformablePathConfig
    assert args["drop_rate"] == 0.1 and args["visual_frames"] == K
    assert set(args["head"]) == {f.name for f in fields(path_class)}  # the path's architecture, no training field
    rebuilt = create_model(deployed.registry_name, num_classes=CLASSES, layout=layout, in_channels=3,
                           num_person=persons, **args)
    rebuilt.load_state_dict(deployed.state_dict(), strict=True)
    x = _batch(layout, persons)["skeleton"]
    deployed.eval()
    rebuilt.eval()
    with torch.no_grad():
        logits = deployed(x)
        assert torch.allclose(rebuilt(x), logits, atol=1e-5)
        # deployed logits: the mean of the path's (hallucinated visual -> fused classifier) and CTR-GCN's
        out = backbone.forward_features(x)
        skeleton = head.path.encode(out)
        path_logits = head.path.classify(skeleton, head.path.hallucinate(skeleton))
        assert torch.allclose(logits, (path_logits + out["logits"]) / 2, atol=1e-5)


# registry arguments as checkpoints written before the deployable models moved to mmcl.models store them
EARLIER_ARGS = {
    "ctrgcn_mmixer": {"drop_rate": 0.1, "visual_frames": 5, "head": {
        "time_frequencies": 8, "hallucinator_hidden": 256, "deploy_logits": "mean", "dim": 32, "cfem": False,
        "cfem_queries": 4, "heads": 2, "dropout": 0.1}},
    "ctrgcn_deformable": {"drop_rate": 0.1, "visual_frames": 5, "head": {
        "time_frequencies": 8, "hallucinator_hidden": 256, "deploy_logits": "mean", "dim": 32, "depth": 2, "heads": 2,
        "mlp_ratio": 2.0, "ref_time": 0, "ref_space": 0, "offset_range": 0.5, "joint_scope": "frame",
        "temporal_stride": 2, "temporal_scope": "joint", "readout": "mean", "patch_grid": 0}},
}


@pytest.mark.parametrize("name", sorted(EARLIER_ARGS))
def test_earlier_checkpoints_registry_arguments_still_build_the_same_model(name):
    args = EARLIER_ARGS[name]
    backbone = create_model("ctrgcn", num_classes=CLASSES, drop_rate=0.1)
    if name == "ctrgcn_mmixer":
        head = MMixerHead(MMixerConfig(enabled=True, **args["head"]), CLASSES, backbone.feature_dim, K, D)
    else:
        head = DeformableHead(DeformableConfig(enabled=True, **args["head"]), CLASSES, backbone.feature_dim, K, D,
                              backbone.layout_name)
    trained = head.deployable(backbone)
    assert trained.registry_args == args
    rebuilt = create_model(name, num_classes=CLASSES, **args)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {
        k: v.shape for k, v in trained.state_dict().items()}


def test_only_one_variant_may_deploy():
    backbone = create_model("ctrgcn", num_classes=CLASSES)
    colearner = CoLearner({"mmixer": _head("mmixer", backbone), "deformable": _head("deformable", backbone)})
    with pytest.raises(ValueError, match="each define a skeleton-only path"):
        colearner.deployable(backbone)


def _config(prepared, cache, out, *extra):
    return load_config(None, [
        f"data.root={prepared}", "data.window=16", "data.batch_size=8", "data.eval_batch_size=16",
        "data.num_workers=0", "optim.epochs=1", "optim.warmup_epochs=1", "optim.lr=0.05", f"output_dir={out}",
        "name=variant", f"colearn.teacher.cache={cache}", *extra])


@pytest.mark.parametrize("variant, extra", [
    ("mmixer", ("colearn.mmixer.enabled=true", "colearn.fam.enabled=true", "colearn.frm.enabled=true")),
    ("deformable", ("colearn.deformable.enabled=true",))])
def test_training_run_deploys_a_skeleton_only_model_that_evaluates_without_the_cache(
        variant, extra, small_prepared, small_teacher_cache, tmp_path, capsys):
    cache = tmp_path / "cache-copy"
    shutil.copytree(small_teacher_cache, cache)
    train(_config(small_prepared, cache, tmp_path, *extra))
    run = tmp_path / "variant"
    assert len(json.loads((run / "history.json").read_text())["history"]) == 1
    # the training state holds the heads (the visual projection included), the deployed checkpoint does not
    state = load_file(run / "state" / "model.safetensors")
    assert any(k.startswith(f"colearner.heads.{variant}.visual.") for k in state)
    if variant == "mmixer":
        assert any(k.startswith("colearner.heads.fam.") for k in state)
        assert any(k.startswith("colearner.heads.frm.") for k in state)
    weights = load_file(run / "best.safetensors")
    ctrgcn = create_model("ctrgcn", num_classes=CLASSES)
    backbone_keys = {k for k in weights if k.startswith("backbone.")}
    assert backbone_keys == {f"backbone.{k}" for k in ctrgcn.state_dict()}
    path_keys = {k[len(f"colearner.heads.{variant}."):] for k in state
                 if k.startswith(f"colearner.heads.{variant}.path.")}
    assert set(weights) - backbone_keys == path_keys
    from mmcl.models.checkpoint import load_checkpoint

    model, info = load_checkpoint(run / "best.safetensors")
    assert info.model == f"ctrgcn_{variant}"
    total = sum(p.numel() for p in model.parameters())
    extra_params = sum(p.numel() for p in model.path.parameters())
    assert total == sum(p.numel() for p in ctrgcn.parameters()) + extra_params
    with capsys.disabled():
        print(f"\n{variant}: deployed parameters {total:,} (CTR-GCN {total - extra_params:,} + path {extra_params:,})")
    shutil.rmtree(cache)
    assert main(["eval", "--checkpoint", str(run / "best.safetensors"), "--data", str(small_prepared),
                 "--out", str(tmp_path / "eval"), "--workers", "0"]) == 0
    metrics = json.loads((tmp_path / "eval" / "test_metrics.json").read_text())
    assert metrics["top1"] == pytest.approx(json.loads((run / "metrics.json").read_text())["top1"])


@pytest.mark.parametrize("overrides, message", [
    (("colearn.mmixer.enabled=true", "colearn.mmixer.visual_dim=999"), r"colearn.mmixer.visual_dim is 999 .* size"),
    (("colearn.deformable.enabled=true", "colearn.deformable.patch_dim=12", "colearn.deformable.patch_grid=2"),
     "colearn.deformable.patch_dim is 12 but the training items carry no patch tokens")])
def test_a_config_the_teacher_cache_cannot_serve_fails_naming_the_key(overrides, message, small_prepared,
                                                                       small_teacher_cache, tmp_path):
    with pytest.raises(ValueError, match=message):
        train(_config(small_prepared, small_teacher_cache, tmp_path, *overrides))


def test_configs_load_and_are_overrides_of_the_synthetic_base():
    from mmcl.paths import configs_dir

    root = configs_dir()
    mmixer = load_config(root / "synthetic" / "mmixer.yaml")
    deformable = load_config(root / "synthetic" / "deformable.yaml")
    combined = load_config(root / "synthetic" / "mmixer_fam_frm.yaml")
    assert mmixer.colearn.mmixer.enabled and not mmixer.colearn.fam.enabled
    assert deformable.colearn.deformable.enabled and not deformable.colearn.mmixer.enabled
    assert combined.colearn.mmixer.enabled and combined.colearn.fam.enabled and combined.colearn.frm.enabled
    base = root / "synthetic" / "ctrgcn_joint.yaml"
    stable = ["colearn.mmixer.weight=0.1", "optim.clip_grad_norm=10"]  # the ablation plans' (0.1: the default)
    for cfg, overrides in ((mmixer, ["colearn.mmixer.enabled=true", *stable]),
                           (deformable, ["colearn.deformable.enabled=true"]),
                           (combined, ["colearn.mmixer.enabled=true", "colearn.fam.enabled=true",
                                       "colearn.frm.enabled=true", *stable])):
        as_overrides = load_config(base, ["colearn.teacher.config=tiny", *overrides, f"name={cfg.name}"])
        assert as_overrides.colearn == cfg.colearn and as_overrides.optim == cfg.optim and as_overrides.data == cfg.data
    for dataset, benchmarks in (("ntu60", ("xsub", "xview")), ("ntu120", ("xsub", "xset"))):
        for benchmark in benchmarks:
            for variant in ("mmixer", "deformable"):
                cfg = load_config(root / "mmcl" / dataset / f"{benchmark}_joint_{variant}.yaml")
                assert getattr(cfg.colearn, variant).enabled and not cfg.colearn.fam.enabled
                assert variant != "mmixer" or (cfg.colearn.mmixer.weight, cfg.optim.clip_grad_norm) == (0.1, 10)
                assert (cfg.data.dataset, cfg.data.stream, cfg.optim.epochs) == (dataset, "joint", 110)
                assert math.isclose(cfg.optim.lr, 0.1)
