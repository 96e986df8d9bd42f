"""Corrupted and hostile inputs at every entry point: each ends in a one-line error naming what is wrong (exit
status 2) or in a sample recorded as skipped with its reason; nothing else in the output changes.

The corpus is generated here from small valid files by corrupting them in the ways files really break (empty,
truncated, random bytes, a flipped bit, wrong structure, NaN / inf, all zeros) and in the ways a hostile file is built
(a pickle that runs code, names that climb out of a folder).
"""

from __future__ import annotations

import json
import os
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import scipy.io

from mmcl.cli import main
from mmcl.data.prepared import PreparedData


@dataclass
class Case:
    """A corrupted input: ``make(dir) -> argv`` writes it and returns the command line that reads it; the command must
    fail with one line holding every ``needles`` entry (or, with ``skipped``, succeed and record that reason)."""

    make: Callable[[Path], list[str]]
    needles: tuple[str, ...]
    skipped: str | None = None


PROGRESS_BAR = re.compile(r"\d+%\|.*\| *\d+/\d+|^\s*$")  # a tqdm bar (it ends its lines with \r, not \n)


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


def assert_one_line_error(case: Case, tmp_path: Path, capsys) -> None:
    argv = case.make(tmp_path)
    before = snapshot(tmp_path)
    code, err = run_cli(argv, capsys)
    assert code == 2, err
    lines = [line for line in re.split(r"[\r\n]", err) if line.strip() and not PROGRESS_BAR.search(line)]
    assert len(lines) == 1 and lines[0].startswith("mmcl ") and "Traceback" not in err, err
    for needle in case.needles:
        assert needle.format(tmp=tmp_path) in err, (needle, err)
    assert snapshot(tmp_path) == before, "a failed command changed its input folder or left output behind"


