"""Shared preprocessing: joint min-max, resampling, channel repetition (2D and 3D)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.errors import MetricError
from core.metrics.preprocess import (
    Preprocessing,
    joint_minmax,
    prepare_pair,
    prepare_volume,
    repeat_channels,
    resample,
    value_bounds,
)


def test_joint_minmax_maps_pair_range_onto_target(rng):
    a = rng.normal(size=(1, 6, 7, 8)).astype(np.float32)
    b = 3 * a + 2
    ta, tb = joint_minmax(a, b)
    both = torch.cat([ta.flatten(), tb.flatten()])
    assert float(both.min()) == pytest.approx(-1.0, abs=1e-6)
    assert float(both.max()) == pytest.approx(1.0, abs=1e-6)
    # one affine map for both: the order of values across the pair is kept
    assert float(ta.max()) < float(tb.max())


def test_joint_minmax_constant_pair_goes_to_middle_not_nan():
    a = np.full((1, 4, 4, 4), 5.0, np.float32)
    ta, tb = joint_minmax(a, a)
    assert torch.all(ta == 0) and torch.all(tb == 0)
    ta, tb = joint_minmax(a, a, (0.0, 255.0))
    assert torch.all(ta == 127.5)


def test_joint_minmax_per_channel_in_2d(rng):
    a = rng.normal(size=(3, 10, 12)).astype(np.float32)
    a[1] *= 100
    b = a + 0.1
    ta, tb = joint_minmax(a, b, (0.0, 255.0), per_channel=True)
    for c in range(3):
        lo = min(float(ta[c].min()), float(tb[c].min()))
        hi = max(float(ta[c].max()), float(tb[c].max()))
        assert lo == pytest.approx(0.0, abs=1e-3) and hi == pytest.approx(255.0, abs=1e-3)


def test_linear_resampling_is_corner_aligned():
    # a linear ramp stays exactly linear, with first/last voxel centres fixed
    ramp = np.linspace(0, 1, 9, dtype=np.float32)[None, :, None, None] * np.ones((1, 9, 4, 4), np.float32)
    out = resample(ramp, (17, 4, 4)).numpy()
    np.testing.assert_allclose(out[0, :, 0, 0], np.linspace(0, 1, 17), atol=1e-6)


def test_cubic_resampling_matches_scipy_zoom(rng):
    from scipy.ndimage import zoom

    x = rng.normal(size=(1, 8, 10, 12)).astype(np.float32)
    out = resample(x, (16, 16, 16), "cubic").numpy()
    ref = zoom(x[0], (16 / 8, 16 / 10, 16 / 12), order=3)
    np.testing.assert_allclose(out[0], ref, rtol=1e-5, atol=1e-5)


def test_nearest_resampling_picks_input_values(rng):
    x = rng.normal(size=(1, 5, 5)).astype(np.float32)
    out = resample(x, (9, 9), "nearest").numpy()
    assert set(np.round(out.ravel(), 6)) <= set(np.round(x.ravel(), 6))
    assert out[0, 0, 0] == x[0, 0, 0] and out[0, -1, -1] == x[0, -1, -1]


def test_repeat_channels_and_errors():
    x = np.zeros((1, 3, 3, 3), np.float32)
    assert tuple(repeat_channels(x, 3).shape) == (3, 3, 3, 3)
    with pytest.raises(MetricError):
        repeat_channels(np.zeros((2, 3, 3, 3), np.float32), 3)
    with pytest.raises(MetricError):
        resample(x, (4, 4, 4), "quintic")


def test_prepare_pair_and_volume_agree_with_joint_bounds(rng):
    a = rng.normal(size=(1, 8, 8, 8)).astype(np.float32)
    b = a * 0.5 + 1
    opts = Preprocessing(resample=(16, 16, 16))
    pa, pb = prepare_pair(a, b, opts)
    assert tuple(pa.shape) == (3, 16, 16, 16)
    bounds = value_bounds(a, b)
    torch.testing.assert_close(prepare_volume(a, opts, bounds), pa)
    torch.testing.assert_close(prepare_volume(b, opts, bounds), pb)
    with pytest.raises(MetricError):
        prepare_pair(a, b[:, :4], Preprocessing())
    # with a working size, differently shaped inputs are allowed: both end up there
    pa, pb = prepare_pair(a, b[:, :4], opts)
    assert pa.shape == pb.shape == (3, 16, 16, 16)


def test_options_override_and_describe():
    p = Preprocessing().with_options(normalize=False, resample=64)
    assert not p.normalize and p.resample == 64
    assert "no value normalisation" in p.describe()
    assert "[-1, 1]" in Preprocessing().describe()
