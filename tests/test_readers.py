"""Dataset readers and importers on tiny files written here, plus the `mmcl prepare` command."""

from __future__ import annotations

import json
import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import scipy.io

import ctrgcn_feeder_reference as ref
from mmcl.cli import main
from mmcl.data import utd_mhad
from mmcl.data.dataset import SkeletonDataset
from mmcl.data.importers import carve_val_by_subject, carve_val_random, import_ctrgcn_npz, import_pyskl
from mmcl.data.ntu_classes import NTU60_CLASSES
from mmcl.data.nwucla import NWUCLA_CLASSES, prepare_nwucla, read_nwucla_json
from mmcl.data.prepared import PreparedData, PreparedInfo, write_prepared
from mmcl.data.sysu import SYSU_CLASSES, prepare_sysu, read_sysu_file, sysu_video_path
from mmcl.data.utd_mhad import UTD_MHAD_CLASSES, prepare_utd_mhad, read_utd_mat, utd_video_name


def joints(seed: int, t: int, v: int = 20, c: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(t, v, c)).astype(np.float32) + np.float32(2)


def assert_splits(data: PreparedData, sizes: dict[str, int]) -> dict[str, set[str]]:
    """Split sizes as expected, splits disjoint and covering every sample; returns split -> sample names."""
    names = {k: {data.names[i] for i in data.splits[k]} for k in ("train", "val", "test")}
    assert {k: len(v) for k, v in names.items()} == sizes == data.info.split_sizes
    assert not (names["train"] & names["val"] or names["train"] & names["test"] or names["val"] & names["test"])
    assert set().union(*names.values()) == set(data.names)
    return names


# ---------------------------------------------------------------- NW-UCLA

def write_ucla(root: Path) -> dict[str, np.ndarray]:
    written = {}
    for a in (1, 2, 12):
        for s in (1, 2, 3):
            for v in (1, 2, 3):
                name = f"a{a:02d}_s{s:02d}_e00_v{v:02d}"
                written[name] = joints(a * 100 + s * 10 + v, 5 + a + s + v)
                sub = root / f"v{v:02d}"
                sub.mkdir(parents=True, exist_ok=True)
                (sub / f"{name}.json").write_text(json.dumps({"skeletons": written[name].tolist()}))
    (root / "v01" / "a03_s01_e01_v01.json").write_text(json.dumps({"skeletons": []}))
    return written


def test_nwucla(tmp_path):
    written = write_ucla(tmp_path / "raw")
    data = PreparedData(prepare_nwucla(tmp_path / "raw", tmp_path / "out", progress=False))
    assert data.info.layout == "nwucla20" and data.info.num_person == 1 and data.class_names == list(NWUCLA_CLASSES)
    names = assert_splits(data, {"train": 12, "val": 6, "test": 9})
    assert all(n.endswith("_v03") for n in names["test"])
    assert names["val"] == {n for n in written if "_s03_" in n and not n.endswith("_v03")}
    empty = tmp_path / "raw" / "v01" / "a03_s01_e01_v01.json"
    assert data.skipped() == [{"name": "a03_s01_e01_v01", "reason": f"no frames in {empty}"}]
    for name, x in written.items():
        i = data.index_of(name)
        np.testing.assert_array_equal(data.joints(i)[:, 0], x)
        assert data.labels[i] == {1: 0, 2: 1, 12: 9}[int(name[1:3])]


def test_nwucla_bad_inputs(tmp_path):
    bad = tmp_path / "a01_s01_e00_v01.json"
    bad.write_text(json.dumps({"frames": []}))
    with pytest.raises(ValueError, match=f"{bad}: no 'skeletons' key"):
        read_nwucla_json(bad)
    bad.write_text(json.dumps({"skeletons": joints(0, 4, v=19).tolist()}))
    with pytest.raises(ValueError, match=rf"{bad}: 'skeletons' has shape \(4, 19, 3\)"):
        read_nwucla_json(bad)
    bad.write_text("{not json")
    with pytest.raises(ValueError, match=f"{bad}: not valid JSON"):
        read_nwucla_json(bad)
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "a07_s01_e00_v01.json").write_text(json.dumps({"skeletons": joints(0, 3).tolist()}))
    with pytest.raises(ValueError, match="a07_s01_e00_v01.json: action a07 is not one of"):
        prepare_nwucla(raw, tmp_path / "out", progress=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=f"no aAA_sSS_eEE_vVV.json files under {empty}"):
        prepare_nwucla(empty, tmp_path / "o2")


