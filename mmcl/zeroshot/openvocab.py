"""Open-vocabulary zero-shot (beyond the paper): every target class scored by text similarity.

The source run's open-vocabulary head (:mod:`mmcl.colearn.openvocab`) projects the global skeleton feature g into the
teacher's text space; a target clip's score for a target class is the cosine similarity between its projected
feature and the text embedding of that class's name or description, made by the same text encoder
(:mod:`mmcl.zeroshot.teacher` checks it). No label mapping is involved: every clip and every target class count.
"""

from __future__ import annotations

import numpy as np
import torch

from mmcl.colearn.openvocab import OpenVocabHead, open_vocab_scores
from mmcl.zeroshot.heads import RunHeads


def load_projection(heads: RunHeads, feature_dim: int, class_text: np.ndarray) -> OpenVocabHead:
    """The run's open-vocabulary head with its trained projection, scoring against ``class_text`` (C, D_t)."""
    state = heads.head("openvocab", "open-vocabulary scoring")
    weight_in, weight_out = state["proj.0.weight"], state["proj.2.weight"]
    if weight_in.shape[1] != feature_dim:
        raise ValueError(f"{heads.path}: the projection takes {weight_in.shape[1]}-d features, the checkpoint gives "
                         f"{feature_dim}")
    if class_text.ndim != 2 or class_text.shape[1] != weight_out.shape[0]:
        raise ValueError(f"{heads.path}: the projection maps into a {weight_out.shape[0]}-d text space; the target "
                         f"class texts have shape {class_text.shape}")
    head = OpenVocabHead(heads.config.colearn.openvocab, feature_dim, torch.from_numpy(class_text))
    head.load_state_dict(state, strict=True)
    return head.eval()


@torch.no_grad()
def openvocab_scores(head: OpenVocabHead, features: np.ndarray) -> np.ndarray:
    """Cosine similarities (N, C) between the projected features (N, D) and the head's class texts."""
    return open_vocab_scores(head.proj(torch.from_numpy(features)), head.class_text).numpy()
