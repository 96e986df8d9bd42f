"""The published zero-shot protocol (REFERENCE 1.1): target skeletons in, frozen source model, scores out.

Each target clip (Kinect v1, 20 joints, one person) is brought to the checkpoint's input exactly as the published
protocol does, by :class:`mmcl.data.adapt.ClipAdapter` and then the evaluation transform of the checkpoint's stream:

1. joints mapped to the checkpoint's layout by name (:func:`mmcl.data.layouts.layout_mapping`): Kinect v1's 20
   joints take NTU-25's first 20 slots, the five NTU joints Kinect v1 lacks are filled by the documented rule (a
   copy of the nearest joint, :data:`mmcl.data.layouts.FILL_RULES`). The model sees the copies like observed joints;
   the joint mask (0 for the filled ones; items carry it as ``joint_mask``) is recorded in ``metrics.json``, not
   applied: a frozen GCN has no input for it;
2. all-zero persons added up to the checkpoint's person count (NTU: an all-zero second person);
3. every frame translated so that actor 1's centre joint (index 1, SpineMid) of frame 0 is the origin;
4. the checkpoint's stream (joint / bone / motion) after a centre crop keeping 0.95 of the frames, resized to the
   checkpoint's window (64 for the published models) by linear interpolation over time.

The model's prediction ranges over all source classes; the mapped protocol scores the clips of target classes with a
source counterpart (:func:`mapped_metrics`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset
from tqdm.auto import tqdm

from mmcl.data.adapt import ClipAdapter
from mmcl.data.dataset import SkeletonDataset
from mmcl.data.prepared import SPLIT_NAMES, PreparedData
from mmcl.data.streams import skeleton_channels
from mmcl.engine.metrics import topk_accuracy
from mmcl.models.checkpoint import CheckpointInfo
from mmcl.workers import DieWithParent
from mmcl.zeroshot.labelmap import LabelMapping

SPLITS = ("all", *SPLIT_NAMES)


def zero_shot_adapter(data: PreparedData, info: CheckpointInfo, checkpoint: str | os.PathLike) -> ClipAdapter:
    """The adapter from the target's stored clips to the checkpoint's input; errors name the checkpoint."""
    if data.info.channels != skeleton_channels(info.stream, info.in_channels):
        raise ValueError(f"{data.root} stores {data.info.channels} channels per joint; {checkpoint} takes "
                         f"{skeleton_channels(info.stream, info.in_channels)}")
    try:
        return ClipAdapter(data.info.layout, info.layout, info.num_person, center=True)
    except KeyError as e:
        raise ValueError(f"{checkpoint}: the checkpoint's layout {info.layout!r} has no mapping from the target "
                         f"layout {data.info.layout!r} of {data.root}: {e.args[0]}") from None


def selected_splits(data: PreparedData, split: str) -> list[str]:
    """The splits that ``split`` selects: itself, or for ``all`` every non-empty split (train, val, test)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    return [s for s in SPLIT_NAMES if len(data.splits.get(s, ()))] if split == "all" else [split]


def selected_names(data: PreparedData, split: str) -> list[str]:
    """Names of the clips ``split`` selects, in the order :func:`zero_shot_dataset` yields them."""
    return [data.names[int(i)] for s in selected_splits(data, split) for i in data.split(s)]


def zero_shot_dataset(data: PreparedData, info: CheckpointInfo, adapter: ClipAdapter, split: str = "all") -> Dataset:
    """The target clips of ``split`` (``all``: every non-empty split) through the protocol, in the checkpoint's
    stream and window."""
    parts = [SkeletonDataset(data, s, stream=info.stream, window=info.window, train=False, adapter=adapter)
             for s in selected_splits(data, split)]
    return parts[0] if len(parts) == 1 else ConcatDataset(parts)


@dataclass
class Extracted:
    """What the frozen model gives for each target clip (rows in dataset order)."""

    indices: np.ndarray  # (N,) sample indices in the prepared dataset
    names: list[str]
    labels: np.ndarray  # (N,) target labels
    logits: np.ndarray  # (N, C_source) S_M
    features: np.ndarray  # (N, D) global skeleton features g


