"""``mmcl tune-teacher``: adapt the CLIP and vision-language teachers to a dataset, on its training split only.

    mmcl tune-teacher --config tiny --data PREPARED --videos DIR [--answers FILE] [--class-descriptions FILE]
                      [--out DIR] [--parts visual,language] [tune.visual.epochs=20 ...] [key.sub=value ...]

*Visual*: the CLIP image tower sees exactly the person-cropped frames ``mmcl precompute`` feeds it
(:class:`teachers.inputs.VideoInputs`); the embeddings of a sample's k frames are mean-pooled and trained with a
linear classification head (``objective: classify``) or CLIP-style against the CLIP text tower's embeddings of the
class descriptions (``objective: clip``, the text tower frozen). ``method: lora`` trains peft LoRA adapters on
``target_modules`` of the tower (the default for pretrained hub models), ``method: full`` every weight of it (the only
sensible choice for the tiny random model).

*Language*: peft LoRA on the vision-language model from (canvas, prompt, answer) examples: the canvas precompute
makes, the prompt through the processor's chat template, next-token cross-entropy on the answer's tokens only. The
answers come from an answers file (JSON lines ``{"name", "prompt", "answer"}``; ``mmcl synth`` writes one for the
synthetic set). A word-level tokenizer that cannot spell the answers (the tiny model's) gets the missing words as new
tokens, whose embedding and output rows are trained and saved with the adapter.

Only the dataset's ``train`` split is read: the validation and test samples' videos, colour joints and answers are
never opened (:func:`training_indices`), so a probe or a co-learning run evaluated on them stays honest.

``<out>`` (default ``<cache>/tuned-teachers/<dataset>-<config>``) receives ``visual/`` and ``language/`` (the tuned
weights, :mod:`teachers.adapters`), ``tune.json`` (settings, sample counts, per-epoch losses, timings),
``loss.png``, and ``state/`` (after every epoch: what a killed run resumes from; the same command continues it).
``--probe`` then precomputes the tuned teachers' cache (every split) and writes ``mmcl probe``'s result on it to
``<out>/probe.json`` / ``.md`` / ``.png``: what the tuned teachers know, on the test split, before any co-learning run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from mmcl.config import to_yaml
from mmcl.data.prepared import PreparedData
from mmcl.errors import ConfigError, DataError
from mmcl.io import write_json
from teachers.config import TeacherConfig, load_config
from teachers.inputs import SampleInput, VideoInputs
from teachers.video import VideoError, find_video, open_video

PARTS = ("visual", "language")


def training_indices(data: PreparedData) -> list[int]:
    """The sample indices tuning may read: the ``train`` split, nothing else."""
    indices = sorted(int(i) for i in data.split("train"))
    if not indices:
        raise ConfigError(f"{data.root} has an empty train split: nothing to tune on")
    return indices


def names_digest(names: list[str]) -> str:
    """sha256 (12 hex digits) of the sorted sample names a teacher was tuned on."""
    return hashlib.sha256("\n".join(sorted(names)).encode()).hexdigest()[:12]


def read_answers(path: str | os.PathLike, names: set[str]) -> dict[str, dict[str, str]]:
    """{sample: {prompt: answer}} of an answers file, for the samples in ``names`` only (the other samples' lines are
    skipped once their name is read); a malformed line fails naming the file and the line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"answers file not found: {path}")
    out: dict[str, dict[str, str]] = {}
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{number}: not JSON ({exc.msg})") from None
            if isinstance(item, dict) and isinstance(item.get("name"), str) and item["name"] not in names:
                continue
            if not isinstance(item, dict) or not all(isinstance(item.get(k), str) for k in ("name", "prompt", "answer")):
                raise DataError(f"{path}:{number}: expected an object with string fields name, prompt, answer")
            prompts = out.setdefault(item["name"], {})
            if item["prompt"] in prompts:
                raise DataError(f"{path}:{number}: sample {item['name']!r} answers {item['prompt']!r} twice")
            prompts[item["prompt"]] = item["answer"]
    return out


