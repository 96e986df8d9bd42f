"""Video frames for the teachers: decoding (decord or PyAV), uniform sampling, the skeleton person crop, canvases.

Decoding: :func:`open_video` returns a :class:`VideoReader` of one of two backends, ``decord`` (seeks by frame
index; wheels for x86-64 only) and ``pyav`` (PyAV, everywhere: decodes sequentially up to the last frame asked for).
``auto`` (the default of ``runtime.video_backend``) takes ``$MMCL_VIDEO_BACKEND`` when set, else decord when it is
installed, else PyAV. Both count the same frames and return the same RGB pixels (measured: identical, maximum
difference 0, on the NTU sample video, the synthetic videos and MPEG-4 / H.264 test videos;
``tests/test_teachers_video.py`` checks it), so the backend is not part of the teacher cache key.

Damage (:func:`check_decode`): a video with a damaged stretch may still open with a plausible frame count, and its
frames decode: the decoder conceals what it lost. Decoding every frame once with PyAV collects what the decoder
reports (frames flagged corrupt, its error messages, an error that stops it), whichever backend samples the frames.

Sampling: k frames of an n-frame video are the centre frames of k equal segments,
``index_i = floor((i + 0.5) * n / k)`` for ``i = 0..k-1``. A video with fewer than k frames is sampled the same way,
which repeats frames; it is flagged ``short``.

Person crop (:func:`person_box`): each sampled video frame is matched to the nearest stored skeleton frame (the
prepared dataset's ``frames(i)`` holds each skeleton frame's video frame index); the box is the union of all valid
colour-pixel joints (not all-zero, finite) of every actor over those frames, grown by ``margin`` x its width/height
on each side and clipped to the image. Coordinates are integer pixels, ``(x0, y0, x1, y1)`` with x1/y1 exclusive
(floor of the low edges, ceil of the high ones). :func:`square_box` grows a box along its short side to a square
(shifted back inside the image where it fits, then clipped): CLIP's preprocessing centre-crops to a square, which
would cut the head and feet off a tall person box, so CLIP gets the square box and the LLM canvas the tight one.

Canvas geometry (:func:`splice`, :func:`grid`): a ``size`` x ``size`` canvas is cut into cells whose edges are
``round(j * size / n)``; ``splice`` uses n columns of full height (MMCL: 5 columns of 96x480 on 480x480), ``grid`` a
g x g grid with g = ceil(sqrt(n)), filled row-major. Each frame is resized into its cell: ``letterbox`` scales it by
``min(cell_w / w, cell_h / h)`` (keeping its aspect ratio) and centres it, the rest of the cell keeping ``fill``;
``stretch`` resizes it to the cell exactly.
"""

from __future__ import annotations

import importlib.util
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np
from PIL import Image

from mmcl.errors import MmclError

Box = tuple[int, int, int, int]


class VideoError(MmclError, RuntimeError):
    """A video is missing, empty or cannot be decoded; the message names the path and the reason."""


def uniform_indices(num_video_frames: int, num_frames: int) -> np.ndarray:
    """Indices of the centre frames of ``num_frames`` equal segments of a ``num_video_frames``-frame video."""
    if num_video_frames < 1 or num_frames < 1:
        raise ValueError(f"need at least one video frame and one sample, got {num_video_frames} and {num_frames}")
    i = np.arange(num_frames)
    return np.minimum(((i + 0.5) * num_video_frames / num_frames).astype(np.int64), num_video_frames - 1)


@dataclass
class SampledVideo:
    """Frames sampled from one video: ``frames`` (k, H, W, 3) uint8 at video frame ``indices`` (k,)."""

    frames: np.ndarray
    indices: np.ndarray
    num_video_frames: int
    short: bool

    @property
    def image_size(self) -> tuple[int, int]:
        """(width, height) of the frames."""
        return int(self.frames.shape[2]), int(self.frames.shape[1])


VIDEO_BACKENDS = ("decord", "pyav")


class VideoReader(Protocol):
    """One opened video: ``len(reader)`` frames; :meth:`get` decodes some of them."""

    backend: str

    def __len__(self) -> int: ...

    def get(self, indices: list[int]) -> np.ndarray:
        """Frames at the sorted, distinct ``indices``, (k, H, W, 3) uint8 RGB."""


class DecordReader:
    backend = "decord"

    def __init__(self, path: Path):
        import decord

        self._reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)

    def __len__(self) -> int:
        return len(self._reader)

    def get(self, indices: list[int]) -> np.ndarray:
        return self._reader.get_batch(indices).asnumpy()


