"""BRL's parts: the rebalanced partial mixup, the class weights, the deferred schedule and the mixed loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmcl.brl.config import BRLConfig
from mmcl.brl.losses import action_aware_weights, class_balanced_weights, loss_class_weights, mixed_cross_entropy
from mmcl.brl.mixup import body_halves, partial_mixup
from mmcl.data.layouts import NTU25, NWUCLA20


def _batch(n: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 6, 25, 2, generator=g), torch.arange(n) % 4


# ---------------------------------------------------------------- partial mixup


def test_body_halves_are_brls():
    upper, lower = body_halves(NTU25)
    assert lower == (0, 12, 13, 14, 15, 16, 17, 18, 19)  # BRL's Ntu_Lower_Body
    assert upper == (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 20, 21, 22, 23, 24)
    assert body_halves(NWUCLA20)[1] == (0, 12, 13, 14, 15, 16, 17, 18, 19)


def test_mixup_keeps_shapes_and_source_and_pastes_lower_bodies():
    x, labels = _batch()
    x0, labels0 = x.clone(), labels.clone()
    upper, lower = body_halves(NTU25)
    out = partial_mixup(x, labels, [10, 10, 10, 10], lower, ratio=0.5, generator=torch.Generator().manual_seed(1))
    assert out.x.shape == x.shape and out.labels_a.shape == out.labels_b.shape == out.weight_a.shape == (16,)
    assert torch.equal(x, x0) and torch.equal(labels, labels0)  # the source batch is never modified
    mixed = (out.partner >= 0).nonzero().squeeze(1)
    assert len(mixed) == 8
    for i in range(16):
        j = int(out.partner[i])
        if j < 0:
            assert torch.equal(out.x[i], x[i]) and out.weight_a[i] == 1 and out.labels_b[i] == labels[i]
            continue
        assert j != i
        assert torch.equal(out.x[i][:, :, list(upper)], x[i][:, :, list(upper)])  # every joint in its place
        assert torch.equal(out.x[i][:, :, list(lower)], x[j][:, :, list(lower)])  # from the original partner
        assert out.labels_b[i] == labels[j] and out.weight_a[i] == pytest.approx(16 / 25)
    targets = out.targets(4)
    torch.testing.assert_close(targets.sum(1), torch.ones(16))
    assert (targets >= 0).all()


def test_mixup_label_weights_are_rebalanced():
    x = torch.randn(2, 3, 4, 25, 1)
    lower = body_halves(NTU25)[1]
    for counts, expected in (([100, 10], (0.0, 1.0)), ([10, 100], (1.0, 0.0)), ([30, 10], (0.64, 0.64)),
                             ([31, 10], (0.0, 1.0))):
        out = partial_mixup(x, torch.tensor([0, 1]), counts, lower, ratio=1.0, kappa=3,
                            generator=torch.Generator().manual_seed(0))
        # sample 0 (class 0) keeps its upper body: its label weight goes to 0 when class 0 is the frequent one
        assert out.weight_a.tolist() == pytest.approx(list(expected))
        torch.testing.assert_close(out.targets(2).sum(1), torch.ones(2))


def test_mixup_draws_tail_partners_more_often():
    x = torch.zeros(8, 1, 1, 25, 1)
    labels = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1])  # class 1 is the tail
    counts = [90, 10]
    lower = body_halves(NTU25)[1]
    g = torch.Generator().manual_seed(0)
    tail = {"balanced": 0, "uniform": 0}
    for partner in tail:
        for _ in range(300):
            out = partial_mixup(x, labels, counts, lower, ratio=0.125, partner=partner, generator=g)
            j = int(out.partner[out.partner >= 0][0])
            tail[partner] += int(labels[j] == 1)
    # uniform: 2 of the 7 others are tail (about 0.29); balanced: weight 1/10 against 1/90 (about 0.75 or more)
    assert tail["uniform"] / 300 < 0.45 and tail["balanced"] / 300 > 0.6


def test_mixup_is_deterministic_and_checks_its_input():
    x, labels = _batch()
    lower = body_halves(NTU25)[1]
    a = partial_mixup(x, labels, [5, 5, 5, 5], lower, ratio=0.25, generator=torch.Generator().manual_seed(7))
    b = partial_mixup(x, labels, [5, 5, 5, 5], lower, ratio=0.25, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a.x, b.x) and torch.equal(a.partner, b.partner)
    assert (partial_mixup(x, labels, [5] * 4, lower, ratio=1 / 16).partner >= 0).sum() == 1  # BRL: 1/16 of 16
    assert (partial_mixup(x[:1], labels[:1], [5] * 4, lower, ratio=1.0).partner < 0).all()  # nobody to mix with
    with pytest.raises(ValueError, match="positive training count"):
        partial_mixup(x, labels, [5, 0, 5, 5], lower)
    with pytest.raises(ValueError, match="partner"):
        partial_mixup(x, labels, [5] * 4, lower, partner="tail")
    with pytest.raises(ValueError, match="proper subset"):
        partial_mixup(x, labels, [5] * 4, list(range(25)))


# ---------------------------------------------------------------- class weights and the deferred schedule


def _release_action_aware(counts):
    """BRL's TwostageAALoss weights, ported: get_weight_list then update_weight."""
    n_max, n_min = max(counts), min(counts)
    beta = np.array([(n - n_min) / (n_max - n_min) * 0.0099 + 0.99 for n in counts])
    per_class = (1.0 - beta) / (1.0 - np.power(beta, counts))
    return per_class / per_class.sum() * len(counts)


