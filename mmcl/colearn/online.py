"""FAM's online visual branch: the CLIP image tower run on the decoded, person-cropped frames during training.

With ``colearn.fam.source: online`` the visual features FAM aligns with are not read from the teacher cache: every
training item carries its k preprocessed frames (:class:`TeacherFrames`, the same frames and crop ``mmcl precompute``
feeds CLIP), and :class:`OnlineVisual` embeds them at each step with the image tower of ``colearn.teacher.config``
(its ``clip.adapter`` applied), ``frozen`` (the features the cache would hold, recomputed) or with LoRA adapters
trained by the FAM loss (``tower: lora``, peft), as the released MMCL fine-tunes its RGB network. The tower is a
training-time teacher: it is neither a co-learning head (``best_heads.safetensors``) nor part of the deployed model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

PIXELS_KEY = "pixels"


class OnlineVisual(nn.Module):
    """A CLIP image tower: preprocessed frames (N, k, 3, S, S) -> embeddings (N, k, D) as the cache stores them
    (L2-normalised when the teacher normalises them)."""

    def __init__(self, tower: nn.Module, dim: int, normalize: bool, trainable: bool):
        super().__init__()
        self.tower, self.dim, self.normalize, self.trainable = tower, dim, normalize, trainable
        if not trainable:
            self.tower.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> "OnlineVisual":
        super().train(mode)
        if not self.trainable:
            self.tower.eval()  # frozen: always the teacher's inference behaviour
        return self

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        n, k = pixels.shape[:2]
        with torch.set_grad_enabled(self.trainable and torch.is_grad_enabled()):
            emb = self.tower(pixels.flatten(0, 1)).float()
        if self.normalize:
            emb = F.normalize(emb, dim=-1)
        return emb.view(n, k, -1)


def build_online_visual(teacher, tower: str, lora_rank: int, lora_alpha: int, target_modules: list[str]):
    """(module, preprocess) for the loaded teacher config ``teacher``: its CLIP image tower, frozen or LoRA-wrapped."""
    from teachers.clip import ClipTeacher
    from teachers.tiny import ensure_tiny_teachers

    if tower not in ("frozen", "lora"):
        raise ValueError(f"colearn.fam.tower must be 'frozen' or 'lora', got {tower!r}")
    ensure_tiny_teachers(teacher)  # the demo teachers are built on first use, as precompute builds them
    clip = ClipTeacher(teacher.clip)
    visual = clip.model.visual
    if tower == "lora":
        from peft import LoraConfig, get_peft_model

        visual = get_peft_model(visual, LoraConfig(r=lora_rank, lora_alpha=lora_alpha,
                                                   target_modules=list(target_modules)))
    return OnlineVisual(visual, clip.dim, teacher.clip.normalize, trainable=tower == "lora"), clip.preprocess


class TeacherFrames(Dataset):
    """Items of ``base`` (the training samples ``indices`` of ``data``, possibly joined with cached features already)
    plus ``pixels`` (k, 3, S, S): the teacher's CLIP input of the sample's video (decoded once and kept in memory when
    ``keep``), and ``teacher_mask`` False where the video cannot be read (that sample then trains without the teacher
    losses, listed in :attr:`failed`). ``visual_shape`` is what the online tower makes of them, (k, ``tower_dim``)."""

    def __init__(self, base: Dataset, data, indices: list[int], videos: str, teacher, preprocess, tower_dim: int,
                 keep: bool = True, progress: bool = True):
        from teachers.inputs import VideoInputs

        self.base = base
        names = [data.names[i] for i in indices]
        self.inputs = VideoInputs(data, list(indices), videos, teacher.video, teacher.llm.canvas, preprocess,
                                  teacher.runtime.video_backend)
        self.position = {name: j for j, name in enumerate(names)}
        self.visual_shape = (teacher.video.num_frames, tower_dim)
        self.cache = getattr(base, "cache", None)
        self.shape = (teacher.video.num_frames, 3, *_image_size(preprocess))
        self.keep = keep
        self.kept: dict[int, torch.Tensor] = {}
        self.failed: dict[str, str] = {}
        if keep:
            for j in tqdm(range(len(self.inputs)), desc="decoding teacher frames", disable=not progress,
                          unit="video", dynamic_ncols=True):
                item = self.inputs[j]
                if item.error is None:
                    self.kept[j] = item.pixels
                else:
                    self.failed[item.name] = item.error

    @property
    def missing(self) -> list[str]:
        return [*getattr(self.base, "missing", []), *self.failed]

    @property
    def text_shape(self) -> tuple[int, int]:
        return self.base.text_shape  # the cached text features' (a head reading text needs the cache)

    def set_epoch(self, epoch: int) -> None:
        self.base.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict:
        item = self.base[i]
        j = self.position[item["name"]]
        pixels = self.kept.get(j) if self.keep else self.inputs[j].pixels
        item[PIXELS_KEY] = pixels if pixels is not None else torch.zeros(self.shape)
        item["teacher_mask"] = bool(item.get("teacher_mask", True)) and pixels is not None
        return item


def _image_size(preprocess) -> tuple[int, int]:
    """(S, S) of open_clip's preprocessing (its centre crop)."""
    for t in getattr(preprocess, "transforms", []):
        size = getattr(t, "size", None)
        if type(t).__name__ == "CenterCrop" and size is not None:
            return tuple(size) if isinstance(size, (tuple, list)) else (size, size)
    raise ValueError("the CLIP preprocessing has no centre crop to read the image size from")