# ---------------------------------------------------------------- UTD-MHAD

def write_utd(root: Path) -> dict[str, np.ndarray]:
    """d_skel files for actions 1 and 27, subjects 1-4, trial 1; returns name -> (T, 20, 3) in file order."""
    root.mkdir(parents=True)
    written = {}
    for a in (1, 27):
        for s in (1, 2, 3, 4):
            name = f"a{a}_s{s}_t1"
            written[name] = joints(a * 10 + s, 10 + s)
            scipy.io.savemat(root / f"{name}_skeleton.mat", {"d_skel": written[name].transpose(1, 2, 0)})
    scipy.io.savemat(root / "a2_s1_t1_skeleton.mat", {"d_skel": np.zeros((20, 3, 0))})
    return written


def test_utd_mhad(tmp_path):
    written = write_utd(tmp_path / "Skeleton")
    data = PreparedData(prepare_utd_mhad(tmp_path, tmp_path / "out", progress=False))
    assert data.info.layout == "kinect_v1_20" and data.class_names == list(UTD_MHAD_CLASSES)
    assert len(UTD_MHAD_CLASSES) == 27 and UTD_MHAD_CLASSES[23] == "sit to stand"
    names = assert_splits(data, {"train": 2, "val": 2, "test": 4})
    assert names["test"] == {n for n in written if "_s2_" in n or "_s4_" in n}
    assert names["val"] == {"a1_s3_t1", "a27_s3_t1"}
    assert [s["name"] for s in data.skipped()] == ["a2_s1_t1"]
    for name, x in written.items():
        i = data.index_of(name)
        got = data.joints(i)[:, 0]
        # file order head, shoulder centre, spine, hip centre -> Kinect v1 hip centre, spine, shoulder centre, head
        np.testing.assert_array_equal(got[:, [0, 1, 2, 3]], x[:, [3, 2, 1, 0]])
        np.testing.assert_array_equal(got[:, 4:], x[:, 4:])
        assert data.labels[i] == int(name.split("_")[0][1:]) - 1
    assert utd_video_name("a1_s1_t1") == "a1_s1_t1_color.avi"


def test_utd_bad_inputs(tmp_path):
    bad = tmp_path / "a1_s1_t1_skeleton.mat"
    scipy.io.savemat(bad, {"skel": np.zeros((20, 3, 4))})
    with pytest.raises(ValueError, match=f"{bad}: no variable 'd_skel'"):
        read_utd_mat(bad)
    scipy.io.savemat(bad, {"d_skel": np.zeros((25, 3, 4))})
    with pytest.raises(ValueError, match=rf"{bad}: d_skel has shape \(25, 3, 4\)"):
        read_utd_mat(bad)
    bad.write_bytes(b"not a mat file" * 20)
    with pytest.raises(ValueError, match=f"{bad}: cannot read as a .mat file"):
        read_utd_mat(bad)
    raw = tmp_path / "raw"
    raw.mkdir()
    scipy.io.savemat(raw / "a28_s1_t1_skeleton.mat", {"d_skel": np.ones((20, 3, 4))})
    with pytest.raises(ValueError, match="a28_s1_t1_skeleton.mat: action a28 outside a1..a27"):
        prepare_utd_mhad(raw, tmp_path / "out", progress=False)


