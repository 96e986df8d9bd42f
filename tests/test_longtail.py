"""Long-tailed splits (published lists and seeded draws), long-tail metrics and the skip-modality stream."""

from __future__ import annotations

import gzip
import json
import os
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from mmcl.cli import main
from mmcl.data.layouts import NTU25, NWUCLA20
from mmcl.data.longtail import (LongtailError, build_longtail, class_counts, read_list, read_longtail,
                                train_class_counts)
from mmcl.data.prepared import PreparedData, PreparedInfo, write_prepared
from mmcl.data.transforms import ClipTransform, skip_pairs, to_motion, to_skip
from mmcl.engine.metrics import longtail_accuracy, plot_per_class_accuracy, shot_groups

SHARED_LISTS = Path(__file__).resolve().parents[2] / "shared" / "longtail"
LIST_NAME = re.compile(r"NTU(?P<classes>60|120)_(?P<benchmark>xsub|xview|xset)_exp_(?P<r>\d+)\.txt\.gz")


# ---------------------------------------------------------------- class counts


def test_class_counts_formula():
    for c_count, n_max, r in ((60, 600, 100), (120, 400, 50), (16, 20, 10), (7, 33, 3.5)):
        assert class_counts(c_count, n_max, r) == [int(n_max * (1 / r) ** (c / (c_count - 1))) for c in range(c_count)]
    counts = class_counts(60, 600, 100)
    assert counts[0] == 600 and counts[-1] == 6 and sum(counts) == 7892
    assert class_counts(16, 20, 10) == [20, 17, 14, 12, 10, 9, 7, 6, 5, 5, 4, 3, 3, 2, 2, 2]
    assert class_counts(1, 50, 10) == [50]
    for bad in ((0, 600, 10), (10, 0, 10), (10, 600, 0.5)):
        with pytest.raises(ValueError):
            class_counts(*bad)


@pytest.mark.skipif(not SHARED_LISTS.is_dir(), reason="../shared/longtail not present")
def test_class_counts_match_the_published_lists():
    lists = sorted(SHARED_LISTS.glob("*.txt.gz"))
    assert len(lists) == 12
    for path in lists:
        m = LIST_NAME.fullmatch(path.name)
        num_classes, r = int(m["classes"]), int(m["r"])
        n_max = 400 if m["benchmark"] == "xset" else 600
        per_class = Counter(int(name[-3:]) - 1 for name in read_list(path))  # A001 is class 0
        assert [per_class[c] for c in range(num_classes)] == class_counts(num_classes, n_max, r), path.name
    assert len(read_list(SHARED_LISTS / "NTU60_xsub_exp_100.txt.gz")) == 7892
    assert len(read_list(SHARED_LISTS / "NTU120_xset_exp_100.txt.gz")) == 10378


def test_read_list_gzipped_or_not(tmp_path):
    names = ["S001C001P001R001A001", "S001C001P002R001A002"]
    (tmp_path / "plain.txt").write_text("\n".join(names) + "\n\n")
    (tmp_path / "packed.txt.gz").write_bytes(gzip.compress("\n".join(names).encode()))
    (tmp_path / "packed-no-suffix").write_bytes(gzip.compress("\n".join(names).encode()))
    for f in ("plain.txt", "packed.txt.gz", "packed-no-suffix"):
        assert read_list(tmp_path / f) == names
    (tmp_path / "twice.txt").write_text("a\nb\na\n")
    with pytest.raises(LongtailError, match="more than once: a"):
        read_list(tmp_path / "twice.txt")
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(LongtailError, match="no sample names"):
        read_list(tmp_path / "empty.txt")
    with pytest.raises(FileNotFoundError):
        read_list(tmp_path / "nope.txt")


# ---------------------------------------------------------------- building a long-tailed set


def _name(subject: int, camera: int, action: int) -> str:
    return f"S001C{camera:03d}P{subject:03d}R001A{action:03d}"


@pytest.fixture
def source(tmp_path) -> Path:
    """4 classes; training subjects 1-8 (subject 8 is the source's val), test subjects 9-10; 2 cameras."""
    rng = np.random.default_rng(0)
    samples, splits = [], {"train": [], "val": [], "test": []}
    for subject in range(1, 11):
        for camera in (1, 2):
            for action in range(1, 5):
                splits["test" if subject > 8 else "val" if subject == 8 else "train"].append(len(samples))
                samples.append((_name(subject, camera, action), action - 1,
                                rng.normal(size=(5, 1, 25, 3)).astype(np.float32)))
    info = PreparedInfo(dataset="toy", layout="ntu25", num_person=1, class_names=["a", "b", "c", "d"],
                        benchmark="xsub", split_protocol="toy X-Sub")
    out = write_prepared(tmp_path / "source", info, samples, splits)
    skipped = [{"name": _name(1, 3, 1), "reason": "no body in any frame"}]
    (out / "skipped.json").write_text(json.dumps(skipped))
    return out


