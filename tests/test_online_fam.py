"""FAM's online CLIP branch (colearn.fam.source=online) against the cached one, and the teacher check before training."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file
from torch.utils.data import default_collate

from mmcl.config import load_config
from mmcl.engine.trainer import setup, train

pytestmark = pytest.mark.usefixtures("one_thread")


def fam_config(prepared, out, *extra: str):
    return load_config(None, [
        f"data.root={prepared}", "data.window=16", "data.batch_size=8", "data.eval_batch_size=16",
        "data.num_workers=0", "optim.epochs=1", "optim.warmup_epochs=1", "optim.lr=0.05", f"output_dir={out}",
        "name=fam", "colearn.fam.enabled=true", "colearn.teacher.check=ignore", *extra])


def test_online_frozen_fam_is_the_cached_fam(small_prepared, small_teacher_cache, tmp_path):
    cached = setup(fam_config(small_prepared, tmp_path / "c", f"colearn.teacher.cache={small_teacher_cache}"))
    online = setup(fam_config(small_prepared, tmp_path / "o", "colearn.fam.source=online",
                              "colearn.teacher.config=tiny"))
    assert "visual" not in online.train_set[0] and online.train_set[0]["pixels"].shape == (5, 3, 128, 128)
    online.module.load_state_dict(cached.module.state_dict(), strict=False)  # same backbone and FAM weights
    batch_c = default_collate([cached.train_set[i] for i in range(8)])
    batch_o = default_collate([online.train_set[i] for i in range(8)])
    assert batch_c["name"] == batch_o["name"] and torch.equal(batch_c["skeleton"], batch_o["skeleton"])
    for run in (cached, online):
        run.module.eval()
    with torch.no_grad():
        visual = online.colearner.online(batch_o["pixels"])
        fam_c = cached.module(batch_c)["losses"]["fam"]
        fam_o = online.module(batch_o)["losses"]["fam"]
    assert torch.allclose(visual, batch_c["visual"], atol=1e-5)  # the frames and crop precompute embeds
    assert float(fam_o) == pytest.approx(float(fam_c), rel=1e-5, abs=1e-6)
    assert not any(p.requires_grad for p in online.colearner.online.parameters())


def test_online_lora_fam_trains_its_adapters_and_deploys_the_skeleton_model_alone(small_prepared, tmp_path):
    train(fam_config(small_prepared, tmp_path, "colearn.fam.source=online", "colearn.teacher.config=tiny",
                     "colearn.fam.tower=lora", "colearn.fam.lora_rank=2"))
    run = tmp_path / "fam"
    deployed = load_file(run / "best.safetensors")
    heads = load_file(run / "best_heads.safetensors")
    assert not any("lora" in k or "tower" in k or k.startswith("visual.") for k in [*deployed, *heads])
    assert {k.split(".")[0] for k in heads} == {"fam"}
    state = load_file(next((run / "state").glob("model*.safetensors")))
    lora_b = [v for k, v in state.items() if "online" in k and "lora_B" in k]
    assert lora_b and any(v.abs().sum() > 0 for v in lora_b)  # zero at the start, trained by the FAM loss
    assert json.loads((run / "metrics.json").read_text())["top1"] >= 0


def test_teacher_at_chance_is_refused_or_reported(small_prepared, small_teacher_cache, tmp_path, capsys):
    from mmcl.errors import ConfigError

    cache = tmp_path / "cache"
    shutil.copytree(small_teacher_cache, cache)
    with pytest.raises(ConfigError, match="at chance: a linear probe scores"):
        setup(fam_config(small_prepared, tmp_path / "a", f"colearn.teacher.cache={cache}",
                         "colearn.teacher.check=refuse", "colearn.teacher.check_alpha=1e-30"))
    setup(fam_config(small_prepared, tmp_path / "b", f"colearn.teacher.cache={cache}", "colearn.teacher.check=warn",
                     "colearn.teacher.check_alpha=1e-30"))
    assert "WARNING: the visual features of the teacher cache" in capsys.readouterr().err