def test_killed_prepare_resumes(tmp_path, monkeypatch):
    write_utd(tmp_path / "raw")
    clean = PreparedData(prepare_utd_mhad(tmp_path / "raw", tmp_path / "clean", progress=False))
    reads = []

    def dying_read(path):
        if len(reads) == 4:
            raise KeyboardInterrupt
        reads.append(path.name)
        return read_utd_mat(path)

    monkeypatch.setattr(utd_mhad, "read_utd_mat", dying_read)
    with pytest.raises(KeyboardInterrupt):
        prepare_utd_mhad(tmp_path / "raw", tmp_path / "out", progress=False)
    assert (tmp_path / "out.partial").is_dir() and not (tmp_path / "out").exists()
    first = list(reads)
    reads.clear()
    monkeypatch.setattr(utd_mhad, "read_utd_mat", lambda p: reads.append(p.name) or read_utd_mat(p))
    data = PreparedData(prepare_utd_mhad(tmp_path / "raw", tmp_path / "out", progress=False))
    assert len(first) == 4 and not set(first) & set(reads) and len(first) + len(reads) == 9
    assert data.names == clean.names and data.splits.keys() == clean.splits.keys()
    for k in clean.splits:
        np.testing.assert_array_equal(data.splits[k], clean.splits[k])
    for i in range(len(clean)):
        np.testing.assert_array_equal(data.joints(i), clean.joints(i))


# ---------------------------------------------------------------- SYSU

