import json

import numpy as np
import pytest

from core.errors import VolsightError
from renderer.transfer import (
    TransferFunction,
    TransferFunctionError,
    corrected_opacity,
    display_range,
    preset_names,
)


def _write(tmp_path, obj, name="cm.json"):
    p = tmp_path / name
    p.write_text(json.dumps(obj))
    return p


def test_paraview_json_is_read_and_renormalised(tmp_path):
    p = _write(tmp_path, [{
        "Name": "Test", "ColorSpace": "RGB",
        "RGBPoints": [-2.0, 1, 0, 0, 0.0, 0, 1, 0, 2.0, 0, 0, 1],
        "Points": [-2.0, 0.0, 0.5, 0.0, 1.0, 0.8, 0.5, 0.0, 2.0, 1.0, 0.5, 0.0],
    }])
    tf = TransferFunction.from_paraview_json(p, value_range=(10.0, 20.0))
    assert tf.name == "Test"
    np.testing.assert_allclose(tf.color_points[:, 0], [0.0, 0.5, 1.0])
    np.testing.assert_allclose(tf.opacity_points, [[0.0, 0.0], [0.75, 0.8], [1.0, 1.0]])
    np.testing.assert_allclose(tf.colors(np.array([0.25])), [[0.5, 0.5, 0.0]])
    assert tf.opacities(np.array([0.375]))[0] == pytest.approx(0.4)
    # the value range is independent of the colormap's own x values
    assert tf.value_range == (10.0, 20.0)
    np.testing.assert_allclose(tf.normalise(np.array([5.0, 15.0, 25.0])), [0.0, 0.5, 1.0])


def test_missing_opacity_points_give_a_linear_ramp(tmp_path):
    p = _write(tmp_path, [{"Name": "R", "RGBPoints": [0, 0, 0, 0, 1, 1, 1, 1]}])
    lut = TransferFunction.from_paraview_json(p).lut(5)
    assert lut.shape == (5, 4) and lut.dtype == np.float32
    np.testing.assert_allclose(lut[:, 3], [0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(lut[:, 0], lut[:, 3])


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ('[{"Name": "x"}]', "RGBPoints"),
    ('[{"RGBPoints": [0, 1, 1]}]', "4-tuples"),
    ('[{"RGBPoints": [0.5, 0, 0, 0, 0.5, 1, 1, 1]}]', "distinct x"),
])
def test_malformed_colormaps_name_the_file(tmp_path, content, message):
    p = tmp_path / "bad.json"
    p.write_text(content)
    with pytest.raises(TransferFunctionError, match=message) as err:
        TransferFunction.from_paraview_json(p)
    assert isinstance(err.value, VolsightError)
    assert str(p) in str(err.value)


def test_presets_ship_the_required_colormaps():
    names = preset_names()
    for required in ("viridis", "inferno", "coolwarm", "grayscale", "plume"):
        assert required in names
    vir = TransferFunction.preset("Viridis", (0, 2))
    assert vir.value_range == (0.0, 2.0)
    np.testing.assert_allclose(vir.lut(2)[:, :3], [[0.267004, 0.004874, 0.329415], [0.993248, 0.906157, 0.143936]],
                               atol=1e-6)
    cw = TransferFunction.preset("coolwarm").colors(np.array([0.0, 0.5, 1.0]))
    np.testing.assert_allclose(cw, [[0.230, 0.299, 0.754], [0.865, 0.865, 0.865], [0.706, 0.016, 0.150]], atol=2e-3)
    plume = TransferFunction.preset("plume")
    assert plume.opacity_points.shape[0] > 2 and plume.opacities(np.array([0.0]))[0] == 0.0
    with pytest.raises(TransferFunctionError, match="unknown colormap"):
        TransferFunction.preset("nope")


def test_json_export_round_trips():
    tf = TransferFunction.preset("plume", (0, 1))
    back = TransferFunction.from_paraview_json(tf.to_paraview_json())
    np.testing.assert_allclose(back.lut(64), tf.lut(64), atol=1e-7)


