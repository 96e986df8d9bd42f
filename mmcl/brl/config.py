"""BRL's switches in a training configuration (``brl.*``); every part is off by default."""

from __future__ import annotations

from dataclasses import dataclass, field

PARTNERS = ("balanced", "uniform")  # how a mixed sample's partner is drawn (MixupConfig.partner)


@dataclass
class MixupConfig:
    """Rebalanced partial mixup (:func:`mmcl.brl.mixup.partial_mixup`), a step on every training batch.

    ``ratio``: fraction of each batch that is mixed (BRL: 1/16); ``kappa``: when one class of a pair has more than
    ``kappa`` times the training samples of the other, the whole label goes to the rarer one (BRL: 3); ``partner``:
    ``balanced`` draws the partner of a mixed sample with probability inversely proportional to its class's training
    count (tail classes more often), ``uniform`` as BRL's release does.
    """

    enabled: bool = False
    ratio: float = 0.0625
    kappa: float = 3.0
    partner: str = "balanced"


@dataclass
class DRWConfig:
    """Deferred re-weighting: plain cross-entropy before ``start_epoch`` (1-based), class weights from it on (BRL's
    release: epoch 20 of 24). The weights are the action-aware ones when ``brl.action_aware`` is on, otherwise
    class-balanced ones with ``beta`` (Cui et al.; 0.999 in BRL's released configs)."""

    enabled: bool = False
    start_epoch: int = 20
    beta: float = 0.999


@dataclass
class ActionAwareConfig:
    """Action-aware loss (:func:`mmcl.brl.losses.action_aware_weights`): per-class beta_y from ``upsilon`` (the rarest
    class) to ``upsilon + lam`` (the most frequent); from the first epoch, or from ``brl.drw.start_epoch`` when
    ``brl.drw`` is on (BRL's detached action-aware learning)."""

    enabled: bool = False
    upsilon: float = 0.99
    lam: float = 0.0099


@dataclass
class BRLConfig:
    mixup: MixupConfig = field(default_factory=MixupConfig)
    drw: DRWConfig = field(default_factory=DRWConfig)
    action_aware: ActionAwareConfig = field(default_factory=ActionAwareConfig)

    @property
    def enabled(self) -> bool:
        return self.mixup.enabled or self.drw.enabled or self.action_aware.enabled

    def validate(self, prefix: str = "brl") -> None:
        from mmcl.config import check

        m, d, a = self.mixup, self.drw, self.action_aware
        check(0 <= m.ratio <= 1, f"{prefix}.mixup.ratio", m.ratio, "a fraction of the batch in [0, 1]")
        check(m.kappa >= 1, f"{prefix}.mixup.kappa", m.kappa, "at least 1")
        check(m.partner in PARTNERS, f"{prefix}.mixup.partner", m.partner, " or ".join(PARTNERS))
        check(d.start_epoch >= 1, f"{prefix}.drw.start_epoch", d.start_epoch, "a 1-based epoch")
        check(0 <= d.beta < 1, f"{prefix}.drw.beta", d.beta, "in [0, 1)")
        check(a.upsilon >= 0 and a.lam >= 0 and a.upsilon + a.lam < 1, f"{prefix}.action_aware.lam", a.lam,
              f"upsilon, lam >= 0 and upsilon + lam < 1 (upsilon = {a.upsilon})")
