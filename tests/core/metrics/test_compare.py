"""compare(): several metrics on one pair, JSON and CSV output, weights routing and option errors."""

from __future__ import annotations

import csv
import io
import json
import math

import numpy as np
import pytest

from core.compare import compare, resolve_weights
from core.errors import MetricError, WeightsError
from core.volume import Volume


@pytest.fixture
def pair(rng):
    a = rng.normal(size=(1, 32, 32, 32)).astype(np.float32)
    b = (a + 0.1 * rng.normal(size=a.shape)).astype(np.float32)
    return Volume.from_array(a, name="a"), Volume.from_array(b, name="b")


def test_compare_classical_and_volsim(pair, shared_dir):
    a, b = pair
    weights = shared_dir / "weights" / "VOLSIM" / "MS_3scales.pth"
    c = compare(a, b, ["mse", "psnr", "volsim"], weights=weights, features=True)
    assert set(c.distances) == {"mse", "psnr", "volsim"}
    assert c.distances["volsim"].features is not None and c.distances["mse"].features is None
    data = json.loads(c.to_json())
    assert data["a"]["shape"] == [32, 32, 32]
    assert data["distances"]["volsim"]["value"] == pytest.approx(c.value("volsim"))
    assert set(data["distances"]["volsim"]["terms"]) == {f"s{s}.l{i}" for s in range(3) for i in range(4)}
    rows = list(csv.DictReader(io.StringIO(c.to_csv())))
    assert [r["metric"] for r in rows if not r["scale"]] == ["mse", "psnr", "volsim"]
    assert len([r for r in rows if r["metric"] == "volsim" and r["scale"]]) == 12
    assert float(rows[0]["value"]) == pytest.approx(c.value("mse"))


def test_compare_options_reach_the_metrics(pair):
    a, b = pair
    raw = compare(a, b, ["mse"])
    norm = compare(a, b, ["mse"], normalize=True)
    assert norm.value("mse") != raw.value("mse")
    same = compare(a, a, ["psnr"], metric_options={"psnr": {"data_range": 1.0}})
    assert same.value("psnr") == math.inf
    assert json.loads(same.to_json())["distances"]["psnr"]["value"] == "inf"
    with pytest.raises(MetricError, match="unknown option"):
        compare(a, b, ["mse"], window=3)


def test_weights_routing_and_missing_weights(pair, tmp_path, monkeypatch):
    assert resolve_weights("x.pth", ["mse", "volsim"]) == {"volsim": "x.pth"}
    with pytest.raises(MetricError):
        resolve_weights("x.pth", ["mse"])
    monkeypatch.setenv("VOLSIGHT_VOLSIM_WEIGHTS", str(tmp_path / "none.safetensors"))
    with pytest.raises(WeightsError, match="no VolSiM weights are installed"):
        compare(*pair, ["volsim"])
    with pytest.raises(MetricError, match="unknown metric"):
        compare(*pair, ["mse", "bogus"])
