"""The BiGRU skeleton encoder of CMD and HaLP (public code anshulbshah/HaLP, ``moco/GRU.py``), output for output.

Each frame's joints of all persons are flattened into one vector (``V x C x M``: 25 x 3 x 2 = 150 on NTU), normalised
by an input BatchNorm over those features, and read by a 3-layer bidirectional GRU (1024 units per direction); the
feature is the top layer's output at the last frame (2048 values), and ``fc`` maps it to the classes.

The release does not run its ``nn.GRU(bidirectional=True)`` over the whole clip: it steps it one frame at a time,
feeding back the hidden state. A length-1 "reverse" pass then continues from the previous frame's state, so **both
directions read the clip forward in time**, each layer's input being the concatenation of the two directions' outputs
of the layer below at that frame. This module computes exactly that network, one fused ``nn.GRU`` call per layer and
direction instead of a Python loop over frames (``tests/test_pretrain_models.py`` checks it against a port of the
release's loop). :meth:`BiGRU.load_release_state_dict` reads the release's parameter names; with the same
``torch.manual_seed`` a freshly built model has the release's initial weights (its default GRU initialisation, then
Xavier-uniform on every matrix).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from mmcl.data.layouts import get_layout
from mmcl.models.registry import register_model

__all__ = ["BiGRU", "StepwiseBiGRU", "bigru"]


class StepwiseBiGRU(nn.Module):
    """The release's ``EncoderRNN``: ``num_layers`` layers of two forward-in-time GRUs whose outputs are concatenated.

    ``layers[l][0]`` holds the release's ``weight_*_l{l}``, ``layers[l][1]`` its ``weight_*_l{l}_reverse``.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        # Built in nn.GRU's parameter order (layer by layer, "forward" then "reverse"), so the default initialisation
        # draws the same numbers as the release's single nn.GRU.
        self.layers = nn.ModuleList(
            nn.ModuleList(nn.GRU(input_size if layer == 0 else 2 * hidden_size, hidden_size, batch_first=True)
                          for _ in range(2))
            for layer in range(num_layers))

    def forward(self, x: Tensor) -> Tensor:
        """(N, T, input_size) -> top-layer outputs (N, T, 2 * hidden_size)."""
        for first, second in self.layers:
            x = torch.cat([first(x)[0], second(x)[0]], dim=-1)
        return x


class BiGRU(nn.Module):
    """CMD/HaLP's sequence encoder for skeletons of any layout.

    Args:
        num_classes: classes of ``fc``.
        layout: joint layout name (gives the joint count).
        in_channels: channels per joint.
        num_person: persons per sample (M).
        hidden_size: GRU units per direction (release: 1024).
        num_layers: GRU layers (release: 3).
    """

    def __init__(self, num_classes: int = 60, layout: str = "ntu25", in_channels: int = 3, num_person: int = 2,
                 hidden_size: int = 1024, num_layers: int = 3) -> None:
        super().__init__()
        graph = get_layout(layout)
        self.layout_name = graph.name
        self.num_classes = num_classes
        self.num_joints = graph.num_joints
        self.num_person = num_person
        self.in_channels = in_channels
        self.feature_dim = 2 * hidden_size
        input_size = graph.num_joints * in_channels * num_person
        # Registration order = the release's (encoder, fc, input_norm): it fixes the order of the initial draws.
        self.encoder = StepwiseBiGRU(input_size, hidden_size, num_layers)
        self.fc = nn.Linear(self.feature_dim, num_classes)
        self.input_norm = nn.BatchNorm1d(input_size)
        with torch.no_grad():
            for child in self.children():
                for param in child.parameters():
                    if param.dim() == 2:
                        nn.init.xavier_uniform_(param)

    def _check_input(self, x: Tensor) -> None:
        expected = (self.in_channels, None, self.num_joints, self.num_person)
        if x.dim() != 5 or any(e is not None and s != e for s, e in zip(x.shape[1:], expected)):
            raise ValueError(
                f"BiGRU({self.layout_name}) expects input (N, C={self.in_channels}, T, V={self.num_joints}, "
                f"M={self.num_person}), got {tuple(x.shape)}")

    def forward_features(self, x: Tensor) -> dict[str, Tensor]:
        """``sequence`` (N, T, 2H): top-layer outputs per frame; ``global_feature`` (N, 2H): the last frame's;
        ``logits``. (No per-joint feature map: the GRU reads all joints of a frame as one vector.)"""
        self._check_input(x)
        n, c, t, v, m = x.shape
        frames = x.permute(0, 2, 3, 1, 4).reshape(n, t, v * c * m)  # the release's (V, C, M) feature order
        frames = self.input_norm(frames.transpose(1, 2)).transpose(1, 2)
        sequence = self.encoder(frames)
        global_feature = sequence[:, -1]
        return {"sequence": sequence, "global_feature": global_feature, "logits": self.fc(global_feature)}

    def forward(self, x: Tensor) -> Tensor:
        """Logits (N, num_classes) of skeletons ``x`` (N, C, T, V, M)."""
        return self.forward_features(x)["logits"]

    @staticmethod
    def release_key(key: str) -> str:
        """This module's name for a parameter name of the release's ``BIGRU`` (``encoder.gru.weight_ih_l1_reverse``
        -> ``encoder.layers.1.1.weight_ih_l0``); other names are unchanged."""
        prefix = "encoder.gru."
        if not key.startswith(prefix):
            return key
        name = key[len(prefix):]
        second = name.endswith("_reverse")
        name = name.removesuffix("_reverse")
        base, layer = name.rsplit("_l", 1)
        return f"encoder.layers.{int(layer)}.{int(second)}.{base}_l0"

    def load_release_state_dict(self, state_dict: Mapping[str, Tensor], strict: bool = True):
        """Load a state dict of the release's ``BIGRU`` (e.g. ``encoder_q.*`` of its checkpoints, prefix removed)."""
        return self.load_state_dict(OrderedDict((self.release_key(k), v) for k, v in state_dict.items()),
                                    strict=strict)


@register_model
def bigru(num_classes: int, layout: str = "ntu25", in_channels: int = 3, num_person: int = 2,
          hidden_size: int = 1024, num_layers: int = 3) -> BiGRU:
    """CMD/HaLP's BiGRU encoder (input BatchNorm, 3-layer GRU read forward in both directions, last frame)."""
    return BiGRU(num_classes=num_classes, layout=layout, in_channels=in_channels, num_person=num_person,
                 hidden_size=hidden_size, num_layers=num_layers)
