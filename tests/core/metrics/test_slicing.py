"""Slice-wise evaluation of 2D metrics on volumes: axis choice, slice extraction, aggregation, images."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import MetricError
from core.metrics.slicing import (
    image_array,
    middle_slice,
    pair_data,
    parse_axes,
    slice_indices,
    slice_options,
    sliced_distance,
    volume_slices,
)


def _mean_abs(sa: np.ndarray, sb: np.ndarray):
    """A toy per-slice metric with two 'scales' whose contributions sum to the value."""
    diff = np.abs(sa - sb)
    values = diff.mean(axis=(1, 2, 3))
    first = diff[:, :, : diff.shape[2] // 2].sum(axis=(1, 2, 3)) / diff[0].size
    return values, {"top": first, "bottom": values - first}, {"top": first, "bottom": values - first}


def test_parse_axes():
    assert parse_axes(0) == (0,)
    assert parse_axes("x") == (2,)
    assert parse_axes("ALL") == (0, 1, 2)
    assert parse_axes([2, "z", 2]) == (2, 0)
    with pytest.raises(MetricError, match=r"axis=0\|1\|2"):
        parse_axes(None, "lsim")
    for bad in (3, -1, "w", True, 1.5, []):
        with pytest.raises(MetricError):
            parse_axes(bad)


def test_slice_indices_and_stride_errors():
    np.testing.assert_array_equal(slice_indices(10, 3), [0, 3, 6, 9])
    for bad in (0, -2, 1.5, True):
        with pytest.raises(MetricError, match="stride"):
            slice_indices(10, bad)


def test_volume_slices_match_numpy(rng):
    data = rng.standard_normal((3, 5, 6, 7)).astype(np.float32)
    for axis in range(3):
        s = volume_slices(data, axis, np.array([0, 2]))
        assert s.shape[0] == 2 and s.shape[1] == 3
        np.testing.assert_array_equal(s[1], np.take(data, 2, axis=axis + 1))
        np.testing.assert_array_equal(middle_slice(data, axis), np.take(data, data.shape[axis + 1] // 2, axis=axis + 1))
    assert volume_slices(data, 0).shape == (5, 3, 6, 7)
    assert volume_slices(data, 2).shape == (7, 3, 5, 6)


def test_aggregation_is_pooled_mean_and_batch_independent(rng):
    a = rng.standard_normal((1, 6, 5, 4)).astype(np.float32)
    b = rng.standard_normal((1, 6, 5, 4)).astype(np.float32)
    res = sliced_distance(_mean_abs, a, b, "all", stride=1, batch_size=4)
    per_slice = [np.abs(np.take(a, i, axis=ax + 1) - np.take(b, i, axis=ax + 1)).mean()
                 for ax in range(3) for i in range(a.shape[ax + 1])]
    assert res.count == 15
    assert res.value == pytest.approx(np.mean(per_slice), rel=1e-6)
    assert sum(res.contributions.values()) == pytest.approx(res.value, rel=1e-6)
    assert res.per_axis["z"] == pytest.approx(np.mean(per_slice[:6]), rel=1e-6)
    assert res.values["x"].shape == (4,)
    other = sliced_distance(_mean_abs, a, b, "all", stride=1, batch_size=1)
    assert other.value == pytest.approx(res.value, rel=1e-6)
    strided = sliced_distance(_mean_abs, a, b, 0, stride=2, batch_size=16)
    assert strided.count == 3
    info = strided.info(2)
    assert info["slice_axes"] == "z" and info["slice_stride"] == 2 and info["slice_count"] == 3
    with pytest.raises(MetricError, match="shapes differ"):
        sliced_distance(_mean_abs, a, b[:, :5], 0)


def test_image_array_layouts(rng):
    gray = rng.random((10, 12))
    assert image_array(gray).shape == (1, 10, 12)
    chw = rng.random((3, 10, 12)).astype(np.float32)
    np.testing.assert_array_equal(image_array(chw), chw)
    rgba = (rng.random((10, 12, 4)) * 255).astype(np.uint8)
    out = image_array(rgba)
    assert out.shape == (3, 10, 12) and out.dtype == np.float32
    np.testing.assert_array_equal(out[1], rgba[..., 1])
    with pytest.raises(MetricError, match="channel axis"):
        image_array(rng.random((5, 10, 12)))
    with pytest.raises(MetricError, match="NaN"):
        image_array(np.full((4, 4), np.nan))
    with pytest.raises(MetricError):
        image_array(rng.random((2, 3, 4, 5)))


def test_slice_options():
    assert slice_options("m", {"axis": "all", "stride": 2, "normalize": True}, {"normalize"}) == ("all", 2)
    assert slice_options("m", {"slice_axis": 1, "resample": None}, set()) == (1, 1)
    with pytest.raises(MetricError, match="unknown"):
        slice_options("m", {"axis": 0, "window": 3}, {"normalize"})
    assert slice_options("m", {"axis": 0, "resample": 64, "interpolation": "nearest"}, set()) == (0, 1)


class _FakeMetric:
    name = "fake"
    channels = (1, 3)

    def check_pair(self, a, b):
        if a.shape != b.shape:
            raise MetricError("fake: shapes differ")


def test_pair_data_resamples_to_a_common_shape(rng):
    from core.volume import Volume

    a = Volume.from_array(rng.random((8, 10, 12)).astype(np.float32))
    b = Volume.from_array(rng.random((6, 6, 6)).astype(np.float32))
    with pytest.raises(MetricError, match="shapes differ"):
        pair_data(_FakeMetric(), a, b, {})
    da, db = pair_data(_FakeMetric(), a, b, {"resample": 16})
    assert da.shape == db.shape == (1, 16, 16, 16)
    np.testing.assert_allclose(da[0, 0, 0, 0], a.data[0, 0, 0, 0], rtol=1e-6)  # corner-aligned grid
    same_a, _ = pair_data(_FakeMetric(), a, a, {"resample": None})
    assert same_a is a.data
