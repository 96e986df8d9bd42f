"""Configuration of the training-time co-learning modules (the ``colearn`` section of a training config).

Torch-free. The heads configured below exist only while training; the cross-modal variants' sections also hold the
architecture of the skeleton-only path they deploy (:mod:`mmcl.models.crossmodal_config`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from mmcl.models.crossmodal_config import DeformablePathConfig, MMixerPathConfig


@dataclass
class TeacherSourceConfig:
    """Where the cached teacher features come from."""

    config: str = ""  # teacher config: a name under configs/teachers/ (tiny) or a YAML path; the cache dir derives from it
    cache: str = ""  # or an explicit cache directory (wins over `config`)
    missing: str = "error"  # error: fail listing samples without features | skip: train them without teacher losses
    # Before training, a linear probe of the cached features the heads read (training split -> validation split; the
    # test split is never read, teachers.probe.chance_check) must score above chance (one-sided binomial test at
    # check_alpha): ignore | warn (print a warning and train) | refuse (stop with an error)
    check: str = "warn"
    check_alpha: float = 0.01
    videos: str = ""  # the videos directory (colearn.fam.source online); empty: the synthetic set's own videos


@dataclass
class FAMConfig:
    """Feature Alignment Module: contrastive alignment of the skeleton feature with the RGB feature."""

    enabled: bool = False
    weight: float = 0.1
    tau: float = 0.4
    pool: str = "mean"  # mean over sampled frames | attention pooling over them
    hidden: int = 256
    visual_dim: int = 0  # expected visual feature size; 0: whatever the cache holds
    # cache: the teacher cache's frame embeddings | online: the CLIP image tower of colearn.teacher.config run on the
    # decoded, person-cropped frames at every step (mmcl.colearn.online), frozen or with LoRA adapters it trains
    source: str = "cache"
    tower: str = "frozen"  # online: frozen | lora
    lora_rank: int = 8
    lora_alpha: int = 16
    lora_targets: list[str] = field(default_factory=list)  # empty: the teacher config's tune.visual.lora.target_modules


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
class CrossModalTrainingConfig:
    """How a cross-modal variant (M-Mixer, 3D deformable) is trained; its architecture fields come from the deployed
    model's path config (:mod:`mmcl.models.crossmodal_config`).

    Each variant is a fused skeleton+visual classifier that runs beside the GCN while training. Its skeleton-only path
    feeds it visual tokens *hallucinated* from the skeleton features instead of the cached ones; that path (backbone,
    hallucinator, fused classifier) is the deployed model and reads no video. Per step the head runs twice: once on the
    real visual tokens (the fused pass; a row without teacher features, or one hit by ``modality_dropout``, gets the
    hallucinated tokens instead, never zeros) and once on hallucinated tokens for every row (the skeleton pass).
    """

    enabled: bool = False
    weight: float = 1.0  # scales every loss of the head (fused CE, skeleton CE, hallucination, distillation)
    modality_dropout: float = 0.25  # fused pass: chance that a sample's real visual tokens are swapped for hallucinated
    hallucination_weight: float = 1.0  # MSE of hallucinated vs projected real visual tokens (target detached)
    distill_weight: float = 1.0  # KL from the fused pass (teacher, detached) to the deployed logits
    distill_temperature: float = 2.0
    visual_dim: int = 0  # expected visual feature size; 0: whatever the cache holds

    def validate_training(self, key: str) -> None:
        """Fail on invalid training values; ``key`` is the config section (e.g. ``colearn.mmixer``)."""
        if not 0.0 <= self.modality_dropout < 1.0:
            raise ValueError(f"{key}.modality_dropout must be in [0, 1), got {self.modality_dropout}")
        if self.distill_temperature <= 0:
            raise ValueError(f"{key}.distill_temperature must be > 0, got {self.distill_temperature}")


@dataclass
class MMixerConfig(MMixerPathConfig, CrossModalTrainingConfig):
    """M-Mixer as a co-learning head: the training fields plus :class:`MMixerPathConfig` (the deployed path)."""

    # at the cross-modal heads' 1.0 the head diverged at CTR-GCN's learning rate on the synthetic set (train loss 36
    # by epoch 5, test top-1 18%, seed 1), even with the gradient norm clipped at 10; at 0.1 it trains (80.4%)
    weight: float = 0.1

    def validate(self, key: str) -> None:
        super().validate(key)
        self.validate_training(key)


@dataclass
class DeformableConfig(DeformablePathConfig, CrossModalTrainingConfig):
    """The 3D deformable transformer as a co-learning head: the training fields plus :class:`DeformablePathConfig`."""

    patch_dim: int = 0  # 0: frame features only; > 0: batches carry visual_patches (N, k, P, patch_dim)

    def validate(self, key: str) -> None:
        super().validate(key)
        self.validate_training(key)
        if self.patch_dim < 0:
            raise ValueError(f"{key}.patch_dim must be >= 0, got {self.patch_dim}")
        if bool(self.patch_dim) != bool(self.patch_grid):
            raise ValueError(f"{key}.patch_dim ({self.patch_dim}) and {key}.patch_grid ({self.patch_grid}) go "
                             f"together: set both for patch tokens, or neither")


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
