"""Joining a training split with its cached teacher features, by sample name."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from mmcl.data.dataset import SkeletonDataset


class TeacherFeatures(Dataset):
    """Items of ``base`` plus ``visual`` (k, D), ``text`` (P, D_t) and ``teacher_mask`` (bool) from a teacher cache.

    A training sample without a cache entry fails, listing such samples (``missing="error"``), or is trained without
    the teacher losses (``missing="skip"``: zero features, ``teacher_mask`` False; :attr:`missing` lists them).
    """

    def __init__(self, base: SkeletonDataset, cache, missing: str = "error"):
        if missing not in ("error", "skip"):
            raise ValueError(f"colearn.teacher.missing must be 'error' or 'skip', got {missing!r}")
        self.base = base
        self.cache = cache
        names = [base.data.names[i] for i in base.indices]
        self.missing = [n for n in names if n not in cache]
        if self.missing and missing == "error":
            failures = cache.failures
            listed = "; ".join(f"{n} ({failures[n]})" if n in failures else n for n in self.missing[:10])
            more = f" and {len(self.missing) - 10} more" if len(self.missing) > 10 else ""
            raise KeyError(f"{len(self.missing)} of {len(names)} {base.split} samples have no features in the teacher "
                           f"cache {cache.path}: {listed}{more}. Run `mmcl precompute` for them, or set "
                           f"colearn.teacher.missing=skip to train them without the teacher losses")
        m = cache.manifest
        self.visual_shape = (int(m["num_frames"]), int(m["visual_dim"]))
        self.text_shape = (int(m["num_prompts"]), int(m["text_dim"]))

    def set_epoch(self, epoch: int) -> None:
        self.base.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict:
        item = self.base[i]
        name = item["name"]
        if name in self.cache:
            feats = self.cache[name]
            item["visual"] = torch.from_numpy(feats["visual"].astype("float32", copy=True))
            item["text"] = torch.from_numpy(feats["text"].astype("float32", copy=True))
            item["teacher_mask"] = True
        else:
            item["visual"] = torch.zeros(self.visual_shape)
            item["text"] = torch.zeros(self.text_shape)
            item["teacher_mask"] = False
        return item