def test_longtail_from_a_list(source, tmp_path):
    listed = [_name(s, c, 1) for s in range(1, 7) for c in (1, 2)] + [_name(1, 1, 2), _name(8, 2, 2), _name(3, 1, 3)] \
        + [_name(5, 2, 4)]
    (tmp_path / "list.txt").write_text("\n".join(listed))
    out = build_longtail(source, tmp_path / "lt", list_path=tmp_path / "list.txt", val_per_class=2, seed=3)
    data, src = PreparedData(out), PreparedData(source)
    train = [data.names[i] for i in data.split("train")]
    assert sorted(train) == sorted(listed)
    assert train_class_counts(data).tolist() == [12, 2, 1, 1]
    val = data.split("val")
    assert np.bincount(data.labels[val], minlength=4).tolist() == [2, 2, 2, 2]
    pool = {src.names[i] for k in ("train", "val") for i in src.splits[k]}
    assert {data.names[i] for i in val} <= pool - set(listed)
    assert data.split("test").tolist() == src.split("test").tolist()
    for i in data.split("train")[:3]:
        np.testing.assert_array_equal(data.joints(int(i)), src.joints(int(i)))
    if os.stat(out / "joints.f32").st_nlink > 1:  # a hard link, not a copy, where the filesystem allows it
        assert os.stat(out / "joints.f32").st_ino == os.stat(source / "joints.f32").st_ino
    meta = read_longtail(out)
    assert meta["mode"] == "list" and meta["train_class_counts"] == [12, 2, 1, 1] and meta["val_per_class"] == 2
    assert data.info.split_sizes == {"train": 16, "val": 8, "test": 16} and "list.txt" in data.info.split_protocol
    again = build_longtail(source, tmp_path / "lt2", list_path=tmp_path / "list.txt", val_per_class=2, seed=3)
    assert PreparedData(again).split("val").tolist() == val.tolist()
    with pytest.raises(FileExistsError):
        build_longtail(source, out, list_path=tmp_path / "list.txt", val_per_class=2)


def test_longtail_list_with_missing_samples_fails_naming_them(source, tmp_path):
    absent, skipped, in_test = _name(7, 9, 1), _name(1, 3, 1), _name(9, 1, 1)
    (tmp_path / "list.txt").write_text("\n".join([_name(1, 1, 1), absent, skipped, in_test]))
    with pytest.raises(LongtailError) as err:
        build_longtail(source, tmp_path / "lt", list_path=tmp_path / "list.txt", val_per_class=1)
    message = str(err.value)
    assert "list.txt" in message and absent in message and in_test in message
    assert f"{skipped} (skipped when the source was prepared: no body in any frame)" in message
    assert "2 listed sample(s) missing" in message and "1 listed sample(s) in the test split" in message
    assert not (tmp_path / "lt").exists() and not (tmp_path / "lt.partial").exists()


def test_longtail_drawn_by_seed(source, tmp_path):
    a = PreparedData(build_longtail(source, tmp_path / "a", imbalance=4, n_max=12, seed=1, val_per_class=2))
    b = PreparedData(build_longtail(source, tmp_path / "b", imbalance=4, n_max=12, seed=1, val_per_class=2))
    c = PreparedData(build_longtail(source, tmp_path / "c", imbalance=4, n_max=12, seed=2, val_per_class=2))
    assert train_class_counts(a).tolist() == class_counts(4, 12, 4) == [12, 7, 4, 3]
    assert a.split("train").tolist() == b.split("train").tolist() and a.split("val").tolist() == b.split("val").tolist()
    assert a.split("train").tolist() != c.split("train").tolist()
    assert not set(a.split("train").tolist()) & set(a.split("val").tolist())
    assert read_longtail(a.root)["mode"] == "draw" and read_longtail(a.root)["imbalance_ratio"] == 4.0
    with pytest.raises(LongtailError, match="too few samples.*'a' \\(class 0\\): 16 < 17"):
        build_longtail(source, tmp_path / "d", imbalance=4, n_max=17, val_per_class=1)
    with pytest.raises(LongtailError, match="validation samples per class"):
        build_longtail(source, tmp_path / "e", imbalance=4, n_max=12, val_per_class=5)