class PyAVReader:
    """Counts the video packets that carry data (one per frame) and decodes from the start, single-threaded."""

    backend = "pyav"

    def __init__(self, path: Path):
        import av

        self.path = path
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoError(f"{path}: no video stream")
            self._length = sum(1 for packet in container.demux(container.streams.video[0]) if packet.size)

    def __len__(self) -> int:
        return self._length

    def get(self, indices: list[int]) -> np.ndarray:
        import av

        wanted, frames = set(indices), []
        with av.open(str(self.path)) as container:
            stream = container.streams.video[0]
            stream.thread_count = 1
            for position, frame in enumerate(container.decode(stream)):
                if position in wanted:
                    frames.append(frame.to_ndarray(format="rgb24"))
                if position >= indices[-1]:
                    break
        if len(frames) != len(indices):
            raise VideoError(f"{self.path}: decoded {len(frames)} of the frames {indices} (the video ends early)")
        return np.stack(frames)


@dataclass
class DecodeReport:
    """What decoding every frame of a video found: ``frames`` decoded, ``corrupt`` of them flagged by the decoder,
    ``errors`` messages the decoder logged at error level while it concealed the damage (``first_errors``: the first
    few distinct ones) and ``stopped``, the error that ended decoding early, if one did."""

    frames: int
    corrupt: int
    errors: int
    first_errors: list[str]
    stopped: str | None = None

    @property
    def damaged(self) -> bool:
        return bool(self.corrupt or self.errors or self.stopped)

    def describe(self, path: str | os.PathLike) -> str:
        """One line naming ``path``, the frame count and what the decoder reported."""
        found = [f"{self.corrupt} frame(s) flagged corrupt"] if self.corrupt else []
        if self.errors:
            found.append(f"{self.errors} decoder error(s) ({'; '.join(self.first_errors)})")
        if self.stopped:
            found.append(f"decoding stopped: {self.stopped}")
        return f"{path}: the video decodes {self.frames} frames with damage: {', '.join(found)}"


def check_decode(path: str | os.PathLike, max_errors: int = 3) -> DecodeReport:
    """Decode every frame of ``path`` once with PyAV and collect what the decoder reports (whichever backend samples
    the frames: decord reports nothing). A damaged stretch (bytes zeroed or overwritten) may keep the video's frame
    count: the decoder conceals the lost blocks with neighbouring pixels and only logs it (``marker does not match
    f_code``, ``ac-tex damaged``) or flags the frame corrupt. Messages of the container (its header) are not counted:
    only what decoding the frames reports."""
    import av
    import av.logging

    frames = corrupt = 0
    stopped = None
    level, skip = av.logging.get_level(), av.logging.get_skip_repeated()
    av.logging.set_level(av.logging.ERROR)
    av.logging.set_skip_repeated(False)  # every message counted here, whatever was logged before
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_count = 1
            with av.logging.Capture() as logs:
                try:
                    for frame in container.decode(stream):
                        frames += 1
                        corrupt += bool(frame.is_corrupt)
                except av.error.FFmpegError as exc:
                    stopped = _first_line(exc)
    except av.error.FFmpegError as exc:
        raise VideoError(f"{path}: cannot open video ({type(exc).__name__}: {_first_line(exc)})") from None
    finally:
        av.logging.set_level(level)
        av.logging.set_skip_repeated(skip)
    errors = [_first_line(message) for lvl, _, message in logs if lvl <= av.logging.ERROR]
    return DecodeReport(frames, corrupt, len(errors), list(dict.fromkeys(errors))[:max_errors], stopped)


def video_backend(name: str = "auto") -> str:
    """The backend ``name`` stands for: ``auto`` is ``$MMCL_VIDEO_BACKEND`` when set, else decord when it is
    installed, else PyAV."""
    if name == "auto":
        name = os.environ.get("MMCL_VIDEO_BACKEND", "") or ("decord" if importlib.util.find_spec("decord") else "pyav")
    if name not in VIDEO_BACKENDS:
        raise ValueError(f"unknown video backend {name!r}; expected auto or one of {', '.join(VIDEO_BACKENDS)}")
    return name


def open_video(path: str | os.PathLike, backend: str = "auto") -> VideoReader:
    """A :class:`VideoReader` on ``path`` (``backend``: auto, decord or pyav); :class:`VideoError` when the video is
    missing, empty or not decodable."""
    path = Path(path)
    reader_class = {"decord": DecordReader, "pyav": PyAVReader}[video_backend(backend)]
    if not path.is_file():
        raise VideoError(f"{path}: video not found")
    if path.stat().st_size == 0:
        raise VideoError(f"{path}: video file is empty (0 bytes)")
    try:
        reader = reader_class(path)
    except VideoError:
        raise
    except Exception as exc:  # decord raises DECORDError / RuntimeError, PyAV its av.error classes
        raise VideoError(f"{path}: cannot open video ({type(exc).__name__}: {_first_line(exc)})") from None
    if len(reader) == 0:
        raise VideoError(f"{path}: video has no frames")
    return reader


