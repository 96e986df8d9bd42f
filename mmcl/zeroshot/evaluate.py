"""Zero-shot evaluation of a frozen source checkpoint on a target dataset: mapped, refined, open-vocabulary.

:func:`zeroshot` runs the protocol of :mod:`mmcl.zeroshot.protocol` once over the target clips and scores

- **mapped** (the published protocol): top-1 / top-5 of the argmax over all source classes, over the clips whose
  target class the label mapping sends to a source class;
- **mapped, w/ refine** (``refine=True``): the same on FRM-refined scores (:mod:`mmcl.zeroshot.refine`);
- **open-vocabulary** (``openvocab=True``): every clip against every target class by text similarity
  (:mod:`mmcl.zeroshot.openvocab`).

Everything goes to ``out``: ``metrics.json``, ``scores.npz``, ``confusion.png`` (mapped),
``confusion_refined.png``, ``openvocab_confusion.png``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from mmcl.config import from_yaml
from mmcl.engine.metrics import classification_report, plot_confusion
from mmcl.io import write_json
from mmcl.models.checkpoint import load_checkpoint
from mmcl.paths import configs_dir
from mmcl.zeroshot.heads import run_heads_file
from mmcl.zeroshot.labelmap import load_label_mapping
from mmcl.zeroshot.openvocab import load_projection, openvocab_scores
from mmcl.zeroshot.protocol import extract, mapped_metrics, selected_names, zero_shot_adapter, zero_shot_dataset
from mmcl.zeroshot.refine import load_frm, refined_scores
from mmcl.zeroshot.report import plot_mapped_confusion, save_clip_scores, summary_table
from mmcl.zeroshot.targets import get_target, open_target_data, target_action_ids
from mmcl.zeroshot.teacher import check_same_teacher, class_text, clip_text, open_target_cache


def default_mapping(dataset: str) -> Path:
    """The label mapping used for ``dataset`` when none is given (``configs/zeroshot/``)."""
    return configs_dir() / "zeroshot" / get_target(dataset).default_mapping


def zeroshot(checkpoint: str | os.PathLike, dataset: str, data: str | os.PathLike,
             mapping: str | os.PathLike | None = None, out: str | os.PathLike | None = None, split: str = "all",
             refine: bool = False, openvocab: bool = False, teacher_cache: str | os.PathLike | None = None,
             heads: str | os.PathLike | None = None, openvocab_text: str | None = None, batch_size: int = 64,
             num_workers: int = 0, device: str | None = None) -> dict:
    """Evaluate ``checkpoint`` zero-shot on ``dataset`` (``utd-mhad`` | ``sysu``); returns ``metrics.json``'s content.

    ``data``: prepared or raw target data; ``mapping``: label mapping file (default :func:`default_mapping`);
    ``out``: output directory (default ``<checkpoint dir>/zeroshot-<dataset>``); ``split``: ``all`` or one split;
    ``teacher_cache``: the target's teacher cache (refine / openvocab; default derived from the source run's teacher
    config); ``heads``: the run's heads file (default beside the checkpoint); ``openvocab_text``: ``name`` or
    ``description`` (default: what the projection was trained against).
    """
    for option, value in (("teacher cache", teacher_cache), ("heads file", heads)):
        if value is not None and not (refine or openvocab):
            raise ValueError(f"a {option} is only used with refinement or open-vocabulary scoring")
    if openvocab_text is not None and not openvocab:
        raise ValueError("the open-vocabulary class text is only used with open-vocabulary scoring")
    checkpoint = Path(checkpoint)
    target = get_target(dataset)
    out = Path(out) if out is not None else checkpoint.parent / f"zeroshot-{dataset}"
    model, info = load_checkpoint(checkpoint)
    prepared, data_note = open_target_data(target, data, out)
    adapter = zero_shot_adapter(prepared, info, checkpoint)
    mapping_path = Path(mapping) if mapping is not None else default_mapping(dataset)
    label_map = load_label_mapping(mapping_path, dataset, prepared.class_names, target_action_ids(prepared, target),
                                   info.class_names, checkpoint)
    names = selected_names(prepared, split)

    # Everything the teacher-side scores need is checked before the model runs.
    frm = text = projection = target_text = None
    if refine or openvocab:
        heads_file = run_heads_file(checkpoint, info, heads)
        run = from_yaml(info.config_yaml)
        cache = open_target_cache(teacher_cache, run, prepared)
        if refine:
            check_same_teacher(cache, run, ("text_encoder", "llm"), "refinement")
            frm = load_frm(heads_file, info.num_classes)
            text = clip_text(cache, names)
        if openvocab:
            check_same_teacher(cache, run, ("text_encoder",), "open-vocabulary scoring")
            openvocab_text = openvocab_text or run.colearn.openvocab.target
            target_text = class_text(cache, prepared.class_names, openvocab_text)
            projection = load_projection(heads_file, model.feature_dim, target_text.shape[1])

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    clips = extract(model, zero_shot_dataset(prepared, info, adapter, split), batch_size, num_workers, device)
    if clips.names != names:
        raise RuntimeError("the data loader returned the clips in another order than the dataset lists them")

    out.mkdir(parents=True, exist_ok=True)
    mask = adapter.joint_mask
    metrics: dict = {
        "checkpoint": str(checkpoint), "dataset": dataset, "data": data_note, "split": split,
        "mapping": str(mapping_path), "pairs": label_map.describe(), "num_clips": len(names),
        "protocol": {
            "target_layout": prepared.info.layout, "source_layout": info.layout, "num_person": info.num_person,
            "center": "actor 1's joint 1 of frame 0", "crop": "centre 0.95", "window": info.window,
            "stream": info.stream, "fill": "nearest joint (mmcl.data.layouts.FILL_RULES)",
            "joint_mask": mask.astype(int).tolist(),
            "filled_joints": [adapter.layout.joints[v] for v in np.flatnonzero(mask == 0)]},
    }
    scores = {"logits": clips.logits, "features": clips.features}
    plain = mapped_metrics(clips.logits, clips.labels, label_map)
    metrics["mapped"] = {**plain.to_dict(), "num_classes": len(plain.rows)}
    plot_mapped_confusion(plain, out / "confusion.png",
                          f"{dataset} zero-shot, mapped: top-1 {100 * plain.top1:.2f}% ({plain.num_clips} clips)")
    if frm is not None:
        scores["refined"] = refined_scores(frm, clips.logits, text)
        refined = mapped_metrics(scores["refined"], clips.labels, label_map)
        metrics["refined"] = {**refined.to_dict(), "num_classes": len(refined.rows)}
        plot_mapped_confusion(refined, out / "confusion_refined.png", f"{dataset} zero-shot, mapped, w/ refine: "
                              f"top-1 {100 * refined.top1:.2f}% ({refined.num_clips} clips)")
    if projection is not None:
        scores["openvocab"] = openvocab_scores(projection, clips.features, target_text)
        report = classification_report(scores["openvocab"], clips.labels, prepared.class_names)
        metrics["openvocab"] = {**report.to_dict(), "num_clips": report.num_samples,
                                "num_classes": prepared.num_classes, "text": openvocab_text}
        plot_confusion(report.confusion, prepared.class_names, out / "openvocab_confusion.png",
                       title=f"{dataset} open-vocabulary: top-1 {100 * report.top1:.2f}% ({report.num_samples} clips)")
    save_clip_scores(out / "scores.npz", clips.names, clips.labels, prepared.class_names, info.class_names,
                     label_map.source_labels()[clips.labels], scores)
    write_json(out / "metrics.json", metrics)
    print(f"zero-shot {checkpoint} on {dataset} ({data_note}, split {split}): {len(names)} clips -> {out}\n"
          f"{summary_table(metrics)}")
    return metrics
