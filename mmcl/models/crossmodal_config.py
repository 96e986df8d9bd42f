"""Architecture of the cross-modal variants' skeleton-only paths (:mod:`mmcl.models.ctrgcn_mmixer`,
:mod:`mmcl.models.ctrgcn_deformable`): plain dataclasses, importable without torch.

A deployed model stores these fields as its registry argument ``head`` (a dict); the co-learning config of a variant
(``colearn.mmixer`` / ``colearn.deformable``, :mod:`mmcl.colearn.config`) extends them with the fields that only shape
training. :meth:`validate` fails on bad values naming the key, ``<key>.<field>``.
"""

from __future__ import annotations

from dataclasses import dataclass


def check_choice(value: str, options: tuple[str, ...], key: str) -> None:
    """``value`` must be one of ``options``; ``key`` names the config key in the error."""
    if value not in options:
        raise ValueError(f"{key} must be one of {', '.join(map(repr, options))}, got {value!r}")


@dataclass
class CrossModalPathConfig:
    """What both variants' skeleton-only paths share: the hallucinator, the time embedding, the deployed logits."""

    time_frequencies: int = 8  # Fourier frequencies of the normalised-time embedding shared by both modalities
    hallucinator_hidden: int = 256  # hidden width of the hallucinator MLP (skeleton features -> visual tokens)
    deploy_logits: str = "mean"  # deployed logits: mean of the path's and the GCN classifier's | path: the path's alone

    def validate(self, key: str) -> None:
        """Fail on invalid values; ``key`` is the config section (e.g. ``colearn.mmixer``)."""
        check_choice(self.deploy_logits, ("mean", "path"), f"{key}.deploy_logits")
        if self.time_frequencies < 1:
            raise ValueError(f"{key}.time_frequencies must be >= 1, got {self.time_frequencies}")


@dataclass
class MMixerPathConfig(CrossModalPathConfig):
    """M-Mixer (Lee et al., arXiv 2208.11314, extended 2311.12344): MCUs over both sequences, CFEM, fused classifier."""

    dim: int = 128  # width of the projected sequences and of both MCUs' recurrent state
    cfem: bool = True  # CFEM queries extract the other modality's content | false: its time-mean (the WACV M-Mixer)
    cfem_queries: int = 4  # learnable queries per modality
    heads: int = 4  # attention heads of CFEM
    dropout: float = 0.1  # before the fused classifier

    def validate(self, key: str) -> None:
        super().validate(key)
        if self.dim % self.heads:
            raise ValueError(f"{key}.dim ({self.dim}) must be a multiple of {key}.heads ({self.heads})")
        if self.cfem_queries < 1:
            raise ValueError(f"{key}.cfem_queries must be >= 1, got {self.cfem_queries}")


@dataclass
class DeformablePathConfig(CrossModalPathConfig):
    """3D deformable cross-modal transformer (Kim et al., arXiv 2212.05638) over visual and per-joint pose tokens."""

    dim: int = 64  # token width
    depth: int = 2  # L, the number of blocks
    heads: int = 4
    mlp_ratio: float = 2.0
    ref_time: int = 0  # reference points along time; 0: one per visual frame
    ref_space: int = 0  # reference points per spatial side; 0: one per patch-grid cell (1 without patch tokens)
    offset_range: float = 0.5  # largest offset, in normalised clip units (1.0 = the whole clip / frame side)
    joint_scope: str = "frame"  # joint-stride attention: frame (the group's joints in the same frame) | clip (any frame)
    temporal_stride: int = 2  # s: temporal-stride attention among frames t = k (mod s)
    temporal_scope: str = "joint"  # temporal-stride attention: joint (the same joint) | frame (every joint)
    readout: str = "concat"  # classify from both cross-modal tokens concatenated | mean: their mean
    patch_grid: int = 0  # side of the square grid of visual patch tokens (P = patch_grid ** 2); 0: frame tokens

    def validate(self, key: str) -> None:
        super().validate(key)
        check_choice(self.joint_scope, ("frame", "clip"), f"{key}.joint_scope")
        check_choice(self.temporal_scope, ("joint", "frame"), f"{key}.temporal_scope")
        check_choice(self.readout, ("concat", "mean"), f"{key}.readout")
        if self.dim % self.heads:
            raise ValueError(f"{key}.dim ({self.dim}) must be a multiple of {key}.heads ({self.heads})")
        for name in ("depth", "temporal_stride"):
            if getattr(self, name) < 1:
                raise ValueError(f"{key}.{name} must be >= 1, got {getattr(self, name)}")
        if min(self.ref_time, self.ref_space, self.patch_grid) < 0 or self.offset_range < 0:
            raise ValueError(f"{key}.ref_time, ref_space, patch_grid and offset_range must be >= 0")
        if self.ref_space > 1 and self.patch_grid < 2:
            raise ValueError(f"{key}.ref_space is {self.ref_space} but there is no spatial token grid "
                             f"({key}.patch_grid is {self.patch_grid}): spatial search needs patch tokens")
