"""``mmcl show``: a sample's skeleton(s) as an animated GIF or MP4, with its label and a model's top-5 predictions.

    mmcl show S001C001P001R001A001.skeleton --out a001.gif                       # a raw file
    mmcl show S001C001P003R001A005 --data cache/synthetic/prepared-seed0 --checkpoint runs/x/best.safetensors
    mmcl show 17 --data cache/synthetic/prepared-seed0 --view side --out sample17.mp4   # by index
    mmcl show --data cache/synthetic/prepared-seed0 --pair "drink from a cup" "drink from a bottle" \\
              --checkpoint runs/x/best.safetensors --out cup_vs_bottle.gif         # a confusion pair

A sample comes from a raw file (NTU ``.skeleton``; UTD-MHAD ``.mat``; NW-UCLA ``.json``; SYSU ``.txt``; a ``.npy``
array (T, M, V, C) or (T, V, C), whose layout is ``--layout``, the checkpoint's, or NTU-25 for 25 joints) or from a
prepared dataset (``--data``) by name or index. Every frame is drawn, one person per colour, with the bones of the
layout's graph, from a chosen view (``front``: the camera's; ``side``; ``top``; or ``ELEV,AZIM`` in degrees). The
true label comes from the prepared dataset, ``--label``, or the action number of an NTU file name (named by the
checkpoint's classes when one is given). With ``--checkpoint`` (or its ONNX export, ``--model``) the model's top-5
classes (computed once on the whole clip, through ``mmcl predict``'s preprocessing, which maps a file of another
layout to the model's by joint name) are drawn as bars beside the skeleton, the true class in green.

``--pair A B`` plays a clip of class A and one of class B side by side (the two classes a confusion matrix shows
mixed up). With a checkpoint, each side is the clip of its class that the model most confuses with the other class
(highest probability of the other one), else the first clip of the class in ``--split``.

GIFs are written with matplotlib's Pillow writer, MP4s (H.264) with PyAV; the file has one frame per ``--stride``
skeleton frames, played at ``--fps``.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmcl.data.layouts import LAYOUTS, get_layout
from mmcl.data.prepared import unusable_reason
from mmcl.errors import DataError
from mmcl.io import atomic_path

VIEWS = {"front": (10.0, -90.0), "side": (10.0, 0.0), "top": (89.0, -90.0)}
PERSON_COLOURS = ("tab:blue", "tab:orange", "tab:purple", "tab:brown")
# Raw file suffix -> the layout of what its reader returns.
RAW_LAYOUTS = {".skeleton": "ntu25", ".mat": "kinect_v1_20", ".json": "nwucla20", ".txt": "kinect_v1_20"}


@dataclass
class Clip:
    """One sample to draw: joints (T, M, V, C) in ``layout``, its name, true label and optional top-k predictions."""

    joints: np.ndarray
    layout: str
    name: str
    label: str | None = None
    predictions: list[tuple[str, float]] | None = None

    @property
    def num_frames(self) -> int:
        return self.joints.shape[0]


def parse_view(view: str) -> tuple[float, float]:
    """(elevation, azimuth) in degrees of a view name or ``"ELEV,AZIM"``."""
    if view in VIEWS:
        return VIEWS[view]
    try:
        elev, azim = (float(x) for x in view.split(","))
    except ValueError:
        raise DataError(f"view {view!r}: use one of {', '.join(VIEWS)} or ELEV,AZIM in degrees") from None
    return elev, azim


def read_raw(path: str | os.PathLike, layout: str | None = None) -> tuple[np.ndarray, str]:
    """A raw skeleton file as (T, M, V, C) float32 and its layout; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"skeleton file not found: {path}")
    suffix = path.suffix
    if suffix in (".skeleton", ".npy"):
        from mmcl.deploy.predict import read_joints

        joints = read_joints(path)
    elif suffix == ".mat":
        from mmcl.data.utd_mhad import read_utd_mat

        joints = read_utd_mat(path)
    elif suffix == ".json":
        from mmcl.data.nwucla import read_nwucla_json

        joints = read_nwucla_json(path)
    elif suffix == ".txt":
        from mmcl.data.sysu import read_sysu_file

        joints = read_sysu_file(path)
    else:
        raise DataError(f"{path}: unsupported file type {suffix!r}; expected .skeleton, .npy, .mat, .json or .txt")
    joints = np.asarray(joints, dtype=np.float32)
    if joints.ndim == 3:
        joints = joints[:, None]
    if joints.ndim != 4:
        raise DataError(f"{path}: array of shape {joints.shape}; expected (T, M, V, C) or (T, V, C)")
    v = joints.shape[2]
    if layout is None:
        layout = RAW_LAYOUTS.get(suffix) or ("ntu25" if v == 25 else None)
        if layout is None:
            raise DataError(f"{path}: {v} joints per frame; name the layout with --layout (one of "
                            f"{', '.join(LAYOUTS)})")
    if layout not in LAYOUTS:
        raise DataError(f"unknown layout {layout!r}; known layouts: {', '.join(LAYOUTS)}")
    if v != get_layout(layout).num_joints or joints.shape[3] < 3 or joints.shape[0] == 0:
        raise DataError(f"{path}: array of shape {joints.shape}; layout {layout!r} needs (T>0, M, "
                        f"{get_layout(layout).num_joints}, C>=3)")
    reason = unusable_reason(joints)
    if reason is not None:
        raise DataError(f"{path}: {reason}")
    return joints, layout


