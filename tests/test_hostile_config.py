"""Bad training configs, given on the command line or in a YAML file, to ``mmcl train`` (and ``mmcl ablate``,
``mmcl pretrain``): each is refused on one line naming the key and where it was set, before any output folder
exists."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_hostile_inputs import Case, assert_one_line_error

from conftest import TINY_TRAIN

# (case, the bad override, what the error must hold besides its key and where it was set[, other overrides the case
# needs]): values a config can hold that no run can use
BAD_VALUES = [
    ("epochs-zero", "optim.epochs=0", ">= 1"),
    ("epochs-negative", "optim.epochs=-3", ">= 1"),
    ("epochs-text", "optim.epochs=many", "optim.epochs"),
    ("epochs-fraction", "optim.epochs=1.5", "optim.epochs"),
    ("warmup-beyond-epochs", "optim.warmup_epochs=99", "optim.warmup_epochs"),
    ("eval-every-zero", "eval_every=0", ">= 1"),
    ("log-every-zero", "log_every=0", ">= 1"),
    ("grad-accum-zero", "grad_accum=0", ">= 1"),
    ("batch-size-zero", "data.batch_size=0", ">= 1"),
    ("batch-size-negative", "data.batch_size=-8", ">= 1"),
    ("eval-batch-size-zero", "data.eval_batch_size=0", ">= 1"),
    ("window-zero", "data.window=0", ">= 1"),
    ("repeat-zero", "data.repeat=0", ">= 1"),
    ("workers-negative", "data.num_workers=-1", ">= 0"),
    ("p-interval-three", "data.p_interval=[0.5,0.7,1.0]", "[lo, hi]"),
    ("p-interval-one", "data.p_interval=[0.9]", "[lo, hi]"),
    ("p-interval-reversed", "data.p_interval=[0.9,0.5]", "lo <= hi"),
    ("p-interval-zero", "data.p_interval=[0.0,1.0]", "0 < lo"),
    ("p-interval-nan", "data.p_interval=[nan,1.0]", "[lo, hi]"),
    ("rotation-negative", "data.rotation_range=-0.3", ">= 0"),
    ("stream-unknown", "data.stream=bones", "joint | bone"),
    ("layout-unknown", "data.layout=ntu26", "ntu25"),
    ("lr-nan", "optim.lr=nan", "finite"),
    ("lr-inf", "optim.lr=inf", "finite"),
    ("lr-negative-inf", "optim.lr=-inf", "finite"),
    ("lr-zero", "optim.lr=0", "> 0"),
    ("lr-negative", "optim.lr=-0.1", "> 0"),
    ("momentum-one", "optim.momentum=1.0", "[0, 1)"),
    ("nesterov-without-momentum", "optim.momentum=0", "optim.nesterov"),
    ("weight-decay-negative", "optim.weight_decay=-1e-4", ">= 0"),
    ("weight-decay-nan", "optim.weight_decay=nan", "finite"),
    ("gamma-zero", "optim.gamma=0", "> 0"),
    ("steps-decreasing", "optim.steps=[55,35]", "increasing"),
    ("min-lr-above-lr", "optim.min_lr=1.0", "optim.min_lr"),
    ("label-smoothing-two", "optim.label_smoothing=2", "[0, 1)"),
    ("label-smoothing-negative", "optim.label_smoothing=-0.1", "[0, 1)"),
    ("label-smoothing-one", "optim.label_smoothing=1.0", "[0, 1)"),
    ("clip-grad-norm-negative", "optim.clip_grad_norm=-1", "optim.clip_grad_norm"),
    ("clip-grad-norm-nan", "optim.clip_grad_norm=nan", "optim.clip_grad_norm"),
    ("scheduler-unknown", "optim.scheduler=linear", "step or cosine"),
    ("precision-unknown", "mixed_precision=fp8", "no, bf16 or fp16"),
    ("seed-negative", "seed=-1", "2**32"),
    ("cpu-threads-negative", "cpu_threads=-2", ">= 0"),
    ("key-misspelt", "optim.lrr=0.1", "did you mean 'optim.lr'"),
    ("key-unknown-section", "optimizer.lr=0.1", "did you mean 'optim'"),
    ("override-no-equals", "optim.lr", "dotted.key=value"),
    ("model-unknown", "model.name=resnet", "registered models"),
    ("model-args-bogus", "model.args={bogus: 1}", "takes no argument 'bogus'"),
    ("model-args-type", "model.args={drop_rate: high}", "expects float"),
    ("model-args-data-argument", "model.args={num_classes: 3}", "set from the data"),
    ("name-climbs", "name=../../x", "one file-name component"),
    ("name-absolute", "name=/tmp/x", "one file-name component"),
    ("name-nested", "name=a/b", "one file-name component"),
    ("name-dot", "name=.", "one file-name component"),
    ("name-hidden", "name=.x", "one file-name component"),
    ("name-empty", "name=''", "one file-name component"),
    ("data-root-empty-real-dataset", "data.root=''", "data.root", "data.dataset=ntu60"),
    ("teacher-missing-policy", "colearn.teacher.missing=maybe", "error or skip"),
    ("colearn-without-teacher", "colearn.fam.enabled=true", "teacher"),
    ("fam-tau-zero", "colearn.fam.tau=0", "> 0"),
    ("fam-weight-nan", "colearn.fam.weight=nan", "finite"),
    ("frm-mode-unknown", "colearn.frm.mode=soft", "refine or soft_label"),
    ("frm-pool-unknown", "colearn.frm.pool=max", "mean or attention"),
    ("openvocab-target-unknown", "colearn.openvocab.target=label", "description or name"),
    ("two-crossmodal-variants", "colearn.deformable.enabled=true", "one cross-modal variant",
     "colearn.mmixer.enabled=true", "colearn.teacher.config=tiny"),
    ("mmixer-heads", "colearn.mmixer.heads=3", "must be a multiple", "colearn.mmixer.enabled=true",
     "colearn.teacher.config=tiny"),
]
# Values set in a YAML file rather than on the command line: the error names the file.
IN_FILE = ("epochs-zero", "eval-every-zero", "batch-size-negative", "label-smoothing-two", "p-interval-three",
           "lr-nan", "model-args-bogus", "name-climbs", "key-misspelt", "stream-unknown")


def _train_case(override: str, needle: str, in_file: bool, others: tuple[str, ...]) -> Case:
    def make(d: Path) -> list[str]:
        tiny = [o for o in TINY_TRAIN if o.split("=")[0] != override.split("=")[0]]
        argv = ["train", f"output_dir={d / 'runs'}", f"data.root={d / 'data'}", *tiny, *others]
        if not in_file:
            return [*argv, override]
        key, value = override.split("=", 1)
        *parents, leaf = key.split(".")
        (d / "bad.yaml").write_text("".join(f"{'  ' * i}{p}:\n" for i, p in enumerate(parents))
                                    + f"{'  ' * len(parents)}{leaf}: {value}\n")
        return ["train", "--config", str(d / "bad.yaml"), *argv[1:]]

    where = "{tmp}/bad.yaml" if in_file else "the command line"
    key = override.split("=", 1)[0].split(".")[0] if override.startswith("optimizer") else override.split("=", 1)[0]
    return Case(make, (where, key, needle))


CASES = {f"config-{name}": _train_case(override, needle, False, others)
         for name, override, needle, *others in BAD_VALUES}
CASES.update({f"config-file-{name}": _train_case(override, needle, True, others)
              for name, override, needle, *others in BAD_VALUES if name in IN_FILE})


def _ablate_case(overrides: list[str], needles: tuple[str, ...]) -> Case:
    def make(d: Path) -> list[str]:
        base = Path(__file__).resolve().parents[1] / "configs" / "synthetic" / "ctrgcn_joint.yaml"
        (d / "plan.yaml").write_text(f"base: {base}\n"
                                     "variants:\n  baseline: []\n  bad: [optim.label_smoothing=3]\nseeds: [1]\n")
        return ["ablate", "--plan", str(d / "plan.yaml"), "--out", str(d / "out"), *overrides]
    return Case(make, needles)


def _pretrain_case(override: str, needle: str) -> Case:
    return Case(lambda d: ["pretrain", f"output_dir={d / 'runs'}", f"data.root={d / 'data'}", override],
                ("the command line", override.split("=", 1)[0], needle))


# The same checks guard `mmcl pretrain` (its config shares the data and optim sections).
PRETRAIN = [("epochs-zero", "optim.epochs=0", ">= 1"), ("batch-size-zero", "data.batch_size=0", ">= 1"),
            ("lr-nan", "optim.lr=nan", "finite"), ("name-climbs", "name=../../x", "one file-name component"),
            ("p-interval-three", "data.p_interval=[0.5,0.7,1.0]", "[lo, hi]"),
            ("model-args-bogus", "model.args={bogus: 1}", "takes no argument 'bogus'"),
            ("log-every-zero", "log_every=0", ">= 1"), ("eval-every-negative", "eval_every=-1", ">= 0")]
CASES.update({f"config-pretrain-{name}": _pretrain_case(override, needle) for name, override, needle in PRETRAIN})
CASES["config-ablate-variant"] = _ablate_case(["--variants", "bad"], ("optim.label_smoothing", "[0, 1)"))
CASES["config-ablate-override"] = _ablate_case(["optim.epochs=0"], ("optim.epochs", "the command line"))
CASES["config-ablate-unknown-variant"] = _ablate_case(["--variants", "nope"], ("unknown variants",))


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_config_is_refused_before_any_output(name, tmp_path, capsys):
    assert_one_line_error(CASES[name], tmp_path, capsys)
