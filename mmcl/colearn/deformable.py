"""The 3D deformable cross-modal transformer as a training-time co-learning head (``colearn.deformable``).

The model (token search, joint- and temporal-stride attention, the blocks, the hallucinator) and its design choices
are in :mod:`mmcl.models.ctrgcn_deformable`, whose registered ``ctrgcn_deformable`` is the deployed model; the
training (real visual tokens from the teacher cache, frame features or patch tokens [patch_dim, patch_grid], modality
dropout, distillation) is shared with M-Mixer: :mod:`mmcl.colearn.crossmodal`.
"""

from __future__ import annotations

from mmcl.colearn.config import DeformableConfig
from mmcl.colearn.crossmodal import CrossModalHead, VisualTokens, path_config
from mmcl.models.crossmodal_config import DeformablePathConfig
from mmcl.models.ctrgcn_deformable import DeformablePath

KEY = "colearn.deformable"


class DeformableHead(CrossModalHead):
    """The deformable head for a backbone of ``feature_dim`` channels on joint ``layout`` and cached visual features
    (k, D) = (``visual_frames``, ``visual_dim``)."""

    prefix, registry_name, path_class = "deformable", "ctrgcn_deformable", DeformablePathConfig

    def __init__(self, cfg: DeformableConfig, num_classes: int, feature_dim: int, visual_frames: int,
                 visual_dim: int, layout: str):
        cfg.validate(KEY)
        path = DeformablePath(path_config(cfg, DeformablePathConfig), num_classes, feature_dim, layout, visual_frames)
        visual = VisualTokens(visual_dim, cfg.dim, visual_frames, cfg.patch_dim, cfg.patch_grid)
        super().__init__(cfg, path, visual, {"num_classes": num_classes, "feature_dim": feature_dim,
                                             "visual_frames": visual_frames, "visual_dim": visual_dim,
                                             "layout": layout})
