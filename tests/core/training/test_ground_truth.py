"""Ground truth: linear offsets and VolSiM's fitted non-linear correction."""

from __future__ import annotations

import numpy as np

from core.training.simulations.ground_truth import (
    correction,
    fit_coefficient,
    linear_distances,
    target_distances,
)


def test_linear_distances():
    d = linear_distances(11)
    assert d.shape == (11, 11)
    assert d[0, 10] == 1.0 and d[3, 5] == 0.2 and d[5, 3] == 0.2 and np.all(np.diag(d) == 0)


def test_correction_fixes_ends_and_bends():
    x = np.linspace(0, 1, 11)
    for c in (-3.0, 0.5, 2.0):
        y = correction(x, c)
        assert abs(y[0]) < 1e-12 and abs(y[-1] - 1) < 1e-12
        assert np.all(np.diff(y) > 0)
    assert np.all(correction(x[1:-1], 2.0) > x[1:-1])  # c > 0: concave (saturating) distances
    np.testing.assert_allclose(correction(x, -6.0), x, atol=1e-4)  # very negative c: linear


def test_fit_recovers_a_known_coefficient():
    # frames whose correlation distance to frame 0 follows f(x; c=1.5): mix a reference with noise
    rng = np.random.default_rng(0)
    ref = rng.standard_normal(4000)
    other = rng.standard_normal(4000)
    other -= ref * (other @ ref) / (ref @ ref)
    target = correction(np.arange(11) / 10, 1.5)
    frames = []
    for t in target:
        # 1 - |corr| = s * t with a small scale s keeps the mapping exact: corr = 1 - s t
        r = 1.0 - 0.5 * t
        frames.append(r * ref / ref.std() + np.sqrt(1 - r * r) * other / other.std())
    c = fit_coefficient(np.stack(frames))
    assert abs(c - 1.5) < 0.1


def test_targets_with_and_without_correction():
    lin = target_distances(11)
    bent = target_distances(11, 1.0)
    np.testing.assert_array_equal(lin, linear_distances(11))
    assert np.all(bent[0, 1:10] > lin[0, 1:10])
