"""Metric properties on random triplets: which metrics keep them, and the counterexamples for those that don't."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from core.metrics.registry import get_metric
from core.metrics.volsim import VolSiM
from core.volume import Volume


@pytest.fixture(scope="module")
def volsim(shared_dir):
    return VolSiM(weights=shared_dir / "weights" / "VOLSIM" / "MS_3scales.pth")


def _triplets(seed: int, count: int, shape=(16, 16, 16), channels=1):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        base = gaussian_filter(rng.normal(size=(channels, *shape)), (0, 2, 2, 2))
        vols = []
        for _ in range(3):
            step = rng.uniform(0.05, 1.0) * gaussian_filter(rng.normal(size=base.shape), (0, 1, 1, 1))
            vols.append(Volume.from_array((base + step).astype(np.float32)))
        yield vols


def _check_properties(d, x, y, z, rel=1e-6):
    dxy, dyx = d(x, y), d(y, x)
    assert dxy >= 0
    assert dxy == pytest.approx(dyx, rel=rel, abs=1e-12)
    assert d(x, x) == pytest.approx(0.0, abs=1e-12)
    assert d(x, z) <= d(x, y) + d(y, z) + rel * max(d(x, z), 1e-12)


@pytest.mark.parametrize("name", ["rmse", "mae"])
def test_norm_based_metrics_are_metrics(name):
    m = get_metric(name)
    assert m.is_metric
    for x, y, z in _triplets(1, 10):
        _check_properties(lambda a, b: m.distance(a, b).value, x, y, z)


def test_mse_breaks_the_triangle_inequality():
    a, b, c = (Volume.from_array(np.full((1, 4, 4, 4), v, np.float32)) for v in (0.0, 1.0, 2.0))
    mse = get_metric("mse")
    assert not mse.is_metric
    assert mse.distance(a, c).value > mse.distance(a, b).value + mse.distance(b, c).value  # 4 > 1 + 1


def test_volsim_without_normalisation_is_a_pseudo_metric(volsim):
    # small volumes keep this fast; the property is structural (weighted L2 between fixed embeddings)
    for x, y, z in _triplets(2, 8, shape=(16, 16, 16)):
        _check_properties(lambda a, b: volsim.distance(a, b, normalize=False).value, x, y, z)


def test_volsim_with_pair_normalisation_keeps_symmetry_and_identity(volsim):
    for x, y, _ in _triplets(3, 2, shape=(32, 32, 32), channels=3):
        assert volsim.distance(x, y).value == pytest.approx(volsim.distance(y, x).value, rel=1e-6)
        assert volsim.distance(x, x).value == 0.0


def test_similarities_are_largest_for_identical_inputs():
    for x, y, _ in _triplets(4, 3):
        for name in ("ssim", "ncc", "lcc"):
            m = get_metric(name)
            assert m.kind == "similarity" and not m.is_metric
            assert m.distance(x, x).value == pytest.approx(1.0)
            assert m.distance(x, y).value < 1.0
