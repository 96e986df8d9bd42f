"""Bad inputs to the commands that use a run: ``mmcl train`` (its data, its initial checkpoint, ``--resume``),
``mmcl eval``, ``mmcl predict`` and ``mmcl ensemble``. Each ends in one line naming the file and what is wrong, with
nothing else changed: no run folder, no metrics; a crafted pickle in a run's state runs nothing."""

from __future__ import annotations

import json
import pickle
import re
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file, save_file
from test_hostile_inputs import PROGRESS_BAR, Case, RunsCode, assert_one_line_error, corruptions, run_cli

from conftest import TINY_TRAIN, write_tiny_prepared

# Filled by the autouse fixture: the session's tiny prepared set and finished run, which cases copy and corrupt.
TINY: dict[str, Path] = {}


@pytest.fixture(autouse=True)
def _tiny(tiny_prepared, tiny_run):
    TINY.update(prepared=tiny_prepared, run=tiny_run)


def copy_run(d: Path) -> Path:
    return Path(shutil.copytree(TINY["run"], d / "run"))


def copy_prepared(d: Path) -> Path:
    return Path(shutil.copytree(TINY["prepared"], d / "data"))


def rewrite_checkpoint(src: Path, dst: Path, edit: Callable[[dict, dict], None]) -> Path:
    """``src`` with its tensors and metadata edited in place by ``edit(tensors, metadata)``."""
    tensors = load_file(src)
    with safe_open(src, framework="np") as f:
        meta = dict(f.metadata())
    edit(tensors, meta)
    save_file(tensors, dst, metadata=meta)
    return dst


def _set(name: str, value: float) -> Callable[[dict, dict], None]:
    def edit(tensors: dict, meta: dict) -> None:
        key = next(k for k in tensors if k.endswith(name))
        tensors[key] = tensors[key].copy()
        tensors[key].flat[0] = value
    return edit


# ------------------------------------------------------------------------------------------------ mmcl train

def train_cases() -> dict[str, Case]:
    def train(d: Path, *overrides: str) -> list[str]:
        return ["train", f"output_dir={d / 'runs'}", *TINY_TRAIN, *overrides]

    cases = {
        "train-data-missing": Case(lambda d: train(d, f"data.root={d / 'nowhere'}"), ("{tmp}/nowhere", "not found")),
        "train-data-is-a-file": Case(lambda d: (d / "f").write_text("x") and train(d, f"data.root={d / 'f'}"),
                                     ("{tmp}/f",)),
        "train-init-missing": Case(lambda d: train(d, f"data.root={TINY['prepared']}", f"model.init={d / 'x.st'}"),
                                   ("{tmp}/x.st",)),
    }
    for file, kinds in (("meta.json", ("empty", "truncated", "random")), ("labels.npy", ("empty", "truncated",
                        "random", "headerflip")), ("splits.json", ("empty", "truncated", "random")),
                        ("offsets.npy", ("empty", "truncated", "random")), ("joints.f32", ("empty", "truncated"))):
        for kind in kinds:
            def make(d: Path, file=file, kind=kind) -> list[str]:
                data = copy_prepared(d)
                (data / file).write_bytes(corruptions((data / file).read_bytes())[kind])
                return train(d, f"data.root={data}")
            cases[f"train-data-{file.split('.')[0]}-{kind}"] = Case(make, (f"{{tmp}}/data/{file}",))

    def label_out_of_range(d: Path) -> list[str]:
        data = copy_prepared(d)
        np.save(data / "labels.npy", np.full(12, 7))
        return train(d, f"data.root={data}")
    cases["train-data-labels-out-of-range"] = Case(label_out_of_range, ("{tmp}/data/labels.npy", "0..2"))

    def split_overlap(d: Path) -> list[str]:
        data = copy_prepared(d)
        (data / "splits.json").write_text(json.dumps({"train": [0, 1, 2], "val": [2], "test": [3]}))
        return train(d, f"data.root={data}")
    cases["train-data-splits-overlap"] = Case(split_overlap, ("{tmp}/data/splits.json",))

    def name_climbs(d: Path) -> list[str]:
        data = copy_prepared(d)
        names = (data / "names.txt").read_text().splitlines()
        (data / "names.txt").write_text("\n".join(["../../etc/passwd", *names[1:]]) + "\n")
        return train(d, f"data.root={data}")
    cases["train-data-name-climbs"] = Case(name_climbs, ("{tmp}/data/names.txt", "../../etc/passwd"))

    for kind in ("empty", "truncated", "random", "headerflip"):
        def init(d: Path, kind=kind) -> list[str]:
            raw = (TINY["run"] / "best.safetensors").read_bytes()
            (d / "init.safetensors").write_bytes(corruptions(raw)[kind])
            return train(d, f"data.root={TINY['prepared']}", f"model.init={d / 'init.safetensors'}")
        cases[f"train-init-{kind}"] = Case(init, ("{tmp}/init.safetensors",))

    for kind, value in (("nan", np.nan), ("inf", np.inf)):
        def init(d: Path, value=value) -> list[str]:
            rewrite_checkpoint(TINY["run"] / "best.safetensors", d / "init.safetensors", _set("fc.weight", value))
            return train(d, f"data.root={TINY['prepared']}", f"model.init={d / 'init.safetensors'}")
        cases[f"train-init-{kind}"] = Case(init, ("{tmp}/init.safetensors", "NaN or inf"))
    cases["train-init-other-stream"] = Case(
        lambda d: train(d, f"data.root={TINY['prepared']}", f"model.init={TINY['run'] / 'best.safetensors'}",
                        "data.stream=bone"), ("best.safetensors", "'joint' stream"))
    cases["train-teacher-cache-missing"] = Case(
        lambda d: train(d, f"data.root={TINY['prepared']}", "colearn.fam.enabled=true",
                        f"colearn.teacher.cache={d / 'cache'}"), ("{tmp}/cache",))
    return cases


