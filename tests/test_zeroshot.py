"""Zero-shot and domain-adaptive evaluation: the published protocol, label mappings, refinement, open-vocabulary
scoring and fine-tuning, end to end on the synthetic writer's UTD-style set, and bad inputs failing by name."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from mmcl.cli import main
from mmcl.colearn.heads import load_head
from mmcl.config import load_config
from mmcl.data.layouts import LAYOUTS, Layout
from mmcl.data.ntu_classes import NTU120_CLASSES
from mmcl.data.prepared import PreparedData, PreparedInfo, write_prepared
from mmcl.data.synthetic import SOURCE_CLASSES, UTD_CLASSES
from mmcl.data.utd_mhad import UTD_MHAD_CLASSES, prepare_utd_mhad
from mmcl.engine.trainer import train
from mmcl.models import create_model
from mmcl.models.checkpoint import CheckpointInfo, load_checkpoint, save_checkpoint
from mmcl.paths import configs_dir
from mmcl.zeroshot import LabelMappingError, load_label_mapping, zeroshot
from mmcl.zeroshot.protocol import zero_shot_adapter, zero_shot_dataset
from mmcl.zeroshot.targets import TARGETS, target_action_ids

SYNTHETIC_MAPPING = configs_dir() / "zeroshot" / "synthetic_utd.yaml"
SOURCE_NAMES = [c.name for c in SOURCE_CLASSES]


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def utd_raw(small_synthetic) -> Path:
    """The synthetic writer's UTD-style set (Kinect v1 joints, videos) with 3 subjects x 1 trial x 8 classes."""
    return small_synthetic / "utd"


@pytest.fixture(scope="module")
def utd_prepared(utd_raw, tmp_path_factory) -> Path:
    return prepare_utd_mhad(utd_raw, tmp_path_factory.getbasetemp() / "synth-utd-prepared", progress=False,
                            dataset_name="synthetic_utd")


@pytest.fixture(scope="module")
def utd_teacher_cache(utd_raw, utd_prepared, session_cache, tmp_path_factory) -> Path:
    """The tiny teachers (the source run's) on the UTD-style test clips; no colour joints, so no person crop."""
    from teachers.config import load_config as load_teacher_config
    from teachers.precompute import precompute

    config = load_teacher_config("tiny", ["runtime.num_workers=0", "runtime.batch_size=8", "video.crop.enabled=false"])
    return precompute(config, PreparedData(utd_prepared), utd_raw, root=tmp_path_factory.getbasetemp() / "utd-teachers",
                      splits=["test"], descriptions_path=utd_raw / "classes.json", show_progress=False)


@pytest.fixture(scope="module")
def source_run(small_prepared, small_teacher_cache, tmp_path_factory) -> Path:
    """A short synthetic source run with FAM, FRM and the open-vocabulary projection."""
    out = tmp_path_factory.mktemp("zeroshot-source")
    train(load_config(None, [
        f"data.root={small_prepared}", "data.window=16", "data.batch_size=8", "data.eval_batch_size=16",
        "data.num_workers=0", "optim.epochs=1", "optim.warmup_epochs=1", "optim.lr=0.05", f"output_dir={out}",
        "name=source", f"colearn.teacher.cache={small_teacher_cache}", "colearn.fam.enabled=true",
        "colearn.frm.enabled=true", "colearn.openvocab.enabled=true"]))
    return out / "source"


