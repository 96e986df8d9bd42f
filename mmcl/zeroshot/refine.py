"""Zero-shot "w/ refine": the source run's FRM applied at test time with the target clips' teacher text.

As in the published "w/ refine" rows, the frozen model's scores S_M of a target clip are refined by the FRM trained
with the source model: p = softmax(MLP(pool(text))) from the clip's answer embeddings, then
S_R = (p_0 M_pos + p_1 M_neg) ⊙ S_M (:func:`mmcl.colearn.frm.refine_logits`). Only FRM's ``refine`` mode has this
path; a run trained with ``colearn.frm.mode=soft_label`` has nothing to refine with.
"""

from __future__ import annotations

import numpy as np
import torch

from mmcl.colearn.frm import FRM
from mmcl.zeroshot.heads import RunHeads


def load_frm(heads: RunHeads, num_classes: int) -> FRM:
    """The run's FRM with its trained weights, in eval mode; ``num_classes``: the checkpoint's."""
    cfg = heads.config.colearn.frm
    state = heads.head("frm", "refinement")
    if cfg.mode != "refine":
        raise ValueError(f"refinement needs FRM trained in 'refine' mode; the run of {heads.path} used "
                         f"colearn.frm.mode={cfg.mode!r}")
    text_dim = state["mlp.0.weight"].shape[1]
    if state["m_pos"].shape[0] != num_classes:
        raise ValueError(f"{heads.path}: FRM refines {state['m_pos'].shape[0]} classes, the checkpoint has "
                         f"{num_classes}")
    frm = FRM(cfg, text_dim, num_classes)
    frm.load_state_dict(state, strict=True)
    return frm.eval()


@torch.no_grad()
def refined_scores(frm: FRM, logits: np.ndarray, text: np.ndarray) -> np.ndarray:
    """S_R (N, C) for the frozen model's logits (N, C) and the clips' answer embeddings (N, P, D_t)."""
    expected = frm.mlp[0].in_features
    if text.ndim != 3 or text.shape[2] != expected or len(text) != len(logits):
        raise ValueError(f"FRM takes text features (N={len(logits)}, P, {expected}), got shape {text.shape}")
    return frm.refined(torch.from_numpy(logits), torch.from_numpy(text)).numpy()
