"""BRL in a training loop: the per-epoch class weights and the per-batch mixup of a run, for any backbone.

The trainer builds one :class:`BRLStep` from the run's ``brl`` config, its training split's class counts and its
layout; each epoch it asks :meth:`BRLStep.class_weights` for the loss weights (None: plain cross-entropy) and
:meth:`BRLStep.generator` for the mixup's random draws (seeded by run seed and epoch, so a resumed run mixes as the
uninterrupted one), and passes every training batch through :meth:`BRLStep.mix`. The loss of a mixed or weighted batch
is :func:`mmcl.brl.losses.mixed_cross_entropy` (:class:`mmcl.engine.module.TrainModule` applies it).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from mmcl.brl.config import BRLConfig
from mmcl.brl.losses import loss_class_weights
from mmcl.brl.mixup import body_halves, partial_mixup
from mmcl.data.layouts import get_layout


class BRLStep:
    """BRL's switches applied to one run: ``counts`` are its training samples per class, ``layout`` its clips'."""

    def __init__(self, cfg: BRLConfig, counts: Sequence[int] | np.ndarray, layout: str, seed: int):
        self.cfg = cfg
        self.counts = np.asarray(counts, dtype=np.int64)
        self.lower = body_halves(get_layout(layout))[1] if cfg.mixup.enabled else ()
        self.seed = seed

    def class_weights(self, epoch: int) -> torch.Tensor | None:
        """The loss's class weights in the 0-based ``epoch`` (None: plain cross-entropy)."""
        w = loss_class_weights(self.cfg, self.counts, epoch)
        return None if w is None else torch.as_tensor(w, dtype=torch.float32)

    def generator(self, epoch: int, process: int = 0) -> torch.Generator:
        """The mixup's random draws of ``epoch`` in the data-parallel process ``process``."""
        return torch.Generator().manual_seed(self.seed * 1_000_003 + 7919 * (epoch + 1) + 104_729 * process)

    def mix(self, batch: dict, generator: torch.Generator) -> dict:
        """The batch with its skeletons mixed and the second label and label share added (``label_b``,
        ``weight_a``); unchanged when the mixup is off."""
        if not self.cfg.mixup.enabled:
            return batch
        m = self.cfg.mixup
        mixed = partial_mixup(batch["skeleton"], batch["label"], self.counts, self.lower, ratio=m.ratio,
                              kappa=m.kappa, partner=m.partner, generator=generator)
        return {**batch, "skeleton": mixed.x, "label_b": mixed.labels_b, "weight_a": mixed.weight_a}