# ------------------------------------------------------------------------------------------------ --resume

def resume_cases() -> dict[str, Case]:
    def resume(edit: Callable[[Path], None]) -> Callable[[Path], list[str]]:
        def make(d: Path) -> list[str]:
            run = copy_run(d)
            edit(run / "state")
            return ["train", "--resume", str(run)]
        return make

    def corrupt(file: str, kind: str) -> Callable[[Path], None]:
        return lambda state: (state / file).write_bytes(corruptions((state / file).read_bytes())[kind])

    cases = {
        "resume-missing-dir": Case(lambda d: ["train", "--resume", str(d / "nowhere")], ("{tmp}/nowhere",)),
        "resume-not-a-run": Case(lambda d: (d / "empty").mkdir() or ["train", "--resume", str(d / "empty")],
                                 ("{tmp}/empty", "config.yaml")),
        "resume-state-deleted": Case(resume(lambda state: shutil.rmtree(state)), ("{tmp}/run", "no state/")),
    }
    for file in ("optimizer.bin", "random_states_0.pkl", "model.safetensors", "trainer_state.json"):
        for kind in ("empty", "truncated", "random"):
            cases[f"resume-{file.split('.')[0]}-{kind}"] = Case(resume(corrupt(file, kind)), ("{tmp}/run/state",))
        cases[f"resume-{file.split('.')[0]}-missing"] = Case(resume(lambda state, f=file: (state / f).unlink()),
                                                             (f"{{tmp}}/run/state", file))
    cases["resume-trainer-state-fields"] = Case(
        resume(lambda state: (state / "trainer_state.json").write_text('{"epoch": "one"}')),
        ("{tmp}/run/state/trainer_state.json",))
    cases["resume-model-of-another-shape"] = Case(
        resume(lambda state: rewrite_checkpoint(state / "model.safetensors", state / "model.safetensors",
                                                lambda t, m: t.update({k: t[k][:1] for k in t if "fc" in k}))),
        ("{tmp}/run/state",))
    return cases


def test_a_crafted_pickle_in_a_run_state_runs_nothing(tmp_path, capsys):
    """Planted in the state where a pickle is read (optimizer, RNG states), or as the custom-object pickle an
    earlier mmcl wrote (with or without the JSON state beside it): refused, naming the file; the command never
    runs."""
    marker = tmp_path / "ran"
    for file, drop_json in (("optimizer.bin", False), ("random_states_0.pkl", False),
                            ("custom_checkpoint_0.pkl", False), ("custom_checkpoint_0.pkl", True)):
        for protocol in (2, 4):
            run = tmp_path / f"run-{file}-{drop_json}-{protocol}"
            shutil.copytree(TINY["run"], run)
            (run / "state" / file).write_bytes(pickle.dumps({"state": RunsCode(marker)}, protocol=protocol))
            if drop_json:
                (run / "state" / "trainer_state.json").unlink()
            code, err = run_cli(["train", "--resume", str(run)], capsys)
            assert code == 2 and str(run / "state") in err and len(err.strip().splitlines()) == 1, err
            assert not marker.exists()