def read_frames(reader: VideoReader, indices: Sequence[int], path: str | os.PathLike = "") -> np.ndarray:
    """Decode the frames at ``indices`` (k, H, W, 3) uint8; repeated indices are decoded once."""
    unique, inverse = np.unique(np.asarray(indices, dtype=np.int64), return_inverse=True)
    try:
        frames = reader.get(unique.tolist())
    except VideoError:
        raise
    except Exception as exc:
        raise VideoError(f"{path}: cannot decode frames {unique.tolist()} "
                         f"({type(exc).__name__}: {_first_line(exc)})") from None
    if frames.ndim != 4 or frames.shape[0] != len(unique) or frames.shape[-1] != 3:
        raise VideoError(f"{path}: decoder returned frames of shape {frames.shape} for {len(unique)} indices")
    return frames[inverse]


def sample_video(path: str | os.PathLike, num_frames: int, backend: str = "auto") -> SampledVideo:
    """Sample ``num_frames`` uniform frames of a video (see the module docstring); short videos are flagged."""
    reader = open_video(path, backend)
    n = len(reader)
    indices = uniform_indices(n, num_frames)
    return SampledVideo(read_frames(reader, indices, path), indices, n, short=n < num_frames)


def sample_frames(path: str | os.PathLike, num_frames: int, backend: str = "auto") -> np.ndarray:
    """``num_frames`` uniformly sampled frames of a video, (k, H, W, 3) uint8."""
    return sample_video(path, num_frames, backend).frames


def find_video(videos_dir: str | os.PathLike, name: str, patterns: Sequence[str]) -> Path:
    """The first existing ``videos_dir / pattern.format(name=name)``; :class:`VideoError` listing what was tried."""
    tried = [Path(videos_dir) / p.format(name=name) for p in patterns]
    for path in tried:
        if path.exists():
            return path
    raise VideoError(f"no video for sample {name!r}: tried {', '.join(str(p) for p in tried)}")


def nearest_skeleton_frames(skeleton_frames: np.ndarray, video_indices: np.ndarray) -> np.ndarray:
    """For each video frame index, the position of the stored skeleton frame whose video index is nearest."""
    skeleton_frames = np.asarray(skeleton_frames, dtype=np.int64)
    video_indices = np.asarray(video_indices, dtype=np.int64)
    order = np.argsort(skeleton_frames, kind="stable")
    s = skeleton_frames[order]
    right = np.clip(np.searchsorted(s, video_indices), 0, len(s) - 1)
    left = np.clip(right - 1, 0, len(s) - 1)
    pick = np.where(np.abs(video_indices - s[left]) <= np.abs(s[right] - video_indices), left, right)
    return order[pick]


def person_box(color: np.ndarray, skeleton_frames: np.ndarray, video_indices: np.ndarray,
               image_size: tuple[int, int], margin: float = 0.15,
               color_size: tuple[int, int] | None = None) -> Box | None:
    """The person crop box from colour-pixel joints ``color`` (T, M, V, 2); None when no joint is valid (or the
    joints' box lies outside the image).

    ``skeleton_frames`` (T,): each skeleton frame's video frame index; ``video_indices``: the sampled video frames;
    ``image_size``: (width, height) of the video; ``color_size``: (width, height) the coordinates refer to, when it
    differs from the video's. See the module docstring for the rule.
    """
    if color.ndim != 4 or color.shape[-1] != 2 or len(color) != len(skeleton_frames) or len(color) == 0:
        raise ValueError(f"color of shape {color.shape} does not match {len(skeleton_frames)} skeleton frames")
    width, height = image_size
    xy = color[nearest_skeleton_frames(skeleton_frames, video_indices)].reshape(-1, 2).astype(np.float64)
    valid = np.isfinite(xy).all(1) & (xy != 0).any(1)
    if not valid.any():
        return None
    xy = xy[valid]
    if color_size is not None:
        xy = xy * np.array([width / color_size[0], height / color_size[1]])
    (x0, y0), (x1, y1) = xy.min(0), xy.max(0)
    dx, dy = margin * (x1 - x0), margin * (y1 - y0)
    return _clip_box(x0 - dx, y0 - dy, x1 + dx, y1 + dy, image_size)


