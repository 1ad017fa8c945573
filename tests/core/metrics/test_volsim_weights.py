"""VolSiM weights: missing, wrong kind, pickled code, own safetensors format, 4-scale layout, feature maps."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch

from core.errors import MetricError, WeightsError
from core.metrics.registry import get_metric
from core.metrics.volsim import VolSiM
from core.metrics.volsim_net import VolSiMArchitecture, load_volsim_weights, new_weights
from core.volume import Volume


@pytest.fixture(scope="module")
def official(shared_dir):
    return shared_dir / "weights" / "VOLSIM" / "MS_3scales.pth"


@pytest.fixture(scope="module")
def metric(official):
    return VolSiM(weights=official)


def _smooth_pair(rng, shape=(32, 32, 32), channels=1, noise=0.3):
    from scipy.ndimage import gaussian_filter

    a = gaussian_filter(rng.normal(size=(channels, *shape)), (0, 2, 2, 2)).astype(np.float32)
    b = (a + noise * gaussian_filter(rng.normal(size=a.shape), (0, 1, 1, 1))).astype(np.float32)
    return Volume.from_array(a, name="a"), Volume.from_array(b, name="b")


def test_without_weights_says_none_are_installed(tmp_path, monkeypatch):
    monkeypatch.setenv("VOLSIGHT_VOLSIM_WEIGHTS", str(tmp_path / "absent.safetensors"))
    with pytest.raises(WeightsError) as err:
        get_metric("volsim")
    msg = str(err.value)
    assert "no VolSiM weights are installed" in msg and "--weights PATH" in msg and "absent.safetensors" in msg


def test_explicit_missing_file_is_named(tmp_path):
    with pytest.raises(WeightsError, match="nope.pth: no such weights file"):
        VolSiM(weights=tmp_path / "nope.pth")


def test_checkpoint_with_pickled_code_is_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"stateDict": Payload()}, f, protocol=2)
    with pytest.raises(WeightsError) as err:
        VolSiM(weights=path)
    assert "evil.pth" in str(err.value) and "pickled" in str(err.value)
    module = tmp_path / "module.pth"
    torch.save({"stateDict": torch.nn.Linear(2, 2), "hyperparams": {}, "normAcc": [], "normM2": [],
                "normCount": []}, module)  # a whole pickled Module, not plain tensors
    with pytest.raises(WeightsError, match="module.pth: refusing to load"):
        VolSiM(weights=module)


def test_checkpoint_of_another_kind_is_refused(tmp_path, shared_dir):
    other = tmp_path / "other.pth"
    torch.save({"model": {"w": torch.zeros(3)}}, other)
    with pytest.raises(WeightsError, match="other.pth: not a VolSiM checkpoint: missing stateDict"):
        VolSiM(weights=other)
    lsim = shared_dir / "weights" / "LSIM" / "LSiM.pth"
    with pytest.raises(WeightsError, match="LSiM.pth"):
        VolSiM(weights=lsim)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(WeightsError, match="notes.txt"):
        VolSiM(weights=text)


def test_own_format_round_trip(tmp_path, official, metric, rng):
    w = load_volsim_weights(official)
    out = tmp_path / "weights" / "volsim_copy.safetensors"
    w.save(out, provenance={"source": "converted from MS_3scales.pth", "sha256": "501a4153"})
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temporary left behind
    copy = VolSiM(weights=out)
    assert copy.net.arch == w.arch
    assert copy.net.provenance["source"] == "converted from MS_3scales.pth"
    a, b = _smooth_pair(rng)
    assert copy.distance(a, b).value == pytest.approx(metric.distance(a, b).value, rel=1e-6)
    other_kind = tmp_path / "other.safetensors"
    from core.metrics.weights_io import save_safetensors

    save_safetensors(other_kind, {"x": torch.zeros(2)}, {"format": "volsight.lsim"})
    with pytest.raises(WeightsError, match="not VolSiM"):
        VolSiM(weights=other_kind)


def test_four_scale_layout(tmp_path, rng):
    arch = VolSiMArchitecture.with_scales(4)
    assert arch == VolSiMArchitecture.from_official_name("multiScaleSkip_16_1")
    w = new_weights(arch, seed=0)
    n_params = sum(p.numel() for p in w.encoder.parameters()) + sum(arch.layer_channels)
    assert n_params == 350_420  # the paper's final VolSiM (notes §1.5)
    assert sum(p.numel() for p in new_weights(VolSiMArchitecture.with_scales(3)).encoder.parameters()) + 112 == 90_868
    path = tmp_path / "four.safetensors"
    w.save(path)
    m = VolSiM(weights=path)
    a, b = _smooth_pair(rng)
    d = m.distance(a, b, features=True)
    assert len(d.terms) == 16 and list(d.terms)[-1] == "s3.l3"
    assert d.features["s3.l3"].a.shape == (32, 2, 2, 2)
    assert d.value > 0


def test_feature_maps_come_from_the_same_pass(metric, rng):
    a, b = _smooth_pair(rng, channels=3)
    d = metric.distance(a, b, features=True)
    plain = metric.distance(a, b)
    assert d.value == plain.value
    assert list(d.features) == [f"s{s}.l{i}" for s in range(3) for i in range(4)]
    s0 = d.features["s0.l0"]
    assert s0.a.shape == (4, 32, 32, 32) and s0.diff.shape == s0.a.shape and s0.weights.shape == (4,)
    assert d.features["s2.l3"].a.shape == (16, 4, 4, 4)
    for name, sf in d.features.items():
        assert float(sf.diff.sum(axis=0).mean()) == pytest.approx(d.terms[name], rel=1e-4, abs=1e-12)
        assert np.all(sf.weights >= 0)
    assert sum(d.contributions.values()) == pytest.approx(d.value, rel=1e-9)
    assert math.sqrt(sum(d.terms.values())) == pytest.approx(d.value, rel=1e-9)


def test_constant_inputs_work(metric):
    zeros = Volume.from_array(np.zeros((1, 32, 32, 32), np.float32))
    assert metric.distance(zeros, zeros).value == 0.0
    ones = Volume.from_array(np.ones((1, 32, 32, 32), np.float32))
    d = metric.distance(zeros, ones)  # jointly normalised: -1 vs +1, a real difference
    assert math.isfinite(d.value) and d.value > 0
    assert metric.distance(zeros, ones, normalize=False).value > 0


def test_bad_sizes_and_shapes_are_user_errors(metric, rng):
    from core.errors import MetricError

    a = Volume.from_array(rng.normal(size=(1, 30, 32, 32)).astype(np.float32))
    with pytest.raises(MetricError, match="multiple of 4"):
        metric.distance(a, a)
    b = Volume.from_array(rng.normal(size=(1, 32, 32, 32)).astype(np.float32))
    with pytest.raises(MetricError, match="shapes differ"):
        metric.distance(a, b)
    d = metric.distance(a, b, resample=32)
    assert d.info["working_size"] == "32x32x32" and d.value > 0


def test_fitting_size_is_the_nearest_grid_the_network_takes(metric, rng):
    assert metric.fitting_size((32, 64, 16)) is None
    assert metric.fitting_size((18, 30, 3)) == (16, 32, 8)  # multiples of 4, at least 8
    with pytest.raises(MetricError, match="does not fit"):
        metric.distance(*(Volume.from_array(rng.random((18, 18, 18), dtype=np.float32)) for _ in range(2)))
    # the window (with volsight's own weights) resamples such a pair to that grid instead of refusing it
    from app import comparing

    a, b = (Volume.from_array(rng.random((18, 20, 22), dtype=np.float32), name=n) for n in "ab")
    d = comparing.distance_of(a, b, "volsim")
    assert d.info["resampled_to"] == "16×20×24"
    ref = comparing.built_metric("volsim").distance(a, b, resample=(16, 20, 24))
    assert d.value == pytest.approx(ref.value, rel=1e-6)