def test_a_state_written_with_the_pickled_trainer_state_resumes(tmp_path, capsys):
    """An earlier mmcl's state (trainer progress in custom_checkpoint_0.pkl) is read with weights_only=True and
    converted; the run continues from it."""
    import torch

    run = Path(shutil.copytree(TINY["run"], tmp_path / "run"))
    state = json.loads((run / "state" / "trainer_state.json").read_text())
    (run / "state" / "trainer_state.json").unlink()
    torch.save(state, run / "state" / "custom_checkpoint_0.pkl")
    code, err = run_cli(["train", "--resume", str(run), "optim.epochs=2"], capsys)
    assert code == 0, err
    assert sorted(p.name for p in (run / "state").iterdir()) == [
        "model.safetensors", "optimizer.bin", "random_states_0.pkl", "trainer_state.json"]
    assert [h["epoch"] for h in json.loads((run / "history.json").read_text())["history"]] == [1, 2]


# ------------------------------------------------------------------------------------------------ mmcl eval

def checkpoint_cases(command: str) -> dict[str, Case]:
    """Bad checkpoints given to ``mmcl eval`` or ``mmcl predict``."""
    def argv(d: Path, checkpoint: Path) -> list[str]:
        if command == "eval":
            return ["eval", "--checkpoint", str(checkpoint), "--data", str(TINY["prepared"]), "--out",
                    str(d / "out"), "--workers", "0"]
        np.save(d / "x.npy", np.load(TINY["run"].parent.parent / "tiny-sample.npy"))
        return ["predict", "--checkpoint", str(checkpoint), str(d / "x.npy")]

    cases = {}
    for kind in ("empty", "truncated", "random", "headerflip"):
        def make(d: Path, kind=kind) -> list[str]:
            raw = (TINY["run"] / "best.safetensors").read_bytes()
            (d / "ckpt.safetensors").write_bytes(corruptions(raw)[kind])
            return argv(d, d / "ckpt.safetensors")
        cases[f"{command}-checkpoint-{kind}"] = Case(make, ("{tmp}/ckpt.safetensors",))
    edits = {"nan": (_set("fc.weight", np.nan), "NaN or inf"), "inf": (_set("l1.gcn1.PA", -np.inf), "NaN or inf"),
             "bn-nan": (_set("data_bn.running_var", np.nan), "NaN or inf"),
             "missing-tensor": (lambda t, m: t.pop(next(k for k in t if k.startswith("fc."))), "Missing key"),
             "extra-tensor": (lambda t, m: t.update(extra=np.zeros(3, np.float32)), "Unexpected key"),
             "class-count": (lambda t, m: m.update(class_names=json.dumps(["a", "b"])), "class count"),
             "metadata-json": (lambda t, m: m.update(model_args="{bogus"), "metadata"),
             "metadata-model": (lambda t, m: m.update(model="resnet"), "resnet"),
             "metadata-missing": (lambda t, m: m.pop("layout"), "metadata"),
             "heads-file": (lambda t, m: m.update(format="mmcl-colearn-heads-v2"), "not an mmcl deployable"),
             "foreign-format": (lambda t, m: m.pop("format"), "not an mmcl deployable")}
    for kind, (edit, needle) in edits.items():
        def make(d: Path, edit=edit) -> list[str]:
            rewrite_checkpoint(TINY["run"] / "best.safetensors", d / "ckpt.safetensors", edit)
            return argv(d, d / "ckpt.safetensors")
        cases[f"{command}-checkpoint-{kind}"] = Case(make, ("{tmp}/ckpt.safetensors", needle))
    cases[f"{command}-checkpoint-missing"] = Case(lambda d: argv(d, d / "none.safetensors"),
                                                  ("{tmp}/none.safetensors",))
    return cases


