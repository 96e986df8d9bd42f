"""M-Mixer as a training-time co-learning head (``colearn.mmixer``).

The model (MCUs, CFEM, the fused classifier, the hallucinator) and its design choices are in
:mod:`mmcl.models.ctrgcn_mmixer`, whose registered ``ctrgcn_mmixer`` is the deployed model; the training (real visual
tokens from the teacher cache, modality dropout, distillation) is shared with the deformable variant:
:mod:`mmcl.colearn.crossmodal`. Patch tokens are not used: the MCU is a sequence model over frames.
"""

from __future__ import annotations

from mmcl.colearn.config import MMixerConfig
from mmcl.colearn.crossmodal import CrossModalHead, VisualTokens, path_config
from mmcl.models.crossmodal_config import MMixerPathConfig
from mmcl.models.ctrgcn_mmixer import MMixerPath

KEY = "colearn.mmixer"


class MMixerHead(CrossModalHead):
    """The M-Mixer head for a backbone of ``feature_dim`` channels and cached visual features (k, D) =
    (``visual_frames``, ``visual_dim``)."""

    prefix, registry_name, path_class = "mmixer", "ctrgcn_mmixer", MMixerPathConfig

    def __init__(self, cfg: MMixerConfig, num_classes: int, feature_dim: int, visual_frames: int, visual_dim: int):
        cfg.validate(KEY)
        path = MMixerPath(path_config(cfg, MMixerPathConfig), num_classes, feature_dim, visual_frames)
        super().__init__(cfg, path, VisualTokens(visual_dim, cfg.dim, visual_frames),
                         {"num_classes": num_classes, "feature_dim": feature_dim, "visual_frames": visual_frames,
                          "visual_dim": visual_dim})
