"""Generate the synthetic dataset: NTU-style raw files and videos, plus a UTD-MHAD-style set, from a seed.

Layout of the output directory ``DIR``::

    classes.json                      [{"id", "name", "description", "object", "two_person"}]; id = 0-based label,
                                      the file name's action number is id + 1
    answers.jsonl                     {"name", "prompt", "answer"} per sample and MMCL prompt: what the generator
                                      knows of the scene (:mod:`.answers`), for tuning the language teacher
    skeletons/SsssCcccPpppRrrrAaaa.skeleton
    videos/SsssCcccPpppRrrrAaaa_rgb.avi       (unless video is off)
    utd/classes.json                  UTD-style classes; id = UTD action number (file names a{id}_s{s}_t{t})
    utd/label_map.json                {"<UTD action number>": <0-based source class>} for the classes that have one
    utd/a{a}_s{s}_t{t}_skeleton.mat   d_skel (20, 3, T), Kinect v1 joints in UTD-MHAD's file order, metres
    utd/a{a}_s{s}_t{t}_color.avi      (unless video is off)
    manifest.json                     generator version, seed, settings, counts, sizes; written last

Naming follows NTU: setup, camera, performer (subject), replication, action, all 1-based; the setup is the
performer's group (``subjects_per_setup`` performers share one room and camera placement), so the cross-subject
(performer), cross-view (camera) and cross-setup protocols all apply. One performance (performer, replication,
action) is recorded by every camera at once, as in NTU.

Everything is written into ``DIR.partial`` (each file through a temporary name) and renamed to ``DIR`` when complete,
so an interrupted run resumes, and a run on a complete ``DIR`` with the same settings does nothing.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import av
import numpy as np
from PIL import Image
from tqdm import tqdm

from mmcl.data.layouts import KINECT_V1_20, NTU25
from mmcl.data.utd_mhad import UTD_JOINTS
from mmcl.data.synthetic.actions import SOURCE_CLASSES, UTD_CLASSES, UTD_LABEL_MAP, ActionClass, Performer
from mmcl.data.synthetic.answers import ANSWERS_FILE, write_answers
from mmcl.data.synthetic.camera import (DEPTH_INTRINSICS, KINECT_V1_COLOR, KINECT_V2_COLOR, Camera, Intrinsics,
                                        color_intrinsics, orbit_camera)
from mmcl.data.synthetic.kinematics import sample_body
from mmcl.data.synthetic.render import (Appearance, object_pose, render_clip, room_background, sample_appearance,
                                        write_video)
from mmcl.data.synthetic.scene import CameraView, Clip, capture, perform, rng_for
from mmcl.data.synthetic.writer import write_skeleton_file, write_utd_skeleton
from mmcl.io import replace_dir, write_json

GENERATOR_VERSION = 6
# Horizontal angle (degrees) of cameras 1-3 around the performer, as NTU's three Kinects (0, -45, +45 degrees).
CAMERA_ANGLES = {1: 0.0, 2: -45.0, 3: 45.0}
# Which way the performer faces in replications 1 and 2 (degrees; later replications draw from [-40, 40]).
REPLICATION_FACING = {1: -30.0, 2: 30.0}
# Kinect v1 joint -> the NTU-25 joint of the synthetic body it is read from. ShoulderCenter sits between the
# shoulders, where the synthetic body's SpineShoulder is.
V1_FROM_NTU = {name: KINECT_V1_20.aliases.get(name, name) for name in KINECT_V1_20.joints} | {
    "ShoulderCenter": "SpineShoulder"}
# UTD-MHAD files list the joints in their own order (mmcl.data.utd_mhad.UTD_JOINTS), which the reader undoes.
UTD_FILE_INDEX = np.array([NTU25.index(V1_FROM_NTU[name]) for name in UTD_JOINTS])


@dataclass(frozen=True)
class SynthConfig:
    """Every setting of the synthetic dataset (the defaults are the built-in set).

    Sizes: ``classes`` (the first n of the 16 source classes) x ``subjects`` x ``cameras`` x ``replications``
    samples; the UTD-style set has its 8 classes x ``utd_subjects`` x ``utd_trials`` clips.
    """

    seed: int = 0
    subjects: int = 20  # many performers, two cameras, one take each: a model sees more people than repeats
    cameras: int = 2
    replications: int = 1
    classes: int = len(SOURCE_CLASSES)
    subjects_per_setup: int = 2
    video: bool = True
    fps: int = 30
    video_width: int = 480
    video_height: int = 270
    min_frames: int = 40
    max_frames: int = 90
    joint_noise: float = 0.008
    glitch_prob: float = 0.15
    utd: bool = True
    utd_subjects: int = 8
    utd_trials: int = 3
    utd_video_width: int = 320
    utd_video_height: int = 240
    utd_min_frames: int = 45
    utd_max_frames: int = 110
    utd_joint_noise: float = 0.015
    utd_glitch_prob: float = 0.3

    def __post_init__(self) -> None:
        if not 1 <= self.classes <= len(SOURCE_CLASSES):
            raise ValueError(f"classes must be in 1..{len(SOURCE_CLASSES)}, got {self.classes}")
        for name in ("subjects", "cameras", "replications", "subjects_per_setup", "utd_subjects", "utd_trials"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 12 <= self.min_frames <= self.max_frames:
            raise ValueError(f"need 12 <= min_frames <= max_frames, got {self.min_frames}, {self.max_frames}")

    @property
    def source_classes(self) -> tuple[ActionClass, ...]:
        """The classes in use: the first ``classes`` source classes."""
        return SOURCE_CLASSES[: self.classes]

    def setup_of(self, subject: int) -> int:
        """The setup (room and camera placement) a performer is recorded in."""
        return 1 + (subject - 1) // self.subjects_per_setup

    def sample_names(self) -> list[str]:
        """All NTU-style sample names, in a fixed order."""
        return [sample_name(self.setup_of(p), c, p, r, a)
                for p in range(1, self.subjects + 1) for r in range(1, self.replications + 1)
                for a in range(1, self.classes + 1) for c in range(1, self.cameras + 1)]


def sample_name(setup: int, camera: int, subject: int, replication: int, action: int) -> str:
    """NTU's SsssCcccPpppRrrrAaaa (all 1-based)."""
    return f"S{setup:03d}C{camera:03d}P{subject:03d}R{replication:03d}A{action:03d}"