def ntu_file_label(path: Path, class_names: Sequence[str] | None) -> str | None:
    """The true label of an NTU-named file (``...A013.skeleton``): its action number, with the class name from
    ``class_names`` (label = action - 1) when given."""
    from mmcl.data.ntu import parse_name

    try:
        action = parse_name(path.stem).action
    except ValueError:
        return None
    if class_names and action <= len(class_names):
        return f"{class_names[action - 1]} (A{action:03d})"
    return f"action A{action:03d}"


def predict_top(predictor, clips: Sequence[Clip], k: int = 5) -> list[list[tuple[str, float]]]:
    """A predictor's (:class:`mmcl.deploy.predict.Predictor`) ``k`` most probable (class, probability) for each clip,
    preprocessed by ``mmcl predict``'s :func:`~mmcl.deploy.predict.preprocess` (from the clip's layout); one batch."""
    from mmcl.deploy.predict import preprocess, top_classes

    logits = predictor(np.stack([preprocess(c.joints, predictor.info, c.name, c.layout) for c in clips]))
    return [top_classes(row, predictor.info.class_names, k) for row in logits]


def _limits(joints: np.ndarray) -> tuple[np.ndarray, float]:
    """Centre and half-size of a cube holding every non-zero joint (plot axes: x, depth, up)."""
    points = joints[..., :3].reshape(-1, 3)
    points = points[np.any(points != 0, axis=1)]
    if len(points) == 0:
        return np.zeros(3), 1.0
    lo, hi = points.min(0), points.max(0)
    return (lo + hi) / 2, max(float((hi - lo).max()) / 2 * 1.1, 1e-3)


