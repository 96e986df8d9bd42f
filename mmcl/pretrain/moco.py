"""MoCo v2 for skeleton encoders (He et al. 2020, Chen et al. 2020), as CMD / HaLP's single-modality baseline
(anshulbshah/HaLP ``moco/builder_single_modality_baseline.py``).

The query encoder is any registered model (its ``forward_features(x)["global_feature"]``); the key encoder is its
copy, updated only as an exponential moving average of the query encoder's parameters (``momentum`` 0.999); both
end in a projection MLP (``feature_dim -> feature_dim -> dim``, ReLU; ``dim`` 128). Keys of past batches fill a
queue of ``queue_size`` negatives (16384 in the release's NTU scripts). For each query the positive is the key of
the other view of the same clip; the loss is the cross-entropy of ``[q.k, q.queue] / temperature`` (0.07) with
the positive first. Under several processes the keys of all of them enter the queue (all-gather), so every process
keeps the same queue.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmcl.distributed import all_gather

__all__ = ["MoCo", "projection_head"]


def projection_head(feature_dim: int, dim: int, mlp: bool = True) -> nn.Module:
    """The release's head: ``Linear(f, f), ReLU, Linear(f, dim)`` (``mlp``) or ``Linear(f, dim)``; the last layer's
    weights Xavier-uniform as the release initialises its ``fc``."""
    last = nn.Linear(feature_dim, dim)
    nn.init.xavier_uniform_(last.weight)
    if not mlp:
        return last
    return nn.Sequential(nn.Linear(feature_dim, feature_dim), nn.ReLU(inplace=True), last)


class MoCo(nn.Module):
    """Query encoder + projection, momentum key encoder + projection, and the queue of negatives.

    Args:
        encoder: the query encoder (a registered model; pre-training trains it, checkpoints save it).
        dim: projection output dimension.
        queue_size: number of negative keys.
        momentum: key-encoder EMA coefficient.
        temperature: softmax temperature.
        mlp: two-layer projection head (MoCo v2) instead of one linear layer.

    ``forward(query, key)`` returns ``{"loss", "losses": {"moco": ...}, "logits", "q", "k"}`` and enqueues the keys.
    The encoder's classifier (``fc``) is frozen: pre-training never uses it.
    """

    def __init__(self, encoder: nn.Module, dim: int = 128, queue_size: int = 16384, momentum: float = 0.999,
                 temperature: float = 0.07, mlp: bool = True) -> None:
        super().__init__()
        if queue_size < 1 or not 0 <= momentum <= 1 or temperature <= 0:
            raise ValueError(f"invalid MoCo settings: queue_size {queue_size}, momentum {momentum}, "
                             f"temperature {temperature}")
        if hasattr(encoder, "fc"):
            encoder.fc.requires_grad_(False)
        self.encoder_q = encoder
        self.projector_q = projection_head(encoder.feature_dim, dim, mlp)
        self.encoder_k = copy.deepcopy(encoder)
        self.projector_k = copy.deepcopy(self.projector_q)
        for param in self.key_parameters():
            param.requires_grad_(False)
        self.momentum = momentum
        self.temperature = temperature
        self.register_buffer("queue", F.normalize(torch.randn(dim, queue_size), dim=0))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    def query_parameters(self) -> list[nn.Parameter]:
        return [*self.encoder_q.parameters(), *self.projector_q.parameters()]

    def key_parameters(self) -> list[nn.Parameter]:
        return [*self.encoder_k.parameters(), *self.projector_k.parameters()]

    @property
    def queue_size(self) -> int:
        return self.queue.shape[1]

    def embed_query(self, x: Tensor) -> Tensor:
        """Unit-norm projections (N, dim), float32, of the query encoder."""
        return F.normalize(self.projector_q(self.encoder_q.forward_features(x)["global_feature"]).float(), dim=1)

    @torch.no_grad()
    def embed_key(self, x: Tensor) -> Tensor:
        """Unit-norm projections (N, dim), float32, of the key encoder."""
        return F.normalize(self.projector_k(self.encoder_k.forward_features(x)["global_feature"]).float(), dim=1)

    @torch.no_grad()
    def momentum_update(self) -> None:
        """``key <- momentum * key + (1 - momentum) * query`` for every parameter (buffers are not averaged)."""
        for pk, pq in zip(self.key_parameters(), self.query_parameters()):
            pk.mul_(self.momentum).add_(pq.detach(), alpha=1 - self.momentum)

    @torch.no_grad()
    def enqueue(self, keys: Tensor) -> None:
        """Write ``keys`` (B, dim) into the queue at its pointer (wrapping around) and advance the pointer."""
        keys = all_gather(keys)
        ptr, size = int(self.queue_ptr), self.queue_size
        if keys.shape[0] > size:
            keys = keys[-size:]
        index = (ptr + torch.arange(keys.shape[0], device=keys.device)) % size
        self.queue[:, index] = keys.t().to(self.queue.dtype)
        self.queue_ptr.fill_((ptr + keys.shape[0]) % size)

    def contrastive_logits(self, q: Tensor, k: Tensor) -> Tensor:
        """``[q.k, q.queue] / temperature`` (N, 1 + queue_size), in float32 whatever the autocast."""
        with torch.autocast(q.device.type, enabled=False):
            positive = (q * k).sum(1, keepdim=True)
            negative = q @ self.queue.detach().float().clone()  # the queue changes in place before backward
            return torch.cat([positive, negative], dim=1) / self.temperature

    def contrast(self, query: Tensor, key: Tensor) -> dict:
        """Embed both views and score them, without touching the queue: ``q``, ``k``, ``logits``, ``losses``."""
        q = self.embed_query(query)
        self.momentum_update()
        k = self.embed_key(key)
        logits = self.contrastive_logits(q, k)
        labels = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
        return {"q": q, "k": k, "logits": logits, "losses": {"moco": F.cross_entropy(logits, labels)}}

    def forward(self, query: Tensor, key: Tensor) -> dict:
        out = self.contrast(query, key)
        self.enqueue(out["k"])
        out["loss"] = torch.stack(list(out["losses"].values())).sum()
        return out

    def encoder(self) -> nn.Module:
        """The encoder that pre-training produces (the query encoder)."""
        return self.encoder_q
