"""Per-slice curves of a pair (the window's slice profile; ``volsight compare --per-slice``)."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from app.cli import main
from core.compare import compare, per_slice, per_slice_table
from core.errors import MetricError
from core.volume import Volume


def test_per_slice_means_and_rms_along_each_axis(rng):
    d = rng.normal(size=(4, 5, 6))
    for axis, others in ((0, (1, 2)), (1, (0, 2)), (2, (0, 1))):
        np.testing.assert_allclose(per_slice(d, axis), d.mean(axis=others), rtol=1e-12)
        np.testing.assert_allclose(per_slice(d, axis, rms=True), np.sqrt((d**2).mean(axis=others)), rtol=1e-12)
    with pytest.raises(MetricError, match="axis 0, 1 or 2"):
        per_slice(d, 3)
    # slices of 600 x 700 float32 values: a few at a time in float64, the same curves
    big = rng.normal(size=(7, 600, 700)).astype(np.float32)
    for axis, others in ((0, (1, 2)), (1, (0, 2)), (2, (0, 1))):
        exact = big.astype(np.float64)
        np.testing.assert_allclose(per_slice(big, axis), exact.mean(axis=others), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(per_slice(big, axis, rms=True), np.sqrt((exact**2).mean(axis=others)), rtol=1e-12)


def test_table_has_the_rms_of_a_minus_b_and_each_map_per_slice(rng, tmp_path, capsys):
    a = rng.random((12, 14, 16)).astype(np.float32)
    b = a.copy()
    b[2] += 0.5  # only z slice 2 differs
    va, vb = Volume.from_array(a, name="a"), Volume.from_array(b, name="b")
    comp = compare(va, vb, ["mse", "ssim"])
    rows = list(csv.reader(io.StringIO(per_slice_table(comp, 0))))
    assert rows[0] == ["z", "rms_a_minus_b", "mse", "ssim"] and len(rows) == 13
    values = np.array([[float(x) for x in r[1:]] for r in rows[1:]])
    np.testing.assert_allclose(values[:, 0], [0, 0, 0.5] + [0] * 9, atol=1e-6)  # RMS of A − B
    np.testing.assert_allclose(values[:, 1], values[:, 0] ** 2, atol=1e-6)  # the MSE map's mean: RMS squared
    assert values[2, 2] < values[0, 2]  # SSIM is lowest on the changed slice
    np.testing.assert_allclose(values[:, 1].mean(), comp.value("mse"), rtol=1e-6)

    pa, pb = tmp_path / "a.npy", tmp_path / "b.npy"
    np.save(pa, a)
    np.save(pb, b)
    assert main(["compare", str(pa), str(pb), "-m", "mse", "--per-slice", "z"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "z,rms_a_minus_b,mse" and float(out[3].split(",")[1]) == pytest.approx(0.5, abs=1e-6)
    assert main(["compare", str(pa), str(pb), "-m", "mse", "--per-slice", "x", "--region", "1:4,:,2:6"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 + 4  # a region's slices only
    assert main(["compare", str(pa), str(pb), "--per-slice", "z", "--resample", "16"]) == 2
    assert "use --onto-a, not --resample" in capsys.readouterr().err


def test_max_error_sums_up_each_slice_by_its_largest_value(rng):
    d = rng.random((4, 5, 6))
    for axis, others in ((0, (1, 2)), (1, (0, 2)), (2, (0, 1))):
        np.testing.assert_array_equal(per_slice(d, axis, summary="max"), d.max(axis=others))
    with pytest.raises(MetricError, match="'mean' or its 'max'"):
        per_slice(d, 0, summary="median")
    a = rng.random((6, 7, 8)).astype(np.float32)
    b = a.copy()
    b[3, 2, 5] += 0.75  # one voxel of slice z = 3
    comp = compare(Volume.from_array(a, name="a"), Volume.from_array(b, name="b"), ["mae", "maxerr"])
    rows = list(csv.reader(io.StringIO(per_slice_table(comp, 0))))
    assert rows[0] == ["z", "rms_a_minus_b", "mae", "maxerr"]
    values = np.array([[float(x) for x in r[1:]] for r in rows[1:]])
    np.testing.assert_allclose(values[:, 2], [0, 0, 0, 0.75, 0, 0], atol=1e-6)  # the largest, not the mean
    np.testing.assert_allclose(values[3, 1], 0.75 / 56, rtol=1e-5)  # MAE's map: the mean