def test_sysu(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    written = {}
    for s in (1, 2, 3, 4, 5):
        for a in (1, 12):
            name = f"S{s:02d}_A{a:02d}_V01"
            written[name] = joints(s * 100 + a, 6 + s)
            if s % 2:
                lines = [" ".join(f"{v:.6f}" for v in frame.ravel()) for frame in written[name]]
                (raw / f"{name}.txt").write_text("\n".join(lines) + "\n\n")
                written[name] = np.asarray([[float(f"{v:.6f}") for v in f.ravel()] for f in written[name]],
                                           dtype=np.float32).reshape(-1, 20, 3)
            else:
                np.save(raw / f"{name}.npy", written[name].reshape(-1, 60))
    (raw / "S01_A01_V01.mp4").write_bytes(b"")
    (raw / "S01_A02_V01.txt").write_text("")
    data = PreparedData(prepare_sysu(raw, tmp_path / "out", progress=False))
    assert data.info.layout == "kinect_v1_20" and data.class_names == list(SYSU_CLASSES) and len(SYSU_CLASSES) == 12
    names = assert_splits(data, {"train": 4, "val": 2, "test": 4})
    assert names["val"] == {"S05_A01_V01", "S05_A12_V01"}
    assert all(n[1:3] in ("02", "04") for n in names["test"])
    assert [s["name"] for s in data.skipped()] == ["S01_A02_V01"]
    for name, x in written.items():
        np.testing.assert_allclose(data.joints(data.index_of(name))[:, 0], x, atol=1e-6)
        assert data.labels[data.index_of(name)] == int(name[5:7]) - 1
    assert sysu_video_path(raw / "S01_A01_V01.txt") == raw / "S01_A01_V01.mp4"
    assert sysu_video_path(raw / "S01_A12_V01.txt") is None


def test_sysu_bad_inputs(tmp_path):
    bad = tmp_path / "S01_A01_V01.txt"
    bad.write_text(" ".join(["1"] * 60) + "\n" + " ".join(["1"] * 59) + "\n")
    with pytest.raises(ValueError, match=f"{bad}, line 2: 59 numbers, expected 60"):
        read_sysu_file(bad)
    bad.write_text(" ".join(["1"] * 59 + ["x"]) + "\n")
    with pytest.raises(ValueError, match=f"{bad}, line 1: could not convert"):
        read_sysu_file(bad)
    npy = tmp_path / "S01_A01_V02.npy"
    np.save(npy, np.zeros((4, 25, 3)))
    with pytest.raises(ValueError, match=rf"{npy}: array of shape \(4, 25, 3\)"):
        read_sysu_file(npy)
    raw = tmp_path / "raw"
    raw.mkdir()
    np.save(raw / "S01_A13_V01.npy", np.ones((4, 20, 3)))
    with pytest.raises(ValueError, match="S01_A13_V01.npy: action A13 outside A01..A12"):
        prepare_sysu(raw, tmp_path / "out", progress=False)


# ---------------------------------------------------------------- CTR-GCN npz

def write_npz(path: Path, n_train: int = 12, n_test: int = 5, classes: int = 4) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {}
    for part, n in (("train", n_train), ("test", n_test)):
        x = np.zeros((n, 300, 150), dtype=np.float32)
        for i in range(n):
            valid = int(rng.integers(20, 300))
            x[i, :valid] = rng.normal(size=(valid, 150))
            if i == 1:
                x[i, :valid, 75:] = 0  # one actor
        if part == "train":
            x[2] = 0  # no frame at all: skipped
        arrays[f"x_{part}"] = x
        arrays[f"y_{part}"] = np.eye(classes, dtype=np.float32)[rng.integers(0, classes, n)]
    np.savez(path, **arrays)
    return arrays


def test_ctrgcn_npz(tmp_path):
    arrays = write_npz(tmp_path / "tiny.npz")
    out = import_ctrgcn_npz(tmp_path / "tiny.npz", tmp_path / "out", class_names=list("abcd"), progress=False)
    data = PreparedData(out)
    assert data.info.layout == "ntu25" and data.info.num_person == 2
    names = assert_splits(data, {"train": 10, "val": 1, "test": 5})
    assert names["test"] == {f"test_{i:06d}" for i in range(5)}
    assert data.skipped() == [{"name": "train_000002", "reason": "all joints are zero"}]
    for part in ("train", "test"):
        x = arrays[f"x_{part}"].reshape(-1, 300, 2, 25, 3).transpose(0, 4, 1, 3, 2)  # the reference's (N, C, T, V, M)
        labels = np.where(arrays[f"y_{part}"] > 0)[1]
        for i in range(len(x)):
            if part == "train" and i == 2:
                continue
            k = data.index_of(f"{part}_{i:06d}")
            assert data.lengths[k] == ref.valid_frame_num(x[i]) and data.labels[k] == labels[i]
            np.testing.assert_array_equal(data.joints(k).transpose(3, 0, 2, 1), x[i][:, : data.lengths[k]])
    # the dataset's evaluation items are the reference feeder's
    ds = SkeletonDataset(data, "test", stream="bone")
    xt = arrays["x_test"].reshape(-1, 300, 2, 25, 3).transpose(0, 4, 1, 3, 2)
    for k in range(len(ds)):
        item = ds[k]
        i = int(item["name"].split("_")[1])
        expected = ref.feeder_item(xt[i], ref.NTU_PAIRS, 64, train=False, bone=True)
        np.testing.assert_allclose(item["skeleton"].numpy(), expected, atol=1e-6)


def test_ctrgcn_npz_names_and_errors(tmp_path):
    write_npz(tmp_path / "tiny.npz", n_train=3, n_test=2)
    names = tmp_path / "names.txt"
    names.write_text("\n".join(["S001C001P001R001A001", "S001C001P002R001A002", "S001C001P003R001A001",
                                "S001C002P001R001A001", "S001C003P001R001A001"]))
    data = PreparedData(import_ctrgcn_npz(tmp_path / "tiny.npz", tmp_path / "out", class_names=list("abcd"),
                                          names_file=names, progress=False))
    assert data.names == ["S001C001P001R001A001", "S001C001P002R001A002", "S001C002P001R001A001",
                          "S001C003P001R001A001"]  # the third training sample is all zeros
    with pytest.raises(ValueError, match="4 classes in y_train but 3 class names"):
        import_ctrgcn_npz(tmp_path / "tiny.npz", tmp_path / "o2", class_names=list("abc"), progress=False)
    with pytest.raises(ValueError, match="neither NTU-60 nor NTU-120; pass the class names"):
        import_ctrgcn_npz(tmp_path / "tiny.npz", tmp_path / "o2", progress=False)
    names.write_text("a\nb\n")
    with pytest.raises(ValueError, match=f"{names}: 2 names, expected 3 training \\+ 2 test"):
        import_ctrgcn_npz(tmp_path / "tiny.npz", tmp_path / "o2", class_names=list("abcd"), names_file=names)
    bad = tmp_path / "bad.npz"
    np.savez(bad, x_train=np.zeros((2, 300, 150), np.float32), y_train=np.eye(2))
    with pytest.raises(ValueError, match=rf"{bad}: missing arrays \['x_test', 'y_test'\]"):
        import_ctrgcn_npz(bad, tmp_path / "o3")
    y = np.eye(2)
    y[1, 0] = 1
    np.savez(bad, x_train=np.zeros((2, 300, 150), np.float32), y_train=y, x_test=np.zeros((2, 300, 150), np.float32),
             y_test=np.eye(2))
    with pytest.raises(ValueError, match=f"{bad}: y_train row 1 is not one-hot"):
        import_ctrgcn_npz(bad, tmp_path / "o3", class_names=["a", "b"])
    np.savez(bad, x_train=np.zeros((2, 300, 75), np.float32), y_train=np.eye(2),
             x_test=np.zeros((2, 300, 150), np.float32), y_test=np.eye(2))
    with pytest.raises(ValueError, match=rf"{bad}: x_train has shape \(2, 300, 75\)"):
        import_ctrgcn_npz(bad, tmp_path / "o3", class_names=["a", "b"])


def test_ctrgcn_npz_ntu_class_names_and_subjects(tmp_path):
    write_npz(tmp_path / "ntu.npz", n_train=6, n_test=2, classes=60)
    data = PreparedData(import_ctrgcn_npz(tmp_path / "ntu.npz", tmp_path / "out", progress=False))
    assert data.info.dataset == "ntu60" and data.class_names == list(NTU60_CLASSES)
    assert_splits(data, {"train": 4, "val": 1, "test": 2})
    assert "not by subject" in data.info.split_protocol
    names = tmp_path / "names.txt"
    names.write_text("\n".join(ntu_name(1, p, a) for p in (1, 2, 4, 3) for a in (1, 2)))
    data = PreparedData(import_ctrgcn_npz(tmp_path / "ntu.npz", tmp_path / "named", names_file=names,
                                          progress=False))
    split = assert_splits(data, {"train": 3, "val": 2, "test": 2})
    assert split["val"] == {ntu_name(1, 4, 1), ntu_name(1, 4, 2)}  # the subjects `mmcl prepare ntu` would pick


# ---------------------------------------------------------------- pyskl

def ntu_name(s: int, p: int, a: int) -> str:
    return f"S{s:03d}C001P{p:03d}R001A{a:03d}"


def write_pyskl(path: Path, v: int = 25, c: int = 3, names: list[str] | None = None) -> list[dict]:
    """Annotations of ``names`` (default: NTU names of performers 1, 2, 4 then 3, two actions each): the first six
    and an all-zero sample form xsub_train, the rest xsub_val; xview_val holds the first sample alone."""
    rng = np.random.default_rng(1)
    names = names or [ntu_name(1, p, a) for p in (1, 2, 4, 3) for a in (1, 2)]
    anns = []
    for k, name in enumerate(names):
        m, t = (1 if k % 2 else 2), 10 + k
        anns.append({"frame_dir": name, "label": k % 3, "total_frames": t, "img_shape": (1080, 1920),
                     "keypoint": rng.normal(size=(m, t, v, c)).astype(np.float32)})
    anns.append({"frame_dir": "empty", "label": 0, "total_frames": 4, "keypoint": np.zeros((1, 4, v, c), np.float32)})
    split = {"xsub_train": names[:6] + ["empty"], "xsub_val": names[6:], "xview_train": names[1:],
             "xview_val": names[:1]}
    with open(path, "wb") as f:
        pickle.dump({"split": split, "annotations": anns}, f)
    return anns


def test_pyskl_3d(tmp_path):
    anns = write_pyskl(tmp_path / "ann.pkl")
    data = PreparedData(import_pyskl(tmp_path / "ann.pkl", tmp_path / "out", class_names=NTU60_CLASSES,
                                     progress=False))
    assert data.info.layout == "ntu25" and data.info.num_person == 2 and data.info.benchmark == "xsub"
    assert data.info.dataset == "ntu60" and data.num_classes == 60
    names = assert_splits(data, {"train": 4, "val": 2, "test": 2})
    # NTU-60 X-Sub training performers present: 4, 1, 2 in VAL_SUBJECT_ORDER; one is closest to 10%: performer 4
    assert names["val"] == {ntu_name(1, 4, 1), ntu_name(1, 4, 2)}
    assert "validation subjects [4]" in data.info.split_protocol
    assert [s["name"] for s in data.skipped()] == ["empty"]
    for ann in anns[:-1]:
        i = data.index_of(ann["frame_dir"])
        kp = ann["keypoint"]
        got = data.joints(i)
        assert data.labels[i] == ann["label"] and got.shape == (ann["total_frames"], 2, 25, 3)
        np.testing.assert_array_equal(got[:, : kp.shape[0]], kp.transpose(1, 0, 2, 3))
        assert not got[:, kp.shape[0]:].any()
    xview = PreparedData(import_pyskl(tmp_path / "ann.pkl", tmp_path / "xview", split_prefix="xview",
                                      class_names=list("xyz"), num_person=1, progress=False))
    assert xview.info.num_person == 1 and xview.info.dataset == "ann"
    assert_splits(xview, {"train": 6, "val": 1, "test": 1})  # 3 classes, not NTU: a fixed-seed 5% (at least one)
    assert "not by subject" in xview.info.split_protocol


def test_pyskl_2d_and_errors(tmp_path):
    names = [f"clip{k}" for k in range(8)]
    write_pyskl(tmp_path / "ann2d.pkl", v=20, c=2, names=names)
    data = PreparedData(import_pyskl(tmp_path / "ann2d.pkl", tmp_path / "keep", class_names=list("xyz"),
                                     progress=False))
    assert data.info.layout == "kinect_v1_20" and data.info.channels == 2
    assert_splits(data, {"train": 5, "val": 1, "test": 2})  # not NTU names: fixed-seed 5% of train (at least 1)
    padded = PreparedData(import_pyskl(tmp_path / "ann2d.pkl", tmp_path / "pad", class_names=list("xyz"),
                                       pad_2d=True, progress=False))
    assert padded.info.channels == 3
    i = padded.index_of("clip0")
    np.testing.assert_array_equal(padded.joints(i)[..., :2], data.joints(data.index_of("clip0")))
    assert not padded.joints(i)[..., 2].any()

    write_pyskl(tmp_path / "coco.pkl", v=17, c=2, names=names)
    with pytest.raises(ValueError, match="17 joints per person matches no built-in layout"):
        import_pyskl(tmp_path / "coco.pkl", tmp_path / "o", class_names=list("xyz"))
    with pytest.raises(ValueError, match="20 joints per person but layout 'ntu25' has 25"):
        import_pyskl(tmp_path / "ann2d.pkl", tmp_path / "o", layout="ntu25", class_names=list("xyz"))
    with pytest.raises(ValueError, match="no split 'xset_train'; splits: xsub_train, xsub_val"):
        import_pyskl(tmp_path / "ann2d.pkl", tmp_path / "o", split_prefix="xset", class_names=list("xyz"))
    with pytest.raises(ValueError, match="neither NTU-60 nor NTU-120"):
        import_pyskl(tmp_path / "ann2d.pkl", tmp_path / "o")
    with open(tmp_path / "ann2d.pkl", "rb") as f:
        content = pickle.load(f)
    content["annotations"][2]["total_frames"] = 99
    with open(tmp_path / "broken.pkl", "wb") as f:
        pickle.dump(content, f)
    with pytest.raises(ValueError, match="clip2: total_frames 99 but keypoint has 12 frames"):
        import_pyskl(tmp_path / "broken.pkl", tmp_path / "o4", class_names=list("xyz"), progress=False)
    content["split"]["xsub_val"].append("ghost")
    with open(tmp_path / "broken.pkl", "wb") as f:
        pickle.dump(content, f)
    with pytest.raises(ValueError, match="split lists 'ghost' but no annotation has that frame_dir"):
        import_pyskl(tmp_path / "broken.pkl", tmp_path / "o5", class_names=list("xyz"))
    with pytest.raises(ValueError, match="ann2d.pkl: sample 'clip2': label 2 outside 0..1"):
        import_pyskl(tmp_path / "ann2d.pkl", tmp_path / "o6", class_names=list("xy"), progress=False)


def test_val_carving_rules():
    subjects = [s for s in range(1, 41, 2) for _ in range(2)]  # 20 subjects: 10% is 2
    train, val = carve_val_by_subject(range(len(subjects)), subjects)
    assert [subjects[i] for i in val] == [37, 37, 39, 39] and len(train) == 36
    train, val = carve_val_by_subject(range(len(subjects)), subjects + [41])  # 21 subjects: still 2
    assert sorted({subjects[i] for i in val}) == [37, 39]
    train, val = carve_val_by_subject([0, 1, 2, 3], subjects)  # 2 subjects: at least one, never all
    assert val == [2, 3] and train == [0, 1]
    with pytest.raises(ValueError, match="from 1 training subject"):
        carve_val_by_subject([0, 1], subjects)
    train, val = carve_val_random(range(100))
    assert len(val) == 5 and sorted(train + val) == list(range(100))
    assert carve_val_random(range(100)) == (train, val)


# ---------------------------------------------------------------- mmcl prepare

def test_cli_prepare(tmp_path, capsys):
    write_utd(tmp_path / "raw")
    out = tmp_path / "utd"
    assert main(["prepare", "utd-mhad", "--raw", str(tmp_path / "raw"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"prepared utd_mhad -> {out}" in printed
    assert "samples 8 (train 2, val 2, test 4), frames" in printed and "skipped 1" in printed
    assert PreparedData(out).info.num_samples == 8

    assert main(["prepare", "utd-mhad", "--raw", str(tmp_path / "raw"), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["prepare", "utd-mhad", "--raw", str(tmp_path / "raw"), "--out", str(out), "--overwrite"]) == 0
    assert main(["prepare", "utd-mhad", "--raw", str(tmp_path / "raw"), "--out", str(out), "--workers", "4"]) == 2
    assert "--workers does not apply to utd-mhad" in capsys.readouterr().err
    assert main(["prepare", "sysu", "--raw", str(tmp_path / "missing"), "--out", str(tmp_path / "s")]) == 2
    assert f"SYSU-Action directory not found: {tmp_path / 'missing'}" in capsys.readouterr().err

    write_npz(tmp_path / "tiny.npz")
    (tmp_path / "classes.txt").write_text("a\nb\nc\nd\n")
    assert main(["prepare", "npz", "--raw", str(tmp_path / "tiny.npz"), "--out", str(tmp_path / "npz"),
                 "--class-names", str(tmp_path / "classes.txt"), "--benchmark", "xsub"]) == 0
    assert PreparedData(tmp_path / "npz").info.benchmark == "xsub"


@pytest.mark.parametrize("beside", [True, False])
@pytest.mark.parametrize("entries", [[{"name": "wave"}, {"name": "clap", "id": 2}], ["wave", "clap"]])
def test_cli_synthetic_reads_classes(tmp_path, monkeypatch, capsys, beside, entries):
    root = tmp_path / "synth"
    (root / "skeletons").mkdir(parents=True)
    ((root / "skeletons") if beside else root).joinpath("classes.json").write_text(json.dumps(entries))
    calls = []

    def fake_prepare_ntu(raw_dir, out, benchmark="xsub", dataset="auto", class_names=None, workers=2,
                         overwrite=False, progress=True, dataset_name=None):
        calls.append((Path(raw_dir), benchmark, class_names, workers))
        assert dataset_name == "synthetic"
        info = PreparedInfo(dataset=dataset_name, layout="ntu25", num_person=2, class_names=class_names)
        samples = [(f"s{i}", i % 2, np.ones((3, 2, 25, 3), np.float32)) for i in range(4)]
        return write_prepared(out, info, samples, {"train": [0, 1], "val": [2], "test": [3]})

    monkeypatch.setitem(sys.modules, "mmcl.data.ntu", types.SimpleNamespace(prepare_ntu=fake_prepare_ntu))
    for raw in (root, root / "skeletons"):
        out = tmp_path / f"out_{raw.name}"
        assert main(["prepare", "synthetic", "--raw", str(raw), "--out", str(out), "--benchmark", "xview",
                     "--workers", "3"]) == 0
    assert calls == [(root / "skeletons", "xview", ["wave", "clap"], 3)] * 2
    assert "prepared synthetic" in capsys.readouterr().out
    (root / "skeletons" / "classes.json").unlink(missing_ok=True)
    (root / "classes.json").unlink(missing_ok=True)
    assert main(["prepare", "synthetic", "--raw", str(root), "--out", str(tmp_path / "o")]) == 2
    assert "no classes.json in" in capsys.readouterr().err
