"""Classical metrics: definitions, skimage agreement of SSIM, voxel maps, options and errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from skimage.metrics import structural_similarity

from core.errors import MetricError
from core.metrics.registry import describe_metrics, get_metric
from core.volume import Volume


def _pair(rng, shape=(20, 24, 28), channels=1, noise=0.2):
    a = gaussian_filter(rng.normal(size=(channels, *shape)), (0, 1.5, 1.5, 1.5)).astype(np.float32)
    b = (a + noise * rng.normal(size=a.shape)).astype(np.float32)
    return a, b, Volume.from_array(a), Volume.from_array(b)


def test_ssim_matches_scikit_image(rng):
    a, b, va, vb = _pair(rng)
    r = float(max(a.max(), b.max()) - min(a.min(), b.min()))
    x, y = a[0].astype(np.float64), b[0].astype(np.float64)  # scikit-image computes float32 input in float32
    ref = structural_similarity(x, y, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=r)
    d = get_metric("ssim").distance(va, vb)
    assert d.value == pytest.approx(ref, abs=1e-9)
    assert d.kind == "similarity" and d.voxel_map.shape == (20, 24, 28)
    # explicit data range, and full map agrees in the interior
    ref2, full = structural_similarity(x, y, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                       data_range=4.0, full=True)
    d2 = get_metric("ssim").distance(va, vb, data_range=4.0)
    assert d2.value == pytest.approx(ref2, abs=1e-9)
    np.testing.assert_allclose(d2.voxel_map[5:-5, 5:-5, 5:-5], full[5:-5, 5:-5, 5:-5], atol=1e-6)


def test_ssim_three_channels_matches_scikit_image(rng):
    a, b, va, vb = _pair(rng, shape=(16, 16, 16), channels=3)
    ref = structural_similarity(a.astype(np.float64), b.astype(np.float64), gaussian_weights=True, sigma=1.5,
                                use_sample_covariance=False, data_range=2.5, channel_axis=0)
    assert get_metric("ssim").distance(va, vb, data_range=2.5).value == pytest.approx(ref, abs=1e-9)


def test_mse_family_definitions_and_maps(rng):
    a, b, va, vb = _pair(rng)
    diff = a.astype(np.float64) - b
    assert get_metric("mse").distance(va, vb).value == pytest.approx(np.mean(diff**2), rel=1e-9)
    assert get_metric("rmse").distance(va, vb).value == pytest.approx(math.sqrt(np.mean(diff**2)), rel=1e-9)
    assert get_metric("mae").distance(va, vb).value == pytest.approx(np.mean(np.abs(diff)), rel=1e-9)
    ssd = get_metric("ssd").distance(va, vb)
    assert ssd.value == pytest.approx(np.sum(diff**2), rel=1e-9)
    np.testing.assert_allclose(ssd.voxel_map, diff[0] ** 2, rtol=1e-5)
    np.testing.assert_allclose(get_metric("mae").distance(va, vb).voxel_map, np.abs(diff[0]), rtol=1e-5)


def test_psnr_data_range_is_explicit(rng):
    a, b, va, vb = _pair(rng)
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    joint = float(max(a.max(), b.max()) - min(a.min(), b.min()))
    d = get_metric("psnr").distance(va, vb)
    assert d.value == pytest.approx(10 * math.log10(joint**2 / mse), rel=1e-9)
    assert d.info["data_range"] == pytest.approx(joint)
    assert get_metric("psnr").distance(va, vb, data_range=1.0).value == pytest.approx(10 * math.log10(1 / mse))
    assert get_metric("psnr").distance(va, va).value == math.inf
    with pytest.raises(MetricError):
        get_metric("psnr").distance(va, vb, data_range=0)


def test_correlations(rng):
    a, b, va, vb = _pair(rng)
    ncc = get_metric("ncc").distance(va, vb).value
    assert ncc == pytest.approx(np.corrcoef(a.ravel(), b.ravel())[0, 1], rel=1e-9)
    scaled = Volume.from_array(3 * a + 1)
    assert get_metric("ncc").distance(va, scaled).value == pytest.approx(1.0, abs=1e-9)
    neg = Volume.from_array(-a)
    assert get_metric("ncc").distance(va, neg).value == pytest.approx(-1.0, abs=1e-9)
    lcc = get_metric("lcc").distance(va, vb)
    assert lcc.voxel_map.shape == (20, 24, 28) and -1 <= lcc.value <= 1
    # the definition, written out with scipy's box filter (symmetric boundary)
    from scipy.ndimage import uniform_filter

    x, y = a[0].astype(np.float64), b[0].astype(np.float64)
    mx, my = uniform_filter(x, 9, mode="reflect"), uniform_filter(y, 9, mode="reflect")
    vx = np.maximum(uniform_filter(x * x, 9, mode="reflect") - mx * mx, 0)
    vy = np.maximum(uniform_filter(y * y, 9, mode="reflect") - my * my, 0)
    c = (0.03 * float(max(x.max(), y.max()) - min(x.min(), y.min()))) ** 2 / 2
    local = (uniform_filter(x * y, 9, mode="reflect") - mx * my + c) / (np.sqrt(vx * vy) + c)
    assert lcc.value == pytest.approx(float(local.mean()), abs=1e-9)
    np.testing.assert_allclose(lcc.voxel_map, local, atol=1e-6)
    assert get_metric("lcc").distance(va, va).value == pytest.approx(1.0)
    assert get_metric("lcc").distance(va, neg).value < 0
    flat = Volume.from_array(np.ones((1, 8, 8, 8), np.float32))
    assert get_metric("ncc").distance(flat, flat).value == 1.0
    assert get_metric("lcc").distance(flat, flat).value == 1.0
    with pytest.raises(MetricError):
        get_metric("lcc").distance(va, vb, window=4)


def test_options_and_errors(rng):
    a, b, va, vb = _pair(rng)
    n = get_metric("mse").distance(va, vb, normalize=True)
    lo, hi = min(a.min(), b.min()), max(a.max(), b.max())
    scale = 2 / (hi - lo)
    assert n.value == pytest.approx(get_metric("mse").distance(va, vb).value * scale**2, rel=1e-5)
    small = Volume.from_array(a[:, :10, :12, :14])
    with pytest.raises(MetricError, match="shapes differ"):
        get_metric("mse").distance(va, small)
    assert get_metric("mse").distance(va, small, resample=16).info["normalize"] is False
    with pytest.raises(MetricError, match="unknown option"):
        get_metric("mse").distance(va, vb, window=3)
    with pytest.raises(MetricError):
        get_metric("nonexistent")


def test_descriptions_say_what_is_a_metric():
    info = {d["name"]: d for d in describe_metrics()}
    assert info["rmse"]["metric_properties"] and info["mae"]["metric_properties"]
    assert not info["mse"]["metric_properties"] and "not a metric" in info["mse"]["properties"]
    for name in ("ssim", "lcc", "ncc", "psnr"):
        assert info[name]["kind"] == "similarity" and "not a metric" in info[name]["properties"]
    assert info["volsim"]["learned"] and "pseudo-metric" in info["volsim"]["properties"]


@pytest.mark.parametrize("rows", [1, 4, 7])
def test_windowed_metrics_slab_by_slab_equal_the_whole_volume(rng, monkeypatch, rows):
    """Slabs of a few rows (halo = the window's radius) give the single-slab SSIM and LCC values and maps."""
    import core.metrics.classical as classical

    a, b, va, vb = _pair(rng, channels=3)
    whole = {m: get_metric(m).distance(va, vb) for m in ("ssim", "lcc")}
    monkeypatch.setattr(classical, "SLAB_BYTES", 8 * 24 * 28 * rows)  # _pair's volumes are 20 x 24 x 28
    for m, ref in whole.items():
        d = get_metric(m).distance(va, vb)
        assert d.value == pytest.approx(ref.value, abs=1e-12)
        np.testing.assert_allclose(d.voxel_map, ref.voxel_map, atol=1e-6)


@pytest.mark.parametrize("rows", [1, 3, 20])
def test_point_wise_metrics_slab_by_slab_equal_the_definitions_and_leave_inputs_alone(rng, monkeypatch, rows):
    import core.metrics.classical as classical

    a, b, _, _ = _pair(rng, channels=3)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)  # float64 volumes: the slabs must be copies
    va, vb = Volume.from_array(a64.copy()), Volume.from_array(b64.copy())
    monkeypatch.setattr(classical, "SLAB_BYTES", 8 * 3 * 24 * 28 * rows)  # _pair's volumes are 20 x 24 x 28
    diff = a64 - b64
    assert get_metric("mse").distance(va, vb).value == pytest.approx(np.mean(diff**2), rel=1e-12)
    assert get_metric("mae").distance(va, vb).value == pytest.approx(np.mean(np.abs(diff)), rel=1e-12)
    np.testing.assert_allclose(get_metric("mse").distance(va, vb).voxel_map, (diff**2).mean(0), rtol=1e-6)
    np.testing.assert_allclose(get_metric("ssd").distance(va, vb).voxel_map, (diff**2).sum(0), rtol=1e-6)
    assert get_metric("ncc").distance(va, vb).value == pytest.approx(np.corrcoef(a64.ravel(), b64.ravel())[0, 1],
                                                                     rel=1e-12)
    np.testing.assert_array_equal(va.data, a64)
    np.testing.assert_array_equal(vb.data, b64)


