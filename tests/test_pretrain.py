"""Self-supervised pre-training: HaLP's hallucination, MoCo's queue and momentum, SkeletonMAE's masking and loss,
the augmentations and the evaluation protocols."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmcl.models import create_model
from mmcl.pretrain.augment import ContrastiveAugment, TwoViewDataset
from mmcl.pretrain.halp import HaLP, hallucinate, rank_filter, t_max
from mmcl.pretrain.moco import MoCo
from mmcl.data.subsets import stratified_subset
from mmcl.pretrain.protocols import (Features, LinearProbeConfig, extract_features, knn_predict, linear_eval,
                                     linear_probe)
from mmcl.pretrain.skeletonmae import SkeletonMAE, body_regions, region_mask, scaled_cosine_error
from mmcl.pretrain.sphere import spherical_kmeans

pytestmark = pytest.mark.usefixtures("one_thread")


# --- HaLP ---------------------------------------------------------------------------------------------------------
def release_t_max(start_point, selected_prototype, p0):
    """anshulbshah/HaLP moco/generator.py, generate_positives_using_mixup, evaluated directly."""
    sim_zk_diffP = torch.einsum("bd,bd->b", start_point, p0 - selected_prototype)
    sim_psel_p0 = torch.einsum("bd,bd->b", selected_prototype, p0)
    sim_psel_k = torch.einsum("bd,bd->b", selected_prototype, start_point)
    K = (1 - sim_psel_p0) / (sim_zk_diffP + 1e-8)
    omega = torch.acos(sim_psel_k)
    return (1 / (omega + 1e-8)) * torch.atan(torch.sin(omega) / (K + torch.cos(omega) + 1e-8))


def release_point(start_point, selected_prototype, t):
    omega = torch.acos(torch.einsum("bd,bd->b", selected_prototype, start_point))
    alpha = (torch.sin((1 - t) * omega) / (torch.sin(omega) + 1e-8)).unsqueeze(-1)
    beta = (torch.sin(t * omega) / (torch.sin(omega) + 1e-8)).unsqueeze(-1)
    return F.normalize(alpha * start_point + beta * selected_prototype, dim=-1)


@pytest.fixture(scope="module")
def geometry():
    g = torch.Generator().manual_seed(0)
    prototypes = F.normalize(torch.randn(20, 16, generator=g, dtype=torch.float64), dim=1)
    anchor = F.normalize(torch.randn(256, 16, generator=g, dtype=torch.float64), dim=1)
    order = (anchor @ prototypes.t()).argsort(1, descending=True)
    pick = torch.randint(1, 20, (256,), generator=g)  # any prototype but the nearest
    return anchor, prototypes[order[torch.arange(256), pick]], prototypes[order[:, 0]], prototypes, order[:, 0]


def test_t_max_is_the_release_closed_form(geometry):
    anchor, target, nearest, *_ = geometry
    ours, release = t_max(anchor, target, nearest), release_t_max(anchor, target, nearest)
    a = (anchor * (nearest - target)).sum(1)
    regular = (1 - (target * nearest).sum(1)) / a + (anchor * target).sum(1) > 0  # the release's atan branch
    assert regular.float().mean() > 0.9
    torch.testing.assert_close(ours[regular], release[regular], rtol=1e-6, atol=1e-6)
    assert ((ours >= 0) & (ours <= 1)).all()
    lam = torch.rand(256, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 0.8
    torch.testing.assert_close(hallucinate(anchor, target, nearest, lam)[regular],
                               release_point(anchor, target, (1 - lam) * release)[regular], rtol=1e-6, atol=1e-6)


def test_hallucinated_points_lie_on_the_great_circle_up_to_the_equidistance_point(geometry):
    anchor, target, nearest, *_ = geometry
    lam = torch.rand(256, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    z = hallucinate(anchor, target, nearest, lam)
    torch.testing.assert_close(z.norm(dim=1), torch.ones(256, dtype=torch.float64))
    # in the plane of anchor and target, at angle t * omega from the anchor
    basis, _ = torch.linalg.qr(torch.stack([anchor, target], dim=2))
    residual = z - (basis @ (basis.transpose(1, 2) @ z.unsqueeze(2))).squeeze(2)
    assert residual.abs().max() < 1e-10
    omega = torch.arccos((anchor * target).sum(1))
    t = (1 - lam) * t_max(anchor, target, nearest)
    torch.testing.assert_close(torch.arccos((z * anchor).sum(1).clamp(-1, 1)), t * omega, rtol=1e-6, atol=1e-6)
    assert ((z * nearest).sum(1) >= (z * target).sum(1) - 1e-12).all()  # never closer to the target
    # lam = 0: the hardest point, equally close to target and nearest; lam = 1: the anchor
    hardest = hallucinate(anchor, target, nearest, torch.zeros(256, dtype=torch.float64))
    torch.testing.assert_close((hardest * target).sum(1), (hardest * nearest).sum(1), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(hallucinate(anchor, target, nearest, torch.ones(256, dtype=torch.float64)), anchor)


def test_rank_filter_keeps_points_whose_nearest_prototype_is_unchanged(geometry):
    anchor, target, nearest, prototypes, nearest_index = geometry
    lam = torch.full((256,), 0.5, dtype=torch.float64)
    points = hallucinate(anchor, target, nearest, lam).unsqueeze(1)
    keep = rank_filter(points, prototypes, nearest_index)
    expected = (points.squeeze(1) @ prototypes.t()).argmax(1) == nearest_index
    assert torch.equal(keep.squeeze(1), expected) and 0 < keep.float().mean() <= 1


def test_spherical_kmeans_finds_separated_clusters():
    g = torch.Generator().manual_seed(0)
    centres = torch.eye(8)[:3]
    points = F.normalize(centres.repeat_interleave(30, 0) + 0.05 * torch.randn(90, 8, generator=g), dim=1)
    found = spherical_kmeans(points, 3, torch.Generator().manual_seed(1))
    assert torch.allclose(found.norm(dim=1), torch.ones(3), atol=1e-5)
    assert sorted((found @ centres.t()).argmax(1).tolist()) == [0, 1, 2]
    assert ((found @ centres.t()).max(1).values > 0.99).all()
    again = spherical_kmeans(points, 3, torch.Generator().manual_seed(1))
    assert torch.equal(found, again)


def tiny_encoder():
    return create_model("bigru", num_classes=3, layout="nwucla20", num_person=1, hidden_size=4, num_layers=1)


def test_halp_warms_up_then_adds_its_loss_and_refreshes_prototypes():
    torch.manual_seed(0)
    model = HaLP(tiny_encoder(), dim=8, queue_size=8, prototype_keys=8, num_prototypes=3, num_candidates=20,
                 num_positives=5, refresh_every=4, seed=0)
    x = torch.randn(4, 3, 6, 20, 1)
    for step in range(5):  # 2 x 8 + 1 = 17 keys before the first prototypes: 5 steps of 4
        out = model(x, x + 0.01 * torch.randn_like(x))
        assert "halp" not in out["losses"] and not model.ready
    out = model(x, x + 0.01 * torch.randn_like(x))
    assert model.ready and int(model.refreshes) == 1 and "halp" in out["losses"] and 0 < out["kept_fraction"] <= 1
    prototypes = model.prototypes.clone()
    assert torch.allclose(prototypes.norm(dim=1), torch.ones(3), atol=1e-5)
    out["loss"].backward()
    assert model.encoder_q.encoder.layers[0][0].weight_ih_l0.grad is not None
    model(x, x)  # step 7 of the HaLP phase: no refresh; step 8 (a multiple of 4): refresh
    assert int(model.refreshes) == 1
    model(x, x)
    assert int(model.refreshes) == 2
    plain = model(x, x, hallucinate=False)  # the MoCo phase
    assert "halp" not in plain["losses"] and int(model.steps) == 8


# --- MoCo -----------------------------------------------------------------------------------------------------------
def test_moco_momentum_update_queue_and_loss():
    torch.manual_seed(0)
    model = MoCo(tiny_encoder(), dim=6, queue_size=10, momentum=0.9, temperature=0.07)
    q_before = [p.detach().clone() for p in model.query_parameters()]
    for p in model.key_parameters():  # make the key encoder differ from the query encoder
        p.data.add_(0.1)
    k_before = [p.detach().clone() for p in model.key_parameters()]
    queue_before = model.queue.clone()
    x1, x2 = torch.randn(4, 3, 6, 20, 1), torch.randn(4, 3, 6, 20, 1)
    out = model(x1, x2)
    for pk, k0, q0 in zip(model.key_parameters(), k_before, q_before):
        torch.testing.assert_close(pk, 0.9 * k0 + 0.1 * q0)
    assert all(not p.requires_grad for p in model.key_parameters())
    # the loss: cross-entropy with the positive first, against the queue as it was before the enqueue
    q, k = out["q"], out["k"]
    logits = torch.cat([(q * k).sum(1, keepdim=True), q @ queue_before], 1) / 0.07
    torch.testing.assert_close(out["logits"], logits)
    torch.testing.assert_close(out["loss"], F.cross_entropy(logits, torch.zeros(4, dtype=torch.long)))
    # enqueued at the pointer, wrapping around
    torch.testing.assert_close(model.queue[:, :4], k.t())
    torch.testing.assert_close(model.queue[:, 4:], queue_before[:, 4:])
    assert int(model.queue_ptr) == 4
    model(x1, x2)
    last = model(x2, x1)["k"]
    assert int(model.queue_ptr) == 2
    torch.testing.assert_close(model.queue[:, [8, 9, 0, 1]], last.t())
    out["loss"].backward()
    assert model.encoder_q.fc.weight.grad is None  # the classifier is not pre-trained


def _two_process_halp_step(rank: int, init: str, out: str) -> None:
    from datetime import timedelta

    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2, timeout=timedelta(seconds=60))
    try:
        torch.manual_seed(0)  # the same weights and queue in both processes
        model = HaLP(tiny_encoder(), dim=6, queue_size=12, prototype_keys=12, num_prototypes=3, num_positives=2)
        torch.manual_seed(1 + rank)  # each process its own batch
        keys = model(torch.randn(2, 3, 6, 20, 1), torch.randn(2, 3, 6, 20, 1))["k"]
        torch.save({"queue": model.queue, "ptr": model.queue_ptr, "seen": model.keys_seen, "keys": keys},
                   f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_the_queue_gathers_the_keys_of_every_process(tmp_path):
    """Under several processes (accelerate launch) every process enqueues every process's keys, in rank order, and
    HaLP counts them all toward its warm-up."""
    import torch.multiprocessing as mp

    mp.spawn(_two_process_halp_step, args=(f"file://{tmp_path}/rendezvous", str(tmp_path)), nprocs=2)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    torch.testing.assert_close(r0["queue"], r1["queue"])
    torch.testing.assert_close(r0["queue"][:, :4], torch.cat([r0["keys"], r1["keys"]]).t())
    assert int(r0["ptr"]) == int(r1["ptr"]) == 4 and int(r0["seen"]) == int(r1["seen"]) == 4


# --- SkeletonMAE ----------------------------------------------------------------------------------------------------
def test_region_mask_is_region_aware_reproducible_and_never_hides_everything():
    regions = body_regions("ntu25")
    mask = region_mask(64, regions, 0.4, torch.Generator().manual_seed(5))
    assert mask.shape == (64, 25) and (mask.sum(1) == 10).all()
    assert torch.equal(mask, region_mask(64, regions, 0.4, torch.Generator().manual_seed(5)))
    assert not torch.equal(mask, region_mask(64, regions, 0.4, torch.Generator().manual_seed(6)))
    for row in mask:  # whole regions, at most one of them partly
        partial = [r for r in regions if 0 < int(row[list(r)].sum()) < len(r)]
        assert len(partial) <= 1
    almost_all = region_mask(32, regions, 0.99, torch.Generator().manual_seed(0))
    assert (almost_all.sum(1) == 24).all()  # at least one joint stays visible
    assert (region_mask(8, regions, 0.01, torch.Generator().manual_seed(0)).sum(1) == 1).all()
    with pytest.raises(ValueError, match="strictly between"):
        region_mask(2, regions, 1.0, torch.Generator())


def test_scaled_cosine_error():
    x = torch.randn(5, 12)
    assert scaled_cosine_error(3 * x, x, 2.0, torch.ones(5)) < 1e-6  # scale-free
    error = scaled_cosine_error(-x, x, 2.0, torch.tensor([1, 1, 0, 0, 0]))
    assert error == pytest.approx(4.0)  # (1 - (-1))^2, only the weighted rows


@pytest.mark.parametrize("name", ["ctrgcn", "skeletonmae"])
def test_skeletonmae_pretraining_step(name):
    torch.manual_seed(0)
    args = {"hidden_dim": 16, "num_layers": 2} if name == "skeletonmae" else {}
    encoder = create_model(name, num_classes=5, **args)
    model = SkeletonMAE(encoder, "ntu25", ratio=0.4, seed=3)
    x = torch.randn(2, 3, 8, 25, 2)
    x[1, ..., 1] = 0  # a sample with one person
    out = model(x)
    assert set(out["losses"]) == {"joint", "edge"} and torch.isfinite(out["loss"])
    assert (out["masked"].sum(1) == 10).all()
    out["loss"].backward()
    trained = {n: p.grad for n, p in encoder.named_parameters() if p.requires_grad}
    assert all(g is not None for g in trained.values()) and any(g.abs().sum() > 0 for g in trained.values())
    # pre-trained: CTR-GCN but its classifier; of the GIN network, the joint encoder alone (not STRL, not fc)
    prefix = "encoder." if name == "skeletonmae" else ""
    assert set(trained) == {n for n, _ in encoder.named_parameters() if n.startswith(prefix) and not n.startswith("fc.")}
    assert hasattr(model, "mask_token") == (name == "ctrgcn")
    # the masks are drawn from (seed, step): a model with the same seed draws the same sequence
    twin = SkeletonMAE(create_model(name, num_classes=5, **args), "ntu25", ratio=0.4, seed=3)
    assert torch.equal(twin(x)["masked"], out["masked"])


# --- augmentations --------------------------------------------------------------------------------------------------
def test_two_views_are_reproducible_and_of_the_configured_stream(small_prepared):
    augment = ContrastiveAugment(window=16, crop=(0.1, 1.0))
    joint = TwoViewDataset(small_prepared, "train", augment, seed=3)
    item = joint[0]
    assert item["query"].shape == item["key"].shape == (3, 16, 25, 2)
    assert not torch.equal(item["query"], item["key"])
    assert torch.equal(TwoViewDataset(small_prepared, "train", augment, seed=3)[0]["query"], item["query"])
    joint.set_epoch(1)
    assert not torch.equal(joint[0]["query"], item["query"])
    bone = TwoViewDataset(small_prepared, "train", augment, stream="bone", seed=3)[0]
    assert bone["query"][:, :, 20].abs().max() == 0  # the spine-shoulder "bone" is itself: zero


def test_shear_and_corruption_are_the_release_maps():
    clip = np.random.default_rng(0).normal(size=(3, 20, 25, 2)).astype(np.float32)
    rng = np.random.default_rng(1)
    sheared = ContrastiveAugment(window=20, crop=(1.0, 1.0), p_shear=1.0)(clip, 20, rng)
    # recover the matrix from the output: every joint moved by one matrix with unit diagonal
    matrix = np.linalg.lstsq(clip.reshape(3, -1).T, sheared.reshape(3, -1).T, rcond=None)[0].T
    np.testing.assert_allclose(np.diag(matrix), 1.0, atol=1e-4)
    assert (np.abs(matrix) <= 1 + 1e-4).all()
    corrupted = ContrastiveAugment(window=20, crop=(1.0, 1.0), p_shear=0.0)(clip, 20, np.random.default_rng(2))
    changed = ~np.isclose(corrupted, clip).all(axis=(0, 1, 3))
    assert changed.sum() == 15  # 0.6 of 25 joints


# --- protocols ------------------------------------------------------------------------------------------------------
def test_knn_matches_a_direct_vote():
    rng = np.random.default_rng(0)
    bank, labels, query = rng.normal(size=(50, 6)), rng.integers(0, 4, 50), rng.normal(size=(20, 6))
    for k in (1, 5):
        ours = knn_predict(bank, labels, query, k)
        sims = (query / np.linalg.norm(query, axis=1, keepdims=True)) @ (bank / np.linalg.norm(bank, axis=1,
                                                                                                keepdims=True)).T
        for i, row in enumerate(sims):
            votes = np.bincount(labels[np.argsort(-row)[:k]], minlength=4)
            assert ours[i] == np.flatnonzero(votes == votes.max())[0]


def test_stratified_subset():
    labels = np.repeat(np.arange(16), 24)
    subset = stratified_subset(labels, 0.1, seed=0)
    assert len(subset) == round(0.1 * len(labels)) and len(np.unique(subset)) == len(subset)
    counts = np.bincount(labels[subset], minlength=16)
    assert counts.min() >= 2 and counts.max() <= 3
    assert np.array_equal(subset, stratified_subset(labels, 0.1, seed=0))
    assert not np.array_equal(subset, stratified_subset(labels, 0.1, seed=1))
    one = stratified_subset(labels, 0.01, seed=0)  # fewer labels than classes: one per class
    assert np.array_equal(np.bincount(labels[one]), np.ones(16))
    assert np.array_equal(stratified_subset(labels, 1.0, seed=0), np.arange(len(labels)))


def test_linear_probe_selects_on_validation():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 8)) * 3

    def split(n):
        labels = rng.integers(0, 3, n)
        return Features(centres[labels] + rng.normal(size=(n, 8)), labels, np.arange(n))

    result = linear_probe(split(90), split(30), split(30), 3, LinearProbeConfig(epochs=10, lrs=[0.05, 0.5]))
    assert result["val_top1"] > 0.9 and result["test_top1"] > 0.8
    assert result["lr"] in (0.05, 0.5) and 1 <= result["epoch"] <= 10


def test_linear_evaluation_keeps_the_encoder_frozen():
    torch.manual_seed(0)
    model = create_model("skeletonmae", num_classes=3, hidden_dim=8, num_layers=1).train()
    batches = [{"skeleton": torch.randn(6, 3, 8, 25, 2), "label": torch.arange(6) % 3, "index": torch.arange(6)}
               for _ in range(2)]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = linear_eval(model, {"train": batches, "val": batches[:1], "test": batches[1:]}, 3,
                         LinearProbeConfig(epochs=3, lrs=[0.1]))
    assert model.training  # restored
    for key, value in model.state_dict().items():  # weights and BatchNorm statistics untouched
        assert torch.equal(value, before[key]), key
    assert all(p.grad is None for p in model.parameters())
    feats = extract_features(model, batches)
    assert feats.features.shape == (12, 8) and 0 <= result["test_top1"] <= 1


def test_label_fraction_keeps_a_stratified_part_of_the_training_split(small_prepared):
    from mmcl.config import DataConfig
    from mmcl.data.prepared import PreparedData
    from mmcl.engine.data import build_dataset

    data = PreparedData(small_prepared)
    cfg = DataConfig(root=str(small_prepared), label_fraction=0.5, label_seed=3)
    train = build_dataset(data, cfg, "train", train=True)
    full = data.split("train")
    assert len(train) == round(0.5 * len(full)) and set(train.indices) <= set(full)
    assert np.array_equal(np.bincount(data.labels[train.indices]), np.bincount(data.labels[full]) // 2)
    assert np.array_equal(build_dataset(data, cfg, "train", train=True).indices, train.indices)
    assert np.array_equal(build_dataset(data, cfg, "test", train=False).indices, data.split("test"))


@pytest.mark.parametrize("name, args", [("ctrgcn", {}), ("skeletonmae", {"hidden_dim": 8}), ("bigru", {"hidden_size": 8})])
def test_every_encoder_works_with_every_method(name, args):
    from mmcl.errors import ConfigError

    torch.manual_seed(0)
    x = torch.randn(4, 3, 4, 25, 2)
    halp = HaLP(create_model(name, num_classes=5, **args), dim=8, queue_size=8, prototype_keys=8, num_prototypes=3,
                num_positives=2)
    halp(x, x)
    halp(x, x)
    halp.keys_seen.fill_(halp.warmup_keys)  # the queue has been filled twice: the next step hallucinates
    out = halp(x, x.flip(2))
    assert {"moco", "halp"} <= set(out["losses"])
    out["loss"].backward()
    assert halp.encoder_q.fc.weight.grad is None and halp.projector_q[0].weight.grad is not None
    mae = SkeletonMAE(create_model(name, num_classes=5, **args), "ntu25")
    if name == "bigru":  # no per-joint features to reconstruct joints from
        with pytest.raises(ConfigError, match="feature map"):
            mae(x)
    else:
        mae(x)["loss"].backward()