def snapshot(root: Path) -> dict[str, tuple[int, float]]:
    """Every file under ``root`` (not pytest's own), with size and mtime."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime) for p in root.rglob("*") if p.is_file()}


def corruptions(raw: bytes, seed: int = 0) -> dict[str, bytes]:
    """The ways a file really breaks: empty, cut in half, random bytes of the same size, a byte flipped in its
    header, a byte flipped in its body (only formats with a checksum can notice that one)."""
    rng = np.random.default_rng(seed)
    header, body = bytearray(raw), bytearray(raw)
    header[2] ^= 0xFF
    body[len(raw) // 3] ^= 0xFF
    return {"empty": b"", "truncated": raw[: len(raw) // 2], "random": rng.bytes(len(raw)),
            "headerflip": bytes(header), "bitflip": bytes(body)}


# ------------------------------------------------------------------------------------------------ CTR-GCN .npz

def write_npz(path: Path, x: np.ndarray | None = None, **extra) -> Path:
    x = np.random.default_rng(0).normal(size=(4, 12, 150)).astype(np.float32) if x is None else x
    y = np.eye(60, dtype=np.float32)[np.arange(len(x)) % 60]
    arrays = {"x_train": x, "y_train": y, "x_test": x, "y_test": y, **extra}
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def npz_cases() -> dict[str, Case]:
    cases = {}
    for kind in ("empty", "truncated", "random", "headerflip", "bitflip"):
        def make(d: Path, kind=kind) -> list[str]:
            raw = write_npz(d / "ok.npz").read_bytes()
            (d / "ok.npz").unlink()
            (d / "bad.npz").write_bytes(corruptions(raw)[kind])
            return ["prepare", "npz", "--raw", str(d / "bad.npz"), "--out", str(d / "out")]
        cases[f"npz-{kind}"] = Case(make, ("{tmp}/bad.npz",))

    def missing_key(d: Path) -> list[str]:
        write_npz(d / "bad.npz", y_test=None)
        return ["prepare", "npz", "--raw", str(d / "bad.npz"), "--out", str(d / "out")]

    def wrong_shape(d: Path) -> list[str]:
        write_npz(d / "bad.npz", x=np.zeros((4, 12, 75), np.float32) + 1)
        return ["prepare", "npz", "--raw", str(d / "bad.npz"), "--out", str(d / "out")]

    def object_array(d: Path) -> list[str]:
        np.savez(d / "bad.npz", x_train=np.array([{"a": 1}], dtype=object), y_train=np.eye(2), x_test=np.eye(2),
                 y_test=np.eye(2))
        return ["prepare", "npz", "--raw", str(d / "bad.npz"), "--out", str(d / "out")]

    def names_climb(d: Path) -> list[str]:
        write_npz(d / "ok.npz")
        (d / "names.txt").write_text("".join(f"{n}\n" for n in ["a", "../../etc/x", "c", "d", "e", "f", "g", "h"]))
        return ["prepare", "npz", "--raw", str(d / "ok.npz"), "--out", str(d / "out"), "--names",
                str(d / "names.txt")]

    def names_absolute(d: Path) -> list[str]:
        write_npz(d / "ok.npz")
        (d / "names.txt").write_text("".join(f"{n}\n" for n in ["a", "b", "/tmp/x", "d", "e", "f", "g", "h"]))
        return ["prepare", "npz", "--raw", str(d / "ok.npz"), "--out", str(d / "out"), "--names",
                str(d / "names.txt")]

    cases["npz-missing-array"] = Case(missing_key, ("{tmp}/bad.npz", "y_test"))
    cases["npz-wrong-shape"] = Case(wrong_shape, ("{tmp}/bad.npz", "x_train"))
    cases["npz-object-array"] = Case(object_array, ("{tmp}/bad.npz",))
    cases["npz-name-climbs"] = Case(names_climb, ("names.txt:2", "../../etc/x"))
    cases["npz-name-absolute"] = Case(names_absolute, ("names.txt:3", "/tmp/x"))
    return cases


# ------------------------------------------------------------------------------------------------ pyskl pickle

def pyskl_annotations(keypoint: np.ndarray | None = None) -> dict:
    rng = np.random.default_rng(1)
    names = [f"S001C001P00{p}R001A001" for p in (1, 2, 3, 4)]
    anns = [{"frame_dir": n, "label": label, "total_frames": 6,
             "keypoint": rng.normal(size=(1, 6, 25, 3)).astype(np.float32)} for n, label in zip(names, (0, 59, 1, 2))]
    if keypoint is not None:
        anns[1]["keypoint"] = keypoint
        anns[1]["total_frames"] = keypoint.shape[1] if keypoint.ndim > 1 else 6
    return {"split": {"xsub_train": names[:3], "xsub_val": names[3:]}, "annotations": anns}


class RunsCode:
    """What a crafted pickle holds: building it runs a command (here: writes a marker file)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def pyskl_cases() -> dict[str, Case]:
    cases = {}
    for kind in ("empty", "truncated", "random", "headerflip"):  # a pickle has no checksum: a body flip reads
        def make(d: Path, kind=kind) -> list[str]:
            raw = pickle.dumps(pyskl_annotations(), protocol=4)
            (d / "bad.pkl").write_bytes(corruptions(raw)[kind])
            return ["prepare", "pyskl", "--raw", str(d / "bad.pkl"), "--out", str(d / "out")]
        cases[f"pyskl-{kind}"] = Case(make, ("{tmp}/bad.pkl",))

    def structure(obj) -> Callable[[Path], list[str]]:
        def make(d: Path) -> list[str]:
            (d / "bad.pkl").write_bytes(pickle.dumps(obj))
            return ["prepare", "pyskl", "--raw", str(d / "bad.pkl"), "--out", str(d / "out")]
        return make

    cases["pyskl-list"] = Case(structure([1, 2]), ("{tmp}/bad.pkl", "'split'"))
    cases["pyskl-no-split"] = Case(structure({"split": {}, "annotations": []}), ("{tmp}/bad.pkl", "xsub_train"))
    bad_kp = pyskl_annotations(np.zeros((1, 6, 25), np.float32))
    cases["pyskl-keypoint-shape"] = Case(structure(bad_kp), ("{tmp}/bad.pkl", "S001C001P002R001A001"))
    return cases


