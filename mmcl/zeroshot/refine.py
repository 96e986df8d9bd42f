"""Zero-shot "w/ refine": the source run's FRM applied at test time with the target clips' teacher text.

As in the published "w/ refine" rows, the frozen model's scores S_M of a target clip are refined by the FRM trained
with the source model: p = softmax(MLP(pool(text))) from the clip's answer embeddings, then
S_R = (p_0 M_pos + p_1 M_neg) ⊙ S_M (:func:`mmcl.colearn.frm.refine_logits`). Only FRM's ``refine`` mode has this
path; a run trained with ``colearn.frm.mode=soft_label`` has nothing to refine with.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from mmcl.colearn.frm import FRM
from mmcl.colearn.heads import load_head
from mmcl.errors import CheckpointError


def load_frm(heads_file: str | os.PathLike, num_classes: int) -> FRM:
    """The run's FRM with its trained weights, in eval mode; ``num_classes``: the checkpoint's."""
    frm = load_head(heads_file, "frm")
    if frm.cfg.mode != "refine":
        raise CheckpointError(f"refinement needs FRM trained in 'refine' mode; the run of {heads_file} used "
                              f"colearn.frm.mode={frm.cfg.mode!r}")
    if frm.dims["num_classes"] != num_classes:
        raise CheckpointError(f"{heads_file}: FRM refines {frm.dims['num_classes']} classes, the checkpoint has "
                              f"{num_classes}")
    return frm


@torch.no_grad()
def refined_scores(frm: FRM, logits: np.ndarray, text: np.ndarray) -> np.ndarray:
    """S_R (N, C) for the frozen model's logits (N, C) and the clips' answer embeddings (N, P, D_t)."""
    expected = frm.dims["text_dim"]
    if text.ndim != 3 or text.shape[2] != expected or len(text) != len(logits):
        raise ValueError(f"FRM takes text features (N={len(logits)}, P, {expected}), got shape {text.shape}")
    return frm.refined(torch.from_numpy(logits), torch.from_numpy(text)).numpy()
