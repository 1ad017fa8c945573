"""Evaluation protocol: Spearman with per-sequence rescaling, registry metrics, tables, distance cache."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from core.training.dataset import CachedSequence, load_cached
from core.training.evaluate import (
    MetricSpec,
    evaluate,
    mean_sequence_spearman,
    pooled_spearman,
    registry_metric,
    rescale_rows,
)

TRUTH = np.arange(1, 11) / 10


def test_rescale_rows():
    out = rescale_rows(np.array([[2.0, 4.0, 6.0], [1.0, 1.0, 1.0]]))
    np.testing.assert_allclose(out, [[0.1, 0.55, 1.0], [0.55, 0.55, 0.55]])


def test_pooled_spearman_rewards_order_within_sequences_not_scale_between_them():
    rng = np.random.default_rng(0)
    # every sequence linear in the truth, wildly different scales and offsets: pooled after rescaling -> 1
    rows = np.stack([TRUTH * rng.uniform(0.01, 100) + rng.uniform(0, 5) for _ in range(5)])
    assert pooled_spearman(rows, TRUTH) == pytest.approx(1.0)
    assert pooled_spearman(-rows, TRUTH) == pytest.approx(-1.0)
    assert mean_sequence_spearman(rows, TRUTH) == pytest.approx(1.0)
    # bent but ordered sequences: each one is perfect, the pooled rank order is not quite
    bent = np.stack([TRUTH ** p for p in (0.5, 1.0, 2.0)])
    assert mean_sequence_spearman(bent, TRUTH) == pytest.approx(1.0)
    assert 0.9 < pooled_spearman(bent, TRUTH) < 1.0
    shuffled = np.stack([rng.permutation(r) for r in rows])
    assert abs(pooled_spearman(shuffled, TRUTH)) < 0.5


def _sequence(family: str, seed: int, noise: float) -> CachedSequence:
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((1, 8, 8, 8))
    drift = rng.standard_normal((1, 8, 8, 8))
    frames = np.stack([base + 0.1 * j * drift + noise * rng.standard_normal((1, 8, 8, 8)) for j in range(11)])
    return CachedSequence(family, seed, frames.astype(np.float16), "drift", np.arange(11.0), 0.0)


def test_evaluate_table_csv_and_cache(tmp_path):
    seqs = [_sequence("shapes", 0, 0.0), _sequence("shapes", 1, 0.0), _sequence("noise", 2, 0.3)]
    calls = []

    def mse(frames):
        calls.append(1)
        return ((frames[1:] - frames[:1]) ** 2).mean(axis=(1, 2, 3, 4))

    specs = [MetricSpec("mse-like", mse, key="mse-like-test"), registry_metric("psnr", "psnr")]
    table = evaluate(seqs, specs, held_out=["shapes"], distance_cache=tmp_path / "d")
    assert table.families == ["shapes", "noise"] and table.sequences == {"shapes": 2, "noise": 1}
    # (float16 frames: the two sequences' curves agree up to rounding, so pooled is ~1, not exactly 1)
    assert table.per_sequence["mse-like"]["shapes"] == pytest.approx(1.0)
    assert table.pooled["mse-like"]["shapes"] == pytest.approx(1.0, abs=0.01)
    assert table.pooled["mse-like"]["held-out mean"] == table.pooled["mse-like"]["shapes"]
    # PSNR is a similarity: negated, it ranks like MSE on noise-free drifts
    assert table.per_sequence["psnr"]["shapes"] == pytest.approx(1.0)
    assert len(calls) == 3
    text = table.format()
    assert "shapes*" in text and "mse-like" in text
    table.write_csv(tmp_path / "r.csv")
    rows = list(csv.reader(open(tmp_path / "r.csv")))
    assert rows[0][:4] == ["metric", "protocol", "shapes", "noise"] and len(rows) == 5
    json.dumps(table.as_dict())
    # second run: distances come from the cache, the metric is not called again
    evaluate(seqs, specs[:1], held_out=["shapes"], distance_cache=tmp_path / "d")
    assert len(calls) == 3


def test_registry_metric_on_a_generated_sequence(tiny_cache):
    seq = load_cached(tiny_cache[1][0])
    spec = registry_metric("ssim", "ssim")
    d = spec.distances(seq.frames.astype(np.float32))
    assert d.shape == (10,) and np.isfinite(d).all()
    assert d[-1] > d[0]  # 1 - SSIM grows along the sequence (negated similarity)


def test_sequence_scope_uses_one_value_scale_per_sequence():
    """One noisy frame with a new extreme rescales only its own pair in pair scope, not in sequence scope."""
    rng = np.random.default_rng(0)
    base = rng.normal(size=(1, 16, 16, 16)).astype(np.float32)
    frames = np.stack([base + 0.05 * k * rng.normal(size=base.shape).astype(np.float32) for k in range(11)])
    frames[3, 0, 0, 0, 0] = 3.0 * float(np.abs(frames).max())  # one voxel: the pair (0, 3) gets a wider range
    seq = registry_metric("psnr", "psnr").distances(frames)
    pair = registry_metric("psnr", "psnr", scope="pair").distances(frames)
    mse = registry_metric("mse", "mse").distances(frames)
    assert np.array_equal(np.argsort(seq), np.argsort(mse))  # sequence scope: PSNR ranks as MSE
    # pair scope: the wider range makes frame 3 look closer than frame 4, though its MSE is larger
    assert mse[2] > mse[3] and pair[2] < pair[3]
    assert registry_metric("psnr", "psnr").key != registry_metric("psnr", "psnr", scope="pair").key
    with pytest.raises(ValueError, match="scope"):
        registry_metric("psnr", "psnr", scope="set")


def test_bootstrap_differences_are_paired_and_cover_the_lead(tmp_path):
    seqs = [_sequence("shapes", s, 0.0) for s in range(12)] + [_sequence("noise", 100 + s, 0.0) for s in range(12)]

    def exact(frames):  # ranks every sequence perfectly
        return np.arange(1, frames.shape[0], dtype=np.float64)

    def noisy(frames):  # the same, scrambled by a fixed, sequence-dependent noise
        rng = np.random.default_rng(int(abs(float(frames[0].sum())) * 1000) % 2**32)
        return np.arange(1, frames.shape[0], dtype=np.float64) + rng.normal(0, 3.0, frames.shape[0] - 1)

    specs = [MetricSpec("exact", exact), MetricSpec("twin", exact), MetricSpec("noisy", noisy)]
    table = evaluate(seqs, specs, held_out=["shapes"])
    diffs = table.bootstrap_differences("exact", samples=200, seed=1)
    assert set(diffs) == {"twin", "noisy"}
    # a metric equal to the reference: every paired draw differs by exactly 0
    assert diffs["twin"]["shapes"] == (0.0, 0.0, 0.0)
    d, lo, hi = diffs["noisy"]["shapes"]
    assert d == pytest.approx(table.pooled["exact"]["shapes"] - table.pooled["noisy"]["shapes"])
    assert 0.0 < lo <= d <= hi  # the exact metric leads, and the interval says so
    assert diffs["noisy"]["held-out mean"] == diffs["noisy"]["shapes"]  # one held-out family: the same draws
    text = table.format_bootstrap()
    assert "exact minus each metric" in text and "noisy" in text and "shapes*" in text
    table.write_csv(tmp_path / "r.csv")
    rows = list(csv.reader(open(tmp_path / "r.csv")))
    assert [r[1] for r in rows if r[0] == "noisy"][2:] == [
        "exact minus metric: difference", "exact minus metric: low (95%)", "exact minus metric: high (95%)"]
    assert json.loads(json.dumps(table.as_dict()))["bootstrap"]["differences"]["twin"]["noise"] == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="absent"):
        table.bootstrap_differences("absent")
