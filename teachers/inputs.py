"""Per-sample teacher inputs: video -> sampled frames -> person crop -> CLIP pixels and the LLM canvas.

:class:`VideoInputs` is a ``torch.utils.data.Dataset``, so decoding runs in data-loader workers while the models run.
A video that is missing, empty or not decodable gives an item with ``error`` set (its :class:`VideoError` message),
not an exception: the run records it and continues. So does, by ``video.on_truncated``, a video that decodes fewer
frames than its skeleton covers (its stored video frame indices, else its frame count) or, with ``video.check_decode``,
whose decoder reports damage (:func:`teachers.video.check_decode`): ``truncated`` holds why, with the frame count.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mmcl.data.prepared import PreparedData
from teachers.clip import preprocess_frames
from teachers.config import CanvasConfig, VideoConfig
from teachers.video import (Box, VideoError, check_decode, crop, find_video, make_canvas, open_video, person_box,
                            read_frames, square_box, uniform_indices)


@dataclass
class SampleInput:
    """One sample ready for the teachers, or the reason it is not (``error``)."""

    name: str
    decode_s: float
    error: str | None = None
    pixels: torch.Tensor | None = None
    canvas: np.ndarray | None = None
    short: bool = False
    crop_box: Box = (0, 0, 0, 0)
    num_video_frames: int = 0
    uncropped: str | None = None
    # the video decodes fewer frames than the skeleton covers, or with damage (video.on_truncated)
    truncated: str | None = None


class VideoInputs(torch.utils.data.Dataset):
    """Teacher inputs of the prepared samples ``indices``, videos found in ``videos_dir``.

    ``preprocess`` is open_clip's image transform. The person box (when ``video.crop.enabled``) is computed over the
    frames sampled for CLIP and for the canvas together; CLIP gets it squared (``crop.square``), the canvas tight.
    ``video_backend``: how videos are decoded (:func:`teachers.video.open_video`).
    """

    def __init__(self, data: PreparedData, indices: list[int], videos_dir: str | os.PathLike, video: VideoConfig,
                 canvas: CanvasConfig, preprocess, video_backend: str = "auto"):
        self.data = data
        self.indices = list(indices)
        self.videos_dir = Path(videos_dir)
        self.video = video
        self.canvas = canvas
        self.preprocess = preprocess
        self.video_backend = video_backend

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, j: int) -> SampleInput:
        i = self.indices[j]
        name = self.data.names[i]
        start = time.perf_counter()
        k, kc = self.video.num_frames, self.canvas.num_frames
        try:
            path = find_video(self.videos_dir, name, self.video.patterns)
            reader = open_video(path, self.video_backend)
            n = len(reader)
            covered = self._skeleton_frames(i)
            truncated = (f"{path}: the video decodes {n} frames, its skeleton covers {covered} (cut short or "
                         f"corrupt)") if n < covered else None
            if truncated is None and self.video.check_decode:
                report = check_decode(path)
                truncated = report.describe(path) if report.damaged else None
            if truncated and self.video.on_truncated != "use":
                return SampleInput(name, time.perf_counter() - start, error=truncated, truncated=truncated)
            indices = np.concatenate([uniform_indices(n, k), uniform_indices(n, kc)])
            frames = read_frames(reader, indices, path)
        except VideoError as exc:
            return SampleInput(name, time.perf_counter() - start, error=str(exc))
        size = (frames.shape[2], frames.shape[1])
        box, uncropped = (0, 0, *size), None
        if self.video.crop.enabled:
            c = self.video.crop
            found = person_box(self.data.color(i), self.data.frames(i), indices, size, c.margin,
                               tuple(c.color_size) if c.color_size else None)
            if found is None:
                uncropped = "no valid colour-pixel joint in the sampled frames: full frame used"
            else:
                box = found
        clip_box = square_box(box, size) if self.video.crop.enabled and self.video.crop.square else box
        pixels = preprocess_frames(self.preprocess, crop(frames[:k], clip_box))
        canvas = make_canvas(crop(frames[k:], box), self.canvas.layout, self.canvas.size, self.canvas.fit,
                             self.canvas.fill)
        return SampleInput(name, time.perf_counter() - start, pixels=pixels, canvas=canvas,
                           short=n < max(k, kc), crop_box=box, num_video_frames=n, uncropped=uncropped,
                           truncated=truncated)

    def _skeleton_frames(self, i: int) -> int:
        """The video frames sample ``i``'s skeleton covers: its last stored video frame index + 1, else its length."""
        if self.data.info.has_frames:
            frames = self.data.frames(i)
            return int(frames.max()) + 1 if len(frames) else 0
        return int(self.data.lengths[i])