def square_box(box: Box, image_size: tuple[int, int]) -> Box:
    """``box`` grown along its short side to a square, shifted inside the image where it fits, then clipped."""
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0)
    x0, x1 = _grow_to(x0, x1, side, image_size[0])
    y0, y1 = _grow_to(y0, y1, side, image_size[1])
    return _clip_box(x0, y0, x1, y1, image_size)


def _clip_box(x0: float, y0: float, x1: float, y1: float, image_size: tuple[int, int]) -> Box | None:
    box = (max(0, math.floor(x0)), max(0, math.floor(y0)),
           min(image_size[0], math.ceil(x1)), min(image_size[1], math.ceil(y1)))
    return box if box[2] > box[0] and box[3] > box[1] else None


def _grow_to(lo: int, hi: int, length: int, limit: int) -> tuple[int, int]:
    """Grow [lo, hi) about its centre to ``length``, then shift it inside [0, limit) where it fits."""
    lo -= (length - (hi - lo)) // 2
    hi = lo + length
    if length <= limit:
        shift = max(0, -lo) - max(0, hi - limit)
        lo, hi = lo + shift, hi + shift
    return lo, hi


def crop(frames: np.ndarray, box: Box | None) -> np.ndarray:
    """Frames (k, H, W, 3) cut to ``box`` (x0, y0, x1, y1); the frames themselves when ``box`` is None."""
    if box is None:
        return frames
    x0, y0, x1, y1 = box
    return frames[:, y0:y1, x0:x1]


def fit_into(image: np.ndarray, width: int, height: int, fit: str = "letterbox", fill: int = 0) -> np.ndarray:
    """``image`` (h, w, 3) resized into a ``width`` x ``height`` cell, letterboxed (centred) or stretched."""
    if fit == "stretch":
        return np.asarray(Image.fromarray(image).resize((width, height), Image.BICUBIC))
    if fit != "letterbox":
        raise ValueError(f"fit must be 'letterbox' or 'stretch', got {fit!r}")
    h, w = image.shape[:2]
    scale = min(width / w, height / h)
    nw, nh = max(1, min(width, round(w * scale))), max(1, min(height, round(h * scale)))
    cell = np.full((height, width, 3), fill, dtype=np.uint8)
    x, y = (width - nw) // 2, (height - nh) // 2
    cell[y:y + nh, x:x + nw] = np.asarray(Image.fromarray(image).resize((nw, nh), Image.BICUBIC))
    return cell


def _edges(size: int, parts: int) -> list[int]:
    return [round(j * size / parts) for j in range(parts + 1)]


def splice(frames: np.ndarray, size: int = 480, fit: str = "letterbox", fill: int = 0) -> np.ndarray:
    """Frames (n, h, w, 3) side by side, left to right, in n equal columns of a ``size`` x ``size`` canvas."""
    canvas = np.full((size, size, 3), fill, dtype=np.uint8)
    xs = _edges(size, len(frames))
    for j, frame in enumerate(frames):
        canvas[:, xs[j]:xs[j + 1]] = fit_into(frame, xs[j + 1] - xs[j], size, fit, fill)
    return canvas


def grid(frames: np.ndarray, size: int = 480, fit: str = "letterbox", fill: int = 0) -> np.ndarray:
    """Frames (n, h, w, 3) row-major in a g x g grid (g = ceil(sqrt(n))) on a ``size`` x ``size`` canvas."""
    g = math.ceil(math.sqrt(len(frames)))
    canvas = np.full((size, size, 3), fill, dtype=np.uint8)
    edges = _edges(size, g)
    for j, frame in enumerate(frames):
        r, c = divmod(j, g)
        cell = fit_into(frame, edges[c + 1] - edges[c], edges[r + 1] - edges[r], fit, fill)
        canvas[edges[r]:edges[r + 1], edges[c]:edges[c + 1]] = cell
    return canvas


def make_canvas(frames: np.ndarray, layout: str, size: int, fit: str = "letterbox", fill: int = 0) -> np.ndarray:
    """The LLM image: ``splice`` or ``grid`` of the frames, or ``frame`` (the single frame letterboxed)."""
    if layout == "splice":
        return splice(frames, size, fit, fill)
    if layout == "grid":
        return grid(frames, size, fit, fill)
    if layout == "frame":
        if len(frames) != 1:
            raise ValueError(f"layout 'frame' takes one frame, got {len(frames)}")
        return fit_into(frames[0], size, size, fit, fill)
    raise ValueError(f"unknown canvas layout {layout!r}; expected splice, grid or frame")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no message"
