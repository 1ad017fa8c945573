"""Distance matrices and series: cached embeddings equal pair results; progress, cancel, memory mode."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from core.metrics.matrix import Cancelled, distance_matrix, distance_to_reference
from core.metrics.registry import get_metric
from core.metrics.volsim import VolSiM
from core.volume import Volume


@pytest.fixture(scope="module")
def volsim(shared_dir):
    return VolSiM(weights=shared_dir / "weights" / "VOLSIM" / "MS_3scales.pth")


@pytest.fixture(scope="module")
def series():
    rng = np.random.default_rng(7)
    base = gaussian_filter(rng.normal(size=(1, 32, 32, 32)), (0, 2, 2, 2))
    return [Volume.from_array((base + 0.15 * k * gaussian_filter(rng.normal(size=base.shape), (0, 1, 1, 1)))
                              .astype(np.float32), name=f"t{k}") for k in range(5)]


def test_volsim_matrix_equals_pair_calls(volsim, series):
    calls = []
    m = distance_matrix(series, volsim, normalize=False, progress=lambda d, t: calls.append((d, t)))
    pairs = np.array([[volsim.distance(a, b, normalize=False).value for b in series] for a in series])
    np.testing.assert_allclose(m, pairs, rtol=1e-5, atol=1e-9)
    assert np.all(np.diag(m) == 0) and np.allclose(m, m.T)
    done = [d for d, _ in calls]
    assert calls[-1][0] == calls[-1][1] and done == sorted(done) and len(calls) >= 3


def test_matrix_normalises_the_set_jointly(volsim, series):
    m = distance_matrix(series, volsim)
    lo = min(v.value_range()[0] for v in series)
    hi = max(v.value_range()[1] for v in series)
    norm = [Volume.from_array((2 * (v.data - lo) / (hi - lo) - 1).astype(np.float32)) for v in series]
    assert m[0, 3] == pytest.approx(volsim.distance(norm[0], norm[3], normalize=False).value, rel=1e-5)
    series_d = distance_to_reference(series, volsim)
    np.testing.assert_allclose(series_d, m[0], rtol=1e-5, atol=1e-9)
    assert np.all(np.diff(series_d) > 0)  # growing perturbation, growing distance


def test_float16_cache_stays_close(volsim, series):
    exact = distance_matrix(series, volsim, normalize=False)
    half = distance_matrix(series, volsim, normalize=False, max_cache_bytes=1)
    np.testing.assert_allclose(half, exact, rtol=1e-3, atol=1e-6)


def test_grouped_matrix_keeps_memory_bounded(volsim, series):
    exact = distance_matrix(series, volsim)
    per_volume = volsim.embedding_values(series[0].shape)
    calls = []
    grouped = distance_matrix(series, volsim, max_cache_bytes=per_volume * 2 * 2 * 2,  # two fp16 volumes per group
                              progress=lambda d, t: calls.append((d, t)))
    np.testing.assert_allclose(grouped, exact, rtol=1e-3, atol=1e-6)
    assert calls[-1][0] == calls[-1][1]


def test_classical_fallback_and_reference_volume(series):
    m = distance_matrix(series, "mse")
    mse = get_metric("mse")
    assert m[1, 4] == pytest.approx(mse.distance(series[1], series[4]).value)
    assert np.allclose(m, m.T)
    s = get_metric("ssim")
    sm = distance_matrix(series[:3], s)
    assert np.allclose(np.diag(sm), 1.0)
    ref = series[2]
    d = distance_to_reference(series, "rmse", reference=ref)
    assert d[2] == 0.0 and d[0] > 0


def test_cancel_hook_stops_the_work(volsim, series):
    with pytest.raises(Cancelled):
        distance_matrix(series, volsim, cancelled=lambda: True)
    state = {"n": 0}

    def cancel_later() -> bool:
        state["n"] += 1
        return state["n"] > 3

    with pytest.raises(Cancelled):
        distance_matrix(series, "mse", cancelled=cancel_later)
    with pytest.raises(Exception, match="outside"):
        distance_to_reference(series, "mse", reference=9)


def test_a_series_gives_pairwise_metrics_the_set_value_scale(series):
    """PSNR/SSIM take the set's range and normalising metrics the set's bounds, so a series has one scale."""
    lo = min(v.value_range()[0] for v in series)
    hi = max(v.value_range()[1] for v in series)
    psnr = get_metric("psnr")
    d = distance_to_reference(series, psnr)
    for k in (1, 4):
        assert d[k] == pytest.approx(psnr.distance(series[0], series[k], data_range=hi - lo).value)
    # with one range for the set, PSNR ranks the members exactly as MSE does
    mse = distance_to_reference(series, "mse")
    assert np.array_equal(np.argsort(-d[1:]), np.argsort(mse[1:]))
    # a normalising metric sees every member mapped with the set's bounds, not the pair's
    m = distance_matrix(series, "mse", normalize=True)
    norm = [Volume.from_array((2 * (v.data - lo) / (hi - lo) - 1).astype(np.float32)) for v in series]
    assert m[1, 3] == pytest.approx(float(np.mean((norm[1].data - norm[3].data) ** 2)), rel=1e-5)
    assert m[1, 3] != pytest.approx(get_metric("mse").distance(series[1], series[3], normalize=True).value, rel=1e-3)


def test_a_series_gives_learnsim_the_set_value_scale_magnitudes_first(series):
    """LearnSim normalises a pair to [0, 1] (vector volumes: their magnitudes); in a set every member is mapped
    with the set's bounds instead, so the identity network's series ranks exactly as MSE does."""
    ssd = get_metric("learnsim-ssd", weights="identity")  # untrained: value = plain SSD
    lo = min(v.value_range()[0] for v in series)
    hi = max(v.value_range()[1] for v in series)
    d = distance_to_reference(series, ssd)
    mse = distance_to_reference(series, "mse")
    np.testing.assert_allclose(d, mse / (hi - lo) ** 2, rtol=1e-4, atol=1e-12)
    # vectors: the magnitudes' bounds over the set, not the components'
    rng = np.random.default_rng(4)
    vecs = [Volume.from_array(rng.normal(size=(3, 8, 8, 8)).astype(np.float32) * (1 + 0.2 * k)) for k in range(3)]
    mags = [v.scalar() for v in vecs]
    mlo = min(m.value_range()[0] for m in mags)
    mhi = max(m.value_range()[1] for m in mags)
    m = distance_matrix(vecs, ssd)
    expected = float(np.mean((mags[0].data.astype(np.float64) - mags[2].data) ** 2)) / (mhi - mlo) ** 2
    assert m[0, 2] == pytest.approx(expected, rel=1e-4)


def test_set_scaling_per_channel_onto_the_metric_range():
    from core.metrics.base import Metric
    from core.metrics.matrix import set_scaling

    class PerChannel(Metric):
        input_range = (0.0, 255.0)
        input_per_channel = True
        normalizes_by_default = True

    rng = np.random.default_rng(3)
    vols = [Volume.from_array(rng.normal(size=(3, 8, 8, 8)).astype(np.float32) * [[[[1]]], [[[5]]], [[[20]]]])
            for _ in range(3)]
    prepare, options = set_scaling(PerChannel(), vols, {"stride": 2})
    assert options == {"stride": 2, "normalize": False}
    mapped = np.stack([prepare(v).data for v in vols])
    np.testing.assert_allclose(mapped.min(axis=(0, 2, 3, 4)), 0.0, atol=1e-4)
    np.testing.assert_allclose(mapped.max(axis=(0, 2, 3, 4)), 255.0, rtol=1e-6)
    # normalize=False from the caller, or a raw metric: nothing changes
    same, opts = set_scaling(PerChannel(), vols, {"normalize": False})
    assert same(vols[0]) is vols[0] and opts == {"normalize": False}