def eval_data_cases() -> dict[str, Case]:
    def evaluate(d: Path, data: Path, *more: str) -> list[str]:
        return ["eval", "--checkpoint", str(TINY["run"] / "best.safetensors"), "--data", str(data), "--out",
                str(d / "out"), "--workers", "0", *more]

    def nan_input(d: Path) -> list[str]:
        data = copy_prepared(d)
        joints = np.fromfile(data / "joints.f32", dtype="<f4")
        joints[-10] = np.nan  # a test sample's frame: the writer refuses such samples, a damaged file has them
        joints.tofile(data / "joints.f32")
        return evaluate(d, data)

    def other_classes(d: Path) -> list[str]:
        from mmcl.data.prepared import PreparedInfo, write_prepared

        rng = np.random.default_rng(0)
        write_prepared(d / "other", PreparedInfo("x", "ntu25", 1, ["a", "b"]),
                       [("S1", 0, rng.normal(size=(5, 1, 25, 3)).astype(np.float32))], {"test": [0]})
        return evaluate(d, d / "other")

    def other_layout(d: Path) -> list[str]:
        from mmcl.data.prepared import PreparedInfo, write_prepared

        rng = np.random.default_rng(0)
        write_prepared(d / "other", PreparedInfo("x", "kinect_v1_20", 1, ["class0", "class1", "class2"]),
                       [("S1", 0, rng.normal(size=(5, 1, 20, 3)).astype(np.float32))], {"test": [0]})
        return evaluate(d, d / "other")

    return {
        "eval-data-nan-input": Case(nan_input, ("NaN or inf", "S001C001P004R001A003")),
        "eval-data-missing": Case(lambda d: evaluate(d, d / "nowhere"), ("{tmp}/nowhere",)),
        "eval-data-other-classes": Case(other_classes, ("{tmp}/other", "2 classes")),
        "eval-data-other-layout": Case(other_layout, ("{tmp}/other", "layout 'kinect_v1_20'")),
        "eval-split-unknown": Case(lambda d: evaluate(d, TINY["prepared"], "--split", "dev"), ("--split",)),
        "eval-split-empty": Case(lambda d: evaluate(d, write_tiny_prepared(d / "data"), "--split", "train",
                                                    "--batch-size", "0"), ("--batch-size",)),
        "eval-workers-negative": Case(lambda d: evaluate(d, TINY["prepared"], "--workers", "-1"), ("--workers",)),
    }


# ------------------------------------------------------------------------------------------------ mmcl predict

def predict_cases() -> dict[str, Case]:
    def predict(write: Callable[[Path], None], suffix: str = ".npy") -> Callable[[Path], list[str]]:
        def make(d: Path) -> list[str]:
            write(d / f"x{suffix}")
            return ["predict", "--checkpoint", str(TINY["run"] / "best.safetensors"), str(d / f"x{suffix}")]
        return make

    good = np.random.default_rng(0).normal(size=(10, 1, 25, 3)).astype(np.float32)

    def with_value(value: float, frame: int) -> Callable[[Path], None]:
        def write(path: Path) -> None:
            x = good.copy()
            x[frame, 0, 3, 1] = value
            np.save(path, x)
        return write

    cases = {
        "predict-npy-nan": Case(predict(with_value(np.nan, 4)), ("{tmp}/x.npy", "NaN or inf", "frame 4")),
        "predict-npy-inf": Case(predict(with_value(np.inf, 0)), ("{tmp}/x.npy", "NaN or inf", "frame 0")),
        "predict-npy-float64-overflow": Case(predict(lambda p: np.save(p, good.astype(np.float64) * 1e300)),
                                             ("{tmp}/x.npy", "NaN or inf")),
        "predict-npy-zeros": Case(predict(lambda p: np.save(p, np.zeros_like(good))), ("{tmp}/x.npy", "all joints")),
        "predict-npy-no-frames": Case(predict(lambda p: np.save(p, good[:0])), ("{tmp}/x.npy",)),
        "predict-npy-objects": Case(predict(lambda p: np.save(p, np.array([{"a": 1}], dtype=object))),
                                    ("{tmp}/x.npy", "not a readable .npy")),
        "predict-npy-pickle-code": Case(predict(lambda p: p.write_bytes(pickle.dumps(RunsCode(p.parent / "ran")))),
                                        ("{tmp}/x.npy", "not a readable .npy")),
        "predict-npy-strings": Case(predict(lambda p: np.save(p, np.full((10, 25, 3), "abc"))), ("{tmp}/x.npy", "<U3")),
        "predict-npy-bool": Case(predict(lambda p: np.save(p, good > 0)), ("{tmp}/x.npy", "bool")),
        "predict-npy-complex": Case(predict(lambda p: np.save(p, good.astype(np.complex64))), ("{tmp}/x.npy",)),
        "predict-npy-random-bytes": Case(predict(lambda p: p.write_bytes(np.random.default_rng(0).bytes(500))),
                                         ("{tmp}/x.npy",)),
        "predict-npy-empty-file": Case(predict(lambda p: p.write_bytes(b"")), ("{tmp}/x.npy",)),
        "predict-npy-truncated": Case(predict(lambda p: np.save(p, good) or p.write_bytes(p.read_bytes()[:200])),
                                      ("{tmp}/x.npy",)),
        "predict-npy-wrong-joints": Case(predict(lambda p: np.save(p, good[:, :, :20])), ("{tmp}/x.npy", "M<=1, 25, 3")),
        "predict-npy-two-persons": Case(predict(lambda p: np.save(p, np.concatenate([good, good], 1))),
                                        ("{tmp}/x.npy", "2 persons")),
        "predict-npy-scalar": Case(predict(lambda p: np.save(p, np.float32(3))), ("{tmp}/x.npy",)),
        "predict-skeleton-random": Case(predict(lambda p: p.write_bytes(np.random.default_rng(1).bytes(300)),
                                                ".skeleton"), ("{tmp}/x.skeleton",)),
        "predict-skeleton-empty": Case(predict(lambda p: p.write_text(""), ".skeleton"), ("{tmp}/x.skeleton",)),
        "predict-wrong-suffix": Case(predict(lambda p: p.write_text("1 2 3"), ".txt"), ("{tmp}/x.txt",)),
        "predict-file-missing": Case(predict(lambda p: None), ("{tmp}/x.npy",)),
    }
    return cases


