"""LearnSim learned SSD / LCC: exact plain SSD / LCC at initialisation, fine-tuning, weights, features, properties."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter, uniform_filter

from core.errors import MetricError, WeightsError
from core.metrics.learnsim import LearnSimLCC, LearnSimNetwork, LearnSimSSD, lcc_map
from core.metrics.registry import get_metric, metric_names
from core.volume import Volume


def _pair(rng, shape=(16, 18, 20), strength=0.3):
    a = gaussian_filter(rng.standard_normal(shape), 2.0).astype(np.float32)
    b = (a + strength * gaussian_filter(rng.standard_normal(shape), 1.0)).astype(np.float32)
    return Volume.from_array(a, name="a"), Volume.from_array(b, name="b")


def _unit(va: Volume, vb: Volume) -> tuple[np.ndarray, np.ndarray]:
    a, b = va.data[0].astype(np.float64), vb.data[0].astype(np.float64)
    lo, hi = min(a.min(), b.min()), max(a.max(), b.max())
    return (a - lo) / (hi - lo), (b - lo) / (hi - lo)


def numpy_lcc(a: np.ndarray, b: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """Independent local NCC² with 3³ boxes and replicate ('nearest') borders."""
    def box(x):
        return uniform_filter(x, size=3, mode="nearest") * 27.0

    da = a - box(a) / 27.0
    db = b - box(b) / 27.0
    cross, va, vb = box(da * db), box(da * da), box(db * db)
    return cross**2 / (va * vb + eps)


def test_registered():
    names = metric_names()
    for name in ("lsim", "watson-dct", "watson-fft", "learnsim-ssd", "learnsim-lcc"):
        assert name in names
    assert get_metric("learnsim-lcc").describe()["kind"] == "similarity"


def test_encoder_is_exact_identity_at_init(rng):
    net = LearnSimNetwork("ssd", seed=3)
    x = torch.from_numpy(rng.random((2, 1, 9, 10, 11)).astype(np.float32))
    with torch.no_grad():
        z = net.aggregate(net.encode(x))
    torch.testing.assert_close(z, x, rtol=0, atol=0)
    # the other channels are random (not dead) so fine-tuning has gradients everywhere
    assert all(float(c.weight[1:].detach().abs().sum()) > 0 for c in net.convs)


@pytest.mark.parametrize("slab", [1, 2, 5, 32])
def test_slab_encoding_equals_the_whole_volume_pass(rng, slab):
    """Slabs with halos and border-only replicate padding give the whole-volume values (a non-identity net)."""
    net = LearnSimNetwork("lcc", seed=5)
    with torch.no_grad():
        for p in net.parameters():  # random weights everywhere, so every channel and border matters
            p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.3)
    x = torch.from_numpy(rng.random((2, 1, 11, 7, 9)).astype(np.float32))
    with torch.no_grad():
        feats = net.encode(x)
        z = net.aggregate(feats)
    zs, fs = net.encode_in_slabs(x, slab=slab, keep_features=True)
    torch.testing.assert_close(zs, z, rtol=1e-5, atol=1e-6)
    # float32 rounding grows with the features' size (up to ~10 here, and the summation order of
    # a slab's convolution depends on the CPU); a wrong halo or padding would differ by O(1)
    torch.testing.assert_close(fs, feats, rtol=1e-5, atol=1e-6 * float(feats.abs().max()))
    assert net.encode_in_slabs(x, slab=slab)[1] is None


def test_learned_ssd_equals_plain_ssd_at_init(rng):
    va, vb = _pair(rng)
    m = LearnSimSSD(weights="identity")
    d = m.distance(va, vb)
    a, b = _unit(va, vb)
    plain = float(np.mean((a - b) ** 2))
    assert d.value == pytest.approx(plain, rel=1e-5)
    assert d.value == pytest.approx(m.plain(va, vb), rel=1e-6)
    assert d.info["energy"] == pytest.approx(0.5 * np.sum((a - b) ** 2), rel=1e-5)
    assert d.kind == "distance"


@pytest.mark.parametrize("metric", [LearnSimSSD, LearnSimLCC])
def test_identity_weights_skip_the_network_with_the_same_values(rng, monkeypatch, metric):
    va, vb = _pair(rng, strength=1.0)
    m = metric(weights="identity")
    assert m.network.is_identity()
    through = m.distance(va, vb, features=True)  # features: the network runs
    calls = []
    real = LearnSimNetwork.encode_in_slabs
    monkeypatch.setattr(LearnSimNetwork, "encode_in_slabs", lambda *a, **k: calls.append(1) or real(*a, **k))
    short = m.distance(va, vb)
    assert calls == [] and short.value == through.value
    np.testing.assert_array_equal(short.voxel_map, through.voxel_map)
    # inputs below 0 (not normalised) would be bent by LeakyReLU: the network runs
    neg_a, neg_b = Volume.from_array(va.data[0] - 5.0), Volume.from_array(vb.data[0] - 5.0)
    m.distance(neg_a, neg_b, normalize=False)
    assert len(calls) == 2
    # any trained weight makes it a network again
    with torch.no_grad():
        m.network.convs[1].weight[0, 2, 0, 0, 0] = 0.01
    assert not m.network.is_identity()
    assert m.distance(va, vb).value != short.value and len(calls) == 4


def test_learned_lcc_equals_plain_lcc_at_init(rng):
    va, vb = _pair(rng, strength=1.0)
    m = LearnSimLCC()
    d = m.distance(va, vb)
    a, b = _unit(va, vb)
    ref_map = numpy_lcc(a, b)
    assert d.value == pytest.approx(float(ref_map.mean()), rel=1e-5)
    assert d.value == pytest.approx(m.plain(va, vb), rel=1e-6)
    np.testing.assert_allclose(d.voxel_map, ref_map, rtol=1e-3, atol=1e-5)
    assert d.info["energy"] == pytest.approx(-ref_map.sum(), rel=1e-5)
    assert d.kind == "similarity" and 0 < d.value < 1
    ta, tb = torch.from_numpy(a[None, None]), torch.from_numpy(b[None, None])
    torch.testing.assert_close(lcc_map(ta, tb), lcc_map(tb, ta), rtol=0, atol=0)


def test_fine_tune_changes_weights_and_lowers_loss(rng):
    pairs = [_pair(rng, (10, 10, 10), s) for s in (0.1, 0.5, 1.0)]
    m = LearnSimSSD(weights="identity", seed=1)
    before = [p.detach().clone() for p in m.network.parameters()]
    plain = [m.plain(a, b) for a, b in pairs]
    targets = [0.02, 0.04, 0.06]
    losses = m.fine_tune(pairs, targets, steps=10, lr=5e-3)
    assert len(losses) == 11
    assert losses[-1] < 0.5 * losses[0]
    changed = [float((p.detach() - q).abs().max()) for p, q in zip(m.network.parameters(), before, strict=True)]
    assert all(c > 0 for c in changed)
    after = [m.distance(a, b).value for a, b in pairs]
    assert after != pytest.approx(plain, rel=1e-3)
    with pytest.raises(MetricError, match="one target per pair"):
        m.fine_tune(pairs, targets[:2])


def test_save_and_load_project_format(tmp_path, rng):
    pairs = [_pair(rng, (10, 10, 10), 0.5)]
    m = LearnSimLCC(seed=2)
    m.fine_tune(pairs, [0.9], steps=3, lr=1e-2)
    path = tmp_path / "learned_lcc.safetensors"
    m.network.save(path)
    again = get_metric("learnsim-lcc", weights=path)
    va, vb = _pair(rng, (10, 10, 10))
    assert again.distance(va, vb).value == m.distance(va, vb).value
    assert again.distance(va, vb).info["weights"] == str(path)
    with pytest.raises(WeightsError, match="not learned-SSD"):
        LearnSimSSD(weights=path)
    with pytest.raises(WeightsError, match="no such weights file"):
        LearnSimSSD(weights=tmp_path / "missing.safetensors")


def test_features_contributions_and_voxel_map(rng):
    va, vb = _pair(rng, (8, 10, 12))
    d = LearnSimSSD(weights="identity").distance(va, vb, features=True)
    assert d.contributions == {"encoder": d.value}
    f = d.features["encoder"]
    assert f.a.shape == (8, 8, 10, 12) and f.b.shape == f.a.shape and f.diff.shape == f.a.shape
    assert isinstance(f.a, np.ndarray) and f.weights.shape == (8,)
    assert d.voxel_map.shape == (8, 10, 12)
    assert float(d.voxel_map.mean()) == pytest.approx(d.value, rel=1e-6)
    # at init only channel 0 is aggregated: its weighted difference is the voxel map
    np.testing.assert_allclose(f.diff.sum(axis=0), d.voxel_map, rtol=1e-6, atol=1e-9)


def test_properties(rng):
    va, vb = _pair(rng)
    ssd = LearnSimSSD()
    assert ssd.distance(va, vb).value == pytest.approx(ssd.distance(vb, va).value, rel=1e-6)
    assert ssd.distance(va, va).value == 0.0
    assert ssd.distance(va, vb).value > 0
    lcc = LearnSimLCC()
    assert lcc.distance(va, vb).value == pytest.approx(lcc.distance(vb, va).value, rel=1e-6)
    assert lcc.distance(va, va).value > lcc.distance(va, vb).value


def test_vector_volumes_and_bad_options(rng):
    va, vb = _pair(rng, (8, 8, 8))
    vec_a = Volume.from_array(np.stack([va.data[0], -va.data[0], 0 * va.data[0]]))
    d = LearnSimSSD().distance(vec_a, vec_a)
    assert d.value == 0.0
    with pytest.raises(MetricError, match="unknown"):
        LearnSimSSD().distance(va, vb, axis=0)
    with pytest.raises(MetricError, match="shapes differ"):
        LearnSimSSD().distance(va, Volume.from_array(np.zeros((8, 8, 9), np.float32)))


def test_resample_option_compares_different_shapes(rng):
    va, _ = _pair(rng, (12, 12, 12))
    vb, _ = _pair(rng, (8, 10, 12))
    m = LearnSimSSD()
    d = m.distance(va, vb, resample=10)
    assert d.voxel_map.shape == (10, 10, 10) and d.value > 0


def test_feature_maps_too_large_for_memory_are_refused_clearly(rng, monkeypatch):
    from core.errors import FeatureMemoryError

    va, vb = _pair(rng)
    m = LearnSimSSD()
    plain = m.distance(va, vb).value
    monkeypatch.setenv("VOLSIGHT_MEMORY_LIMIT", "1000")
    with pytest.raises(FeatureMemoryError, match="feature maps of a .* pair need about"):
        m.distance(va, vb, features=True)
    assert m.distance(va, vb).value == plain  # the distance alone still runs


def test_learned_ssd_defaults_to_the_shipped_weights_and_identity_stays_available(rng, monkeypatch, tmp_path):
    from core.metrics.learnsim import default_weights_path

    shipped = default_weights_path("ssd")
    assert shipped.is_file(), "volsight ships its learned-SSD weights in resources/weights"
    m = get_metric("learnsim-ssd")
    assert m.weights_path == str(shipped) and not m.network.is_identity()
    assert m.network.provenance["train_families"] == ["advdiff", "burgers", "noise", "smoke"]
    assert m.describe()["weights_installed"] and "weights_note" not in m.describe()
    va, vb = _pair(rng)
    learned, plain = m.distance(va, vb), m.plain(va, vb)
    assert learned.value > 0 and learned.value != pytest.approx(plain, rel=1e-3)
    assert learned.info["weights"] == str(shipped)
    assert m.distance(va, va).value == 0.0
    identity = get_metric("learnsim-ssd", weights="identity")
    assert identity.network.is_identity() and identity.distance(va, vb).value == pytest.approx(plain, rel=1e-6)
    assert identity.distance(va, vb).info["weights"] == "identity initialisation"
    # learned LCC ships none: it starts as the identity, and says so
    lcc = get_metric("learnsim-lcc")
    assert lcc.network.is_identity() and "identity" in lcc.describe()["weights_note"]
    # the environment variable points the default elsewhere
    monkeypatch.setenv("VOLSIGHT_LEARNSIM_SSD_WEIGHTS", str(tmp_path / "none.safetensors"))
    assert get_metric("learnsim-ssd").network.is_identity()
