"""CTR-GCN with M-Mixer's skeleton-only path: the deployed model of the ``colearn.mmixer`` co-learning head.

Modality Mixer (Lee et al., "Modality Mixer for Multi-modal Action Recognition", WACV 2023, arXiv 2208.11314; extended
with CFEM in arXiv 2311.12344) encodes each modality's feature sequence with a recurrent Multi-modal
Contextualization Unit (MCU) that mixes in an action-content vector of the other modality at every step. No official
code exists and the gate equations were not published in reachable form; the choices made here (fields of
:class:`~mmcl.models.crossmodal_config.MMixerPathConfig` in brackets):

- Sequences: the GCN's per-frame summary (N, T', C) -> Linear(C, dim); the visual tokens (N, k, dim) (projected
  cached frame features while training, hallucinated ones when deployed); both plus the shared normalised-time
  embedding [dim, time_frequencies]. Patch tokens are not used: the MCU is a sequence model over frames.
- Action content of the other modality: CFEM [cfem, cfem_queries, heads], q learnable queries of one modality attend
  (multi-head, over the layer-normalised other sequence) and their outputs, concatenated, go through
  Linear(q * dim, dim); without CFEM, Linear of the other sequence's time-mean (the WACV version's pooled content).
- MCU (:class:`MCU`): a mixing gate m_t = sigmoid(W_m [x_t; c]) decides per channel how much of the frame x_t and of
  the content W_c c enters the step, u_t = m_t * x_t + (1 - m_t) * W_c c; a GRU runs over u_t, h_0 = 0. The gate
  sees the input and the content, not h_{t-1}, so the mixing is computed for all steps at once and the recurrence is
  torch's fused GRU.
- Fused classifier: dropout [dropout], Linear(2 dim, classes) on [h_T(skeleton); h_k(visual)], the final states.
- Not implemented: the extended paper's multi-modal feature bank (a memory across videos).

The hallucinator, the deployed logits and the wrapper are shared with the deformable variant
(:mod:`mmcl.models.crossmodal`); training (real visual tokens, modality dropout, distillation) is
:mod:`mmcl.colearn.mmixer`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mmcl.models.crossmodal import (FourierEmbedding, Hallucinator, SkeletonOnlyModel, SkeletonPath,
                                    skeleton_features, token_centres)
from mmcl.models.crossmodal_config import MMixerPathConfig
from mmcl.models.ctrgcn import ctrgcn
from mmcl.models.registry import register_model


class MCU(nn.Module):
    """Multi-modal Contextualization Unit: a GRU over one sequence (N, L, dim) whose input mixes, through a learned
    gate, each step with the other modality's content vector (N, dim); returns the final state (N, dim)."""

    def __init__(self, dim: int):
        super().__init__()
        self.gate = nn.Linear(2 * dim, dim)
        self.content = nn.Linear(dim, dim)
        self.gru = nn.GRU(dim, dim, batch_first=True)

    def forward(self, sequence: Tensor, content: Tensor) -> Tensor:
        c = content.unsqueeze(1).expand_as(sequence)
        m = torch.sigmoid(self.gate(torch.cat([sequence, c], dim=-1)))
        mixed = m * sequence + (1 - m) * self.content(content).unsqueeze(1)
        _, h = self.gru(mixed)
        return h[-1]


class CFEM(nn.Module):
    """Complementary feature extraction: learnable queries attend over the other modality's sequence (N, L, dim)
    -> content vector (N, dim)."""

    def __init__(self, dim: int, queries: int, heads: int):
        super().__init__()
        self.queries = nn.Parameter(torch.randn(queries, dim) * 0.02)
        self.norm = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.out = nn.Linear(queries * dim, dim)

    def forward(self, other: Tensor) -> Tensor:
        kv = self.norm(other)
        found, _ = self.attn(self.queries.expand(other.shape[0], -1, -1), kv, kv, need_weights=False)
        return self.out(found.flatten(1))


class MeanContent(nn.Module):
    """The other modality's time-mean through a linear layer: (N, L, dim) -> (N, dim)."""

    def __init__(self, dim: int):
        super().__init__()
        self.proj = nn.Linear(dim, dim)

    def forward(self, other: Tensor) -> Tensor:
        return self.proj(other.mean(1))


def _content(cfg: MMixerPathConfig) -> nn.Module:
    return CFEM(cfg.dim, cfg.cfem_queries, cfg.heads) if cfg.cfem else MeanContent(cfg.dim)


class MMixerPath(SkeletonPath):
    """Hallucinator + M-Mixer's fused classifier: the deployable part of the co-learning head."""

    def __init__(self, cfg: MMixerPathConfig, num_classes: int, feature_dim: int, visual_frames: int):
        super().__init__()
        cfg.validate("head")
        d = cfg.dim
        self.deploy_logits = cfg.deploy_logits
        self.time = FourierEmbedding(1, d, cfg.time_frequencies)
        self.skeleton_proj = nn.Linear(feature_dim, d)
        self.hallucinator = Hallucinator(feature_dim, d, visual_frames, 1, cfg.hallucinator_hidden,
                                         cfg.time_frequencies)
        self.visual_content = _content(cfg)  # what the skeleton MCU mixes in
        self.skeleton_content = _content(cfg)  # what the visual MCU mixes in
        self.skeleton_mcu = MCU(d)
        self.visual_mcu = MCU(d)
        self.drop = nn.Dropout(cfg.dropout)
        self.fc = nn.Linear(2 * d, num_classes)

    def encode(self, out: dict) -> dict[str, Tensor]:
        _, frames, global_feature = skeleton_features(out)
        sequence = self.skeleton_proj(frames) + self.time(token_centres(frames.shape[1], frames.device)[:, None])
        return {"frames": frames, "global": global_feature, "sequence": sequence,
                "content": self.skeleton_content(sequence)}

    def classify(self, skeleton: dict[str, Tensor], visual: Tensor) -> Tensor:
        visual = visual.flatten(1, 3)  # (N, k, 1, 1, dim) -> (N, k, dim)
        visual = visual + self.time(token_centres(visual.shape[1], visual.device)[:, None])
        h_skeleton = self.skeleton_mcu(skeleton["sequence"], self.visual_content(visual))
        h_visual = self.visual_mcu(visual, skeleton["content"])
        return self.fc(self.drop(torch.cat([h_skeleton, h_visual], dim=1)))


@register_model
def ctrgcn_mmixer(num_classes: int, layout: str = "ntu25", in_channels: int = 3, num_person: int = 2,
                  visual_frames: int = 5, head: dict | None = None, **backbone_args) -> SkeletonOnlyModel:
    """CTR-GCN with M-Mixer's skeleton-only path, the deployed model of ``colearn.mmixer``.

    ``head``: the fields of :class:`MMixerPathConfig`; ``visual_frames``: the number of hallucinated visual tokens
    (the teacher's k); ``backbone_args``: CTR-GCN's (``drop_rate``).
    """
    backbone = ctrgcn(num_classes=num_classes, layout=layout, in_channels=in_channels, num_person=num_person,
                      **backbone_args)
    path = MMixerPath(MMixerPathConfig(**(head or {})), num_classes, backbone.feature_dim, visual_frames)
    return SkeletonOnlyModel(backbone, path)