# ------------------------------------------------------------------------------------------------ mmcl ensemble

def ensemble_cases() -> dict[str, Case]:
    def ensemble(edit: Callable[[Path], None], *more: str) -> Callable[[Path], list[str]]:
        def make(d: Path) -> list[str]:
            a, b = copy_run(d), Path(shutil.copytree(TINY["run"], d / "run2"))
            edit(b)
            return ["ensemble", str(a), str(b), "--out", str(d / "out"), *more]
        return make

    def rewrite(split: str, **changes) -> Callable[[Path], None]:
        def edit(run: Path) -> None:
            with np.load(run / f"{split}_scores.npz") as f:
                arrays = {k: f[k] for k in f.files}
            for key, value in changes.items():
                arrays[key] = value(arrays[key]) if callable(value) else value
            arrays = {k: v for k, v in arrays.items() if v is not None}
            np.savez(run / f"{split}_scores.npz", **arrays)
        return edit

    cases = {}
    for kind in ("empty", "truncated", "random", "headerflip"):
        cases[f"ensemble-scores-{kind}"] = Case(
            ensemble(lambda r, k=kind: (r / "val_scores.npz").write_bytes(
                corruptions((r / "val_scores.npz").read_bytes())[k])), ("{tmp}/run2/val_scores.npz",))
    nan = lambda s: np.where(np.arange(s.size).reshape(s.shape) == 1, np.nan, s)  # noqa: E731
    cases.update({
        "ensemble-scores-nan": Case(ensemble(rewrite("val", scores=nan)), ("{tmp}/run2/val_scores.npz", "NaN")),
        "ensemble-test-scores-inf": Case(ensemble(rewrite("test", scores=lambda s: s * np.inf)),
                                         ("{tmp}/run2/test_scores.npz", "NaN or inf")),
        "ensemble-scores-missing-array": Case(ensemble(rewrite("val", labels=None)), ("{tmp}/run2/val_scores.npz",
                                                                                      "labels")),
        "ensemble-scores-object-array": Case(ensemble(rewrite("val", names=lambda n: n.astype(object))),
                                             ("{tmp}/run2/val_scores.npz",)),
        "ensemble-scores-shape": Case(ensemble(rewrite("val", scores=lambda s: s[:, :2])),
                                      ("{tmp}/run2/val_scores.npz", "do not fit")),
        "ensemble-scores-labels-range": Case(ensemble(rewrite("val", labels=lambda x: x + 5)),
                                             ("{tmp}/run2/val_scores.npz", "labels")),
        "ensemble-other-samples": Case(ensemble(rewrite("val", names=lambda n: np.char.add(n, "x"))),
                                       ("{tmp}/run2", "samples differ")),
        "ensemble-other-classes": Case(ensemble(rewrite("val", class_names=lambda c: c[::-1])),
                                       ("{tmp}/run2", "class names differ")),
        "ensemble-run-missing": Case(ensemble(lambda r: shutil.rmtree(r)), ("{tmp}/run2",)),
        "ensemble-weights-count": Case(ensemble(lambda r: None, "--weights", "1"), ("--weights",)),
        "ensemble-weights-nan": Case(ensemble(lambda r: None, "--weights", "nan", "1"), ("--weights",)),
        "ensemble-step-zero": Case(ensemble(lambda r: None, "--step", "0"), ("--step",)),
        "ensemble-step-uneven": Case(ensemble(lambda r: None, "--step", "0.3"), ("--step",)),
    })
    return cases