class DecodedInputs(torch.utils.data.Dataset):
    """The training samples' teacher inputs (CLIP pixels and the LLM canvas) with their labels.

    ``keep``: decoded once and kept in memory (the synthetic set: about 100 MB); otherwise decoded on every access
    (data-loader workers overlap it with training), after a first pass that opens every video. Samples whose video
    is missing or unreadable are left out and listed in :attr:`failed`.
    """

    def __init__(self, inputs: VideoInputs, labels: list[int], keep: bool, num_workers: int, progress: bool):
        self.inputs, self.labels, self.keep = inputs, labels, keep
        self.failed: dict[str, str] = {}
        self.items: list[SampleInput] = []
        self.positions: list[int] = []
        names = [inputs.data.names[i] for i in inputs.indices]
        if keep:
            loader = torch.utils.data.DataLoader(inputs, batch_size=None, num_workers=num_workers)
            for j, item in enumerate(tqdm(loader, total=len(inputs), desc="decoding training videos",
                                          disable=not progress, unit="video", dynamic_ncols=True)):
                if item.error is None:
                    self.items.append(item)
                    self.positions.append(j)
                else:
                    self.failed[item.name] = item.error
        else:
            for j, name in enumerate(names):
                try:
                    open_video(find_video(inputs.videos_dir, name, inputs.video.patterns), inputs.video_backend)
                    self.positions.append(j)
                except VideoError as exc:
                    self.failed[name] = str(exc)
        self.names = [names[j] for j in self.positions]
        self.names_digest = names_digest(self.names)

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, j: int) -> tuple[SampleInput, int]:
        item = self.items[j] if self.keep else self.inputs[self.positions[j]]
        if item.error is not None:
            raise VideoError(f"{item.error} (while tuning; it opened in the first pass)")
        return item, self.labels[self.positions[j]]


def output_dirs(config: TeacherConfig, data: PreparedData, out: str | Path | None = None) -> dict[str, Path]:
    """Where tuning writes: ``out`` (``tune.json``, ``loss.png``, ``state/``), ``visual`` and ``language`` (the
    adapters). A config that names its adapters (``clip.adapter``, ``llm.adapter``) gets them written there, with
    ``out`` defaulting to the visual adapter's parent; otherwise ``out`` defaults to
    ``<cache>/tuned-teachers/<dataset>-<config>`` and the adapters go to ``out/visual`` and ``out/language``."""
    from mmcl.paths import cache_dir

    if out is None:
        named = config.clip.adapter or config.llm.adapter
        out = Path(named).parent if named else cache_dir() / "tuned-teachers" / f"{data.info.dataset}-{config.name}"
    out = Path(out)
    return {"out": out, "visual": Path(config.clip.adapter or out / "visual"),
            "language": Path(config.llm.adapter or out / "language")}


def tune_teacher(config: TeacherConfig, data: PreparedData, videos: str | Path, out: str | Path | None = None,
                 parts: tuple[str, ...] = PARTS, answers_path: str | Path | None = None,
                 descriptions_path: str | Path | None = None, device: str | torch.device | None = None,
                 progress: bool = True) -> Path:
    """Tune the parts of ``config``'s teachers that ``parts`` names and ``config.tune`` enables, starting from the
    base models (never from adapters the config already names); returns the output directory."""
    from teachers.clip import ClipTeacher
    from teachers.fit import plot_losses
    from teachers.precompute import load_descriptions
    from teachers.tiny import ensure_tiny_teachers

    tune = config.tune
    parts = tuple(p for p in parts if getattr(tune, p).enabled)
    unknown = [p for p in parts if p not in PARTS]
    if unknown or not parts:
        raise ConfigError(f"parts {list(parts)}: expected a non-empty subset of {PARTS} enabled in the tune settings")
    if "language" in parts and answers_path is None:
        raise ConfigError("language tuning needs an answers file (--answers; `mmcl synth` writes answers.jsonl)")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    indices = training_indices(data)
    train_names = [data.names[i] for i in indices]
    answers = read_answers(answers_path, set(train_names)) if "language" in parts else {}
    descriptions_path = descriptions_path or config.classes.descriptions
    descriptions = load_descriptions(descriptions_path, data.class_names) if descriptions_path else None
    dirs = output_dirs(config, data, out)
    out = dirs["out"]
    out.mkdir(parents=True, exist_ok=True)
    ensure_tiny_teachers(config)
    clip = ClipTeacher(replace(config.clip, adapter=None), device)
    video_inputs = VideoInputs(data, indices, videos, config.video, config.llm.canvas, clip.preprocess,
                               config.runtime.video_backend)
    decoded = DecodedInputs(video_inputs, [int(data.labels[i]) for i in indices], tune.cache_inputs,
                            config.runtime.num_workers, progress)
    if not len(decoded):
        raise ConfigError(f"none of the {len(indices)} training videos could be read; first failure: "
                          f"{next(iter(decoded.failed.items()), None)}")
    start = time.perf_counter()
    results = {}
    if "visual" in parts:
        from teachers.tune_visual import tune_visual

        results["visual"] = tune_visual(config, clip, decoded, data.num_classes, out, dirs["visual"], descriptions,
                                        device, progress)
    if "language" in parts:
        from teachers.tune_language import tune_language

        results["language"] = tune_language(config, decoded, answers, out, dirs["language"], device, progress)
    tuned_now = list(results)
    previous = out / "tune.json"
    if previous.is_file():  # a part tuned earlier into the same place, on the same samples, keeps its record
        earlier = json.loads(previous.read_text())
        if earlier.get("names_sha256") == names_digest(train_names):
            results = {**{p: r for p, r in earlier.get("parts", {}).items() if p in PARTS}, **results}
    states = {p: torch.load(out / "state" / f"{p}.pt", map_location="cpu", weights_only=True)["progress"]
              for p in results if (out / "state" / f"{p}.pt").is_file()}
    plot_losses(states, out / "loss.png")
    write_json(out / "tune.json", {
        "teacher_config": config.name, "tune": asdict(tune), "adapters": {p: str(dirs[p]) for p in results},
        "dataset": str(data.root), "split": "train",
        "train_samples": len(indices), "tuned_samples": len(decoded), "names_sha256": names_digest(train_names),
        "failed": decoded.failed, "parts": results, "wall_s": round(time.perf_counter() - start, 1),
        "device": str(device), "config_yaml": to_yaml(config)})
    print(f"tuned teacher ({', '.join(tuned_now)}) in {out}", file=sys.stderr)
    return out


