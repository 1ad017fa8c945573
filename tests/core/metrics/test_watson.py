"""Watson-DCT / Watson-FFT: formula against an independent numpy version, defaults, loader, properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.fft import dct
from scipy.ndimage import gaussian_filter

from core.errors import MetricError, WeightsError
from core.metrics.registry import get_metric
from core.metrics.watson import (
    GRAY_FROM_RGB,
    PRESETS,
    RGB_CHANNEL_WEIGHTS,
    WATSON_DCT_THRESHOLDS,
    YCBCR_BIAS,
    YCBCR_MATRIX,
    WatsonDCT,
    WatsonFFT,
    WatsonModel,
    dct_matrix,
)
from core.volume import Volume

EPS = 1e-10


def _blocks(x: np.ndarray) -> np.ndarray:
    h, w = x.shape
    return x.reshape(h // 8, 8, w // 8, 8).transpose(0, 2, 1, 3).reshape(-1, 8, 8)


def _masked(c0, c1, t, alpha, w, beta):
    dc = c0[:, 0, 0]
    t_l = t[None] * (((dc + EPS) / (dc.mean() + EPS)) ** alpha)[:, None, None]
    other = (np.abs(c0) + EPS) ** w * t_l ** (1 - w)
    s = (t_l * np.exp(t_l) + other * np.exp(other)) / (np.exp(t_l) + np.exp(other))
    return float(np.sum((np.abs((c0 - c1) / s) + EPS) ** beta + EPS) ** (1 / beta))


def numpy_watson_dct(img, ref, t, alpha, w, beta):
    """Independent float64 Watson-DCT of ``img`` against ``ref`` (both [H, W] in [0, 1])."""
    d = dct(np.eye(8), norm="ortho", axis=0)
    c0 = d @ _blocks(ref.astype(np.float64)) @ d.T
    c1 = d @ _blocks(img.astype(np.float64)) @ d.T
    return _masked(c0, c1, np.asarray(t, np.float64), alpha, w, beta)


def numpy_watson_fft(img, ref, t, alpha, w, beta, w_phase):
    f0 = np.fft.rfft2(_blocks(ref.astype(np.float64))) / 64
    f1 = np.fft.rfft2(_blocks(img.astype(np.float64))) / 64
    amp0 = np.hypot(f0.real + EPS, f0.imag + EPS)
    amp1 = np.hypot(f1.real + EPS, f1.imag + EPS)
    amp = _masked(amp0, amp1, np.asarray(t, np.float64), alpha, w, beta)
    p0 = np.arctan2(f0.imag, f0.real + EPS)
    p1 = np.arctan2(f1.imag, f1.real + EPS)
    wp = np.array(w_phase, np.float64)
    for i, j in ((0, 0), (0, 4), (4, 0), (4, 4)):
        wp[i, j] = 0.0
    phase = float(np.sum(np.arccos(np.cos(p0 - p1) * (1 - 1e-7)) * wp[None]))
    return amp + phase


def _unit_pair(rng, shape=(32, 48), strength=0.2):
    a = gaussian_filter(rng.standard_normal(shape), 2.0)
    b = a + strength * gaussian_filter(rng.standard_normal(shape), 1.0)
    lo, hi = min(a.min(), b.min()), max(a.max(), b.max())
    return ((a - lo) / (hi - lo)).astype(np.float32), ((b - lo) / (hi - lo)).astype(np.float32)


def _ycbcr(x: np.ndarray) -> np.ndarray:
    return np.einsum("kc,chw->khw", np.array(YCBCR_MATRIX), x.astype(np.float64)) + np.array(YCBCR_BIAS)[:, None, None]


def test_dct_matrix_is_orthonormal_dct2():
    a = dct_matrix().double().numpy()
    np.testing.assert_allclose(a, dct(np.eye(8), norm="ortho", axis=0), atol=1e-7)
    np.testing.assert_allclose(a @ a.T, np.eye(8), atol=1e-6)


def test_published_defaults():
    t = np.exp(WatsonModel("dct").gray.t_tild.detach().numpy())
    np.testing.assert_allclose(t, np.array(WATSON_DCT_THRESHOLDS), rtol=1e-6)
    assert t[0, 0] == pytest.approx(1.40) and t[7, 7] == pytest.approx(21.15) and t[0, 1] == pytest.approx(1.01)
    g = WatsonModel("dct").gray
    assert float(g.alpha) == pytest.approx(0.2314) and float(g.w) == pytest.approx(0.4303, rel=1e-6)
    assert float(g.beta) == pytest.approx(0.9651)
    f = WatsonModel("fft").gray
    assert float(f.alpha) == pytest.approx(-0.135) and float(f.w) == pytest.approx(0.2057, rel=1e-6)
    np.testing.assert_allclose(f.thresholds.detach().numpy(), np.ones((8, 5)))
    wp = f.phase_weights().detach().numpy()
    assert wp[0, 0] == wp[0, 4] == wp[4, 0] == wp[4, 4] == 0.0 and wp[1, 1] == pytest.approx(math.exp(-2))
    rgb = WatsonModel("dct", color=True).channel_weights().detach().numpy()
    np.testing.assert_allclose(rgb, np.array(RGB_CHANNEL_WEIGHTS["dct"]) / sum(RGB_CHANNEL_WEIGHTS["dct"]), rtol=1e-6)
    w93 = WatsonModel("dct", preset="watson1993").gray
    assert float(w93.alpha) == pytest.approx(0.649) and float(w93.beta) == pytest.approx(4.0)
    with pytest.raises(MetricError, match="preset"):
        WatsonModel("dct", preset="nope")


@pytest.mark.parametrize("preset", list(PRESETS))
def test_dct_matches_independent_formula(preset, rng):
    a, b = _unit_pair(rng)
    m = WatsonDCT(preset=preset)
    p = PRESETS[preset]["dct"]
    expected = numpy_watson_dct(b, a, WATSON_DCT_THRESHOLDS, p["alpha"], p["w"], p["beta"])
    assert m.distance_2d(a, b, normalize=False).value == pytest.approx(expected, rel=1e-4)


def test_fft_matches_independent_formula(rng):
    a, b = _unit_pair(rng)
    p = PRESETS["czolbe2020"]["fft"]
    expected = numpy_watson_fft(b, a, np.ones((8, 5)), p["alpha"], p["w"], p["beta"], np.full((8, 5), math.exp(-2)))
    d = WatsonFFT().distance_2d(a, b, normalize=False)
    assert d.value == pytest.approx(expected, rel=1e-4)
    assert d.contributions["amplitude"] + d.contributions["phase"] == pytest.approx(d.value, rel=1e-6)


def test_rgb_goes_through_ycbcr(rng):
    a3 = np.stack(_unit_pair(rng, (32, 32))[:1] * 3) * np.array([1.0, 0.6, 0.3], np.float32)[:, None, None]
    b3 = np.clip(a3 + 0.05 * rng.standard_normal(a3.shape).astype(np.float32), 0, 1)
    d = WatsonDCT().distance_2d(a3, b3, normalize=False)
    ya, yb = _ycbcr(a3), _ycbcr(b3)
    p = PRESETS["czolbe2020"]["dct"]
    weights = np.array(RGB_CHANNEL_WEIGHTS["dct"]) / sum(RGB_CHANNEL_WEIGHTS["dct"])
    per = [numpy_watson_dct(yb[k], ya[k], WATSON_DCT_THRESHOLDS, p["alpha"], p["w"], p["beta"]) for k in range(3)]
    assert d.value == pytest.approx(float(np.dot(weights, per)), rel=1e-4)
    assert list(d.contributions) == ["Y", "Cb", "Cr"]
    assert sum(d.contributions.values()) == pytest.approx(d.value, rel=1e-6)
    gray = WatsonDCT(color="gray").distance_2d(a3, b3, normalize=False).value
    g = np.array(GRAY_FROM_RGB)[:, None, None]
    expected_gray = numpy_watson_dct((b3 * g).sum(0), (a3 * g).sum(0), WATSON_DCT_THRESHOLDS, p["alpha"], p["w"],
                                     p["beta"])
    assert gray == pytest.approx(expected_gray, rel=1e-4)


@pytest.mark.parametrize("cls", [WatsonDCT, WatsonFFT])
def test_asymmetric_deterministic_and_self_distance(cls, rng):
    a, b = _unit_pair(rng, (64, 64))
    m = cls()
    d_ab = m.distance_2d(a, b).value
    assert m.distance_2d(a, b).value == d_ab  # deterministic: no random shift
    assert m.distance_2d(b, a).value != pytest.approx(d_ab, rel=1e-6)  # the reference drives masking
    self_d = m.distance_2d(a, a).value
    assert 0 < self_d < 0.01 * d_ab
    assert m.describe()["symmetric"] is False and m.describe()["metric_properties"] is False


def test_per_image_dc_mean_removes_batch_coupling(rng):
    """Slices are evaluated in batches; the value must not depend on the batch size (original couples the batch)."""
    vol_a = gaussian_filter(rng.standard_normal((16, 16, 24)), 2).astype(np.float32)
    vol_b = vol_a + 0.1 * gaussian_filter(rng.standard_normal((16, 16, 24)), 1).astype(np.float32)
    vol_b[:8] += 0.5  # slices with very different brightness in one batch
    va, vb = Volume.from_array(vol_a), Volume.from_array(vol_b)
    one = WatsonDCT(batch_size=1).distance(va, vb, axis=0)
    many = WatsonDCT(batch_size=16).distance(va, vb, axis=0)
    assert many.value == pytest.approx(one.value, rel=1e-6)
    singles = [WatsonDCT().distance_2d(vol_a[i], vol_b[i]).value for i in range(16)]
    assert many.value == pytest.approx(np.mean(singles), rel=1e-6)


def test_crop_pad_and_small_inputs(rng):
    a, b = _unit_pair(rng, (20, 27))
    m = WatsonDCT()
    cropped = m.distance_2d(a, b, normalize=False).value
    assert cropped == pytest.approx(m.distance_2d(a[2:18, 1:25], b[2:18, 1:25], normalize=False).value, rel=1e-6)
    padded = WatsonDCT(fit="pad").distance_2d(a, b, normalize=False).value
    pa = np.pad(a, ((0, 4), (0, 5)), mode="edge")
    pb = np.pad(b, ((0, 4), (0, 5)), mode="edge")
    assert padded == pytest.approx(m.distance_2d(pa, pb, normalize=False).value, rel=1e-6)
    with pytest.raises(MetricError, match="smaller than one 8x8 block"):
        m.distance_2d(a[:6], b[:6])
    with pytest.raises(MetricError, match="fit"):
        WatsonDCT(fit="stretch").distance_2d(a, b)


def test_volumes_need_slicing_and_use_registry(rng):
    m = get_metric("watson-fft")
    va = Volume.from_array(gaussian_filter(rng.standard_normal((16, 16, 16)), 2).astype(np.float32))
    vb = va.evolve(data=va.data * 1.1 + 0.05 * rng.standard_normal(va.data.shape).astype(np.float32))
    with pytest.raises(MetricError, match="2D metric"):
        m.distance(va, vb)
    d = m.distance(va, vb, axis="all", stride=4)
    assert d.info["slice_count"] == 12 and d.value > 0
    assert sum(d.contributions.values()) == pytest.approx(d.value, rel=1e-6)
    assert "slice_axes_left_out" not in d.info


def test_all_axes_of_a_slab_are_the_planes_with_room_for_a_block(rng):
    """A slab 6 voxels thin: 'all' compares its 32×24 planes (its 6×24 and 6×32 strips hold no 8×8 block) and says
    so; naming a strip axis on its own stays an error."""
    m = get_metric("watson-dct")
    va = Volume.from_array(gaussian_filter(rng.standard_normal((6, 32, 24)), 2).astype(np.float32))
    vb = va.evolve(data=va.data + 0.05 * rng.standard_normal(va.data.shape).astype(np.float32))
    d = m.distance(va, vb, axis="all")
    assert d.value == m.distance(va, vb, axis="z").value and d.info["slice_axes"] == "z"
    assert d.info["slice_axes_left_out"] == "slices along y (6×24), x (6×32) are smaller than 8×8: left out"
    with pytest.raises(MetricError, match="smaller than one 8x8 block"):
        m.distance(va, vb, axis="y")
    tiny = Volume.from_array(rng.random((6, 6, 6), dtype=np.float32))
    with pytest.raises(MetricError, match="no axis of a 6×6×6 grid has slices of at least 8×8"):
        m.distance(tiny, tiny, axis="all")


# ---------------------------------------------------------------------------------------- original weight files
def _gray_state(transform: str, rng) -> dict[str, torch.Tensor]:
    shape = (8, 8) if transform == "dct" else (8, 5)
    state = {
        "blocksize": torch.tensor(8),
        "t_tild": torch.tensor(rng.normal(0.5, 0.2, shape), dtype=torch.float32),
        "alpha": torch.tensor(0.3),
        "w_tild": torch.tensor(-0.4),
        "beta": torch.tensor(1.3),
    }
    if transform == "dct":
        state["dct.A"] = dct_matrix()
    else:
        state["w_phase_tild"] = torch.tensor(rng.normal(-1.5, 0.3, shape), dtype=torch.float32)
    return state


def _rgb_state(transform: str, rng) -> dict[str, torch.Tensor]:
    state = {
        "w_tild": torch.tensor([0.2, -0.1, 0.4]),
        "to_YCbCr.transform": torch.tensor(YCBCR_MATRIX),
        "to_YCbCr.bias": torch.tensor(YCBCR_BIAS),
    }
    for prefix in ("ly", "lcb", "lcr"):
        state.update({f"{prefix}.{k}": v for k, v in _gray_state(transform, rng).items()})
    return state


def _params(state, prefix=""):
    t = np.exp(state[f"{prefix}t_tild"].double().numpy())
    w = 1 / (1 + math.exp(-float(state[f"{prefix}w_tild"])))
    return t, float(state[f"{prefix}alpha"]), w, float(state[f"{prefix}beta"])


@pytest.mark.parametrize("transform", ["dct", "fft"])
def test_loader_for_original_gray_files(transform, tmp_path, rng):
    state = _gray_state(transform, rng)
    path = tmp_path / f"gray_watson_{transform}_trial0.pth"
    torch.save(state, path)
    m = get_metric(f"watson-{transform}", weights=path)
    a, b = _unit_pair(rng)
    t, alpha, w, beta = _params(state)
    if transform == "dct":
        expected = numpy_watson_dct(b, a, t, alpha, w, beta)
    else:
        expected = numpy_watson_fft(b, a, t, alpha, w, beta, np.exp(state["w_phase_tild"].double().numpy()))
    d = m.distance_2d(a, b, normalize=False)
    assert d.value == pytest.approx(expected, rel=1e-4)
    assert d.value != pytest.approx(get_metric(f"watson-{transform}").distance_2d(a, b, normalize=False).value)


@pytest.mark.parametrize("transform", ["dct", "fft"])
def test_loader_for_original_rgb_files(transform, tmp_path, rng):
    state = _rgb_state(transform, rng)
    path = tmp_path / f"rgb_watson_{transform}_trial0.pth"
    torch.save(state, path)
    m = get_metric(f"watson-{transform}", weights=path)
    a = np.stack([_unit_pair(rng, (16, 24))[0] for _ in range(3)])
    b = np.clip(a + 0.05 * rng.standard_normal(a.shape).astype(np.float32), 0, 1)
    ya, yb = _ycbcr(a), _ycbcr(b)
    weights = torch.softmax(state["w_tild"].double(), 0).numpy()
    per = []
    for k, prefix in enumerate(("ly.", "lcb.", "lcr.")):
        t, alpha, w, beta = _params(state, prefix)
        if transform == "dct":
            per.append(numpy_watson_dct(yb[k], ya[k], t, alpha, w, beta))
        else:
            wp = np.exp(state[f"{prefix}w_phase_tild"].double().numpy())
            per.append(numpy_watson_fft(yb[k], ya[k], t, alpha, w, beta, wp))
    assert m.distance_2d(a, b, normalize=False).value == pytest.approx(float(np.dot(weights, per)), rel=1e-4)


def test_loader_errors(tmp_path, rng):
    dct_path = tmp_path / "gray_watson_dct_trial0.pth"
    torch.save(_gray_state("dct", rng), dct_path)
    with pytest.raises(WeightsError, match="Watson-DCT weights file, not Watson-FFT") as exc:
        WatsonFFT(weights=dct_path)
    assert str(dct_path) in str(exc.value)
    state = _gray_state("dct", rng)
    del state["beta"]
    torch.save(state, dct_path)
    with pytest.raises(WeightsError, match="missing beta"):
        WatsonDCT(weights=dct_path)
    state = _gray_state("dct", rng)
    state["dct.A"] = torch.ones(8, 8)
    torch.save(state, dct_path)
    with pytest.raises(WeightsError, match="orthonormal"):
        WatsonDCT(weights=dct_path)
    torch.save({"something": torch.zeros(3)}, dct_path)
    with pytest.raises(WeightsError, match="not a Watson weights file"):
        WatsonDCT(weights=dct_path)


def test_volume_resample_option(rng):
    va = Volume.from_array(gaussian_filter(rng.standard_normal((16, 16, 16)), 2).astype(np.float32))
    vb = Volume.from_array(gaussian_filter(rng.standard_normal((12, 20, 16)), 2).astype(np.float32))
    m = WatsonDCT()
    with pytest.raises(MetricError, match="shapes differ"):
        m.distance(va, vb, axis=0)
    d = m.distance(va, vb, axis=0, resample=16, interpolation="linear")
    assert d.info["slice_count"] == 16 and d.value > 0
