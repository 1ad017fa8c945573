"""tinycudann weight conversion (PyTorch side) and the fused-decoder wrapper against a stand-in tcnn module.

tinycudann itself cannot be installed here (no CUDA): these tests pin the flat layout documented in
models/tcnn_compat.py and exercise TcnnDecoder with a CPU stand-in that implements that layout.
"""

from __future__ import annotations

import pytest
import torch

from core.errors import VolsightError
from models import tcnn_compat
from models.mlp import MLPDecoder
from models.tcnn_compat import TcnnDecoder, layer_shapes, pad16, pytorch_to_tcnn, tcnn_available, tcnn_to_pytorch


def test_round_trip_is_exact_and_layout_is_documented():
    gen = torch.Generator().manual_seed(0)
    dec = MLPDecoder(38, 64, 2, 1, gen)  # fVSRN-like input width: 38 -> padded to 48
    layers = dec.layers()
    flat = pytorch_to_tcnn(layers, 38, 1)
    assert flat.numel() == 64 * 48 + 64 * 64 + 16 * 64
    first = flat[: 64 * 48].view(64, 48)
    assert torch.equal(first[:, :38], layers[0]) and first[:, 38:].abs().sum() == 0  # row-major [out, in_pad]
    assert torch.equal(flat[64 * 48: 64 * 48 + 4096].view(64, 64), layers[1])
    last = flat[-16 * 64:].view(16, 64)
    assert torch.equal(last[0], layers[2][0]) and last[1:].abs().sum() == 0  # output rows padded to 16
    back = tcnn_to_pytorch(flat, 38, 64, 2, 1)
    assert all(torch.equal(a, b) for a, b in zip(layers, back))
    assert layer_shapes(32, 64, 2, 1, padded=True) == [(64, 32), (64, 64), (16, 64)] and pad16(33) == 48
    with pytest.raises(VolsightError, match="expected"):
        tcnn_to_pytorch(flat[:-1], 38, 64, 2, 1)


def test_not_available_here_and_cpu_keeps_pytorch_decoder():
    from models.registry import MODEL_CLASSES, model_config

    assert not tcnn_available()
    field = MODEL_CLASSES["apmgsrn"](model_config("apmgsrn", "small")).place("cpu")
    assert isinstance(field.decoder, MLPDecoder)


class _FakeNetwork(torch.nn.Module):
    """Implements tcnn.Network's interface and the documented flat layout on the CPU."""

    def __init__(self, n_input_dims, n_output_dims, config):
        super().__init__()
        assert config["activation"] == "ReLU" and config["output_activation"] == "None"
        self.shapes = layer_shapes(n_input_dims, config["n_neurons"], config["n_hidden_layers"], n_output_dims, True)
        self.n_out = n_output_dims
        self.params = torch.nn.Parameter(torch.zeros(sum(r * c for r, c in self.shapes)))

    def forward(self, x):
        assert x.shape[1] % 16 == 0
        h, offset = x, 0
        for i, (r, c) in enumerate(self.shapes):
            h = h @ self.params[offset: offset + r * c].view(r, c).t()
            offset += r * c
            if i < len(self.shapes) - 1:
                h = torch.relu(h)
        return h[:, : self.n_out].half()  # tcnn computes in half precision


class _FakeTcnn:
    Network = _FakeNetwork


def test_fused_decoder_wrapper_saves_and_loads_pytorch_layout(monkeypatch):
    monkeypatch.setattr(tcnn_compat, "_import_tcnn", lambda: _FakeTcnn)
    gen = torch.Generator().manual_seed(1)
    ref = MLPDecoder(34, 64, 2, 3, gen)
    fused = TcnnDecoder(34, 64, 2, 3, None)
    fused.load_state_dict(ref.state_dict())  # PyTorch layout in, flat params inside
    assert set(fused.state_dict()) == set(ref.state_dict())
    for k, v in ref.state_dict().items():
        assert torch.equal(fused.state_dict()[k], v)
    x = torch.randn(100, 34, generator=gen) * 0.1
    with torch.no_grad():
        assert torch.allclose(fused(x), ref(x), atol=2e-3)
    back = MLPDecoder(34, 64, 2, 3)
    back.load_state_dict(fused.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(back.layers(), ref.layers()))


def test_field_trained_with_fused_decoder_loads_without_it(monkeypatch, tmp_path):
    from models.registry import MODEL_CLASSES, model_config
    from models.store import load_field

    monkeypatch.setattr(tcnn_compat, "_import_tcnn", lambda: _FakeTcnn)
    field = MODEL_CLASSES["apmgsrn"](model_config("apmgsrn", "small", n_grids=2, grid_shape=[4, 4, 4]))
    plain = field.decoder
    fused = TcnnDecoder(2, 64, 2, 1, None)  # 2 grids x 1 feature
    fused.load_state_dict(plain.state_dict())
    field.decoder = fused  # what place('cuda') does when tinycudann imports
    field.save(tmp_path / "f.vsf")
    loaded = load_field(tmp_path / "f.vsf")
    assert isinstance(loaded.decoder, MLPDecoder)
    assert all(torch.equal(a, b) for a, b in zip(loaded.decoder.layers(), plain.layers()))


class _FakeEncoding(torch.nn.Module):
    """tcnn.Encoding(HashGrid) stand-in evaluating the flat params with volsight's own indexing."""

    def __init__(self, n_input_dims, config):
        super().__init__()
        from models.baselines import HashGridEncoding

        assert n_input_dims == 3 and config["otype"] == "HashGrid"
        top = config["base_resolution"] * config["per_level_scale"] ** (config["n_levels"] - 1)
        # kept outside the module tree: a real tcnn.Encoding holds nothing but ``params``
        self._ref = [HashGridEncoding(config["n_levels"], config["n_features_per_level"],
                                      config["log2_hashmap_size"], config["base_resolution"], top)]
        self.params = torch.nn.Parameter(torch.zeros(self._ref[0].table.numel()))

    def forward(self, x01):
        assert x01.min() >= 0 and x01.max() <= 1  # tcnn encodings take [0, 1] positions
        ref = self._ref[0]
        with torch.no_grad():
            ref.table.copy_(self.params.view_as(ref.table))
        return ref(x01 * 2 - 1).t().half()


def test_hash_encoding_wrapper_round_trip(monkeypatch):
    from models.baselines import HashGridEncoding
    from models.tcnn_compat import TcnnHashEncoding

    class Fake:
        Encoding = _FakeEncoding

    monkeypatch.setattr(tcnn_compat, "_import_tcnn", lambda: Fake)
    enc = HashGridEncoding(4, 2, 9, 4, 32, torch.Generator().manual_seed(0))
    with torch.no_grad():
        enc.table.normal_(0, 0.1, generator=torch.Generator().manual_seed(1))
    fused = TcnnHashEncoding(enc)
    assert torch.equal(fused.state_dict()["table"], enc.table.detach())
    pts = torch.rand(300, 3) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(fused(pts), enc(pts), atol=1e-3)
    other = HashGridEncoding(4, 2, 9, 4, 32)
    other.load_state_dict(fused.state_dict())
    assert torch.equal(other.table, enc.table)
    fused2 = TcnnHashEncoding(other)
    fused2.load_state_dict({"table": torch.zeros_like(enc.table)})
    assert fused2.net.params.abs().sum() == 0
