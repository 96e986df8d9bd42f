"""The layers hold: the deployable models and their checkpoints import no training code, and the co-learning config
imports no torch. Each check runs in a fresh interpreter, so nothing imported by other tests hides a violation."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import torch

TRAINING = ("mmcl.colearn", "mmcl.engine", "teachers")
REPORT = f"""
import json, sys
print(json.dumps(sorted(m for m in sys.modules if m.startswith({TRAINING!r}) and m.split(".")[0] in ("mmcl", "teachers"))))
"""


def run_fresh(code: str) -> tuple[list[str], list[str]]:
    """Run ``code`` in a new interpreter: (its output lines, the training modules it ended up importing)."""
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code) + REPORT], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    *lines, imported = out.stdout.splitlines()
    return lines, json.loads(imported)


def test_the_registry_builds_every_model_without_training_code():
    lines, imported = run_fresh("""
        from mmcl.models import create_model, list_models
        names = list_models()
        assert {"ctrgcn", "ctrgcn_mmixer", "ctrgcn_deformable"} <= set(names), names
        for name in names:
            create_model(name, num_classes=3)
        print(len(names))
    """)
    assert int(lines[0]) >= 3 and imported == []


def test_a_deployed_checkpoint_loads_and_predicts_without_training_code(tmp_path):
    from mmcl.models import create_model
    from mmcl.models.checkpoint import CheckpointInfo, save_checkpoint

    torch.manual_seed(0)
    model = create_model("ctrgcn_deformable", num_classes=4, visual_frames=3, head={"dim": 16, "heads": 2})
    info = CheckpointInfo(model.registry_name, model.registry_args, ["a", "b", "c", "d"], "ntu25", 3, 2, "joint", 16,
                          "", {})
    checkpoint = save_checkpoint(tmp_path / "best.safetensors", model, info)
    sample = tmp_path / "sample.npy"
    np.save(sample, np.random.default_rng(0).normal(size=(20, 1, 25, 3)).astype(np.float32))
    lines, imported = run_fresh(f"""
        from mmcl.cli import main
        assert main(["predict", "--checkpoint", {str(checkpoint)!r}, {str(sample)!r}]) == 0
    """)
    assert len(lines) == 4 and lines[0].startswith("1. ")  # the top-4 classes
    assert imported == []


def test_the_colearn_config_imports_no_torch():
    code = ("import sys, mmcl.colearn.config; print(mmcl.colearn.config.ColearnConfig().mmixer.dim); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.split() == ["128", "False"], out.stderr