@dataclass(frozen=True)
class Subject:
    """A performer's body and motion style, and how they look on video."""

    performer: Performer
    appearance: Appearance


def make_subject(rng: np.random.Generator, heights: tuple[float, float], left_handed: float) -> Subject:
    """A person: height, proportions, handedness, tempo, range of movement and clothes."""
    height = float(np.clip(rng.normal(*heights), heights[0] - 2.5 * heights[1], heights[0] + 2.5 * heights[1]))
    performer = Performer(body=sample_body(rng, height), hand="l" if rng.uniform() < left_handed else "r",
                          speed=float(np.clip(np.exp(rng.normal(0.0, 0.12)), 0.78, 1.28)),
                          amplitude=float(np.clip(rng.normal(1.0, 0.07), 0.85, 1.15)))
    return Subject(performer=performer, appearance=sample_appearance(rng))


def ntu_subject(seed: int, subject: int) -> Subject:
    """Performer ``subject`` of the NTU-style set (a quarter of them left-handed)."""
    return make_subject(rng_for(seed, "subject", subject), heights=(1.70, 0.08), left_handed=0.25)


def _ntu_placement(cfg: SynthConfig, setup: int, camera: int) -> tuple[float, float, float]:
    """(angle in radians, distance, height) of one camera in one setup."""
    rng = rng_for(cfg.seed, "camera", setup, camera)
    base = CAMERA_ANGLES.get(camera)
    angle = rng.uniform(-60.0, 60.0) if base is None else base + rng.normal(0.0, 3.0)
    return float(np.deg2rad(angle)), rng.uniform(2.7, 3.4), rng.uniform(0.75, 1.35)


def ntu_camera(cfg: SynthConfig, setup: int, camera: int) -> tuple[Camera, Intrinsics]:
    """One camera of one setup: its pose and its colour projection."""
    angle, distance, height = _ntu_placement(cfg, setup, camera)
    color = color_intrinsics(cfg.video_width, cfg.video_height, KINECT_V2_COLOR)
    return orbit_camera(angle, distance, height, 0.9), color


def ntu_background(cfg: SynthConfig, setup: int, camera: int) -> np.ndarray:
    """The room that one camera of one setup sees behind the actors, (H, W, 3) uint8."""
    _, distance, height = _ntu_placement(cfg, setup, camera)
    color = color_intrinsics(cfg.video_width, cfg.video_height, KINECT_V2_COLOR)
    return room_background(rng_for(cfg.seed, "room", setup, camera), color, height, distance)


def _render(clip: Clip, view: CameraView, camera: Camera, color: Intrinsics, background: np.ndarray,
            looks: list[Appearance]) -> Iterator[Image.Image]:
    rot = camera.rotate_to_camera(clip.rotations)
    objects = [[(track.held, *object_pose(track.held, view.clean[t, m], rot[t, m], track.grip, track.carry))
                for m, track in enumerate(clip.tracks) if track.held] for t in range(clip.num_frames)]
    people = [(view.clean[:, m], looks[m]) for m in range(len(clip.tracks))]
    return render_clip(background, color, people, objects)