class _Panel:
    """One clip's 3D skeleton axes (and its top-k bars): ``draw(t)`` updates it to frame ``t``."""

    def __init__(self, fig, grid, clip: Clip, view: tuple[float, float], with_bars: bool):
        self.clip = clip
        self.edges = get_layout(clip.layout).inward
        self.ax = fig.add_subplot(grid[0], projection="3d")
        self.ax.view_init(*view)
        # the data's (x, y up, z depth) drawn as matplotlib's (x, depth, up)
        centre, half = _limits(clip.joints[..., [0, 2, 1]])
        for axis, c in zip("xyz", centre):
            getattr(self.ax, f"set_{axis}lim")(c - half, c + half)
        self.ax.set_box_aspect((1, 1, 1))
        self.ax.set_xticklabels([]), self.ax.set_yticklabels([]), self.ax.set_zticklabels([])
        title = clip.name if clip.label is None else f"{clip.name}\ntrue: {clip.label}"
        self.ax.set_title(title, fontsize=9)
        self.persons = []
        for m in range(clip.joints.shape[1]):
            colour = PERSON_COLOURS[m % len(PERSON_COLOURS)]
            bones = [self.ax.plot([], [], [], color=colour, lw=2)[0] for _ in self.edges]
            points = self.ax.plot([], [], [], "o", color=colour, ms=2.5)[0]
            self.persons.append((bones, points))
        self.counter = self.ax.text2D(0.02, 0.02, "", transform=self.ax.transAxes, fontsize=8)
        if with_bars and clip.predictions:
            self._bars(fig.add_subplot(grid[1]))

    def _bars(self, ax) -> None:
        names = [n for n, _ in self.clip.predictions][::-1]
        probs = [100 * p for _, p in self.clip.predictions][::-1]
        true = self.clip.label or ""
        colours = ["tab:green" if true == n or true.startswith(f"{n} (") else "tab:gray" for n in names]
        ax.barh(range(len(names)), probs, color=colours)
        ax.set_yticks(range(len(names)), [n[:28] for n in names], fontsize=8)
        ax.set_xlim(0, 100)
        ax.set_xlabel("probability (%)", fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
        ax.set_title("top-5 predictions", fontsize=9)
        for y, p in enumerate(probs):
            ax.text(min(p + 2, 80), y, f"{p:.1f}%", va="center", fontsize=7)

    def draw(self, t: int) -> None:
        frame = self.clip.joints[min(t, self.clip.num_frames - 1)]
        for (bones, points), person in zip(self.persons, frame):
            xyz = person[:, [0, 2, 1]]
            present = bool(np.any(person != 0))
            for line, (i, j) in zip(bones, self.edges):
                line.set_data_3d(*(xyz[[i, j]].T if present else ([], [], [])))
            points.set_data_3d(*(xyz.T if present else ([], [], [])))
        self.counter.set_text(f"frame {min(t, self.clip.num_frames - 1) + 1}/{self.clip.num_frames}")


def _pyav_writer(fps: float):
    """A matplotlib movie writer that encodes H.264 MP4 through PyAV (no ffmpeg executable needed)."""
    import av
    from matplotlib.animation import AbstractMovieWriter

    class PyAVWriter(AbstractMovieWriter):
        def setup(self, fig, outfile, dpi=None):
            super().setup(fig, outfile, dpi)
            self._container = av.open(str(outfile), mode="w", format="mp4")
            self._stream = self._container.add_stream("libx264", rate=round(self.fps))
            width, height = self.frame_size
            self._stream.width, self._stream.height = width - width % 2, height - height % 2
            self._stream.pix_fmt = "yuv420p"

        def grab_frame(self, **savefig_kwargs):
            self.fig.set_dpi(self.dpi)
            self.fig.canvas.draw()
            rgb = np.asarray(self.fig.canvas.buffer_rgba())[..., :3]
            rgb = np.ascontiguousarray(rgb[:self._stream.height, :self._stream.width])
            for packet in self._stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                self._container.mux(packet)

        def finish(self):
            for packet in self._stream.encode():
                self._container.mux(packet)
            self._container.close()

    return PyAVWriter(fps=fps)


def render(clips: Sequence[Clip], out: str | os.PathLike, view: str = "front", fps: float = 15, stride: int = 1,
           dpi: int = 80, progress: bool = True) -> int:
    """Animate ``clips`` side by side into ``out`` (``.gif`` or ``.mp4``), written atomically; returns the number of
    frames written (``ceil(longest clip / stride)``; a shorter clip holds its last frame)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.animation import FuncAnimation, PillowWriter
    from matplotlib.gridspec import GridSpec
    from tqdm import tqdm

    out = Path(out)
    if out.suffix not in (".gif", ".mp4"):
        raise DataError(f"{out}: write a .gif or an .mp4")
    if stride < 1 or fps <= 0:
        raise DataError(f"stride must be >= 1 and fps > 0, got stride {stride}, fps {fps}")
    with_bars = any(c.predictions for c in clips)
    rows = 2 if with_bars and len(clips) > 1 else 1
    cols = len(clips) * (2 if with_bars and len(clips) == 1 else 1)
    fig = plt.figure(figsize=(4.2 * cols, 4.2 + 1.8 * (rows - 1)), dpi=dpi)
    grid = GridSpec(rows, cols, figure=fig, height_ratios=[3, 1] if rows == 2 else None,
                    width_ratios=[1.1, 1] if cols == 2 and rows == 1 and with_bars else None)
    panels = []
    for k, clip in enumerate(clips):
        cells = (grid[0, 0], grid[0, 1]) if cols == 2 * len(clips) else (grid[0, k], grid[rows - 1, k])
        panels.append(_Panel(fig, cells, clip, parse_view(view), with_bars))
    fig.tight_layout()
    frames = list(range(0, max(c.num_frames for c in clips), stride))
    animation = FuncAnimation(fig, lambda t: [p.draw(t) for p in panels], frames=frames, blit=False,
                              cache_frame_data=False)
    writer = PillowWriter(fps=fps) if out.suffix == ".gif" else _pyav_writer(fps)
    bar = tqdm(total=len(frames), desc=f"rendering {out.name}", unit="frame", disable=not progress)
    with atomic_path(out, suffix=out.suffix) as tmp:
        animation.save(str(tmp), writer=writer, dpi=dpi, progress_callback=lambda i, n: bar.update(1))
    bar.close()
    plt.close(fig)
    return len(frames)


def _class_index(name: str, class_names: Sequence[str], where: str) -> int:
    if name in class_names:
        return class_names.index(name)
    if name.isdigit() and int(name) < len(class_names):
        return int(name)
    raise DataError(f"no class {name!r} in {where}; classes: {', '.join(class_names)}")


def prepared_clips(data, samples: Sequence[str], predictor=None) -> list[Clip]:
    """A prepared dataset's samples (by name or index) as :class:`Clip` s, predicted in one batch."""
    clips = []
    for sample in samples:
        if sample.isdigit():
            i = int(sample)
            if not 0 <= i < len(data):
                raise DataError(f"sample index {i} outside 0..{len(data) - 1} of {data.root}")
        else:
            try:
                i = data.index_of(sample)
            except KeyError as e:
                raise DataError(e.args[0]) from None
        clips.append(Clip(data.joints(i), data.info.layout, data.names[i], data.class_names[int(data.labels[i])]))
    if predictor is not None:
        for clip, top in zip(clips, predict_top(predictor, clips)):
            clip.predictions = top
    return clips


def confusion_pair(data, classes: Sequence[str], split: str = "test", predictor=None) -> list[Clip]:
    """One clip of each of two classes from ``split``: with a predictor, the clip of each class that it gives the
    other class the highest probability; else the first clip of each class."""
    labels = [_class_index(c, data.class_names, str(data.root)) for c in classes]
    indices = data.split(split)
    clips = []
    for own, other in (labels, labels[::-1]):
        members = [int(i) for i in indices if int(data.labels[i]) == own]
        if not members:
            raise DataError(f"split {split!r} of {data.root} has no sample of class {data.class_names[own]!r}")
        if predictor is None:
            clips += prepared_clips(data, [str(members[0])])
            continue
        candidates = prepared_clips(data, [str(i) for i in members], predictor)
        clips.append(max(candidates, key=lambda c: dict(c.predictions).get(data.class_names[other], 0.0)))
    return clips


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sample", nargs="?", help="a skeleton file, or with --data a sample name or index")
    parser.add_argument("--data", type=Path, default=None, help="prepared dataset directory")
    parser.add_argument("--pair", nargs=2, metavar=("CLASS_A", "CLASS_B"), default=None,
                        help="play a clip of each of two classes side by side (names or indices; needs --data)")
    parser.add_argument("--split", default="test", help="split the --pair clips come from")
    model = parser.add_mutually_exclusive_group()
    model.add_argument("--checkpoint", type=Path, default=None, help="deployable checkpoint: draw its top-5")
    model.add_argument("--model", type=Path, default=None, help="or an ONNX export of one (run by onnxruntime)")
    parser.add_argument("--layout", default=None, help="layout of a .npy file (default: the checkpoint's, or ntu25)")
    parser.add_argument("--label", default=None, help="true label to show for a raw file")
    parser.add_argument("--view", default="front", help=f"{', '.join(VIEWS)} or ELEV,AZIM in degrees")
    parser.add_argument("--out", type=Path, default=None, help=".gif or .mp4 (default: <sample>.gif)")
    parser.add_argument("--fps", type=float, default=15)
    parser.add_argument("--stride", type=int, default=1, help="draw every n-th skeleton frame")
    parser.add_argument("--dpi", type=int, default=80)


def run(args: argparse.Namespace) -> int:
    if args.out is not None and args.out.suffix not in (".gif", ".mp4"):
        raise DataError(f"{args.out}: write a .gif or an .mp4")
    parse_view(args.view)
    predictor = None
    if args.checkpoint or args.model:
        from mmcl.deploy.predict import Predictor

        predictor = Predictor.load(args.checkpoint, args.model)
    if args.pair:
        if args.data is None or args.sample is not None:
            raise DataError("--pair needs --data and no sample")
        from mmcl.data.prepared import PreparedData

        clips = confusion_pair(PreparedData(args.data), args.pair, args.split, predictor)
        default = f"{clips[0].name}_vs_{clips[1].name}.gif"
    elif args.sample is None:
        raise DataError("give a sample (a file, or a name / index with --data) or --pair")
    elif args.data is not None:
        from mmcl.data.prepared import PreparedData

        clips = prepared_clips(PreparedData(args.data), [args.sample], predictor)
        default = f"{clips[0].name}.gif"
    else:
        path = Path(args.sample)
        info = predictor.info if predictor else None
        # a .npy file is in the model's layout unless --layout says otherwise; other files in their format's
        joints, layout = read_raw(path, args.layout or (info.layout if info and path.suffix == ".npy" else None))
        label = args.label or (ntu_file_label(path, info.class_names if info else None)
                               if path.suffix == ".skeleton" else None)
        clips = [Clip(joints, layout, path.stem, label)]
        if predictor:
            clips[0].predictions = predict_top(predictor, clips)[0]
        default = f"{path.stem}.gif"
    out = args.out or Path(default)
    frames = render(clips, out, args.view, args.fps, args.stride, args.dpi)
    for clip in clips:
        top = f"; top-1 {clip.predictions[0][0]} ({100 * clip.predictions[0][1]:.1f}%)" if clip.predictions else ""
        print(f"{clip.name}: {clip.num_frames} frames, true {clip.label or 'unknown'}{top}")
    print(f"-> {out} ({frames} frames at {args.fps:g} fps, {math.ceil(frames / args.fps * 10) / 10:.1f} s)")
    return 0
