"""The module a training run optimises: the skeleton model plus its training-time co-learning heads."""

from __future__ import annotations

import torch
from torch import nn


class TrainModule(nn.Module):
    """Backbone + optional co-learner, in one module so DDP sees every trained parameter.

    ``forward(batch)`` returns ``{"logits", "losses": {name: weighted loss}, "loss": their sum}``; the backbone runs
    once and the co-learner reads its features. :meth:`deployable` is the skeleton-only model that is checkpointed
    and evaluated.
    """

    def __init__(self, backbone: nn.Module, colearner: nn.Module | None = None, label_smoothing: float = 0.0):
        super().__init__()
        self.backbone = backbone
        self.colearner = colearner
        self.criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)

    def forward(self, batch: dict) -> dict:
        out = self.backbone.forward_features(batch["skeleton"])
        losses = {"cls": self.criterion(out["logits"], batch["label"])}
        if self.colearner is not None:
            losses.update(self.colearner(out, batch))
        return {"logits": out["logits"], "losses": losses, "loss": torch.stack(list(losses.values())).sum()}

    def deployable(self) -> nn.Module:
        """The model that runs at inference: skeletons in, logits out, no teacher input."""
        if self.colearner is not None and hasattr(self.colearner, "deployable"):
            return self.colearner.deployable(self.backbone)
        return self.backbone
