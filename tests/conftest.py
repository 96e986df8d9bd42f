"""Session fixtures shared by the training, co-learning and zero-shot tests.

Everything generated goes under pytest's temporary directory: ``MMCL_CACHE`` points there for the whole session, so
the tests never write into the repository's ``cache/`` and the tiny teachers are built once.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from mmcl.cpu import passive_wait_policy

passive_wait_policy()  # before torch is imported: threads that wait sleep instead of spinning on shared cores

import pytest
import torch

from mmcl.data.synthetic import SynthConfig, generate

NTU_SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "ntu-sample"

# A small synthetic set: 16 classes x 4 performers x 1 camera, with videos; X-Sub puts performer 3 in test and
# carves one training performer out for validation. Its UTD-style set has 3 subjects (odd ones train, one of them
# for validation).
SMALL_SYNTH = SynthConfig(seed=0, subjects=4, cameras=1, replications=1, utd_subjects=3, utd_trials=1)


@pytest.fixture(scope="session", autouse=True)
def session_cache(tmp_path_factory) -> Path:
    """``MMCL_CACHE`` for the whole session."""
    path = tmp_path_factory.getbasetemp() / "mmcl-cache"
    os.environ["MMCL_CACHE"] = str(path)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    return path


@pytest.fixture(scope="module")
def one_thread():
    """Tiny model inputs: one thread is as fast, and does not stall when other jobs share the cores."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def small_synthetic(tmp_path_factory) -> Path:
    """Raw files (skeletons, videos, the UTD-style set) of :data:`SMALL_SYNTH`."""
    return generate(tmp_path_factory.getbasetemp() / "synth-small", SMALL_SYNTH, workers=2)


@pytest.fixture(scope="session")
def small_prepared(small_synthetic, tmp_path_factory) -> Path:
    """:data:`SMALL_SYNTH` prepared (X-Sub)."""
    from mmcl.data.prepare import prepare_synthetic

    return prepare_synthetic(small_synthetic, tmp_path_factory.getbasetemp() / "synth-small-prepared",
                             progress=False)


@pytest.fixture(scope="session")
def small_teacher_cache(small_synthetic, small_prepared, session_cache, tmp_path_factory) -> Path:
    """The tiny teachers run over every sample of :data:`SMALL_SYNTH` (with the class descriptions)."""
    from mmcl.data.prepared import PreparedData
    from teachers.config import load_config
    from teachers.precompute import precompute

    config = load_config("tiny", ["runtime.num_workers=0", "runtime.batch_size=8"])
    return precompute(config, PreparedData(small_prepared), small_synthetic / "videos",
                      root=tmp_path_factory.getbasetemp() / "teacher-caches",
                      descriptions_path=small_synthetic / "classes.json", show_progress=False)


def write_tiny_prepared(out: Path, seed: int = 0) -> Path:
    """A prepared set of 12 one-person NTU-25 samples (3 classes, 10 frames): 6 train, 3 val, 3 test; milliseconds to
    write, a second to train on."""
    import numpy as np

    from mmcl.data.prepared import PreparedInfo, write_prepared

    rng = np.random.default_rng(seed)
    samples = [(f"S001C001P{p:03d}R001A{c + 1:03d}", c, (rng.normal(size=(10, 1, 25, 3)) + c).astype(np.float32))
               for p in range(1, 5) for c in range(3)]
    return write_prepared(out, PreparedInfo("tiny", "ntu25", 1, ["class0", "class1", "class2"]), samples,
                          {"train": list(range(6)), "val": [6, 7, 8], "test": [9, 10, 11]})


TINY_TRAIN = ["mixed_precision=no", "data.window=8", "data.batch_size=4", "data.eval_batch_size=8",
              "data.num_workers=0", "data.random_rotation=false", "optim.epochs=1", "optim.warmup_epochs=0", "log_every=1"]


@pytest.fixture(scope="session")
def tiny_prepared(tmp_path_factory) -> Path:
    return write_tiny_prepared(tmp_path_factory.getbasetemp() / "tiny-prepared")


@pytest.fixture(scope="session")
def tiny_run(tiny_prepared, tmp_path_factory) -> Path:
    """A finished one-epoch run on :func:`tiny_prepared` (checkpoints, state/, scores)."""
    from mmcl.config import load_config
    from mmcl.engine.trainer import train

    out = tmp_path_factory.getbasetemp() / "tiny-runs"
    train(load_config(None, [f"data.root={tiny_prepared}", f"output_dir={out}", "name=tiny", *TINY_TRAIN]))
    return out / "tiny"