def pyskl_skip_cases() -> dict[str, Case]:
    def make(keypoint: np.ndarray) -> Callable[[Path], list[str]]:
        def write(d: Path) -> list[str]:
            (d / "a.pkl").write_bytes(pickle.dumps(pyskl_annotations(keypoint)))
            return ["prepare", "pyskl", "--raw", str(d / "a.pkl"), "--out", str(d / "out")]
        return write

    nan = np.ones((1, 6, 25, 3), np.float32)
    nan[0, 2, 3, 1] = np.nan
    inf = np.ones((1, 6, 25, 3), np.float32)
    inf[0, 4] = np.inf
    return {"pyskl-nan": Case(make(nan), (), skipped="non-finite values (NaN or inf) in frame 2"),
            "pyskl-inf": Case(make(inf), (), skipped="non-finite values (NaN or inf) in frame 4"),
            "pyskl-zeros": Case(make(np.zeros((1, 6, 25, 3), np.float32)), (), skipped="all joints are zero"),
            "pyskl-no-frames": Case(make(np.zeros((1, 0, 25, 3), np.float32)), (), skipped="no frames")}


# ------------------------------------------------------------------------------------------------ UTD-MHAD .mat

def utd_skip_cases() -> dict[str, Case]:
    def make(bad: np.ndarray) -> Callable[[Path], list[str]]:
        def write(d: Path) -> list[str]:
            raw = d / "raw"
            raw.mkdir()
            rng = np.random.default_rng(2)
            for s in (1, 2, 3, 4):
                skel = bad if s == 1 else rng.normal(size=(20, 3, 9)).astype(np.float32)
                scipy.io.savemat(raw / f"a1_s{s}_t1_skeleton.mat", {"d_skel": skel})
                scipy.io.savemat(raw / f"a2_s{s}_t1_skeleton.mat", {"d_skel": rng.normal(size=(20, 3, 7))})
            return ["prepare", "utd-mhad", "--raw", str(raw), "--out", str(d / "out")]
        return write

    nan = np.ones((20, 3, 9), np.float32)
    nan[4, 0, 5] = np.nan
    return {"utd-zeros": Case(make(np.zeros((20, 3, 9))), (), skipped="all joints are zero"),
            "utd-nan": Case(make(nan), (), skipped="non-finite values (NaN or inf) in frame 5")}


def utd_error_cases() -> dict[str, Case]:
    cases = {}
    for kind in ("empty", "truncated", "random"):  # MATLAB's header is free text: a flip there reads fine
        def make(d: Path, kind=kind) -> list[str]:
            raw = d / "raw"
            raw.mkdir()
            scipy.io.savemat(raw / "a1_s1_t1_skeleton.mat", {"d_skel": np.ones((20, 3, 5))})
            data = (raw / "a1_s1_t1_skeleton.mat").read_bytes()
            (raw / "a1_s1_t1_skeleton.mat").write_bytes(corruptions(data)[kind])
            return ["prepare", "utd-mhad", "--raw", str(raw), "--out", str(d / "out")]
        cases[f"utd-{kind}"] = Case(make, ("a1_s1_t1_skeleton.mat",))
    return cases


# ------------------------------------------------------------------------------------------------ long-tail lists

def longtail_source(d: Path) -> Path:
    """A prepared set of 2 classes x 6 subjects (subjects 5 and 6 test) to draw long-tailed splits from."""
    from mmcl.data.prepared import PreparedInfo, write_prepared

    rng = np.random.default_rng(3)
    samples = [(f"S001C001P{s:03d}R001A{a:03d}", a - 1, rng.normal(size=(4, 1, 25, 3)).astype(np.float32))
               for s in range(1, 7) for a in (1, 2)]
    splits = {"train": list(range(8)), "test": list(range(8, 12))}
    info = PreparedInfo(dataset="toy", layout="ntu25", num_person=1, class_names=["a", "b"])
    return write_prepared(d / "source", info, samples, splits)


