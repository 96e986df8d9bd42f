"""Configuration of the training-time co-learning modules (the ``colearn`` section of a training config).

Nothing here reaches the deployed model: every module configured below exists only while training.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields


@dataclass
class TeacherSourceConfig:
    """Where the cached teacher features come from."""

    config: str = ""  # teacher config: a name under configs/teachers/ (tiny) or a YAML path; the cache dir derives from it
    cache: str = ""  # or an explicit cache directory (wins over `config`)
    missing: str = "error"  # error: fail listing samples without features | skip: train them without teacher losses


@dataclass
class FAMConfig:
    """Feature Alignment Module: contrastive alignment of the skeleton feature with the RGB feature."""

    enabled: bool = False
    weight: float = 0.1
    tau: float = 0.4
    pool: str = "mean"  # mean over sampled frames | attention pooling over them
    hidden: int = 256
    visual_dim: int = 0  # expected visual feature size; 0: whatever the cache holds


@dataclass
class FRMConfig:
    """Feature Refinement Module: LLM instructive-text features refine the logits."""

    enabled: bool = False
    weight: float = 0.2
    mode: str = "refine"  # refine: CE(S_R, y) as released | soft_label: KL to answer/class-description similarities
    hidden: int = 64
    pool: str = "mean"  # how several prompts' vectors are combined: mean | attention
    temperature: float = 2.0  # soft_label mode: temperature of the KL term and of the similarity target
    text_dim: int = 0  # expected text feature size; 0: whatever the cache holds


@dataclass
class OpenVocabConfig:
    """A projection of the skeleton feature into the teacher's text space, for open-vocabulary zero-shot.

    Trained against the class-text embeddings (cross-entropy over cosine similarities at temperature ``tau``) and,
    with ``answer_weight``, pulled towards the mean embedding of the sample's own LLM answers.
    """

    enabled: bool = False
    weight: float = 0.1
    tau: float = 0.07
    hidden: int = 512
    target: str = "description"  # class text trained against: description | name
    answer_weight: float = 0.5


@dataclass
class CrossModalConfig:
    """What the two cross-modal variants (M-Mixer, 3D deformable) share: their skeleton-only path and its training.

    Each variant is a fused skeleton+visual classifier that runs beside the GCN while training. Its skeleton-only path
    feeds it visual tokens *hallucinated* from the skeleton features instead of the cached ones; that path (backbone,
    hallucinator, fused classifier) is the deployed model and reads no video. Per step the head runs twice: once on the
    real visual tokens (the fused pass; a row without teacher features, or one hit by ``modality_dropout``, gets the
    hallucinated tokens instead, never zeros) and once on hallucinated tokens for every row (the skeleton pass).
    """

    enabled: bool = False
    weight: float = 1.0  # scales every loss of the head (fused CE, skeleton CE, hallucination, distillation)
    time_frequencies: int = 8  # Fourier frequencies of the normalised-time embedding shared by both modalities
    hallucinator_hidden: int = 256  # hidden width of the hallucinator MLP (skeleton features -> visual tokens)
    modality_dropout: float = 0.25  # fused pass: chance that a sample's real visual tokens are swapped for hallucinated
    hallucination_weight: float = 1.0  # MSE of hallucinated vs projected real visual tokens (target detached)
    distill_weight: float = 1.0  # KL from the fused pass (teacher, detached) to the deployed logits
    distill_temperature: float = 2.0
    deploy_logits: str = "mean"  # deployed logits: mean of the path's and the GCN classifier's | path: the path's alone
    visual_dim: int = 0  # expected visual feature size; 0: whatever the cache holds


@dataclass
class MMixerConfig(CrossModalConfig):
    """M-Mixer (Lee et al., arXiv 2208.11314, extended 2311.12344): MCUs over both sequences, CFEM, fused classifier."""

    dim: int = 128  # width of the projected sequences and of both MCUs' recurrent state
    cfem: bool = True  # CFEM queries extract the other modality's content | false: its time-mean (the WACV M-Mixer)
    cfem_queries: int = 4  # learnable queries per modality
    heads: int = 4  # attention heads of CFEM
    dropout: float = 0.1  # before the fused classifier


@dataclass
class DeformableConfig(CrossModalConfig):
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
    patch_dim: int = 0  # 0: frame features only; > 0: batches carry visual_patches (N, k, P, patch_dim)
    patch_grid: int = 0  # side of the square patch grid (P = patch_grid ** 2); needed with patch_dim


@dataclass
class ColearnConfig:
    teacher: TeacherSourceConfig = field(default_factory=TeacherSourceConfig)
    fam: FAMConfig = field(default_factory=FAMConfig)
    frm: FRMConfig = field(default_factory=FRMConfig)
    openvocab: OpenVocabConfig = field(default_factory=OpenVocabConfig)
    mmixer: MMixerConfig = field(default_factory=MMixerConfig)
    deformable: DeformableConfig = field(default_factory=DeformableConfig)

    @property
    def enabled(self) -> bool:
        """Whether any head is switched on."""
        return any(getattr(getattr(self, f.name), "enabled", False) for f in fields(self))