@torch.no_grad()
def extract(model: torch.nn.Module, dataset: Dataset, batch_size: int = 64, num_workers: int = 0,
            device: str | torch.device = "cpu") -> Extracted:
    """Run the frozen model once over ``dataset``: logits and global features of every clip."""
    if not hasattr(model, "forward_features"):
        raise ValueError(f"{type(model).__name__} has no forward_features(); zero-shot needs the global feature too")
    model = model.to(device).eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        worker_init_fn=DieWithParent() if num_workers else None)
    indices, names, labels, logits, features = [], [], [], [], []
    for batch in tqdm(loader, desc="zero-shot", unit="batch", leave=False):
        out = model.forward_features(batch["skeleton"].to(device))
        indices.append(batch["index"].numpy())
        names.extend(batch["name"])
        labels.append(batch["label"].numpy())
        logits.append(out["logits"].float().cpu().numpy())
        features.append(out["global_feature"].float().cpu().numpy())
    return Extracted(np.concatenate(indices), names, np.concatenate(labels), np.concatenate(logits),
                     np.concatenate(features))


@dataclass
class MappedResult:
    """Mapped-protocol scores: top-1 / top-5 over the clips of mapped target classes, against their source class."""

    top1: float
    top5: float
    mean_class_accuracy: float
    num_clips: int
    per_class: dict[str, dict]
    confusion: np.ndarray  # (mapped target classes with clips, source-class columns)
    rows: list[str]
    columns: list[str]

    def to_dict(self) -> dict:
        return {"top1": self.top1, "top5": self.top5, "mean_class_accuracy": self.mean_class_accuracy,
                "num_clips": self.num_clips, "per_class": self.per_class}


def mapped_metrics(scores: np.ndarray, target_labels: np.ndarray, mapping: LabelMapping,
                   max_columns: int = 24) -> MappedResult:
    """Top-1 / top-5 of ``scores`` (N, C_source) over the clips whose target class is mapped, per class too.

    The confusion matrix has one row per mapped target class with clips; its columns are the mapping's source classes,
    then the other predicted source classes, most predicted first, up to ``max_columns``, and ``other`` for the rest.
    """
    source_of = mapping.source_labels()
    keep = source_of[target_labels] >= 0
    if not keep.any():
        raise ValueError(f"no clip belongs to a class mapped by {mapping.path}")
    s, t = scores[keep], target_labels[keep]
    y = source_of[t]
    pred = s.argmax(1)
    rows = [c for c in mapping.pairs if (t == c).any()]
    mapped = list(dict.fromkeys(mapping.pairs.values()))
    predicted = np.bincount(pred, minlength=scores.shape[1])
    others = [int(c) for c in np.argsort(-predicted, kind="stable") if predicted[c] and c not in mapped]
    room = max(max_columns - len(mapped), 0)
    columns, lumped = mapped + others[:room], int(len(others) > room)
    col_of = np.full(scores.shape[1], len(columns), dtype=np.int64)  # predictions outside ``columns``: "other"
    col_of[columns] = np.arange(len(columns))
    row_of = {c: i for i, c in enumerate(rows)}
    confusion = np.zeros((len(rows), len(columns) + lumped), dtype=np.int64)
    np.add.at(confusion, (np.array([row_of[int(c)] for c in t]), col_of[pred]), 1)
    per_class = {}
    for c in rows:
        m = t == c
        counts = np.bincount(pred[m], minlength=scores.shape[1])
        per_class[mapping.target_classes[c]] = {
            "source": mapping.source_classes[source_of[c]], "source_label": int(source_of[c]), "clips": int(m.sum()),
            "top1": topk_accuracy(s[m], y[m], 1), "top5": topk_accuracy(s[m], y[m], 5),
            "most_predicted": mapping.source_classes[int(counts.argmax())]}
    return MappedResult(
        top1=topk_accuracy(s, y, 1), top5=topk_accuracy(s, y, 5),
        mean_class_accuracy=float(np.mean([v["top1"] for v in per_class.values()])), num_clips=int(keep.sum()),
        per_class=per_class, confusion=confusion,
        rows=[mapping.target_classes[c] for c in rows],
        columns=[mapping.source_classes[c] for c in columns] + ["other"] * lumped)