def test_ssim_of_one_constant_volume_with_itself_is_one(recwarn):
    # the joint range is 0, so SSIM's stabilisers vanish and its formula gives 0 / 0: identical is 1
    flat = Volume.from_array(np.full((1, 12, 12, 12), 2.5, np.float32))
    result = get_metric("ssim").distance(flat, flat)
    assert result.value == 1.0 and np.all(result.voxel_map == 1.0)
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]
    # two different constants keep SSIM's own value (their range is not 0)
    other = Volume.from_array(np.full((1, 12, 12, 12), 3.5, np.float32))
    c1 = (0.01 * 1.0) ** 2
    expected = (2 * 2.5 * 3.5 + c1) / (2.5**2 + 3.5**2 + c1)
    assert get_metric("ssim").distance(flat, other).value == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("channels", [1, 3])
def test_max_error_is_the_largest_absolute_difference_and_says_where(rng, monkeypatch, channels):
    import core.metrics.classical as classical

    a, b, va, vb = _pair(rng, channels=channels)
    diff = np.abs(a.astype(np.float64) - b).max(axis=0)  # over the channels
    at = np.unravel_index(int(diff.argmax()), diff.shape)
    monkeypatch.setattr(classical, "SLAB_BYTES", 8 * channels * 24 * 28 * 3)  # 3 planes a slab: several slabs
    d = get_metric("maxerr").distance(va, vb)
    assert d.value == pytest.approx(float(diff.max()), rel=1e-12) and d.info["at"] == [int(i) for i in at]
    np.testing.assert_allclose(d.voxel_map, diff, rtol=1e-6)
    assert get_metric("maxerr").distance(va, va).value == 0.0
    assert get_metric("maxerr").is_metric  # L-infinity: a metric, triangle inequality included


def test_max_error_of_a_region_names_the_voxel_of_a_grid(rng):
    from app.commands.compare import format_table
    from core.compare import compare

    a, b, va, vb = _pair(rng)
    box = ((4, 12), (0, 24), (10, 20))
    result = compare(va, vb, ["maxerr"], region=box)
    diff = np.abs(a[0].astype(np.float64) - b[0])[4:12, :, 10:20]
    at = np.unravel_index(int(diff.argmax()), diff.shape)
    assert result.distances["maxerr"].info["at"] == [int(at[0]) + 4, int(at[1]), int(at[2]) + 10]  # A's voxel
    assert "at z, y, x = {}, {}, {}".format(*result.distances["maxerr"].info["at"]) in format_table(result)