def _ntu_unit(args: tuple[SynthConfig, Path, int, int, int]) -> int:
    """Generate one performance (performer, replication, action) as seen by every camera; returns files written."""
    cfg, root, p, r, a = args
    setup = cfg.setup_of(p)
    names = [sample_name(setup, c, p, r, a) for c in range(1, cfg.cameras + 1)]
    wanted = [root / "skeletons" / f"{n}.skeleton" for n in names]
    if cfg.video:
        wanted += [root / "videos" / f"{n}_rgb.avi" for n in names]
    if all(f.exists() for f in wanted):
        return 0
    action = cfg.source_classes[a - 1]
    subject = ntu_subject(cfg.seed, p)
    subjects = [subject]
    if action.two_person:
        subjects.append(make_subject(rng_for(cfg.seed, "partner", p, r, a), heights=(1.70, 0.08), left_handed=0.25))
    rng = rng_for(cfg.seed, "motion", p, r, a)
    facing = REPLICATION_FACING.get(r)
    facing = rng.uniform(-40.0, 40.0) if facing is None else facing + rng.normal(0.0, 5.0)
    clip = perform(action, [s.performer for s in subjects], rng, cfg.fps, cfg.min_frames, cfg.max_frames,
                   scene_yaw=np.deg2rad(facing))
    for c, name in zip(range(1, cfg.cameras + 1), names):
        camera, color = ntu_camera(cfg, setup, c)
        view = capture(clip, camera, DEPTH_INTRINSICS, color, rng_for(cfg.seed, "sensor", setup, c, p, r, a),
                       cfg.joint_noise, cfg.glitch_prob)
        write_skeleton_file(root / "skeletons" / f"{name}.skeleton", view)
        if cfg.video:
            frames = _render(clip, view, camera, color, ntu_background(cfg, setup, c), [s.appearance for s in subjects])
            write_video(root / "videos" / f"{name}_rgb.avi", frames, cfg.fps, (color.width, color.height))
    return len(wanted)


def utd_name(action: int, subject: int, trial: int) -> str:
    """UTD-MHAD's a{action}_s{subject}_t{trial}."""
    return f"a{action}_s{subject}_t{trial}"


def _utd_unit(args: tuple[SynthConfig, Path, int, int, int]) -> int:
    """One UTD-style clip: a front-facing Kinect v1, 20 joints, noisier, its own subjects and clip lengths."""
    cfg, root, a, s, t = args
    name = utd_name(a, s, t)
    wanted = [root / "utd" / f"{name}_skeleton.mat"] + ([root / "utd" / f"{name}_color.avi"] if cfg.video else [])
    if all(f.exists() for f in wanted):
        return 0
    subject = make_subject(rng_for(cfg.seed, "utd-subject", s), heights=(1.72, 0.07), left_handed=0.0)
    rng = rng_for(cfg.seed, "utd-motion", a, s, t)
    clip = perform(UTD_CLASSES[a], [subject.performer], rng, cfg.fps, cfg.utd_min_frames, cfg.utd_max_frames,
                   scene_yaw=np.deg2rad(rng.normal(0.0, 8.0)))
    cam_rng = rng_for(cfg.seed, "utd-camera", s)
    distance, height = cam_rng.uniform(2.3, 2.9), cam_rng.uniform(0.9, 1.2)
    camera = orbit_camera(np.deg2rad(cam_rng.normal(0.0, 4.0)), distance, height, 1.0)
    color = color_intrinsics(cfg.utd_video_width, cfg.utd_video_height, KINECT_V1_COLOR)
    view = capture(clip, camera, DEPTH_INTRINSICS, color, rng_for(cfg.seed, "utd-sensor", a, s, t),
                   cfg.utd_joint_noise, cfg.utd_glitch_prob)
    write_utd_skeleton(root / "utd" / f"{name}_skeleton.mat", view.joints[:, 0][:, UTD_FILE_INDEX])
    if cfg.video:
        background = room_background(rng_for(cfg.seed, "utd-room", s), color, height, distance)
        write_video(root / "utd" / f"{name}_color.avi",
                    _render(clip, view, camera, color, background, [subject.appearance]), cfg.fps,
                    (color.width, color.height))
    return len(wanted)


def _run_units(fn, units: list, workers: int, desc: str) -> None:
    if workers <= 1:
        for unit in tqdm(units, desc=desc, unit="clip"):
            fn(unit)
        return
    with multiprocessing.get_context().Pool(workers) as pool:
        for _ in tqdm(pool.imap_unordered(fn, units, chunksize=2), total=len(units), desc=desc, unit="clip"):
            pass


def _settings(cfg: SynthConfig) -> dict:
    return {"version": GENERATOR_VERSION, "config": asdict(cfg)}