def test_prepare_longtail_command(source, tmp_path, capsys):
    (tmp_path / "list.txt.gz").write_bytes(gzip.compress("\n".join(_name(s, 1, a) for s in (1, 2)
                                                                   for a in (1, 2, 3, 4)).encode()))
    assert main(["prepare", "longtail", "--from", str(source), "--list", str(tmp_path / "list.txt.gz"),
                 "--out", str(tmp_path / "lt"), "--val-per-class", "3"]) == 0
    out = capsys.readouterr().out
    assert "train 8, val 12, test 16" in out and "long-tailed" in out
    assert main(["prepare", "longtail", "--from", str(source), "--imbalance", "4", "--out", str(tmp_path / "x")]) == 2
    assert "--imbalance and --n-max go together" in capsys.readouterr().err
    assert main(["prepare", "longtail", "--raw", str(source), "--out", str(tmp_path / "x")]) == 2
    assert "--raw does not apply to longtail" in capsys.readouterr().err
    (tmp_path / "bad.txt").write_text(_name(7, 9, 1))
    assert main(["prepare", "longtail", "--from", str(source), "--list", str(tmp_path / "bad.txt"),
                 "--out", str(tmp_path / "x")]) == 2
    assert _name(7, 9, 1) in capsys.readouterr().err


# ---------------------------------------------------------------- long-tail metrics


def test_shot_groups_and_accuracy(tmp_path):
    counts = np.array([600, 101, 100, 20, 19, 6])
    groups = shot_groups(counts)
    assert {k: v.tolist() for k, v in groups.items()} == {"many": [0, 1], "medium": [2, 3], "few": [4, 5]}
    acc = [0.9, 0.7, 0.5, 0.3, 0.2, None]
    lt = longtail_accuracy(acc, counts)
    assert lt["many_shot_top1"] == pytest.approx(0.8) and lt["medium_shot_top1"] == pytest.approx(0.4)
    assert lt["few_shot_top1"] == pytest.approx(0.2) and lt["classes"]["few"] == [4, 5]
    small = longtail_accuracy(acc, counts, many_above=500, few_below=50)
    assert small["many_shot_top1"] == pytest.approx(0.9) and small["thresholds"] == {"many_above": 500,
                                                                                        "few_below": 50}
    assert longtail_accuracy([0.5, 0.5], [5, 6])["many_shot_top1"] is None
    path = plot_per_class_accuracy(acc, counts, list("abcdef"), tmp_path / "per_class.png", title="t")
    assert path.read_bytes()[:4] == b"\x89PNG"


# ---------------------------------------------------------------- skip modality


def test_skip_pairs_match_brl_release():
    # BRL's JointToKB pairs (brl/datasets/pipelines/pose_related.py); (j, j) there means "left at zero".
    ntu = [(0, 20), (1, 1), (2, 2), (3, 20), (4, 4), (5, 20), (6, 4), (7, 5), (8, 8), (9, 20), (10, 8), (11, 9),
           (12, 1), (13, 0), (14, 12), (15, 13), (16, 1), (17, 0), (18, 16), (19, 17), (21, 7), (20, 20), (22, 6),
           (23, 11), (24, 10)]
    ucla = [(0, 2), (1, 1), (2, 2), (3, 3), (4, 4), (5, 2), (6, 4), (7, 5), (8, 8), (9, 2), (10, 8), (11, 9), (12, 1),
            (13, 0), (14, 12), (15, 13), (16, 1), (17, 0), (18, 16), (19, 17)]
    assert sorted(skip_pairs(NTU25.bones)) == sorted(p for p in ntu if p[0] != p[1])
    assert sorted(skip_pairs(NWUCLA20.bones)) == sorted(p for p in ucla if p[0] != p[1])


def test_skip_stream_on_a_hand_made_skeleton():
    # A 5-joint chain 0 <- 1 <- 2 <- 3 plus 4 <- 0 (joint 0 is the root): 2-hop ancestors 2->0, 3->1, 4: none.
    bones = ((0, 0), (1, 0), (2, 1), (3, 2), (4, 0))
    assert skip_pairs(bones) == ((2, 0), (3, 1))
    x = np.zeros((3, 2, 5, 1), dtype=np.float32)
    x[:, 0, :, 0] = [[0, 1, 3, 6, 10], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1]]
    x[:, 1] = x[:, 0] + 2
    skip = to_skip(x, bones)
    np.testing.assert_array_equal(skip[0, 0, :, 0], [0, 0, 3, 5, 0])
    np.testing.assert_array_equal(skip[2, 0, :, 0], [0, 0, 0, 0, 0])
    np.testing.assert_array_equal(skip[:, 1], skip[:, 0])  # a translation does not change it
    clip = np.random.default_rng(0).normal(size=(3, 10, 25, 2)).astype(np.float32)
    for stream in ("skip", "skip_motion"):
        out = ClipTransform(window=10, stream=stream, bones=NTU25.bones, test_keep=1.0)(clip, 10)
        expected = to_skip(clip, NTU25.bones)
        np.testing.assert_allclose(out, to_motion(expected) if stream == "skip_motion" else expected, atol=1e-6)
    np.testing.assert_allclose(expected[:, :, 3], clip[:, :, 3] - clip[:, :, 20])  # head minus spine-shoulder
    assert not expected[:, :, [1, 2, 4, 8, 20]].any()  # the root and its children
    with pytest.raises(ValueError, match="needs the layout's bone pairs"):
        ClipTransform(stream="skip")


