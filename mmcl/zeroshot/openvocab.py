"""Open-vocabulary zero-shot (beyond the paper): every target class scored by text similarity.

The source run's open-vocabulary head (:mod:`mmcl.colearn.openvocab`) projects the global skeleton feature g into the
teacher's text space; a target clip's score for a target class is the cosine similarity between its projected
feature and the text embedding of that class's name or description, made by the same text encoder
(:mod:`mmcl.zeroshot.teacher` checks it). No label mapping is involved: every clip and every target class count.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from mmcl.colearn.heads import load_head
from mmcl.colearn.openvocab import OpenVocabHead, open_vocab_scores
from mmcl.errors import CheckpointError


def load_projection(heads_file: str | os.PathLike, feature_dim: int, text_dim: int) -> OpenVocabHead:
    """The run's open-vocabulary head with its trained projection, checked to take ``feature_dim``-d features (the
    checkpoint's) into a ``text_dim``-d text space (the target class texts')."""
    head = load_head(heads_file, "openvocab")
    if head.dims["feature_dim"] != feature_dim:
        raise CheckpointError(f"{heads_file}: the projection takes {head.dims['feature_dim']}-d features, the "
                              f"checkpoint gives {feature_dim}")
    if head.dims["text_dim"] != text_dim:
        raise CheckpointError(f"{heads_file}: the projection maps into a {head.dims['text_dim']}-d text space; the "
                              f"target class texts are {text_dim}-d")
    return head


@torch.no_grad()
def openvocab_scores(head: OpenVocabHead, features: np.ndarray, class_text: np.ndarray) -> np.ndarray:
    """Cosine similarities (N, C) between the projected features (N, D) and the class texts (C, D_t)."""
    return open_vocab_scores(head.project(torch.from_numpy(features)), torch.from_numpy(class_text)).numpy()
