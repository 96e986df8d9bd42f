"""Tiny, randomly initialised offline teachers for tests and the demo (no download anywhere).

:func:`build_tiny_teachers` writes, deterministically for a seed:

- ``mmcl-tiny-clip.json`` + ``mmcl-tiny-clip.safetensors``: an open_clip model config (image tower: timm's small
  ``test_resnet`` with max pooling, 128x128 input; a 2-layer text tower with CLIP's own tokenizer vocabulary) and its
  random weights. Loaded like any open_clip model: ``open_clip.add_model_config(json)`` then
  ``create_model_and_transforms("mmcl-tiny-clip", pretrained=<checkpoint file>)``.
- ``vlm/``: a Qwen2.5-VL (2-layer text model of width 64, 2-layer vision tower) with a word-level tokenizer trained
  on the fly with the ``tokenizers`` library (MMCL's prompts plus a short English word list, Qwen's special tokens
  and a Qwen-style chat template), saved with ``save_pretrained`` and loaded back by the code path a real model uses
  (``AutoProcessor`` / ``AutoModelForImageTextToText.from_pretrained``).

Their features are random: they exercise the whole teacher stage, not its meaning. The real teachers are in
``configs/teachers/clip_vitb32_qwen25vl7b.yaml``.

``${tiny:ITEM}`` in a config resolves to :func:`tiny_paths` without building anything; :func:`ensure_tiny_teachers`
(called by ``mmcl precompute``) builds them when a config names them. ``python -m teachers.tiny [OUT_DIR]`` builds them
by hand.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from teachers.config import LLMConfig, TeacherConfig, expand_prompts

TINY_FORMAT = 2  # 2: the image tower is a small convolutional network (format 1: a 2-layer ViT at 64x64)
TINY_CLIP_NAME = "mmcl-tiny-clip"

TINY_CLIP_CONFIG = {
    "embed_dim": 64,
    # timm's 0.37 M-parameter ResNet test model behind open_clip's TimmModel, global max pooling, 128x128 input: at
    # 64x64 with 16-pixel patches (format 1's ViT) a held object is a few pixels and a from-scratch ViT tuned on the
    # synthetic training split learnt neither it nor the class (benchmarks/results/teacher_probe.md)
    "vision_cfg": {"image_size": 128, "timm_model_name": "test_resnet", "timm_model_pretrained": False,
                   "timm_pool": "max", "timm_proj": "linear"},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}

QWEN_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                       "<|image_pad|>", "<|video_pad|>"]

# Qwen's chat format: <|im_start|>role\n...<|im_end|>\n, an image as <|vision_start|><|image_pad|><|vision_end|>.
QWEN_STYLE_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for c in message['content'] %}"
    "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

WORDS = (
    "a an the this that these those is are was were be been being has have had do does did not no yes and or but "
    "of in on at to from with without by for about over under up down left right front back side top bottom "
    "person people man woman child someone he she they it his her their its one two three both each other "
    "hand hands arm arms leg legs foot feet head face body finger fingers shoulder knee chest back hair "
    "holding hold touching touch object objects cup bottle phone book bag chair table floor wall paper pen hat "
    "shoe shoes jacket glasses towel ball box cloth water food "
    "standing sitting walking running jumping waving pointing drinking eating reading writing clapping kicking "
    "throwing picking dropping wearing taking putting pushing pulling falling bending lying turning raising "
    "lowering shaking nodding hugging playing typing brushing combing wiping rubbing crossing reaching "
    "slowly quickly still moving near far high low open closed raised lowered empty white black red blue green "
    "describe please whether image video frame frames shows showing appears seems can see visible "
    "user assistant system"
)


def default_tiny_dir() -> Path:
    """``mmcl.paths.cache_dir() / "tiny-teachers"``."""
    from mmcl.paths import cache_dir

    return cache_dir() / "tiny-teachers"


def tiny_paths(out_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """``{"clip_config", "clip_checkpoint", "vlm"}``: where the tiny teachers are (or will be) in ``out_dir``
    (default :func:`default_tiny_dir`); builds nothing."""
    out = Path(out_dir) if out_dir is not None else default_tiny_dir()
    return {"clip_config": out / f"{TINY_CLIP_NAME}.json", "clip_checkpoint": out / f"{TINY_CLIP_NAME}.safetensors",
            "vlm": out / "vlm"}


def ensure_tiny_teachers(config: TeacherConfig) -> None:
    """Build the tiny teachers into :func:`default_tiny_dir` when ``config`` names a file of theirs
    (``${tiny:...}``) and they are not there yet."""
    root = default_tiny_dir().resolve()
    refs = (config.clip.model_config, config.clip.pretrained, config.llm.model, config.text_encoder.model)
    if any(ref and Path(ref).resolve().is_relative_to(root) for ref in refs):
        build_tiny_teachers(root)


def build_tiny_teachers(out_dir: str | os.PathLike | None = None, seed: int = 0) -> dict[str, Path]:
    """Build the tiny teachers into ``out_dir`` (default :func:`default_tiny_dir`) unless already there.

    Deterministic for a seed and idempotent: a complete directory (``tiny.json`` present) is returned as is, one built
    by an older format of this module is rebuilt; a directory built with another seed is an error. Returns
    ``{"clip_config", "clip_checkpoint", "vlm"}`` paths.
    """
    import torch

    out = Path(out_dir) if out_dir is not None else default_tiny_dir()
    paths = tiny_paths(out)
    marker = out / "tiny.json"
    if marker.exists():
        stored = json.loads(marker.read_text())
        if stored.get("seed") != seed or stored.get("format", 0) > TINY_FORMAT:
            raise FileExistsError(f"{out} holds tiny teachers built as {stored}, not seed {seed} "
                                  f"(format {TINY_FORMAT}); delete it or choose another directory")
        if stored["format"] == TINY_FORMAT:
            return paths
        print(f"{out} holds tiny teachers of format {stored['format']}: rebuilding them as format {TINY_FORMAT}",
              file=sys.stderr)
        marker.unlink()
    print(f"building the tiny random offline teachers into {out} (first use; a few seconds)", file=sys.stderr)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        _build_tiny_clip(tmp)
        torch.manual_seed(seed)
        _build_tiny_vlm(tmp / "vlm")
    (tmp / "tiny.json").write_text(json.dumps({"format": TINY_FORMAT, "seed": seed}))
    if out.exists() and not marker.exists():
        shutil.rmtree(out)  # an incomplete directory left by an older, killed build
    try:
        os.rename(tmp, out)
    except OSError:
        if not marker.exists():  # not another process that won the race: a real error
            raise
        shutil.rmtree(tmp)
    return paths


def _build_tiny_clip(out: Path) -> None:
    import open_clip
    from safetensors.torch import save_file

    config_path = out / f"{TINY_CLIP_NAME}.json"
    config_path.write_text(json.dumps(TINY_CLIP_CONFIG, indent=1))
    open_clip.add_model_config(config_path)
    model = open_clip.create_model(TINY_CLIP_NAME, pretrained=None)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, out / f"{TINY_CLIP_NAME}.safetensors")


def tiny_corpus() -> list[str]:
    """The tokenizer's training text: MMCL's prompts and a short English word list."""
    return expand_prompts(LLMConfig()) + WORDS.split()


def _build_tiny_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(special_tokens=QWEN_SPECIAL_TOKENS + ["[UNK]"], min_frequency=1)
    tokenizer.train_from_iterator(tiny_corpus(), trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   unk_token="[UNK]", additional_special_tokens=QWEN_SPECIAL_TOKENS[1:])


def _build_tiny_vlm(out: Path) -> None:
    from transformers import (GenerationConfig, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration,
                              Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor)

    tokenizer = _build_tiny_tokenizer()
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}
    pixels = {"min_pixels": 28 * 28, "max_pixels": 112 * 112}
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(patch_size=14, merge_size=2, temporal_patch_size=2, **pixels),
        video_processor=Qwen2VLVideoProcessor(patch_size=14, merge_size=2, temporal_patch_size=2, **pixels),
        tokenizer=tokenizer, chat_template=QWEN_STYLE_CHAT_TEMPLATE)
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer), "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 1024,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
            "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"]},
        vision_config={
            "depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": 64,
            "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 112,
            "fullatt_block_indexes": [1]},
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(do_sample=False, eos_token_id=ids["<|im_end|>"],
                                               pad_token_id=ids["<|endoftext|>"], bos_token_id=ids["<|endoftext|>"])
    model.save_pretrained(out)
    processor.save_pretrained(out)


if __name__ == "__main__":
    built = build_tiny_teachers(sys.argv[1] if len(sys.argv) > 1 else None)
    print(json.dumps({k: str(v) for k, v in built.items()}, indent=1))