def _without_video(settings: dict) -> dict:
    return {**settings, "config": {k: v for k, v in settings["config"].items() if k != "video"}}


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.iterdir() if f.is_file()) if path.is_dir() else 0


def generate(out: str | os.PathLike, cfg: SynthConfig | None = None, workers: int = 2,
             overwrite: bool = False) -> Path:
    """Write the synthetic dataset of ``cfg`` (default: the built-in set) to ``out`` (see the module doc); returns
    ``out``.

    A complete ``out`` made with the same settings is left as it is, and so is one that differs only in holding the
    videos that ``cfg`` goes without (the skeletons do not depend on them); one made without the videos that ``cfg``
    asks for gets them added (its other files are kept). Any other difference is an error unless ``overwrite``.
    An unfinished run (``out.partial``) with the same settings is resumed.
    """
    cfg = SynthConfig() if cfg is None else cfg
    out = Path(out)
    manifest = out / "manifest.json"
    partial = out.with_name(out.name + ".partial")
    if manifest.exists():
        done = json.loads(manifest.read_text())
        existing = {"version": done.get("version"), "config": done.get("config")}
        complete = existing == _settings(cfg) or (_without_video(existing) == _without_video(_settings(cfg))
                                                  and existing["config"]["video"])  # it holds the videos too
        if complete and not overwrite:
            if not (out / ANSWERS_FILE).exists():  # a set generated before the answers file existed
                write_answers(out / ANSWERS_FILE, cfg.seed, cfg.source_classes, cfg.sample_names())
            return out
        if _without_video(existing) == _without_video(_settings(cfg)) and not overwrite:
            if partial.exists():  # the videos are added as a resumable run over the complete set
                shutil.rmtree(partial)
            os.replace(out, partial)
            write_json(partial / ".settings.json", _settings(cfg), indent=None)
        elif not overwrite:
            raise FileExistsError(f"{out} holds a synthetic dataset made with other settings "
                                  f"(seed {done.get('config', {}).get('seed')}); pass overwrite=True "
                                  "(mmcl synth --overwrite) to replace it")
    elif out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} exists and is not a synthetic dataset (no manifest.json); pass overwrite "
                              "to replace it (mmcl synth --overwrite)")
    marker = partial / ".settings.json"
    if partial.exists() and (not marker.exists() or json.loads(marker.read_text()) != _settings(cfg)):
        shutil.rmtree(partial)
    for sub in ("skeletons", "videos", "utd"):
        if sub == "skeletons" or (sub == "videos" and cfg.video) or (sub == "utd" and cfg.utd):
            (partial / sub).mkdir(parents=True, exist_ok=True)
    write_json(marker, _settings(cfg), indent=None)

    write_json(partial / "classes.json", [c.info(i) for i, c in enumerate(cfg.source_classes)])
    write_answers(partial / ANSWERS_FILE, cfg.seed, cfg.source_classes, cfg.sample_names())
    units = [(cfg, partial, p, r, a) for p in range(1, cfg.subjects + 1) for r in range(1, cfg.replications + 1)
             for a in range(1, cfg.classes + 1)]
    _run_units(_ntu_unit, units, workers, "synthetic NTU-style clips")
    if cfg.utd:
        write_json(partial / "utd" / "classes.json", [c.info(a) for a, c in UTD_CLASSES.items()])
        label_map = {str(a): i for a, i in UTD_LABEL_MAP.items() if i < cfg.classes}
        write_json(partial / "utd" / "label_map.json", label_map)
        utd_units = [(cfg, partial, a, s, t) for a in UTD_CLASSES for s in range(1, cfg.utd_subjects + 1)
                     for t in range(1, cfg.utd_trials + 1)]
        _run_units(_utd_unit, utd_units, workers, "synthetic UTD-style clips")

    color = color_intrinsics(cfg.video_width, cfg.video_height, KINECT_V2_COLOR)
    utd_color = color_intrinsics(cfg.utd_video_width, cfg.utd_video_height, KINECT_V1_COLOR)
    info = _settings(cfg) | {
        "generator": "mmcl.data.synthetic",
        "num_classes": cfg.classes,
        "num_samples": len(cfg.sample_names()),
        "num_utd_samples": len(UTD_CLASSES) * cfg.utd_subjects * cfg.utd_trials if cfg.utd else 0,
        "bytes": {sub: _dir_bytes(partial / sub) for sub in ("skeletons", "videos", "utd")},
        "projection": {"depth": asdict(DEPTH_INTRINSICS), "color": asdict(color), "utd_color": asdict(utd_color)},
        "software": {"numpy": np.__version__, "av": av.__version__},
    }
    marker.unlink()
    write_json(partial / "manifest.json", info)
    return replace_dir(partial, out)