def test_class_weights():
    counts = [600, 200, 50, 6]
    np.testing.assert_allclose(action_aware_weights(counts), _release_action_aware(counts), rtol=1e-12)
    cb = (1 - 0.999) / (1 - 0.999 ** np.array(counts, dtype=float))
    np.testing.assert_allclose(class_balanced_weights(counts), cb / cb.sum() * 4, rtol=1e-12)
    for w in (action_aware_weights(counts), class_balanced_weights(counts)):
        assert w.sum() == pytest.approx(4) and np.all(np.diff(w) > 0)  # rarer classes weigh more
    np.testing.assert_allclose(action_aware_weights([7, 7, 7]), [1, 1, 1])
    with pytest.raises(ValueError, match="no training samples"):
        class_balanced_weights([5, 0])


def test_deferred_weights_switch_at_the_configured_epoch():
    counts = [20, 5, 2]
    cfg = BRLConfig()
    assert all(loss_class_weights(cfg, counts, e) is None for e in range(30))
    cfg.drw.enabled, cfg.drw.start_epoch = True, 15  # the 1-based epoch 15 is the 0-based epoch 14
    assert [loss_class_weights(cfg, counts, e) is None for e in (0, 13, 14, 20)] == [True, True, False, False]
    np.testing.assert_allclose(loss_class_weights(cfg, counts, 14), class_balanced_weights(counts, 0.999))
    cfg.action_aware.enabled = True
    assert loss_class_weights(cfg, counts, 13) is None
    np.testing.assert_allclose(loss_class_weights(cfg, counts, 14), action_aware_weights(counts))
    cfg.drw.enabled = False  # the action-aware loss alone weighs from the first epoch
    np.testing.assert_allclose(loss_class_weights(cfg, counts, 0), action_aware_weights(counts))


def test_mixed_cross_entropy():
    g = torch.Generator().manual_seed(0)
    logits, a, b = torch.randn(8, 5, generator=g), torch.randint(0, 5, (8,), generator=g), torch.randint(0, 5, (8,))
    w = torch.tensor([0.5, 1.0, 1.5, 2.0, 3.0])
    torch.testing.assert_close(mixed_cross_entropy(logits, a, class_weights=w), F.cross_entropy(logits, a, weight=w))
    torch.testing.assert_close(mixed_cross_entropy(logits, a), F.cross_entropy(logits, a))
    share = torch.full((8,), 0.64)  # one share for the batch: the release's alpha * CE(a) + (1 - alpha) * CE(b)
    torch.testing.assert_close(mixed_cross_entropy(logits, a, b, share),
                               0.64 * F.cross_entropy(logits, a) + 0.36 * F.cross_entropy(logits, b))
    # per-sample shares: the soft-target cross-entropy
    share = torch.rand(8, generator=g)
    soft = share[:, None] * F.one_hot(a, 5) + (1 - share[:, None]) * F.one_hot(b, 5)
    torch.testing.assert_close(mixed_cross_entropy(logits, a, b, share),
                               -(soft * F.log_softmax(logits, 1)).sum(1).mean())


def test_brl_step_mixes_batches_and_weighs_by_epoch():
    from mmcl.brl.step import BRLStep

    x, labels = _batch()
    batch = {"skeleton": x, "label": labels, "index": torch.arange(16)}
    cfg = BRLConfig()
    assert BRLStep(cfg, [4, 4, 4, 4], "ntu25", seed=1).mix(batch, torch.Generator()) is batch  # all off
    cfg.mixup.enabled, cfg.mixup.ratio, cfg.drw.enabled, cfg.drw.start_epoch = True, 0.5, True, 3
    step = BRLStep(cfg, [8, 4, 2, 1], "ntu25", seed=1)
    a = step.mix(batch, step.generator(epoch=2))
    b = step.mix(batch, step.generator(epoch=2))
    assert torch.equal(a["skeleton"], b["skeleton"]) and torch.equal(a["label_b"], b["label_b"])
    assert not torch.equal(a["skeleton"], x) and torch.equal(batch["skeleton"], x) and a["index"] is batch["index"]
    assert (a["weight_a"] < 1).sum() >= 1 and (a["label_b"] != labels).sum() >= 1
    assert not torch.equal(step.mix(batch, step.generator(2, process=1))["skeleton"], a["skeleton"])
    assert step.class_weights(1) is None and step.class_weights(2) is not None
    torch.testing.assert_close(step.class_weights(2), torch.tensor(class_balanced_weights([8, 4, 2, 1]),
                                                                   dtype=torch.float32))
