"""Corrupted and hostile inputs of ``mmcl export``, ``mmcl predict`` and ``mmcl show`` (the corpus of
tests/test_hostile_inputs.py, with its helpers): each ends in a one-line error naming what is wrong (exit status 2),
leaving nothing behind; in a batch, the bad file is recorded with its reason and the others are predicted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from test_deploy import tiny_checkpoint
from test_hostile_inputs import Case, assert_one_line_error, corruptions, run_cli

from mmcl.cli import main

WINDOW, V = 8, 20  # tiny_checkpoint's Kinect-v1 model: (T, 1 person, 20 joints, 3)


@pytest.fixture(scope="module")
def model_files(tmp_path_factory) -> tuple[Path, Path]:
    """A small deployable checkpoint and its ONNX export (the BiGRU: quick to trace)."""
    root = tmp_path_factory.mktemp("hostile-deploy")
    checkpoint = tiny_checkpoint(root / "m.safetensors", "bigru")
    assert main(["export", "--checkpoint", str(checkpoint)]) == 0
    return checkpoint, checkpoint.with_suffix(".onnx")


def clip(frames: int = 12, persons: int = 1, joints: int = V) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(frames, persons, joints, 3)).astype(np.float32)


def npy(d: Path, array: np.ndarray, name: str = "bad.npy") -> str:
    np.save(d / name, array)
    return str(d / name)


def onnx_without(path: Path, key: str | None) -> bytes:
    """The ONNX model with its metadata entry ``key`` removed (None: all of mmcl's metadata)."""
    import onnx

    proto = onnx.load(str(path))
    keep = [(p.key, p.value) for p in proto.metadata_props if key is not None and p.key != key]
    del proto.metadata_props[:]
    for k, v in keep:
        proto.metadata_props.add(key=k, value=v)
    return proto.SerializeToString()


def cases(checkpoint: Path, onnx_path: Path) -> dict[str, Case]:
    ck, model = str(checkpoint), str(onnx_path)
    out: dict[str, Case] = {}

    def predict_file(array: np.ndarray, *extra: str) -> Callable[[Path], list[str]]:
        return lambda d: ["predict", "--model", model, npy(d, array), *extra]

    nan, zeros = clip(), np.zeros((12, 1, V, 3), np.float32)
    nan[3, 0, 5, 1] = np.nan
    # export
    out["export-missing-checkpoint"] = Case(lambda d: ["export", "--checkpoint", str(d / "missing.safetensors")],
                                            ("{tmp}/missing.safetensors",))
    for kind in ("empty", "truncated", "random"):
        def corrupt_checkpoint(d: Path, kind=kind) -> list[str]:
            (d / "bad.safetensors").write_bytes(corruptions(checkpoint.read_bytes())[kind])
            return ["export", "--checkpoint", str(d / "bad.safetensors"), "--out", str(d / "bad.onnx")]
        out[f"export-checkpoint-{kind}"] = Case(corrupt_checkpoint, ("{tmp}/bad.safetensors",))
    out["export-opset"] = Case(lambda d: ["export", "--checkpoint", ck, "--opset", "99", "--out", str(d / "x.onnx")],
                               ("opset 99 outside 7..20",))
    # predict: the model file
    out["predict-missing-model"] = Case(lambda d: ["predict", "--model", str(d / "missing.onnx"), npy(d, clip())],
                                        ("{tmp}/missing.onnx",))
    for kind in ("empty", "truncated", "random", "headerflip"):
        def corrupt_model(d: Path, kind=kind) -> list[str]:
            (d / "bad.onnx").write_bytes(corruptions(onnx_path.read_bytes())[kind])
            return ["predict", "--model", str(d / "bad.onnx"), npy(d, clip(), "ok.npy")]
        out[f"predict-onnx-{kind}"] = Case(corrupt_model, ("{tmp}/bad.onnx",))

    def foreign_onnx(key: str | None, *needles: str) -> Case:
        def make(d: Path) -> list[str]:
            (d / "bad.onnx").write_bytes(onnx_without(onnx_path, key))
            return ["predict", "--model", str(d / "bad.onnx"), npy(d, clip(), "ok.npy")]
        return Case(make, ("{tmp}/bad.onnx", *needles))

    out["predict-onnx-not-mmcl"] = foreign_onnx(None, "not an ONNX file written by `mmcl export`")
    out["predict-onnx-no-class-names"] = foreign_onnx("class_names", "incomplete mmcl metadata", "class_names")
    out["predict-onnx-no-input"] = foreign_onnx("input", "'input' missing")
    # predict: the skeleton file
    out["predict-missing-file"] = Case(lambda d: ["predict", "--model", model, str(d / "missing.npy")],
                                       ("{tmp}/missing.npy",))
    out["predict-wrong-joints"] = Case(predict_file(clip(joints=25)), ("{tmp}/bad.npy", "array of shape (12, 1, 25, 3)",
                                                                       "--layout"))
    out["predict-wrong-rank"] = Case(predict_file(np.ones((4, 5), np.float32)), ("{tmp}/bad.npy", "(4, 5)"))
    out["predict-too-many-persons"] = Case(predict_file(clip(persons=3)), ("{tmp}/bad.npy", "3 persons"))
    out["predict-nan"] = Case(predict_file(nan), ("{tmp}/bad.npy", "non-finite values (NaN or inf) in frame 3"))
    out["predict-zeros"] = Case(predict_file(zeros), ("{tmp}/bad.npy", "all joints are zero"))
    out["predict-strings"] = Case(predict_file(np.array([["a"]])), ("{tmp}/bad.npy", "<U1"))
    out["predict-unknown-layout"] = Case(predict_file(clip(), "--layout", "ntu26"), ("unknown layout 'ntu26'",))

    def truncated_npy(d: Path) -> list[str]:
        np.save(d / "ok.npy", clip())
        (d / "bad.npy").write_bytes((d / "ok.npy").read_bytes()[:100])
        (d / "ok.npy").unlink()
        return ["predict", "--checkpoint", ck, str(d / "bad.npy")]

    def skeleton_text(d: Path) -> list[str]:
        (d / "bad.skeleton").write_bytes(np.random.default_rng(1).bytes(300))
        return ["predict", "--checkpoint", ck, str(d / "bad.skeleton")]

    out["predict-truncated-npy"] = Case(truncated_npy, ("{tmp}/bad.npy", "not a readable .npy"))
    out["predict-random-skeleton"] = Case(skeleton_text, ("{tmp}/bad.skeleton",))
    out["predict-out-suffix"] = Case(lambda d: ["predict", "--model", model, npy(d, clip(), "a.npy"), "--out",
                                                str(d / "p.txt")], ("p.txt", ".csv or a .json"))

    def empty_dir(d: Path) -> list[str]:
        (d / "e").mkdir()
        return ["predict", "--model", model, str(d / "e"), "--out", str(d / "p.csv")]

    def not_onnx(d: Path) -> list[str]:
        (d / "bad.onnx").write_bytes(b"\x08\x07junk")
        return ["show", npy(d, clip()), "--model", str(d / "bad.onnx")]

    out["predict-empty-dir"] = Case(empty_dir, ("{tmp}/e",))
    out["predict-missing-list"] = Case(lambda d: ["predict", "--model", model, "--list", str(d / "l.txt"), "--out",
                                                  str(d / "p.csv")], ("{tmp}/l.txt",))
    # show
    out["show-missing-file"] = Case(lambda d: ["show", str(d / "missing.npy"), "--out", str(d / "a.gif")],
                                    ("{tmp}/missing.npy",))
    out["show-nan"] = Case(lambda d: ["show", npy(d, nan), "--layout", "kinect_v1_20", "--out", str(d / "a.gif")],
                           ("{tmp}/bad.npy", "non-finite"))
    out["show-unknown-layout"] = Case(lambda d: ["show", npy(d, clip()), "--layout", "ntu26"], ("'ntu26'",))
    out["show-view"] = Case(lambda d: ["show", npy(d, clip()), "--layout", "kinect_v1_20", "--view", "diagonal",
                                       "--out", str(d / "a.gif")], ("view 'diagonal'",))
    out["show-out-suffix"] = Case(lambda d: ["show", npy(d, clip()), "--layout", "kinect_v1_20", "--out",
                                             str(d / "a.png")], ("a.png", ".gif or an .mp4"))
    out["show-corrupt-model"] = Case(not_onnx, ("{tmp}/bad.onnx",))
    out["show-no-sample"] = Case(lambda d: ["show"], ("give a sample",))
    return out


NAMES = sorted(cases(Path("m.safetensors"), Path("m.onnx")))


@pytest.mark.parametrize("name", NAMES)
def test_bad_input_is_a_one_line_error(name, model_files, tmp_path, capsys):
    assert_one_line_error(cases(*model_files)[name], tmp_path, capsys)


@pytest.mark.parametrize("name", ["predict-unknown-sample", "show-unknown-sample", "show-unknown-class"])
def test_bad_names_in_a_prepared_dataset(name, model_files, small_prepared, tmp_path, capsys):
    data = str(small_prepared)
    argv = {"predict-unknown-sample": ["predict", "--model", str(model_files[1]), "--data", data, "--split", "nope"],
            "show-unknown-sample": ["show", "S999", "--data", data, "--out", str(tmp_path / "a.gif")],
            "show-unknown-class": ["show", "--data", data, "--pair", "wave", "clap once", "--out",
                                   str(tmp_path / "a.gif")]}[name]
    needles = {"predict-unknown-sample": ("no split 'nope'",), "show-unknown-sample": ("no sample 'S999'",),
               "show-unknown-class": ("no class 'wave'",)}[name]
    assert_one_line_error(Case(lambda d: argv, needles), tmp_path, capsys)


def test_a_batch_records_each_bad_file_and_predicts_the_rest(model_files, tmp_path, capsys):
    nan = clip()
    nan[0, 0, 0, 0] = np.inf
    folder = tmp_path / "in"
    folder.mkdir()
    for name, array in {"a_ok": clip(), "b_nan": nan, "c_zeros": np.zeros((5, 1, V, 3), np.float32),
                        "d_shape": clip(joints=25), "e_ok": clip(30)}.items():
        np.save(folder / f"{name}.npy", array)
    (folder / "f_cut.npy").write_bytes((folder / "a_ok.npy").read_bytes()[:90])
    code, _ = run_cli(["predict", "--model", str(model_files[1]), str(folder), "--out", str(tmp_path / "p.json"),
                       "--batch-size", "2"], capsys)
    assert code == 0
    rows = {r["name"]: r for r in json.loads((tmp_path / "p.json").read_text())["rows"]}
    assert [n for n, r in rows.items() if r["status"] == "ok"] == ["a_ok", "e_ok"]
    assert "non-finite" in rows["b_nan"]["reason"] and "all joints are zero" in rows["c_zeros"]["reason"]
    assert "(30, 1, 25, 3)" not in rows["d_shape"]["reason"] and "(12, 1, 25, 3)" in rows["d_shape"]["reason"]
    assert "not a readable .npy" in rows["f_cut"]["reason"]
    assert all(len(rows[n]["top"]) == 4 for n in ("a_ok", "e_ok"))


def test_corpus_size():
    assert len(NAMES) >= 30