CASES = {**train_cases(), **resume_cases(), **checkpoint_cases("eval"), **checkpoint_cases("predict"),
         **eval_data_cases(), **predict_cases(), **ensemble_cases()}


@pytest.fixture(scope="module", autouse=True)
def _sample(tiny_prepared, tiny_run):
    """A good input for predict (its checkpoint cases)."""
    from mmcl.data.prepared import PreparedData

    np.save(tiny_run.parent.parent / "tiny-sample.npy", PreparedData(tiny_prepared).joints(9))


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_run_input_is_a_one_line_error(name, tmp_path, capsys):
    assert_one_line_error(CASES[name], tmp_path, capsys)


def test_a_diverging_run_stops_at_the_first_non_finite_loss(tmp_path, capsys):
    """lr 1e8: the weights are NaN after epoch 1's last step (its losses were finite); validation stops the run,
    naming the learning rate; no checkpoint, no metrics."""
    code, err = run_cli(["train", f"data.root={TINY['prepared']}", f"output_dir={tmp_path}", "name=div",
                         *TINY_TRAIN, "optim.epochs=2", "optim.lr=1e8"], capsys)
    lines = [line for line in re.split(r"[\r\n]", err) if line.strip() and not PROGRESS_BAR.search(line)]
    assert code == 2 and len(lines) == 1, err
    assert "validation scores after epoch 1 are not finite" in err and "optim.lr = 100000000.0" in err, err
    assert "nothing was saved" in err
    assert not any((tmp_path / "div").glob("*.safetensors")) and not (tmp_path / "div" / "metrics.json").exists()


def test_a_run_diverging_after_an_epoch_keeps_that_epoch(tmp_path, capsys, monkeypatch):
    """The learning rate of epoch 2 makes the weights, then the loss, NaN (its second step, the run's fourth): the
    error names the step and the cause; the checkpoint and state of epoch 1 stay what epoch 1 wrote, resumable."""
    from mmcl.engine import trainer

    schedule = trainer.learning_rate
    monkeypatch.setattr(trainer, "learning_rate", lambda cfg, epoch: schedule(cfg, epoch) if epoch == 0 else np.nan)
    run = tmp_path / "r"
    code, err = run_cli(["train", f"data.root={TINY['prepared']}", f"output_dir={tmp_path}", "name=r", *TINY_TRAIN,
                         "optim.epochs=3"], capsys)
    assert code == 2 and "non-finite loss at step 4 (epoch 2" in err and "learning rate" in err, err
    assert f"Kept: {run / 'last.safetensors'}" in err and "epoch 1" in err
    state = json.loads((run / "state" / "trainer_state.json").read_text())
    assert state["epoch"] == 0 and not (run / "metrics.json").exists()
    from mmcl.models.checkpoint import load_checkpoint

    assert load_checkpoint(run / "last.safetensors")[1].extra["epoch"] == 1
    monkeypatch.setattr(trainer, "learning_rate", schedule)
    code, err = run_cli(["train", "--resume", str(run)], capsys)
    assert code == 0, err
    assert [h["epoch"] for h in json.loads((run / "history.json").read_text())["history"]] == [1, 2, 3]


def test_a_run_killed_before_its_first_epoch_ended_restarts(tmp_path, capsys):
    """Only config.yaml and partial logs exist: --resume says so and restarts it from the start, in place."""
    run = tmp_path / "early"
    (run / "tensorboard").mkdir(parents=True)
    (run / "tensorboard" / "events.out.tfevents.killed").write_text("partial")
    shutil.copy(TINY["run"] / "config.yaml", run / "config.yaml")
    code, err = run_cli(["train", "--resume", str(run)], capsys)
    assert code == 0, err
    assert not (run / "tensorboard" / "events.out.tfevents.killed").exists()
    assert (run / "metrics.json").is_file() and (run / "state" / "trainer_state.json").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["early"]
