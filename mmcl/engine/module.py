"""The module a training run optimises: the skeleton model plus its training-time co-learning heads."""

from __future__ import annotations

import torch
from torch import nn

from mmcl.brl.losses import mixed_cross_entropy


class TrainModule(nn.Module):
    """Backbone + optional co-learner, in one module so DDP sees every trained parameter.

    ``forward(batch)`` returns ``{"logits", "losses": {name: weighted loss}, "loss": their sum}``; the backbone runs
    once and the co-learner reads its features. :meth:`deployable` is the skeleton-only model that is checkpointed
    and evaluated. A mixed batch (BRL's mixup: ``label_b`` and ``weight_a`` beside ``label``) or ``class_weights``
    (set per epoch by BRL's schedule) make the classification loss :func:`mmcl.brl.losses.mixed_cross_entropy`.
    """

    def __init__(self, backbone: nn.Module, colearner: nn.Module | None = None, label_smoothing: float = 0.0):
        super().__init__()
        self.backbone = backbone
        self.colearner = colearner
        self.label_smoothing = label_smoothing
        self.criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        self.class_weights: torch.Tensor | None = None

    def forward(self, batch: dict) -> dict:
        out = self.backbone.forward_features(batch["skeleton"])
        if "label_b" in batch or self.class_weights is not None:
            cls = mixed_cross_entropy(out["logits"], batch["label"], batch.get("label_b"), batch.get("weight_a"),
                                      self.class_weights, self.label_smoothing)
        else:
            cls = self.criterion(out["logits"], batch["label"])
        losses = {"cls": cls}
        if self.colearner is not None:
            losses.update(self.colearner(out, batch))
        return {"logits": out["logits"], "losses": losses, "loss": torch.stack(list(losses.values())).sum()}

    def deployable(self) -> nn.Module:
        """The model that runs at inference: skeletons in, logits out, no teacher input."""
        if self.colearner is not None and hasattr(self.colearner, "deployable"):
            return self.colearner.deployable(self.backbone)
        return self.backbone
