"""The CPU fast paths of VolSiM (fused conv + ReLU, channels-last reduction, per-input workers) equal the plain ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import core.metrics.volsim as volsim_module
from core.metrics.volsim import VolSiM
from core.metrics.volsim_net import VolSiMArchitecture, _fused_conv_relu, new_weights
from core.threads import cpu_map
from core.volume import Volume


@pytest.fixture(scope="module")
def metric(shared_dir):
    # these are the CPU's own paths: pinned to the CPU also where CUDA is present
    return VolSiM(weights=shared_dir / "weights" / "VOLSIM" / "MS_3scales.pth", device="cpu")


def _smooth(rng, shape) -> Volume:
    from scipy.ndimage import gaussian_filter

    return Volume.from_array(gaussian_filter(rng.normal(size=shape), (0, 1.5, 1.5, 1.5)).astype(np.float32))


def _layers(encoder, x, fused: bool) -> list[torch.Tensor]:
    encoder.fused = fused
    try:
        with torch.inference_mode():
            return [f.contiguous() for f in encoder.iter_layers(x)]
    finally:
        encoder.fused = True


def test_the_fused_kernel_is_available_here():
    # the fast path must actually run on this machine's PyTorch build, not silently fall back
    assert _fused_conv_relu() is not None


@pytest.mark.parametrize("channels", [1, 3])
def test_fused_layers_equal_the_plain_layers(metric, rng, channels):
    x = torch.from_numpy(rng.normal(size=(2, channels, 32, 24, 40)).astype(np.float32))
    fused, plain = _layers(metric.net.encoder, x, True), _layers(metric.net.encoder, x, False)
    assert len(fused) == len(plain) == 12
    for f, p in zip(fused, plain, strict=True):
        assert f.shape == p.shape
        assert torch.allclose(f, p, rtol=1e-5, atol=1e-5 * float(p.abs().max()))


def test_packed_weights_follow_in_place_updates(rng):
    w = new_weights(VolSiMArchitecture.with_scales(2), norm_size=16, seed=0)
    x = torch.from_numpy(rng.normal(size=(1, 1, 16, 16, 16)).astype(np.float32))
    before = _layers(w.encoder, x, True)[-1]
    with torch.no_grad():
        for p in w.encoder.parameters():
            p.mul_(1.5)  # what an optimiser step does: in place
    after, plain = _layers(w.encoder, x, True)[-1], _layers(w.encoder, x, False)[-1]
    assert not torch.allclose(before, after)
    assert torch.allclose(after, plain, rtol=1e-5, atol=1e-6)


def test_channels_last_reduction_equals_the_contiguous_one(metric, rng):
    comp = metric.net.comparison
    fa = torch.from_numpy(rng.normal(size=(2, 4, 16, 16, 16)).astype(np.float32))
    fb = torch.from_numpy(rng.normal(size=(2, 4, 16, 16, 16)).astype(np.float32))
    cl = torch.channels_last_3d
    with torch.inference_mode():
        plain = comp.layer_term(1, fa, fb)
        last = comp.layer_term(1, fa.contiguous(memory_format=cl), fb.contiguous(memory_format=cl))
        literal = comp.terms_reference([fa] * 2, [fb] * 2)[:, 1]
    assert torch.allclose(plain, last, rtol=1e-5)
    assert torch.allclose(plain, literal, rtol=1e-5)


def test_per_input_workers_give_the_sequential_result(metric, rng, monkeypatch):
    pairs = [(_smooth(rng, (1, 32, 32, 32)), _smooth(rng, (1, 32, 32, 32))) for _ in range(3)]
    monkeypatch.setattr(volsim_module, "workers", lambda: 2)
    parallel = [d.value for d in metric.distance_batch(pairs)]
    with_maps = metric.distance(*pairs[0], features=True)
    monkeypatch.setattr(volsim_module, "workers", lambda: 1)
    sequential = [d.value for d in metric.distance_batch(pairs)]
    alone = metric.distance(*pairs[0], features=True)
    assert parallel == sequential  # the same kernels on the same data: bit for bit
    for name, maps in alone.features.items():
        np.testing.assert_array_equal(maps.diff, with_maps.features[name].diff)


def test_cpu_map_keeps_order_and_runs_without_autograd():
    import threading

    seen = cpu_map(lambda i: (i, torch.is_inference_mode_enabled(), threading.current_thread().name), list(range(6)))
    assert [s[0] for s in seen] == list(range(6))
    assert all(s[1] for s in seen)


@pytest.mark.parametrize("cin", [1, 3])
def test_blocked_convolution_equals_the_direct_one(rng, cin):
    from core.metrics import blocked_conv

    conv = torch.nn.Conv3d(cin, 4, 5, padding=2)
    x = torch.from_numpy(rng.normal(size=(2, cin, 8, 12, 6)).astype(np.float32))
    assert blocked_conv.applies(conv, (8, 12, 6))
    assert not blocked_conv.applies(conv, (8, 11, 6))  # odd sizes take the direct path
    assert not blocked_conv.applies(torch.nn.Conv3d(cin, 4, 5, stride=2, padding=2), (8, 12, 6))
    w, b = blocked_conv.block_weights(conv.weight.detach(), conv.bias.detach())
    with torch.no_grad():
        direct = F.conv3d(x, conv.weight, conv.bias, padding=2)
        blocks = F.conv3d(blocked_conv.to_blocks(x), w, b, padding=1)
    out = blocked_conv.from_blocks(blocks)
    assert out.shape == direct.shape and out.is_contiguous(memory_format=torch.channels_last_3d)
    torch.testing.assert_close(out, direct, rtol=1e-5, atol=1e-5)


def test_memory_tight_paths_give_the_same_distance_and_a_clear_refusal_of_feature_maps(metric, rng, monkeypatch):
    """Short of memory, the distance takes the layer-by-layer pass (same value) and feature maps are refused."""
    from app.comparing import compute_distances
    from core.errors import FeatureMemoryError

    a, b = _smooth(rng, (1, 32, 32, 32)), _smooth(rng, (1, 32, 32, 32))
    roomy = metric.distance(a, b)
    per_input = metric.feature_bytes((32, 32, 32))
    assert per_input == 4 * (4 * 32**3 + 3 * 4 * 16**3 + 8 * 16**3 + 3 * 8 * 8**3 + 16 * 8**3 + 3 * 16 * 4**3)

    encoded = []
    monkeypatch.setattr(volsim_module, "cpu_map", lambda fn, items: encoded.append(len(items)) or cpu_map(fn, items))
    monkeypatch.setenv("VOLSIGHT_MEMORY_LIMIT", str(6 * per_input - 1))  # short for the parallel pass and the maps
    tight = metric.distance(a, b)
    assert encoded == [] and tight.value == pytest.approx(roomy.value, rel=1e-5)
    with pytest.raises(FeatureMemoryError, match=r"32x32x32 pair need about .* available"):
        metric.distance(a, b, features=True)

    # the window's comparison keeps the value and says why the maps are missing
    import app.comparing as comparing

    monkeypatch.setattr(comparing, "built_metric", lambda name: metric)
    d = compute_distances(a, b, ["volsim"], features_for=["volsim"])["volsim"]
    assert d.value == pytest.approx(roomy.value, rel=1e-5) and d.features is None
    assert "need about" in d.info["features"]