def probe_tuned(config: TeacherConfig, data: PreparedData, videos: str | Path, out: str | Path | None = None,
                descriptions_path: str | Path | None = None, command: str = "") -> Path:
    """Precompute the cache of ``config`` with the adapters tuning wrote (:func:`output_dirs`) and probe it
    (:func:`teachers.probe.probe_cache`); returns the ``probe.json`` written next to ``tune.json``."""
    from teachers.precompute import precompute
    from teachers.probe import probe_cache, write_results

    dirs = output_dirs(config, data, out)
    tuned = replace(config, clip=replace(config.clip, adapter=str(dirs["visual"])) if dirs["visual"].is_dir()
                    else config.clip,
                    llm=replace(config.llm, adapter=str(dirs["language"])) if dirs["language"].is_dir()
                    else config.llm)
    cache = precompute(tuned, data, videos, descriptions_path=descriptions_path)
    return write_results([probe_cache(cache, data)], dirs["out"], "probe", command)


def ensure_tuned_teachers(config: TeacherConfig, data: PreparedData, videos: str | Path,
                          answers_path: str | Path | None = None, descriptions_path: str | Path | None = None) -> None:
    """Tune the parts whose adapters ``config`` names but that do not exist yet (the demo's ``tiny_tuned`` on first
    use); nothing when they all exist."""
    missing = tuple(part for part, adapter in (("visual", config.clip.adapter), ("language", config.llm.adapter))
                    if adapter and not Path(adapter).is_dir())
    if missing:
        print(f"tuning the teachers of {config.name} ({', '.join(missing)}) on {data.root}'s training split",
              file=sys.stderr)
        tune_teacher(config, data, videos, parts=missing, answers_path=answers_path,
                     descriptions_path=descriptions_path)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="teacher config: a YAML path or a name in configs/teachers")
    parser.add_argument("--data", required=True, help="prepared dataset directory (only its train split is read)")
    parser.add_argument("--videos", required=True, help="directory holding the videos")
    parser.add_argument("--answers", default=None, help="answers file for the language teacher (JSON lines: name, "
                                                        "prompt, answer; `mmcl synth` writes answers.jsonl)")
    parser.add_argument("--class-descriptions", default=None,
                        help="JSON list of {name, description} (visual objective clip)")
    parser.add_argument("--out", default=None, help="output directory (default: where the config's clip.adapter "
                                                    "is, else <cache>/tuned-teachers/<dataset>-<config>)")
    parser.add_argument("--parts", default="visual,language", help="comma-separated: visual, language")
    parser.add_argument("--probe", action="store_true",
                        help="then precompute the tuned teachers' cache and probe it (<out>/probe.json, .md, .png)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="teacher config overrides, the tune section's included (tune.visual.epochs=20)")


def run(args: argparse.Namespace) -> int:
    config, data = load_config(args.config, args.overrides), PreparedData(args.data)
    tune_teacher(config, data, args.videos, args.out, tuple(p for p in args.parts.split(",") if p), args.answers,
                 args.class_descriptions)
    if args.probe:
        path = probe_tuned(config, data, args.videos, args.out, args.class_descriptions,
                           "mmcl " + " ".join(sys.argv[1:]))
        print(f"probe of the tuned teachers: {path.with_suffix('.md')}", file=sys.stderr)
    return 0