def longtail_cases() -> dict[str, Case]:
    import gzip

    listed = "\n".join(f"S001C001P{s:03d}R001A001" for s in (1, 2, 3)) + "\nS001C001P001R001A002\n"
    cases = {}
    for kind in ("empty", "truncated", "random", "headerflip", "bitflip"):
        def make(d: Path, kind=kind) -> list[str]:
            (d / "list.txt.gz").write_bytes(corruptions(gzip.compress(listed.encode()))[kind])
            return ["prepare", "longtail", "--from", str(longtail_source(d)), "--list", str(d / "list.txt.gz"),
                    "--out", str(d / "out"), "--val-per-class", "1"]
        cases[f"longtail-list-{kind}"] = Case(make, ("{tmp}/list.txt.gz",))

    def absent(d: Path) -> list[str]:
        (d / "list.txt").write_text(listed + "S009C001P001R001A001\n")
        return ["prepare", "longtail", "--from", str(longtail_source(d)), "--list", str(d / "list.txt"),
                "--out", str(d / "out"), "--val-per-class", "1"]

    def in_test(d: Path) -> list[str]:
        (d / "list.txt").write_text(listed + "S001C001P006R001A002\n")
        return ["prepare", "longtail", "--from", str(longtail_source(d)), "--list", str(d / "list.txt"),
                "--out", str(d / "out"), "--val-per-class", "1"]

    def not_prepared(d: Path) -> list[str]:
        (d / "list.txt").write_text(listed)
        (d / "source").mkdir()
        return ["prepare", "longtail", "--from", str(d / "source"), "--list", str(d / "list.txt"),
                "--out", str(d / "out")]

    def too_few(d: Path) -> list[str]:
        return ["prepare", "longtail", "--from", str(longtail_source(d)), "--imbalance", "2", "--n-max", "5",
                "--out", str(d / "out")]

    def bad_factor(d: Path) -> list[str]:
        return ["prepare", "longtail", "--from", str(longtail_source(d)), "--imbalance", "0.5", "--n-max", "2",
                "--out", str(d / "out")]

    cases["longtail-absent-sample"] = Case(absent, ("{tmp}/list.txt", "S009C001P001R001A001"))
    cases["longtail-test-sample"] = Case(in_test, ("{tmp}/list.txt", "S001C001P006R001A002", "test split"))
    cases["longtail-source-not-prepared"] = Case(not_prepared, ("{tmp}/source", "meta.json"))
    cases["longtail-too-few"] = Case(too_few, ("'a' (class 0): 4 < 5",))
    cases["longtail-bad-factor"] = Case(bad_factor, ("imbalance factor", "0.5"))
    return cases


def stream_cases() -> dict[str, Case]:
    """Input streams that do not fit the model, and ensemble weights that do not fit the runs: refused before any
    work (PSUMNet's part streams, mmcl.data.streams)."""
    def train(*overrides: str) -> Callable[[Path], list[str]]:
        return lambda d: ["train", *overrides, f"output_dir={d}/runs"]

    def ensemble(d: Path) -> list[str]:
        return ["ensemble", str(d / "run_a"), str(d / "run_b"), "--compare-weights", "2"]

    return {"stream-psumnet-without-psumnet": Case(train("data.stream=psumnet_hand"),
                                                   ("data.stream = 'psumnet_hand'", "model.name is 'ctrgcn'")),
            "stream-psumnet-model-on-joint": Case(train("model.name=psumnet"), ("data.stream = 'joint'",)),
            "stream-unknown": Case(train("data.stream=legs"), ("data.stream = 'legs'", "psumnet_leg")),
            "ensemble-compare-weights-count": Case(ensemble, ("--compare-weights: 1 weights for 2 runs",))}


# ------------------------------------------------------------------------------------------------ teacher caches

