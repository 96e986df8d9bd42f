"""FAM and FRM: the published math, gradients into the backbone, training from the teacher cache, and a deployable
checkpoint that is CTR-GCN alone and runs with the cache deleted."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch.utils.data import default_collate

from mmcl.cli import main
from mmcl.colearn.config import FAMConfig, FRMConfig
from mmcl.colearn.fam import FAM, contrastive_loss
from mmcl.colearn.frm import FRM, refine_logits, soft_targets
from mmcl.config import load_config
from mmcl.engine.trainer import setup, train, train_one_epoch
from mmcl.models import create_model


def direct_contrastive(g: torch.Tensor, z: torch.Tensor, tau: float) -> float:
    """REFERENCE 1.1 written out with explicit sums."""
    g = g / g.norm(dim=1, keepdim=True)
    z = z / z.norm(dim=1, keepdim=True)
    n = len(g)

    def l(a, b, i):
        num = torch.exp(a[i] @ b[i] / tau)
        den = sum(torch.exp(a[i] @ b[k] / tau) for k in range(n)) + sum(
            torch.exp(a[i] @ a[k] / tau) for k in range(n) if k != i)
        return -torch.log(num / den)

    return float(sum((l(g, z, i) + l(z, g, i)) / 2 for i in range(n)) / n)


def test_contrastive_loss_under_bf16_autocast_matches_fp32():
    """The training configs run bf16 autocast on CPU (and GPU): the similarity products come out in bf16."""
    g = torch.randn(6, 32, generator=torch.Generator().manual_seed(1), requires_grad=True)
    z = torch.randn(6, 32, generator=torch.Generator().manual_seed(2))
    mask = torch.tensor([True, True, False, True, True, True])
    with torch.autocast("cpu", torch.bfloat16):
        low = contrastive_loss(g, z, 0.4, mask)
    low.backward()
    assert low.item() == pytest.approx(contrastive_loss(g, z, 0.4, mask).item(), rel=2e-2)
    assert torch.isfinite(g.grad).all() and g.grad[2].abs().sum() == 0  # the masked-out sample takes no part


@pytest.mark.parametrize("tau", [0.4, 0.1, 1.0])
def test_contrastive_loss_is_the_published_formula(tau):
    g = torch.randn(7, 256, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    z = torch.randn(7, 256, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert float(contrastive_loss(g, z, tau)) == pytest.approx(direct_contrastive(g, z, tau), rel=1e-5)
    assert float(contrastive_loss(g, z, tau)) == pytest.approx(float(contrastive_loss(z, g, tau)), rel=1e-6)
    # aligned pairs score lower than the same vectors shuffled
    assert contrastive_loss(g, g + 0.01 * z) < contrastive_loss(g, (g + 0.01 * z).roll(1, 0))
    with pytest.raises(ValueError, match="one shape"):
        contrastive_loss(g, z[:, :10])


def test_refine_logits():
    logits = torch.tensor([[1.0, -2.0, 3.0], [0.5, 0.5, 0.5]])
    probs = torch.tensor([[0.25, 0.75], [1.0, 0.0]])
    m_pos, m_neg = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([4.0, 5.0, 6.0])
    expected = torch.tensor([[(0.25 * 1 + 0.75 * 4) * 1.0, (0.25 * 2 + 0.75 * 5) * -2.0, (0.25 * 3 + 0.75 * 6) * 3.0],
                             [0.5, 1.0, 1.5]])
    assert torch.allclose(refine_logits(logits, probs, m_pos, m_neg), expected)
    # with M_pos = M_neg = 1 (their initial value) the refined scores are the scores
    assert torch.allclose(refine_logits(logits, probs, torch.ones(3), torch.ones(3)), logits)


def test_soft_targets_follow_answer_class_similarity():
    classes = torch.eye(3, 8)
    text = torch.stack([classes[[2, 2]], classes[[0, 1]]])  # sample 0 answers about class 2; sample 1 about 0 and 1
    q = soft_targets(text, classes, temperature=0.1)
    assert q.argmax(1)[0] == 2 and torch.allclose(q.sum(1), torch.ones(2))
    assert q[1, 0] == pytest.approx(float(q[1, 1])) and q[1, 2] < q[1, 0]


def _batch(n=6, k=5, d=32, p=7, dt=24, classes=16):
    g = torch.Generator().manual_seed(0)
    return {"skeleton": torch.randn(n, 3, 16, 25, 2, generator=g), "label": torch.arange(n) % classes,
            "visual": torch.randn(n, k, d, generator=g), "text": torch.randn(n, p, dt, generator=g),
            "teacher_mask": torch.tensor([True] * (n - 1) + [False])}


@pytest.mark.parametrize("head", ["fam", "frm", "frm_soft"])
def test_each_loss_reaches_the_backbone(head):
    torch.manual_seed(0)
    backbone = create_model("ctrgcn", num_classes=16)
    batch = _batch()
    if head == "fam":
        module = FAM(FAMConfig(enabled=True, pool="attention"), 32, backbone.feature_dim)
    elif head == "frm":
        module = FRM(FRMConfig(enabled=True, pool="attention"), 24, 16)
    else:
        module = FRM(FRMConfig(enabled=True, mode="soft_label"), 24, 16, class_text=torch.randn(16, 24))
    loss = next(iter(module(backbone.forward_features(batch["skeleton"]), batch).values()))
    loss.backward()
    reached = ["l1.gcn1.convs.0.conv3.weight", "l10.tcn1.branches.0.0.weight"]
    reached += [] if head == "fam" else ["fc.weight"]  # FAM aligns the pooled feature, before the classifier
    for name in reached:
        grad = dict(backbone.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name
    for name, p in module.named_parameters():
        assert p.grad is not None, name


def test_samples_without_teacher_features_do_not_count():
    backbone = create_model("ctrgcn", num_classes=16)
    batch = _batch()
    out = backbone.forward_features(batch["skeleton"])
    frm = FRM(FRMConfig(enabled=True), 24, 16)
    masked = frm(out, batch)["frm"]
    batch["text"][-1] = 1e3  # the sample without features: changing its (zero-filled) text changes nothing
    assert torch.allclose(frm(out, batch)["frm"], masked)
    refined = frm.refined(out["logits"][:-1], batch["text"][:-1])
    assert masked.item() == pytest.approx(0.2 * F.cross_entropy(refined, batch["label"][:-1]).item(), rel=1e-5)


def colearn_config(prepared: Path, cache: Path, out: Path, *extra: str):
    return load_config(None, [
        f"data.root={prepared}", "data.window=16", "data.batch_size=8", "data.eval_batch_size=16",
        "data.num_workers=0", "optim.epochs=2", "optim.warmup_epochs=1", "optim.lr=0.05", f"output_dir={out}",
        "name=colearn", f"colearn.teacher.cache={cache}", "colearn.fam.enabled=true", "colearn.frm.enabled=true",
        *extra])


def test_fam_frm_training_deploys_ctrgcn_alone_and_evaluates_without_the_cache(
        small_prepared, small_teacher_cache, tmp_path):
    cache = tmp_path / "cache-copy"
    shutil.copytree(small_teacher_cache, cache)
    train(colearn_config(small_prepared, cache, tmp_path))
    run = tmp_path / "colearn"
    history = json.loads((run / "history.json").read_text())["history"]
    assert len(history) == 2
    # the deployable checkpoint is CTR-GCN with exactly its keys and parameter count: no FAM/FRM/teacher tensor
    weights = load_file(run / "best.safetensors")
    reference = create_model("ctrgcn", num_classes=16)
    assert set(weights) == set(reference.state_dict())
    assert sum(weights[k].numel() for k, _ in reference.named_parameters()) == sum(
        p.numel() for p in reference.parameters())
    # the training state (for resume) does hold the heads
    state = load_file(run / "state" / "model.safetensors")
    assert any(k.startswith("colearner.heads.fam.") for k in state)
    assert any(k.startswith("colearner.heads.frm.") for k in state)
    # skeleton-only evaluation with the cache gone
    shutil.rmtree(cache)
    assert main(["eval", "--checkpoint", str(run / "best.safetensors"), "--data", str(small_prepared),
                 "--out", str(tmp_path / "eval"), "--workers", "0"]) == 0
    metrics = json.loads((tmp_path / "eval" / "test_metrics.json").read_text())
    assert metrics["top1"] == pytest.approx(json.loads((run / "metrics.json").read_text())["top1"])


def test_soft_label_loss_is_the_kl_to_answer_class_similarities_and_trains(small_prepared, small_teacher_cache,
                                                                           tmp_path):
    from teachers.cache import open_cache

    t, w = 1.5, 0.3
    run = setup(colearn_config(small_prepared, small_teacher_cache, tmp_path, "optim.epochs=1",
                               "colearn.fam.enabled=false", "colearn.frm.mode=soft_label",
                               f"colearn.frm.temperature={t}", f"colearn.frm.weight={w}"))
    batch = next(iter(run.train_loader))
    with torch.no_grad():
        out = run.module(batch)  # in training mode, as the epoch below computes it
    # written out from the cache's own numbers: q = softmax_c(mean_p cos(answer_p, description_c) / T),
    # loss = w * mean_i T^2 KL(q_i || softmax(z_i / T))
    cache = open_cache(small_teacher_cache)
    descriptions = cache.class_embeddings()["description_embeddings"].astype(np.float64)
    expected = []
    for name, z in zip(batch["name"], out["logits"].double().numpy()):
        answers = cache[name]["text"].astype(np.float64)
        sim = np.mean([[a @ d / (np.linalg.norm(a) * np.linalg.norm(d)) for d in descriptions] for a in answers], 0)
        q = np.exp(sim / t) / np.exp(sim / t).sum()
        log_p = z / t - z.max() / t - np.log(np.exp((z - z.max()) / t).sum())
        expected.append(t * t * np.sum(q * (np.log(q) - log_p)))
    assert batch["teacher_mask"].all()
    assert float(out["losses"]["frm"]) == pytest.approx(w * np.mean(expected), rel=1e-4)
    record = train_one_epoch(run, 0)
    assert np.isfinite(record["train_loss"]) and record["train_loss"] > 0
    run.accelerator.end_training()


def test_missing_features_fail_naming_the_sample_or_are_skipped(small_prepared, small_teacher_cache, tmp_path):
    from mmcl.data.prepared import PreparedData

    data = PreparedData(small_prepared)
    gone = data.names[int(data.split("train")[0])]
    cache = tmp_path / "cache-copy"
    shutil.copytree(small_teacher_cache, cache)
    index = json.loads((cache / "index.json").read_text())
    del index["rows"][gone]
    (cache / "index.json").write_text(json.dumps(index))
    with pytest.raises(KeyError, match=gone):
        setup(colearn_config(small_prepared, cache, tmp_path / "a", "optim.epochs=1"))
    run = setup(colearn_config(small_prepared, cache, tmp_path / "b", "optim.epochs=1", "colearn.teacher.missing=skip"))
    assert run.train_set.missing == [gone]
    items = [run.train_set[i] for i in range(len(run.train_set))]
    skipped = next(item for item in items if item["name"] == gone)
    batch = default_collate([skipped] + [item for item in items if item["name"] != gone][:7])
    assert batch["teacher_mask"].tolist() == [False] + [True] * 7
    run.module.eval()  # batch-norm statistics of the running averages: a row's presence changes no other row

    def losses(b: dict) -> dict[str, float]:
        with torch.no_grad():
            return {k: float(v) for k, v in run.module(b)["losses"].items()}

    full = losses(batch)
    assert set(full) == {"cls", "fam", "frm"}
    noisy = {**batch, "visual": batch["visual"].clone(), "text": batch["text"].clone()}
    noisy["visual"][0] = 100 * torch.randn_like(noisy["visual"][0])
    noisy["text"][0] = 100 * torch.randn_like(noisy["text"][0])
    assert losses(noisy) == pytest.approx(full, rel=1e-6)  # its teacher features change nothing
    without = losses({k: v[1:] for k, v in batch.items()})
    assert (without["fam"], without["frm"]) == pytest.approx((full["fam"], full["frm"]), rel=1e-5)  # no teacher loss
    assert without["cls"] != pytest.approx(full["cls"], rel=1e-4)  # but its classification loss trains it
    run.accelerator.end_training()


def test_a_feature_size_that_does_not_match_the_config_fails_naming_both(small_prepared, small_teacher_cache,
                                                                        tmp_path):
    manifest = json.loads((small_teacher_cache / "manifest.json").read_text())
    with pytest.raises(ValueError, match=rf"colearn.fam.visual_dim is 999 .* size {manifest['visual_dim']}"):
        train(colearn_config(small_prepared, small_teacher_cache, tmp_path, "colearn.fam.visual_dim=999"))


def test_configs_with_colearning_load(tmp_path):
    from mmcl.paths import configs_dir

    files = sorted(configs_dir().glob("mmcl/**/*.yaml")) + sorted(configs_dir().glob("synthetic/*.yaml"))
    assert len(files) >= 17
    for f in files:
        load_config(f)
    released = load_config(configs_dir() / "mmcl" / "ntu120" / "xsub_joint.yaml")
    assert (released.optim.lr, released.optim.weight_decay, released.optim.epochs) == (0.1, 4e-4, 110)
    assert (released.optim.steps, released.optim.warmup_epochs, released.data.batch_size) == ([90, 100], 5, 200)
    assert released.colearn.fam.enabled and released.colearn.frm.enabled
    assert (released.colearn.fam.weight, released.colearn.frm.weight, released.colearn.fam.tau) == (0.1, 0.2, 0.4)
    assert released.colearn.teacher.config == "clip_vitb32_qwen25vl7b"
