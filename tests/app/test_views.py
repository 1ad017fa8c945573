"""Views: linked cameras (toggle), rendering method, shared or separate transfer functions edited in
the transfer-function editor, and session files that carry cameras and transfer functions."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PySide6.QtWidgets import QLabel

from tests.app.conftest import wait_for


def _fraction_lit(img: np.ndarray) -> float:
    bg = img[0, 0, :3].astype(int)
    return float(np.mean(np.abs(img[..., :3].astype(int) - bg).sum(axis=-1) > 12))


@pytest.fixture
def pair_window(window, qtbot):
    wait_for(window, qtbot, lambda: bool(window.catalog))
    window.session.set_metrics(["mse"])
    window.load_demo("plume", 16)
    wait_for(window, qtbot, window.session.has_pair)
    return window


def test_linked_cameras_follow_and_unlinked_do_not(pair_window, qtbot):
    w = pair_window
    va, vb = w.slot_views["A"].view, w.slot_views["B"].view
    turned = va.camera.orbited(40.0, 10.0)
    va.camera = turned
    assert vb.camera == turned
    w.link_action.setChecked(False)
    assert not w.session.link_cameras
    va.camera = turned.orbited(30.0, 0.0)
    assert vb.camera == turned
    vb.camera = turned.zoomed(1.5)
    assert va.camera == turned.orbited(30.0, 0.0)
    w.link_action.setChecked(True)  # linking again: B takes A's camera
    assert vb.camera == va.camera


def test_method_selector_reaches_the_views(pair_window):
    w = pair_window
    for m in ("iso", "translucent", "mip"):
        w.session.set_method(m)
        assert w.slot_views["A"].view.method == m and w.slot_views["B"].view.method == m


def test_shared_and_separate_transfer_functions(pair_window, qtbot):
    w = pair_window
    ed = w.panels["transfer"]
    va, vb = w.slot_views["A"].view, w.slot_views["B"].view
    assert ed.target_box.currentText() == "A and B"
    ed.preset_box.setCurrentText("inferno")
    assert va.transfer_function.name == "inferno" and vb.transfer_function.name == "inferno"
    # the histograms are of the loaded data over the value range: A's and B's, on one scale
    lo, hi = ed.lo_box.value(), ed.hi_box.value()
    a, b = w.session.item("A").volume.data, w.session.item("B").volume.data
    assert lo == pytest.approx(min(a.min(), b.min()), abs=1e-4) and hi == pytest.approx(max(a.max(), b.max()),
                                                                                       abs=1e-4)
    logs = {s: np.log1p(np.histogram(d, bins=len(ed.hists["A"].getData()[1]), range=(lo, hi))[0])
            for s, d in (("A", a), ("B", b))}
    top = max(h.max() for h in logs.values())
    for s in ("A", "B"):
        x, y = ed.hists[s].getData()
        assert ed.hists[s].isVisible() and len(x) == len(y) + 1
        np.testing.assert_allclose(y, logs[s] / top * 0.95, rtol=1e-12)
    assert "log histogram of A (blue) and B (orange)" in ed.plot.getAxis("bottom").labelText
    # an edited opacity curve arrives as it is
    ed.points.set_points([[0.0, 0.0], [0.5, 0.3], [1.0, 0.9]])
    ed.apply()
    np.testing.assert_allclose(va.transfer_function.opacity_points, [[0.0, 0.0], [0.5, 0.3], [1.0, 0.9]])
    np.testing.assert_allclose(vb.transfer_function.opacity_points, [[0.0, 0.0], [0.5, 0.3], [1.0, 0.9]])

    # separate functions: B alone changes
    w.shared_tf_action.setChecked(False)
    assert [ed.target_box.itemText(i) for i in range(ed.target_box.count())] == ["A", "B"]
    ed.target_box.setCurrentText("B")
    ed.preset_box.setCurrentText("coolwarm")
    assert vb.transfer_function.name == "coolwarm" and va.transfer_function.name == "inferno"
    assert ed.hists["B"].isVisible() and not ed.hists["A"].isVisible()  # only the data the function colours

    # zero opacity draws nothing in translucent mode; the edited curve draws the volume again
    w.plane_action.setChecked(False)  # only the volume's pixels count here, not the slice plane's outline
    w.session.set_method("translucent")
    ed.points.set_points([[0.0, 0.0], [1.0, 0.0]])
    ed.apply()
    assert _fraction_lit(vb.grab_image()) == 0.0
    assert _fraction_lit(va.grab_image()) > 0.01
    ed.points.set_points([[0.0, 0.0], [0.2, 0.05], [1.0, 0.9]])
    ed.apply()
    assert _fraction_lit(vb.grab_image()) > 0.01


def test_session_file_carries_cameras_transfer_functions_and_the_slice(pair_window, qtbot, tmp_path):
    w = pair_window
    ed = w.panels["transfer"]
    w.shared_tf_action.setChecked(False)
    ed.target_box.setCurrentText("A")
    ed.preset_box.setCurrentText("grayscale")
    ed.target_box.setCurrentText("B")
    ed.preset_box.setCurrentText("plume")
    w.link_action.setChecked(False)
    cam_a = w.slot_views["A"].view.camera.orbited(55.0, -20.0)
    w.slot_views["A"].view.camera = cam_a
    w.panels["slices"].axis_box.setCurrentIndex(1)
    w.panels["slices"].slider.setValue(3)
    w.plane_action.setChecked(False)
    path = w.save_session(str(tmp_path / "views.json"))
    doc = json.loads(path.read_text())
    assert doc["transfer_functions"]["A"]["name"] == "grayscale"
    assert doc["transfer_functions"]["B"]["name"] == "plume"

    from app.main_window import build_main_window

    w2 = build_main_window()
    qtbot.addWidget(w2)
    w2.show()
    with qtbot.waitSignal(w2.session_restored, timeout=60000):
        w2.restore_session(str(path))
    va, vb = w2.slot_views["A"].view, w2.slot_views["B"].view
    assert va.camera == cam_a
    assert va.transfer_function.name == "grayscale" and vb.transfer_function.name == "plume"
    np.testing.assert_allclose(vb.transfer_function.opacity_points, w.slot_views["B"].view.transfer_function
                               .opacity_points)
    assert va.transfer_function.value_range == pytest.approx(w.slot_views["A"].view.transfer_function.value_range)
    assert not w2.session.shared_tf and not w2.session.link_cameras
    assert (w2.panels["slices"].axis, w2.panels["slices"].slider.value()) == (1, 3)
    assert not w2.plane_action.isChecked()
    w2.tasks.wait_all(30000)
    w2.close()


def test_voxel_at_inverts_the_displayed_slice_on_every_axis():
    from app.panels.slices import slice_of, voxel_at

    arr = np.random.default_rng(0).random((5, 6, 7))
    for axis in range(3):
        index = arr.shape[axis] - 2
        img = slice_of(arr, axis, index)
        for u in range(img.shape[0]):
            for v in range(img.shape[1]):
                assert arr[voxel_at(axis, index, u, v)] == img[u, v]


def test_a_long_header_ends_in_an_ellipsis_and_tells_the_whole_text(qtbot):
    from app.panels.slot_view import ElidedLabel

    label = ElidedLabel("a-very-long-volume-name · 64×64×64 · neural field (baked)")
    qtbot.addWidget(label)
    label.setToolTip("/data/run/field.vsf")
    label.show()
    label.resize(2000, 20)
    assert label.text() == "a-very-long-volume-name · 64×64×64 · neural field (baked)"
    assert not QLabel.text(label).endswith("…") and label.toolTip() == "/data/run/field.vsf"
    label.resize(120, 20)
    shown = QLabel.text(label)
    assert shown.endswith("…") and len(shown) < len(label.text())
    assert label.fontMetrics().horizontalAdvance(shown) <= 120
    assert label.toolTip() == "a-very-long-volume-name · 64×64×64 · neural field (baked)\n/data/run/field.vsf"
    assert label.text() == "a-very-long-volume-name · 64×64×64 · neural field (baked)"  # the whole text still


def test_fitted_range_leaves_a_clean_background_transparent_beside_a_noisy_copy(window, qtbot, tmp_path):
    """A volume with an exactly-zero background beside a noisy copy of it: the shared range starts at the
    background level, not at the noise's minimum, so A's empty space stays empty instead of hazy."""
    wait_for(window, qtbot, lambda: bool(window.catalog))
    window.session.set_metrics(["mse"])
    rng = np.random.default_rng(3)
    clean = np.zeros((32, 32, 32), np.float32)
    clean[12:20, 12:20, 12:20] = 1.0
    noisy = clean + rng.normal(0.0, 0.03, clean.shape).astype(np.float32)
    np.save(tmp_path / "clean.npy", clean)
    np.save(tmp_path / "noisy.npy", noisy)
    window.load_pair(str(tmp_path / "clean.npy"), str(tmp_path / "noisy.npy"))
    wait_for(window, qtbot, window.session.has_pair)
    window.plane_action.setChecked(False)
    window.session.set_method("translucent")
    ed, va = window.panels["transfer"], window.slot_views["A"].view
    wait_for(window, qtbot, lambda: va.transfer_function.value_range[0] == 0.0)
    assert ed.hi_box.value() == pytest.approx(float(noisy.max()), abs=1e-4)
    label = ed.plot.getAxis("bottom").labelText
    assert "of the voxels lie below it (transparent)" in label
    fitted = _fraction_lit(va.grab_image())
    ed.lo_box.setValue(float(noisy.min()))  # the joint minimum, as before: A's zeros get opacity
    assert va.transfer_function.value_range[0] == pytest.approx(float(noisy.min()), abs=1e-4)
    hazy = _fraction_lit(va.grab_image())
    assert fitted > 0.005 and hazy > 5 * fitted
    ed.fit_range()
    assert va.transfer_function.value_range[0] == 0.0


def test_transfer_editor_axis_names_data_values(pair_window):
    from app.panels.ticks import two_ticks, value_ticks

    assert value_ticks(0.0, 1.03) == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert value_ticks(-5.0, 300.0) == [0.0, 50.0, 100.0, 150.0, 200.0, 250.0, 300.0]
    assert value_ticks(3.0, 3.0) == [3.0]
    # two, for a plot with room for two, in from the ends so that their labels are not cut off
    assert two_ticks(0.1, 0.9) == pytest.approx([0.4, 0.6])
    assert two_ticks(0.00247, 0.00253) == pytest.approx([0.00248, 0.00252])
    assert two_ticks(2.0, 2.0) == [2.0]
    ed = pair_window.panels["transfer"]
    ed.lo_box.setValue(-100.0)
    ed.hi_box.setValue(300.0)
    ticks = ed.plot.getAxis("bottom")._tickLevels[0]  # the curve's t in [0, 1] where each value sits
    assert [label for _t, label in ticks] == ["-100", "0", "100", "200", "300"]
    assert [t for t, _label in ticks] == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])
    # a typed range redraws the histograms over it: all of the demo's values fall in the 25% above 0
    assert "value (-100 … 300)" in ed.plot.getAxis("bottom").labelText
    x, y = ed.hists["A"].getData()
    assert y[: len(y) // 4].sum() == 0 and y[len(y) // 4:].sum() > 0
