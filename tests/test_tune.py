"""Teacher tuning (``mmcl tune-teacher``) and the synthetic answers file: train split only, resume, saved adapters."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest_teachers import fixture_set, mmcl_cache, tiny_config
from mmcl.data.prepared import PreparedData
from teachers.tune import read_answers, tune_teacher

__all__ = ["fixture_set", "mmcl_cache"]

pytestmark = pytest.mark.usefixtures("one_thread")
PROMPTS = ["Whether the person are holding object?", "Please describe the hand."]


@pytest.fixture(scope="module")
def answers_file(fixture_set, tmp_path_factory):
    """Answers for every fixture sample, val and test included (tuning must never use those)."""
    data = fixture_set.data
    path = tmp_path_factory.mktemp("answers") / "answers.jsonl"
    lines = []
    for i, name in enumerate(data.names):
        split = next(s for s, idx in data.splits.items() if i in set(int(j) for j in idx))
        for prompt in PROMPTS:
            lines.append(json.dumps({"name": name, "prompt": prompt,
                                     "answer": f"the person holds a red cup {split}"}))
    path.write_text("\n".join(lines) + "\n")
    return path


def _config(*extra: str):
    """The tiny teachers with a tuning recipe sized for the fixture set."""
    return tiny_config("tune.visual.method=full", "tune.visual.epochs=1", "tune.visual.batch_size=2",
                       "tune.language.epochs=1", "tune.language.batch_size=3", "tune.language.check_samples=2", *extra)


def test_answers_file_of_the_synthetic_set(small_synthetic, tmp_path):
    from mmcl.data.synthetic import SynthConfig, generate
    from mmcl.data.synthetic.answers import MMCL_PROMPTS
    from mmcl.data.synthetic.dataset import ntu_subject
    from teachers.config import LLMConfig, expand_prompts

    assert list(MMCL_PROMPTS) == expand_prompts(LLMConfig())
    path = small_synthetic / "answers.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    manifest = json.loads((small_synthetic / "manifest.json").read_text())
    assert len(lines) == 7 * manifest["num_samples"]
    answers = read_answers(path, {item["name"] for item in lines})
    assert all(list(a) == list(MMCL_PROMPTS) for a in answers.values())
    cup = answers["S001C001P001R001A001"]
    hand = {"r": "right", "l": "left"}[ntu_subject(0, 1).performer.hand]
    assert cup["whether the people are holding objects?"] == f"Yes, the person is holding a cup in the {hand} hand."
    assert "book" in answers["S001C001P001R001A003"]["Please describe the hand."]
    assert answers["S001C001P001R001A015"]["whether the people are holding objects?"].startswith("No, the two people")
    # a set generated before the answers file existed gets it on the next `generate` with the same settings
    cfg = SynthConfig(**{k: v for k, v in manifest["config"].items()})
    before = path.read_bytes()
    path.unlink()
    generate(small_synthetic, cfg)
    assert path.read_bytes() == before


def test_tuning_reads_the_training_split_only(fixture_set, mmcl_cache, answers_file, tmp_path, monkeypatch):
    import teachers.inputs

    data = fixture_set.data
    train = {data.names[int(i)] for i in data.split("train")}
    read_videos, read_joints = [], []
    find_video = teachers.inputs.find_video
    monkeypatch.setattr(teachers.inputs, "find_video",
                        lambda d, name, patterns: read_videos.append(name) or find_video(d, name, patterns))
    for method in ("color", "frames", "joints"):
        original = getattr(PreparedData, method)
        monkeypatch.setattr(PreparedData, method,
                            lambda self, i, _f=original: read_joints.append(self.names[i]) or _f(self, i))
    out = tune_teacher(_config(), data, fixture_set.videos, tmp_path / "tuned", answers_path=answers_file,
                       progress=False)
    assert read_videos and set(read_videos) <= train and read_joints and set(read_joints) <= train
    info = json.loads((out / "tune.json").read_text())
    corrupt = next(n for n, kind in fixture_set.expected.items() if kind == "corrupt")
    assert info["split"] == "train" and info["train_samples"] == 4 and list(info["failed"]) == [corrupt]
    lang = info["parts"]["language"]
    assert lang["examples"] == 3 * len(PROMPTS)  # three decodable training samples; val/test answers never used
    assert {"val", "test"}.isdisjoint(lang["added_tokens"]) and "train" in lang["added_tokens"]
    assert (out / "visual" / "visual.safetensors").is_file() and (out / "loss.png").stat().st_size > 0
    assert (out / "language" / "adapter_config.json").is_file()

    # a config naming the adapters: the language teacher answers as the tuned model did (its extended tokenizer
    # included), and the cache key changes with each adapter, by content
    from dataclasses import replace

    from teachers.cache import cache_key, key_hash
    from teachers.inputs import VideoInputs
    from teachers.llm import LLMTeacher

    shown = lang["answer_check"]["shown"][0]
    first = VideoInputs(data, [int(data.split("train")[0])], fixture_set.videos, tiny_config().video,
                        tiny_config().llm.canvas, lambda im: torch.zeros(1))[0]
    llm = replace(tiny_config().llm, adapter=str(out / "language"), max_new_tokens=12, questions=[shown["prompt"]],
                  templates=[])
    words = LLMTeacher(llm).answer([first.canvas])[0][0].split()
    expected = shown["generated"].split()
    n = min(len(words), len(expected))
    assert n > 0 and words[:n] == expected[:n]
    base = tiny_config()
    keys = [cache_key(c, "teachfix") for c in (
        base, tiny_config(f"clip.adapter={out / 'visual'}"), tiny_config(f"llm.adapter={out / 'language'}"))]
    assert len({key_hash(k) for k in keys}) == 3 and "adapter_sha256" not in keys[0]["clip"]
    assert keys[1]["clip"]["adapter_sha256"] and keys[1]["llm"] == keys[0]["llm"]


def test_tuning_resumes_after_a_kill(fixture_set, mmcl_cache, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    import teachers.fit

    config = _config("tune.visual.method=lora", "tune.visual.epochs=2", "tune.visual.lora.rank=2", "tune.visual.lr=0.05",
                     "tune.visual.per_frame=true", "tune.visual.max_shift=3")  # the shifts are repeated on resume
    data = fixture_set.data
    whole = tune_teacher(config, data, fixture_set.videos, tmp_path / "whole", parts=("visual",), progress=False)
    save = teachers.fit._save_state

    def killed_after_first_epoch(*args, **kwargs):
        save(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(teachers.fit, "_save_state", killed_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        tune_teacher(config, data, fixture_set.videos, tmp_path / "killed", parts=("visual",), progress=False)
    assert not (tmp_path / "killed" / "visual").exists()
    monkeypatch.setattr(teachers.fit, "_save_state", save)
    resumed = tune_teacher(config, data, fixture_set.videos, tmp_path / "killed", parts=("visual",), progress=False)
    a = load_file(whole / "visual" / "adapter_model.safetensors")
    b = load_file(resumed / "visual" / "adapter_model.safetensors")
    # the same weights up to float rounding (BLAS kernels may differ with memory alignment)
    assert set(a) == set(b) and all(torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-7) for k in a)
    losses = [json.loads((d / "tune.json").read_text())["parts"]["visual"]["epoch_losses"] for d in (whole, resumed)]
    assert len(losses[1]) == 2 and np.allclose(losses[0], losses[1], rtol=1e-5)
    # the teacher loads the LoRA adapter merged: the same embeddings as the unmerged peft tower, not the base ones
    from dataclasses import replace

    from peft import PeftModel

    from teachers.clip import ClipTeacher

    pixels = torch.randn(3, 3, 64, 64)
    tuned = ClipTeacher(replace(config.clip, adapter=str(resumed / "visual")))
    base = ClipTeacher(config.clip)
    peft_tower = PeftModel.from_pretrained(ClipTeacher(config.clip).model.visual, str(resumed / "visual")).eval()
    with torch.no_grad():
        expected = torch.nn.functional.normalize(peft_tower(pixels), dim=-1)
    assert torch.allclose(tuned.encode_images(pixels), expected, atol=1e-5)
    assert not torch.allclose(base.encode_images(pixels), expected, atol=1e-3)
    # other settings never resume a state saved by different ones
    with pytest.raises(ValueError, match="other settings"):
        tune_teacher(_config("tune.visual.method=lora", "tune.visual.epochs=3", "tune.visual.lora.rank=2"), data,
                     fixture_set.videos, tmp_path / "killed", parts=("visual",), progress=False)


def test_tune_then_probe_writes_what_the_tuned_teacher_knows(small_synthetic, small_prepared, mmcl_cache, tmp_path):
    from teachers.tune import probe_tuned

    config = tiny_config("tune.visual.method=full", "tune.visual.epochs=1", "tune.visual.batch_size=8",
                         "runtime.num_workers=0", "runtime.batch_size=8")
    data = PreparedData(small_prepared)
    out = tune_teacher(config, data, small_synthetic / "videos", tmp_path / "tuned", parts=("visual",),
                       progress=False)
    record = json.loads(probe_tuned(config, data, small_synthetic / "videos", out).read_text())["records"][0]
    assert set(record["features"]) == {"visual", "text"} and (out / "probe.md").is_file()
    assert record["split_sizes"]["train"] == len(data.split("train")) and record["failed_in_cache"] == []
    assert str(out / "visual") in (Path(record["cache"]) / "config.yaml").read_text()  # the tuned tower's cache


def test_random_shift_moves_a_sample_s_frames_together_within_bounds():
    from teachers.tune_visual import random_shift

    pixels = torch.zeros(6, 3, 1, 16, 16)
    pixels[..., 8, 8] = 1.0
    torch.manual_seed(0)
    shifted = random_shift(pixels, 3)
    spots = [[tuple((f[0] == 1).nonzero()[0].tolist()) for f in sample] for sample in shifted]
    assert all(len(set(s)) == 1 for s in spots)  # one offset per sample, all its frames
    assert all(abs(y - 8) <= 3 and abs(x - 8) <= 3 for s in spots for y, x in s[:1])
    assert len({s[0] for s in spots}) > 1 and random_shift(pixels, 0) is pixels


def test_bad_answers_file_names_the_line(tmp_path):
    path = tmp_path / "answers.jsonl"
    path.write_text('{"name": "a", "prompt": "p", "answer": "x"}\n{"name": "a", "prompt": "p"}\n')
    with pytest.raises(ValueError, match=r"answers.jsonl:2: expected an object"):
        read_answers(path, {"a"})
    assert read_answers(path, {"b"}) == {}  # other samples' lines are skipped, not parsed


def test_extend_vocabulary_only_adds_unknown_words(mmcl_cache):
    from transformers import AutoProcessor

    from teachers.tune_language import extend_vocabulary

    tok = AutoProcessor.from_pretrained(tiny_config().llm.model).tokenizer
    added = extend_vocabulary(tok, ["Yes, a tablet in the right hand.", "counter-clockwise"])
    assert added == ["Yes", ",", "tablet", "counter", "-", "clockwise"]
    assert tok.unk_token_id not in tok("Yes, a tablet in the right hand.")["input_ids"]
    assert np.all(np.array(tok("the hand")["input_ids"]) < len(tok) - len(added))  # known words keep their ids


def test_demo_tunes_only_the_adapters_it_lacks(fixture_set, tmp_path, monkeypatch):
    import teachers.tune
    from teachers.tune import ensure_tuned_teachers

    calls = []
    monkeypatch.setattr(teachers.tune, "tune_teacher", lambda config, data, videos, **kw: calls.append(kw["parts"]))
    (tmp_path / "visual").mkdir()
    config = tiny_config(f"clip.adapter={tmp_path / 'visual'}", f"llm.adapter={tmp_path / 'language'}")
    ensure_tuned_teachers(config, fixture_set.data, tmp_path, tmp_path / "answers.jsonl")
    assert calls == [("language",)]
    ensure_tuned_teachers(tiny_config(), fixture_set.data, tmp_path)
    assert calls == [("language",)]  # a config without adapters is used as it is