def topk(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    return float(np.mean([label in np.argsort(-row)[:k] for row, label in zip(scores, labels)]))


# ---------------------------------------------------------------- the protocol pieces

# NTU-25 joint <- Kinect v1 joint, written out from REFERENCE 4: indices 0-19 line up (ShoulderCenter in Neck's
# slot), SpineShoulder from ShoulderCenter, the left hand tip and thumb from HandLeft, the right ones from HandRight.
NTU_FROM_V1 = list(range(20)) + [2, 7, 7, 11, 11]


def test_protocol_maps_joints_adds_a_person_centres_and_crops_as_published(tmp_path):
    rng = np.random.default_rng(3)
    t = 40
    raw = (rng.normal(size=(t, 20, 3)) + np.array([0.5, -0.3, 2.8])).astype(np.float32)  # metres, camera frame
    data = PreparedData(write_prepared(tmp_path / "utd", PreparedInfo("utd_mhad", "kinect_v1_20", 1,
                                                                      list(UTD_MHAD_CLASSES)),
                                       [("a3_s1_t1", 2, raw[:, None])], {"train": [], "val": [], "test": [0]}))
    info = CheckpointInfo("ctrgcn", {}, SOURCE_NAMES, "ntu25", 3, 2, "joint", 16, "", {})
    item = zero_shot_dataset(data, info, zero_shot_adapter(data, info, "ckpt"), "test")[0]

    mapped = raw[:, NTU_FROM_V1] - raw[0, 1]  # centred on joint 1 (Spine = SpineMid) of frame 0
    clip = np.zeros((t, 2, 25, 3), np.float32)
    clip[:, 0] = mapped  # the second person stays all zero
    bias = int(0.05 * t / 2)  # centre crop keeping 0.95: frames 1..38
    kept = clip[bias:t - bias]
    # linear resize of 38 frames to 16 (align_corners=False): source position (i + 0.5) * 38 / 16 - 0.5
    pos = np.clip((np.arange(16) + 0.5) * len(kept) / 16 - 0.5, 0, len(kept) - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, len(kept) - 1)
    w = (pos - lo)[:, None, None, None]
    expected = ((1 - w) * kept[lo] + w * kept[hi]).transpose(3, 0, 2, 1)  # (C, T, V, M)

    assert item["skeleton"].shape == (3, 16, 25, 2)
    np.testing.assert_allclose(item["skeleton"].numpy(), expected, atol=1e-5)
    assert not item["skeleton"][..., 1].any()
    np.testing.assert_array_equal(item["joint_mask"].numpy(), [1] * 20 + [0] * 5)


def test_the_utd_reader_takes_the_synthetic_class_list(utd_prepared):
    data = PreparedData(utd_prepared)
    assert data.class_names == [c.name for c in UTD_CLASSES.values()]
    assert target_action_ids(data, TARGETS["utd-mhad"]) == list(UTD_CLASSES)
    for name, label in zip(data.names, data.labels):
        assert list(UTD_CLASSES)[label] == int(name.split("_")[0][1:])
    assert data.info.split_sizes == {"train": 8, "val": 8, "test": 8}


def test_a_bad_utd_classes_json_fails_naming_it(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    for a in (3, 4):
        scipy.io.savemat(raw / f"a{a}_s1_t1_skeleton.mat", {"d_skel": np.ones((20, 3, 5))})
    classes = raw / "classes.json"
    classes.write_text(json.dumps([{"id": 3, "name": "wave"}, {"id": 3, "name": "clap"}]))
    with pytest.raises(ValueError, match=rf"{classes}: action number 3 is listed twice"):
        prepare_utd_mhad(raw, tmp_path / "out", progress=False)
    classes.write_text(json.dumps([{"id": 3, "name": "wave"}]))
    with pytest.raises(ValueError, match=r"a4_s1_t1_skeleton.mat: action a4 is not among the classes of "
                                         r"classes.json \(a3\)"):
        prepare_utd_mhad(raw, tmp_path / "out", progress=False)


# ---------------------------------------------------------------- label mappings

def test_the_published_utd_mapping_and_the_sysu_mapping_resolve():
    utd = load_label_mapping(configs_dir() / "zeroshot" / "utd_mhad_ntu120.yaml", "utd-mhad", UTD_MHAD_CLASSES,
                             range(1, 28), NTU120_CLASSES)
    assert {utd.target_classes[t]: s for t, s in utd.pairs.items()} == {
        "wave": 22, "arm cross": 95, "basketball shoot": 62, "sit to stand": 8, "stand to sit": 7, "squat": 79}
    assert [NTU120_CLASSES[s] for s in utd.pairs.values()] == [
        "hand waving", "cross arms", "shoot at the basket", "standing up (from sitting position)", "sitting down",
        "squat down"]
    from mmcl.data.sysu import SYSU_CLASSES

    sysu = load_label_mapping(configs_dir() / "zeroshot" / "sysu_ntu120.yaml", "sysu", SYSU_CLASSES, range(1, 13),
                              NTU120_CLASSES)
    assert {sysu.target_classes[t]: NTU120_CLASSES[s] for t, s in sysu.pairs.items()} == {
        "drinking": "drink water", "calling phone": "make a phone call/answer phone",
        "playing phone": "playing with phone/tablet", "wearing backpacks": "put on bag",
        "packing backpacks": "put something into a bag", "sitting chair": "sitting down",
        "moving chair": "move heavy objects",
        "taking out wallet": "put something inside pocket / take out something from pocket"}


def test_the_synthetic_mapping_is_the_writers_label_map(utd_raw, utd_prepared):
    data = PreparedData(utd_prepared)
    ids = target_action_ids(data, TARGETS["utd-mhad"])
    mapping = load_label_mapping(SYNTHETIC_MAPPING, "utd-mhad", data.class_names, ids, SOURCE_NAMES)
    written = {int(a): s for a, s in json.loads((utd_raw / "label_map.json").read_text()).items()}
    assert {ids[t]: s for t, s in mapping.pairs.items()} == written


def bad_mapping_cases():
    body = "target: utd-mhad\nsource: synthetic\nclasses:\n"
    return [
        (body + "  1: 8\n  28: 4\n", r"line 5: unknown target class: utd-mhad has no action number 28"),
        (body + "  swipe lft: 8\n", r"line 4: unknown target class 'swipe lft'.*did you mean 'swipe left'"),
        (body + "  1: 16\n", r"line 4: unknown source label 16: ckpt has labels 0\.\.15"),
        (body + "  1: swipe leftt\n", r"line 4: unknown source class 'swipe leftt'.*did you mean 'swipe left'"),
        (body + "  1: 8\n  1: 9\n", r"line 5: 1 appears twice \(first on line 4\)"),
        (body + "  1: 8\n  swipe left: 9\n", r"line 5: target class 'swipe left' is mapped twice"),
        ("target: sysu\nclasses:\n  1: 8\n", r"maps the classes of 'sysu', not of 'utd-mhad'"),
        ("target: utd-mhad\nsource: ntu120\nclasses:\n  1: 8\n", r"ntu120 label space .* ckpt predicts 16 other"),
        ("target: utd-mhad\nsource: ntu99\nclasses:\n  1: 8\n", r"line 2: unknown source label space 'ntu99'"),
        ("target: utd-mhad\nclass:\n  1: 8\n", r"line 2: unknown key 'class'"),
    ]


@pytest.mark.parametrize("text,message", bad_mapping_cases())
def test_a_bad_mapping_fails_naming_the_entry(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    names = [c.name for c in UTD_CLASSES.values()]
    with pytest.raises(LabelMappingError, match=message) as info:
        load_label_mapping(path, "utd-mhad", names, list(UTD_CLASSES), SOURCE_NAMES, "ckpt")
    assert str(path) in str(info.value)


# ---------------------------------------------------------------- end to end

def test_mapped_zero_shot_from_the_raw_data(source_run, utd_raw, tmp_path, capsys):
    out = tmp_path / "zs"
    assert main(["zeroshot", "--checkpoint", str(source_run / "best.safetensors"), "--dataset", "utd-mhad",
                 "--data", str(utd_raw), "--mapping", str(SYNTHETIC_MAPPING), "--out", str(out)]) == 0
    assert "| mapped | 18 | 6 |" in capsys.readouterr().out
    assert (out / "prepared" / "meta.json").is_file() and (out / "confusion.png").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    scores = np.load(out / "scores.npz")
    assert metrics["num_clips"] == len(scores["names"]) == 24
    mapped = scores["source_labels"] >= 0
    assert mapped.sum() == metrics["mapped"]["num_clips"] == 18  # 6 mapped classes x 3 clips
    logits, labels = scores["logits"][mapped], scores["source_labels"][mapped]
    assert metrics["mapped"]["top1"] == pytest.approx(float((logits.argmax(1) == labels).mean()))
    assert metrics["mapped"]["top5"] == pytest.approx(topk(logits, labels, 5))
    assert sum(c["clips"] for c in metrics["mapped"]["per_class"].values()) == 18
    assert metrics["protocol"]["filled_joints"] == ["SpineShoulder", "HandTipLeft", "ThumbLeft", "HandTipRight",
                                                    "ThumbRight"]
    assert metrics["protocol"]["num_person"] == 2 and metrics["protocol"]["window"] == 16


def test_refinement_and_open_vocabulary(source_run, utd_prepared, utd_teacher_cache, tmp_path):
    from teachers.cache import open_cache

    metrics = zeroshot(source_run / "best.safetensors", "utd-mhad", utd_prepared, mapping=SYNTHETIC_MAPPING,
                       out=tmp_path, split="test", refine=True, openvocab=True, teacher_cache=utd_teacher_cache)
    scores = np.load(tmp_path / "scores.npz")
    for png in ("confusion.png", "confusion_refined.png", "openvocab_confusion.png"):
        assert (tmp_path / png).is_file()
    logits, features = torch.from_numpy(scores["logits"]), torch.from_numpy(scores["features"])
    model, _ = load_checkpoint(source_run / "best.safetensors")
    with torch.no_grad():
        assert torch.allclose(model.classify(features), logits, atol=1e-4)  # the features are the model's

    frm, openvocab = (load_head(source_run / "best_heads.safetensors", name) for name in ("frm", "openvocab"))
    cache = open_cache(utd_teacher_cache)
    text = torch.from_numpy(np.stack([cache[str(n)]["text"] for n in scores["names"]]))

    # FRM written out: p = softmax(W2 relu(W1 mean_P(text) + b1) + b2), S_R = (p0 M_pos + p1 M_neg) * S_M
    (w1, b1), (w2, b2) = ((layer.weight.detach(), layer.bias.detach()) for layer in (frm.mlp[0], frm.mlp[2]))
    p = torch.softmax(torch.relu(text.mean(1) @ w1.T + b1) @ w2.T + b2, dim=1)
    direct = (p[:, :1] * frm.m_pos.detach() + p[:, 1:] * frm.m_neg.detach()) * logits
    refined = scores["refined"]
    assert not np.allclose(refined, scores["logits"])
    np.testing.assert_allclose(refined, direct.numpy(), rtol=1e-4, atol=1e-4)
    mapped = scores["source_labels"] >= 0
    labels = scores["source_labels"][mapped]
    assert metrics["refined"]["top1"] == pytest.approx(float((refined[mapped].argmax(1) == labels).mean()))
    assert metrics["refined"]["top5"] == pytest.approx(topk(refined[mapped], labels, 5))
    assert metrics["mapped"]["num_clips"] == metrics["refined"]["num_clips"] == 6

    # open vocabulary written out: cosine of the projected feature and the class-description embeddings
    (w1, b1), (w2, b2) = ((layer.weight.detach(), layer.bias.detach()) for layer in (openvocab.proj[0],
                                                                                       openvocab.proj[2]))
    projected = torch.relu(features @ w1.T + b1) @ w2.T + b2
    classes = torch.from_numpy(cache.class_embeddings()["description_embeddings"])
    cosine = (projected / projected.norm(dim=1, keepdim=True)) @ (classes / classes.norm(dim=1, keepdim=True)).T
    np.testing.assert_allclose(scores["openvocab"], cosine.numpy(), rtol=1e-4, atol=1e-5)
    target = scores["target_labels"]
    assert metrics["openvocab"]["num_clips"] == 8 and metrics["openvocab"]["num_classes"] == 8
    assert metrics["openvocab"]["top1"] == pytest.approx(float((scores["openvocab"].argmax(1) == target).mean()))
    assert metrics["openvocab"]["top5"] == pytest.approx(topk(scores["openvocab"], target, 5))
    assert metrics["openvocab"]["text"] == "description"


def test_domain_adaptive_fine_tuning(source_run, utd_prepared, tmp_path, capsys):
    cfg = load_config(configs_dir() / "finetune" / "synthetic_utd.yaml", [
        f"data.root={utd_prepared}", f"model.init={source_run / 'best.safetensors'}", "data.window=16",
        "data.batch_size=4", "data.eval_batch_size=16", "data.num_workers=0", "data.repeat=1", "optim.epochs=2",
        "optim.warmup_epochs=0", f"output_dir={tmp_path}", "name=finetune",
        "mixed_precision=no"])  # accelerate fixes the precision per process: the other runs of the session are fp32
    assert (cfg.data.layout, cfg.data.num_person, cfg.data.center) == ("ntu25", 2, True)
    train(cfg)
    assert "the classifier is new for 8 classes" in capsys.readouterr().out
    run = tmp_path / "finetune"
    history = json.loads((run / "history.json").read_text())["history"]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["split"] == "test" and len(metrics["per_class_accuracy"]) == 8
    _, info = load_checkpoint(run / "best.safetensors")
    assert (info.layout, info.num_person, info.class_names) == ("ntu25", 2, [c.name for c in UTD_CLASSES.values()])


def test_finetune_configs_load():
    for name in ("utd_mhad", "sysu", "synthetic_utd"):
        cfg = load_config(configs_dir() / "finetune" / f"{name}.yaml")
        assert (cfg.data.layout, cfg.data.num_person, cfg.data.center) == ("ntu25", 2, True)
        assert cfg.model.init.endswith("best.safetensors")


# ---------------------------------------------------------------- bad inputs

def run_cli(capsys, *args: str) -> str:
    """Run ``mmcl zeroshot`` expecting a user error; returns its message."""
    capsys.readouterr()
    assert main(["zeroshot", *args]) == 1
    return capsys.readouterr().err


def test_a_skeleton_with_the_wrong_joint_count_fails_naming_the_file(source_run, tmp_path, capsys):
    utd = tmp_path / "utd"
    utd.mkdir()
    scipy.io.savemat(utd / "a3_s1_t1_skeleton.mat", {"d_skel": np.ones((25, 3, 12))})
    err = run_cli(capsys, "--checkpoint", str(source_run / "best.safetensors"), "--dataset", "utd-mhad",
                  "--data", str(utd), "--out", str(tmp_path / "out-utd"))
    assert f"{utd / 'a3_s1_t1_skeleton.mat'}: d_skel has shape (25, 3, 12), expected (20, 3, T)" in err
    sysu = tmp_path / "sysu"
    sysu.mkdir()
    (sysu / "S01_A01_V01.txt").write_text(" ".join(["0.1"] * 75) + "\n")
    err = run_cli(capsys, "--checkpoint", str(source_run / "best.safetensors"), "--dataset", "sysu",
                  "--data", str(sysu), "--out", str(tmp_path / "out-sysu"))
    assert f"{sysu / 'S01_A01_V01.txt'}, line 1: 75 numbers, expected 60" in err


def test_a_mapping_error_reaches_the_command_line(source_run, utd_prepared, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("target: utd-mhad\nclasses:\n  1: 8\n  2: 3\n")
    err = run_cli(capsys, "--checkpoint", str(source_run / "best.safetensors"), "--dataset", "utd-mhad",
                  "--data", str(utd_prepared), "--mapping", str(bad), "--out", str(tmp_path / "out"))
    assert f"{bad}, line 4: unknown target class: utd-mhad has no action number 2" in err
    # the published NTU-120 mapping (the default) does not fit a synthetic checkpoint
    err = run_cli(capsys, "--checkpoint", str(source_run / "best.safetensors"), "--dataset", "utd-mhad",
                  "--data", str(utd_prepared), "--out", str(tmp_path / "out"))
    assert "utd_mhad_ntu120.yaml maps onto the ntu120 label space" in err and "best.safetensors predicts 16" in err
    err = run_cli(capsys, "--checkpoint", str(source_run / "best.safetensors"), "--dataset", "sysu",
                  "--data", str(utd_prepared), "--out", str(tmp_path / "out"))
    assert "is not named as sysu names its samples" in err  # same layout: the sample names tell them apart


def test_a_checkpoint_layout_without_a_mapping_from_the_target_fails_naming_it(utd_prepared, tmp_path, monkeypatch):
    toy = Layout("toy4", ("Root", "Tip", "Left", "Right"), ((1, 0), (2, 0), (3, 0)), ((0, 0), (1, 0), (2, 0), (3, 0)),
                 0, {"body": (0, 1, 2, 3)}, {"body": (0, 1, 2, 3)})
    monkeypatch.setitem(LAYOUTS, "toy4", toy)
    model = create_model("ctrgcn", num_classes=16, layout="toy4", num_person=1)
    checkpoint = save_checkpoint(tmp_path / "toy.safetensors", model,
                                 CheckpointInfo("ctrgcn", {}, SOURCE_NAMES, "toy4", 3, 1, "joint", 16, "", {}))
    with pytest.raises(ValueError, match=rf"{checkpoint}: the checkpoint's layout 'toy4' has no mapping from the "
                                         rf"target layout 'kinect_v1_20'.*target joint 'Root' has no counterpart"):
        zeroshot(checkpoint, "utd-mhad", utd_prepared, mapping=SYNTHETIC_MAPPING, out=tmp_path / "out")


def test_teacher_features_of_another_text_encoder_or_missing_heads_fail(source_run, utd_prepared, utd_teacher_cache,
                                                                       tmp_path):
    other = tmp_path / "other-cache"
    shutil.copytree(utd_teacher_cache, other)
    key = json.loads((other / "key.json").read_text())
    key["text_encoder"]["pooling"] = "cls"
    (other / "key.json").write_text(json.dumps(key))
    with pytest.raises(ValueError, match=rf"open-vocabulary scoring: the target teacher cache {other} was not made "
                                         rf"with the source run's teacher .* its text_encoder differ"):
        zeroshot(source_run / "best.safetensors", "utd-mhad", utd_prepared, mapping=SYNTHETIC_MAPPING,
                 out=tmp_path / "out", split="test", openvocab=True, teacher_cache=other)
    with pytest.raises(FileNotFoundError, match=r"no co-learning heads for .*last.safetensors: .*last_heads"):
        zeroshot(source_run / "last.safetensors", "utd-mhad", utd_prepared, mapping=SYNTHETIC_MAPPING,
                 out=tmp_path / "out", split="test", refine=True, teacher_cache=utd_teacher_cache)
    with pytest.raises(KeyError, match=r"16 of 24 target clips have no features in the teacher cache"):
        zeroshot(source_run / "best.safetensors", "utd-mhad", utd_prepared, mapping=SYNTHETIC_MAPPING,
                 out=tmp_path / "out", split="all", refine=True, teacher_cache=utd_teacher_cache)