def test_constant_range_is_widened_and_opacity_correction():
    tf = TransferFunction(value_range=(3.0, 3.0))
    lo, hi = tf.value_range
    assert lo < 3.0 < hi
    assert tf.with_constant_opacity(0.0).is_transparent
    a = np.array([0.0, 0.5, 1.0])
    np.testing.assert_allclose(corrected_opacity(a, 2.0), [0.0, 0.75, 1.0])
    np.testing.assert_allclose(corrected_opacity(corrected_opacity(a, 0.5), 2.0), a)


def test_dict_round_trip_through_json():
    tf = TransferFunction.preset("plume", (-1.5, 2.5)).with_opacity([[0, 0], [0.4, 0.3], [1, 0.9]])
    back = TransferFunction.from_dict(json.loads(json.dumps(tf.to_dict())))
    assert back.name == tf.name and back.value_range == tf.value_range
    np.testing.assert_array_equal(back.color_points, tf.color_points)
    np.testing.assert_array_equal(back.opacity_points, tf.opacity_points)
    with pytest.raises(TransferFunctionError):
        TransferFunction.from_dict({"name": "x"})


def test_display_range_starts_at_a_dominant_background_above_the_minimum():
    rng = np.random.default_rng(0)
    clean = np.zeros((32, 32, 32), np.float32)
    clean[8:24, 8:24, 8:24] = rng.uniform(0.2, 1.0, (16, 16, 16))
    noisy = clean + rng.normal(0.0, 0.02, clean.shape).astype(np.float32)
    # alone, each volume's range is its min..max: the noisy one has no single background level
    assert display_range(clean) == (0.0, float(clean.max()))
    assert display_range(noisy) == (float(noisy.min()), float(noisy.max()))
    # together, the clean volume's exact zeros are the background: the range starts there, so a
    # linear opacity ramp leaves them transparent instead of at the joint minimum's few percent
    lo, hi = display_range(clean, noisy)
    assert lo == 0.0 and hi == float(max(clean.max(), noisy.max()))
    tf = TransferFunction(value_range=(lo, hi))
    assert tf.opacities(tf.normalise(np.zeros(1)))[0] == 0.0


def test_display_range_keeps_min_and_max_otherwise():
    rng = np.random.default_rng(1)
    spread = rng.normal(0.0, 1.0, 50_000).astype(np.float32)
    assert display_range(spread) == (float(spread.min()), float(spread.max()))
    # a dominant level in the upper part of the range (a bright background) is left alone
    bright = np.concatenate([np.ones(40_000, np.float32), rng.uniform(-1.0, 0.0, 10_000).astype(np.float32)])
    assert display_range(bright) == (float(bright.min()), 1.0)
    # non-finite values are ignored; constant or empty data gets a unit range
    assert display_range(np.array([np.nan, 2.0, 4.0, np.inf])) == (2.0, 4.0)
    assert display_range(np.full(8, 3.0)) == (3.0, 4.0)
    assert display_range(np.zeros(0)) == (0.0, 1.0)


def test_large_arrays_are_sampled_for_the_background_but_keep_their_exact_bounds():
    from renderer.transfer import SAMPLE_VALUES, value_sample

    rng = np.random.default_rng(2)
    n = 3 * SAMPLE_VALUES + 5
    clean = np.where(rng.random(n) < 0.6, 0.0, rng.uniform(0.2, 1.0, n)).astype(np.float32)
    noisy = clean + rng.normal(0.0, 0.02, n).astype(np.float32)
    noisy[1] = -1.0  # lone extremes that a stride-4 sample skips
    noisy[2] = 9.0
    assert value_sample(noisy).size <= SAMPLE_VALUES and 9.0 not in value_sample(noisy)
    # the bounds are the full data's; the background (the clean volume's zeros, 60% of it, in the
    # lowest quarter of [-1, 9]) is found from the sample
    assert display_range(clean, noisy) == (0.0, 9.0)
    spread = rng.normal(0.0, 1.0, n).astype(np.float32)
    spread[5] = -50.0
    assert display_range(spread) == (-50.0, float(spread.max()))
    small = rng.random(1000)
    assert value_sample(small).size == 1000