def teacher_cache_cases() -> dict[str, Case]:
    """A teacher cache whose manifest is broken (mmcl probe), an exported cache whose identity file is broken
    (mmcl teacher-cache import), an answers file with a bad line (mmcl tune-teacher, before any model loads)."""
    from test_probe import informative, make_cache, write_probe_prepared

    cases = {}
    for kind in ("empty", "truncated", "random", "headerflip"):
        def probe(d: Path, kind=kind) -> list[str]:
            cache = make_cache(d, write_probe_prepared(d / "prepared"), "good", informative)
            raw = (cache / "manifest.json").read_bytes()
            (cache / "manifest.json").write_bytes(corruptions(raw)[kind])
            return ["probe", "--cache", str(cache), "--out", str(d / "out")]

        def imported(d: Path, kind=kind) -> list[str]:
            from teachers.export import export_cache

            from datasets.utils.logging import disable_progress_bar, enable_progress_bar

            cache = make_cache(d / "a", write_probe_prepared(d / "prepared"), "good", informative)
            disable_progress_bar()  # the setup's own progress output is not the command's
            try:
                export_cache(cache, d / "hf")
            finally:
                enable_progress_bar()
            raw = (d / "hf" / "teacher_cache.json").read_bytes()
            (d / "hf" / "teacher_cache.json").write_bytes(corruptions(raw)[kind])
            return ["teacher-cache", "import", str(d / "hf"), "--out", str(d / "out")]
        cases[f"probe-manifest-{kind}"] = Case(probe, ("manifest.json",))
        cases[f"cache-import-{kind}"] = Case(imported, ("teacher_cache.json",))

    def answers(d: Path) -> list[str]:
        prepared = write_probe_prepared(d / "prepared")
        name = PreparedData(prepared).names[0]
        (d / "answers.jsonl").write_text(json.dumps({"name": name, "prompt": "p", "answer": "a"}) + "\n"
                                         + json.dumps({"name": name, "prompt": 3}) + "\n")
        (d / "videos").mkdir()
        return ["tune-teacher", "--config", "clip_vitb32_qwen25vl7b", "--data", str(prepared), "--videos", str(d / "videos"),
                "--answers", str(d / "answers.jsonl"), "--out", str(d / "out")]
    cases["tune-answers-bad-line"] = Case(answers, ("{tmp}/answers.jsonl:2",))
    return cases


# ------------------------------------------------------------------------------------------------ the tests

ERROR_CASES = {**npz_cases(), **pyskl_cases(), **utd_error_cases(), **longtail_cases(), **stream_cases(),
               **teacher_cache_cases()}
SKIP_CASES = {**pyskl_skip_cases(), **utd_skip_cases()}


@pytest.mark.parametrize("name", sorted(ERROR_CASES))
def test_corrupt_input_is_a_one_line_error(name, tmp_path, capsys):
    assert_one_line_error(ERROR_CASES[name], tmp_path, capsys)


@pytest.mark.parametrize("name", sorted(SKIP_CASES))
def test_unusable_sample_is_skipped_with_its_reason(name, tmp_path, capsys):
    case = SKIP_CASES[name]
    code, err = run_cli(case.make(tmp_path), capsys)
    assert code == 0, err
    data = PreparedData(tmp_path / "out")
    reasons = [s["reason"] for s in data.skipped()]
    assert len(reasons) == 1 and case.skipped in reasons[0], reasons
    assert np.isfinite(np.concatenate([data.joints(i) for i in range(len(data))])).all()


def test_crafted_pickle_runs_nothing(tmp_path, capsys):
    marker = tmp_path / "ran"
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"split": RunsCode(marker), "annotations": []}))
    code, err = run_cli(["prepare", "pyskl", "--raw", str(tmp_path / "evil.pkl"), "--out", str(tmp_path / "o")],
                        capsys)
    assert code == 2 and "posix.system" in err and str(tmp_path / "evil.pkl") in err
    assert not marker.exists()


def test_directory_named_like_a_skeleton_is_recorded(tmp_path, capsys):
    from test_ntu import write_scene

    raw = tmp_path / "raw"
    raw.mkdir()
    for p in (1, 2, 3, 4):
        for a in (1, 2):
            write_scene(raw / f"S001C001P00{p}R001A00{a}.skeleton", 20, [{"id": "72057594037931101", "frames": range(20)}],
                        seed=p * 10 + a)
    (raw / "S001C001P001R001A003.skeleton").mkdir()
    code, err = run_cli(["prepare", "ntu", "--raw", str(raw), "--out", str(tmp_path / "out"), "--workers", "1"],
                        capsys)
    assert code == 0, err
    skipped = PreparedData(tmp_path / "out").skipped()
    assert [s["name"] for s in skipped] == ["S001C001P001R001A003"]
    assert "IsADirectoryError" in skipped[0]["reason"]


def test_corpus_size():
    """The corpus grows with each entry point hardened; this file's share of the 150+ cases."""
    assert len(ERROR_CASES) + len(SKIP_CASES) >= 20