# ---------------------------------------------------------------- configs


def test_ntu_longtail_configs_resolve_against_the_shared_lists():
    from mmcl.config import load_config
    from mmcl.paths import PROJECT_ROOT, configs_dir

    files = sorted((configs_dir() / "longtail").glob("ntu*/*.yaml"))
    assert len(files) == 12
    settings = set()
    for f in files:
        cfg = load_config(f)
        lt = cfg.data.longtail
        m = LIST_NAME.fullmatch(Path(lt.list).name)
        settings.add((f"ntu{m['classes']}", m["benchmark"], int(m["r"])))
        assert (cfg.data.dataset, f.stem) == (f"ntu{m['classes']}", f"{m['benchmark']}_r{m['r']}"), f
        assert Path(lt.list).parent == Path("../shared/longtail") and lt.enabled and not lt.imbalance
        assert lt.source == f"cache/prepared/{cfg.data.dataset}-{m['benchmark']}" and cfg.data.root != lt.source
        assert (lt.many_above, lt.few_below) == (100, 20) and cfg.data.stream == "joint"
        if SHARED_LISTS.is_dir():
            assert (PROJECT_ROOT / lt.list).resolve() == (SHARED_LISTS / m.string).resolve()
            assert (PROJECT_ROOT / lt.list).is_file()
    assert len(settings) == 12


def test_synthetic_longtail_config_builds_its_split(source, tmp_path):
    from mmcl.config import ConfigError, load_config
    from mmcl.data.longtail import default_root
    from mmcl.engine.data import longtail_paths, resolve_data_root
    from mmcl.engine.demo import prepare_demo
    from mmcl.paths import configs_dir

    cfg = load_config(configs_dir() / "longtail" / "synthetic.yaml")
    lt = cfg.data.longtail
    assert (lt.imbalance, lt.n_max, lt.val_per_class, lt.many_above, lt.few_below) == (10, 20, 6, 10, 5)
    assert longtail_paths(cfg.data)[0].name == "prepared-seed0"  # the demo's synthetic set
    # the same kind of settings on the toy source (the generated synthetic set is exercised by the training tests)
    toy = [f"data.longtail.source={source}", "data.longtail.n_max=12", "data.longtail.imbalance=4",
           "data.longtail.val_per_class=2"]
    cfg = load_config(configs_dir() / "longtail" / "synthetic.yaml", [*toy, f"data.root={tmp_path / 'lt'}"])
    assert default_root(source, cfg.data.longtail).name == "source-lt-r4-n12-seed0-val2"
    with pytest.raises(FileNotFoundError, match="mmcl train` builds it"):
        resolve_data_root(cfg.data)  # resolving a config builds nothing
    prepare_demo(cfg)  # the entry point's data step does
    assert resolve_data_root(cfg.data) == tmp_path / "lt"
    assert train_class_counts(PreparedData(tmp_path / "lt")).tolist() == [12, 7, 4, 3]
    cfg.data.longtail.seed = 5
    with pytest.raises(LongtailError, match="other settings.*seed: 0 there, 5 asked"):
        resolve_data_root(cfg.data)
    with pytest.raises(ConfigError, match="data.longtail.imbalance"):
        load_config(configs_dir() / "longtail" / "synthetic.yaml", ["data.longtail.list=x.txt"])
    with pytest.raises(ConfigError, match="data.longtail.source is empty"):
        longtail_paths(load_config(configs_dir() / "longtail" / "ntu60" / "xsub_r10.yaml",
                                   ["data.longtail.source=''"]).data)


def test_trained_class_counts_follow_the_label_fraction(source):
    """BRL's weights and mixup and the shot groups count the training samples a run learns from: with
    data.label_fraction, the kept part of the split."""
    from mmcl.config import DataConfig
    from mmcl.engine.data import build_dataset, trained_class_counts

    data = PreparedData(source)
    assert trained_class_counts(data, DataConfig()).tolist() == train_class_counts(data).tolist() == [14] * 4
    cfg = DataConfig(label_fraction=0.5, label_seed=1)
    counts = trained_class_counts(data, cfg)
    kept = build_dataset(data, cfg, "train", train=True).indices
    assert counts.tolist() == np.bincount(data.labels[kept], minlength=4).tolist() == [7] * 4
