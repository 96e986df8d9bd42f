"""The pre-training encoders: the BiGRU against a port of HaLP's release, the SkeletonMAE graph encoder."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mmcl.models import create_model
from mmcl.models.bigru import BiGRU

pytestmark = pytest.mark.usefixtures("one_thread")


# --- a straightforward port of anshulbshah/HaLP moco/GRU.py (EncoderRNN, BIGRU) and its weights_init_gru ----------
class ReleaseEncoderRNN(nn.Module):
    def __init__(self, input_size, hidden_size, num_layers):
        super().__init__()
        self.gru = nn.GRU(input_size, hidden_size, num_layers=num_layers, bidirectional=True, batch_first=True)

    def forward(self, input_tensor, seq_len):
        encoder_hidden, hidden_tmp = None, None
        for it in range(max(seq_len)):  # one frame at a time, feeding back the hidden state
            enout_tmp, hidden_tmp = self.gru(input_tensor[:, it:it + 1, :], hidden_tmp)
            encoder_hidden = enout_tmp if encoder_hidden is None else torch.cat((encoder_hidden, enout_tmp), 1)
        return torch.stack([encoder_hidden[i, n - 1] for i, n in enumerate(seq_len)])


class ReleaseBIGRU(nn.Module):
    def __init__(self, en_input_size, en_hidden_size, en_num_layers=3, num_class=60):
        super().__init__()
        self.encoder = ReleaseEncoderRNN(en_input_size, en_hidden_size, en_num_layers)
        self.fc = nn.Linear(2 * en_hidden_size, num_class)
        self.input_norm = nn.BatchNorm1d(en_input_size)

    def forward(self, input_tensor):
        input_tensor = self.input_norm(input_tensor.permute(0, 2, 1).contiguous()).permute(0, 2, 1).contiguous()
        seq_len = [input_tensor.size(1)] * input_tensor.size(0)
        hidden = self.encoder(input_tensor, seq_len)
        return self.fc(hidden), hidden


def weights_init_gru(model):
    with torch.no_grad():
        for child in list(model.children()):
            for param in list(child.parameters()):
                if param.dim() == 2:
                    nn.init.xavier_uniform_(param)


def release_input(x):  # the release's feeder: (C, T, V, M) -> (T, V*C*M) with the (V, C, M) order
    n, c, t, v, m = x.shape
    return x.permute(0, 2, 3, 1, 4).reshape(n, t, v * c * m)


def test_bigru_has_the_release_weights_and_outputs():
    torch.manual_seed(3)
    ref = ReleaseBIGRU(150, 16, 3, num_class=7)
    weights_init_gru(ref)
    torch.manual_seed(3)
    ours = create_model("bigru", num_classes=7, hidden_size=16)
    mapped = {BiGRU.release_key(k): v for k, v in ref.state_dict().items()}
    assert mapped.keys() == ours.state_dict().keys()
    for key, value in ours.state_dict().items():  # same seed, same initial weights
        assert torch.equal(value, mapped[key]), key

    x = torch.randn(4, 3, 12, 25, 2)
    for train in (True, False):
        ref.train(train), ours.train(train)
        logits, hidden = ref(release_input(x))
        out = ours.forward_features(x)
        torch.testing.assert_close(out["global_feature"], hidden, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(out["logits"], logits, rtol=1e-5, atol=1e-5)


def test_bigru_loads_a_release_state_dict_and_its_parameter_count():
    torch.manual_seed(0)
    ref = ReleaseBIGRU(60, 8, 2, num_class=5).eval()
    ours = create_model("bigru", num_classes=5, layout="nwucla20", num_person=1, hidden_size=8, num_layers=2).eval()
    ours.load_release_state_dict(ref.state_dict())
    x = torch.randn(3, 3, 6, 20, 1)
    torch.testing.assert_close(ours(x), ref(release_input(x))[0], rtol=1e-5, atol=1e-5)
    # the release's NTU encoder: 150 inputs, 3 layers x 2 directions of 1024 units, 2048 features
    with torch.device("meta"):
        full, release = create_model("bigru", num_classes=128), ReleaseBIGRU(150, 1024, 3, 128)
    assert full.feature_dim == 2048
    assert sum(p.numel() for p in full.parameters()) == sum(p.numel() for p in release.parameters()) == 45_261_228


def test_bigru_rejects_a_wrong_input_shape():
    model = create_model("bigru", num_classes=3, hidden_size=4)
    with pytest.raises(ValueError, match=r"expects input \(N, C=3, T, V=25, M=2\)"):
        model(torch.randn(2, 3, 5, 20, 2))


def test_gin_encoder_on_the_visible_graph_ignores_masked_joints():
    torch.manual_seed(0)
    model = create_model("skeletonmae", num_classes=4, hidden_dim=16, num_layers=2).eval()
    x = torch.randn(2, 3, 8, 25, 2)
    visible = torch.ones(4, 25, dtype=torch.bool)
    visible[:, [4, 5, 6, 7, 21, 22]] = False  # left arm
    a = model.encode_joints(x, visible)
    x2 = x.clone()
    x2[:, :, :, [4, 5, 6, 7, 21, 22]] = 100.0  # whatever the masked joints hold
    b = model.encode_joints(x2, visible)
    torch.testing.assert_close(a, b)
    assert a.shape == (4, 16, 2, 25) and (a[:, :, :, [4, 5]] == 0).all()
    # without a mask the same joints do matter
    assert not torch.allclose(model.encode_joints(x), model.encode_joints(x2))


def test_strl_starts_as_the_identity_on_the_encoder_features():
    torch.manual_seed(0)
    model = create_model("skeletonmae", num_classes=4, hidden_dim=8, temporal_layers=2).eval()
    x = torch.randn(2, 3, 12, 25, 2)
    h = model.encode_joints(x)
    out = model.forward_features(x)
    torch.testing.assert_close(out["feature_map"], h)
    torch.testing.assert_close(out["global_feature"], h.mean((2, 3)).view(2, 2, -1).mean(1))
    with pytest.raises(ValueError, match="multiple of the segment"):
        model(torch.randn(2, 3, 10, 25, 2))
