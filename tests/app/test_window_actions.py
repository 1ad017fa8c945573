"""Window actions: swapping A and B, camera presets (rendered), shortcuts listed in the help, the demo pair."""

from __future__ import annotations

import numpy as np
import pytest

from renderer.transfer import display_range
from tests.app.conftest import wait_for


@pytest.fixture
def demo_window(window, qtbot):
    wait_for(window, qtbot, lambda: bool(window.catalog))
    window.session.set_metrics(["mse", "watson-dct"])
    window.load_demo("plume", 16)
    wait_for(window, qtbot, lambda: window.session.comparison is not None, timeout=60000)
    return window


def test_swap_exchanges_volumes_keeps_their_transfer_functions_and_compares_again(demo_window, qtbot):
    w = demo_window
    s = w.session
    a, b = s.item("A"), s.item("B")
    before = {m: s.comparison[m].value for m in ("mse", "watson-dct")}
    w.shared_tf_action.setChecked(False)
    ed = w.panels["transfer"]
    ed.target_box.setCurrentText("B")
    ed.preset_box.setCurrentText("inferno")
    tf_a, tf_b = s.transfer("A"), s.transfer("B")
    assert tf_b.name == "inferno" and tf_a.name != "inferno"

    w.swap_action.trigger()
    assert s.item("A") is b and s.item("B") is a
    assert s.transfer("A") is tf_b and s.transfer("B") is tf_a  # each volume keeps its colours
    assert w.slot_views["A"].view.transfer_function.name == "inferno"
    assert b.name in w.slot_views["A"].title.text() and a.name in w.slot_views["B"].title.text()
    wait_for(w, qtbot, lambda: s.comparison is not None and s.comparison_pair == (b.name, a.name), timeout=60000)
    after = {m: s.comparison[m].value for m in ("mse", "watson-dct")}
    assert after["mse"] == pytest.approx(before["mse"], rel=1e-6)  # symmetric
    assert after["watson-dct"] != pytest.approx(before["watson-dct"], rel=1e-6)  # Watson's reference changed

    w.swap_action.trigger()
    assert s.item("A") is a and s.item("B") is b


def test_swap_moves_a_single_volume_to_the_other_slot(window, qtbot, tmp_path):
    from app.loading import demo_items

    a, _b = demo_items("plume", 16)
    window.set_items({"A": a})
    window.swap_action.trigger()
    assert window.session.item("A") is None and window.session.item("B") is a
    assert not window.errors


def test_camera_presets_turn_every_view_and_change_the_picture(demo_window, qtbot):
    w = demo_window
    va, vb = w.slot_views["A"].view, w.slot_views["B"].view
    w.link_action.setChecked(False)  # presets reach unlinked views too
    zoomed = va.camera.zoomed(0.8)
    va.camera = zoomed
    qtbot.wait(50)
    front = va.grab_image()
    w.camera_actions["-z"].trigger()
    qtbot.wait(50)
    top = va.grab_image()
    for v in (va, vb):
        assert v.camera.polar == 0.0 and v.camera.distance == pytest.approx(zoomed.distance)
    # the plume rises along z: seen from above it covers a rounder, smaller part of the image
    diff = np.abs(front[..., :3].astype(int) - top[..., :3].astype(int)).sum(axis=-1)
    assert np.mean(diff > 30) > 0.02
    w.camera_actions["reset"].trigger()
    from renderer.camera import OrbitCamera

    assert va.camera == OrbitCamera() and vb.camera == OrbitCamera()


def test_help_lists_the_menus_shortcuts(window, qtbot):
    from app.window_actions import about_text, shortcut_rows, show_controls

    rows = dict(shortcut_rows(window))
    assert rows["F5"] == "Compare › Recompute"
    assert rows["Ctrl+Shift+X"] == "Compare › Swap A and B"
    assert rows["Ctrl+0"] == "View › Camera › Reset"
    assert rows["Ctrl+L"] == "View › Link cameras" and rows["Ctrl+D"] == "View › Difference view"
    dlg = show_controls(window)
    qtbot.waitExposed(dlg)
    from PySide6.QtWidgets import QLabel

    text = dlg.findChild(QLabel, "controls_text").text()
    assert "Swap A and B" in text and "rotate the view" in text
    dlg.close()
    assert "volsight" in about_text() and "MIT" in about_text()


def test_demo_action_loads_the_pair(window, qtbot):
    act = next(a for a in window.file_menu.actions() if a.text() == "Open &demo pair")
    act.trigger()
    wait_for(window, qtbot, window.session.has_pair, timeout=60000)
    assert window.session.item("A").name == "plume"


def test_the_slice_plane_is_outlined_in_the_views_while_the_slices_tab_shows(demo_window, qtbot):
    w = demo_window
    panel, va = w.panels["slices"], w.slot_views["A"].view
    w.docks["slices"].raise_()
    qtbot.waitUntil(lambda: w.docks["slices"].isVisible())
    panel.axis_box.setCurrentIndex(2)  # x planes
    panel.slider.setValue(3)
    axis, fraction = panel.plane
    assert axis == 2 and fraction == pytest.approx(3.5 / 16)
    assert va.slice_plane == (2, pytest.approx(3.5 / 16)) and w.slot_views["B"].view.slice_plane == va.slice_plane
    with_plane = va.grab_image()
    w.plane_action.setChecked(False)
    assert va.slice_plane is None
    without = va.grab_image()
    changed = np.abs(with_plane[..., :3].astype(int) - without[..., :3].astype(int)).sum(axis=-1) > 60
    assert changed.sum() > 20  # the outline's pixels
    w.plane_action.setChecked(True)
    assert va.slice_plane is not None
    w.docks["transfer"].raise_()  # another tab in front: no outline
    qtbot.waitUntil(lambda: va.slice_plane is None)
    w.docks["slices"].raise_()
    qtbot.waitUntil(lambda: va.slice_plane is not None)


def test_the_views_are_cut_open_at_the_slice_from_the_tab_or_the_menu(demo_window, qtbot):
    w = demo_window
    panel, va, vb = w.panels["slices"], w.slot_views["A"].view, w.slot_views["B"].view
    w.plane_action.setChecked(False)  # only the volume's pixels count here
    panel.axis_box.setCurrentIndex(0)  # z planes
    panel.slider.setValue(8)
    whole = va.grab_image()
    assert va.cut is None and not w.cut_action.isChecked()
    panel.set_cut_side("below")
    assert va.cut == (0, pytest.approx(8.5 / 16), "below") and vb.cut == va.cut and w.cut_action.isChecked()
    assert "cut: showing z ≤ 8" in va.notice
    below = va.grab_image()
    changed = np.abs(below[..., :3].astype(int) - whole[..., :3].astype(int)).max(axis=-1) > 10
    assert changed.mean() > 0.02  # the upper half of the plume is gone
    panel.slider.setValue(12)  # the cut follows the slice
    assert va.cut == (0, pytest.approx(12.5 / 16), "below")
    panel.set_cut_side("above")
    assert vb.cut[2] == "above" and "z ≥ 12" in vb.notice
    # Ctrl+K switches it off and back on with the side chosen last
    w.cut_action.trigger()
    assert va.cut is None and panel.cut_side is None and "cut" not in va.notice
    np.testing.assert_array_equal(va.grab_image(), whole)
    w.cut_action.trigger()
    assert panel.cut_side == "above" and va.cut == (0, pytest.approx(12.5 / 16), "above")
    from app.window_actions import shortcut_rows

    assert ("Ctrl+K", "View › Cut the views at the slice") in shortcut_rows(w)
    # the cut holds while another tab is in front (each view's notice says so)
    w.docks["transfer"].raise_()
    qtbot.waitUntil(lambda: va.slice_plane is None)
    assert va.cut is not None
    panel.set_cut_side(None)
    w.plane_action.setChecked(True)


def test_slices_draw_the_second_axis_upwards_like_the_3d_views(demo_window):
    panel = demo_window.panels["slices"]
    item = panel.views["A"].getImageItem()
    low, high = item.mapToScene(0.5, 0.5), item.mapToScene(0.5, 10.5)
    assert high.y() < low.y()  # image row v = 10 is drawn above v = 0


def test_each_metric_row_fills_in_as_soon_as_that_metric_is_done(demo_window, qtbot, monkeypatch):
    w = demo_window
    panel = w.panels["distances"]
    seen = []
    shown = panel.show_result

    def record(name, d):  # the table as it is right after each metric's row was filled
        shown(name, d)
        seen.append((name, panel.values()))

    monkeypatch.setattr(panel, "show_result", record)
    w.session.set_metrics(["mse", "volsim", "ssim"])
    wait_for(w, qtbot, lambda: w.session.comparison is not None and "ssim" in w.session.comparison, timeout=60000)
    assert [name for name, _v in seen] == ["mse", "volsim", "ssim"]
    first = seen[0][1]
    assert first["mse"] == pytest.approx(w.session.comparison["mse"].value)
    assert first["volsim"] is None and first["ssim"] is None  # still running when MSE was shown
    assert seen[1][1]["volsim"] == pytest.approx(w.session.comparison["volsim"].value)
    assert panel.values()["ssim"] == pytest.approx(w.session.comparison["ssim"].value)


def test_default_metrics_leave_out_a_learned_metric_without_weights(monkeypatch, shared_dir):
    """LSiM's weights are not shipped: the window's default list leaves it out (no failing row at start-up)
    until weights are there ($VOLSIGHT_LSIM_WEIGHTS, or chosen in the window); `volsight metrics` says why."""
    from app import comparing
    from core.metrics.lsim import WEIGHTS_ENV

    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    catalog = comparing.metric_catalog()
    lsim = next(m for m in catalog if m["name"] == "lsim")
    assert lsim["weights_installed"] is False
    names = comparing.default_metrics(catalog)
    assert "lsim" not in names and {"mse", "volsim", "watson-dct"} <= set(names)
    path = shared_dir / "weights" / "LSIM" / "LSiM.pth"
    try:
        comparing.set_weights("lsim", str(path))  # chosen in the window (Compare › Learned-metric weights…)
        assert "lsim" in comparing.default_metrics(catalog)
    finally:
        comparing.set_weights("lsim", None)
    monkeypatch.setenv(WEIGHTS_ENV, str(path))
    assert "lsim" in comparing.default_metrics(comparing.metric_catalog())
    monkeypatch.setenv(WEIGHTS_ENV, str(path.with_name("missing.pth")))  # a file that is not there: not installed
    assert "lsim" not in comparing.default_metrics(comparing.metric_catalog())


def test_choosing_weights_for_a_metric_not_in_the_table_adds_it(window, qtbot, shared_dir):
    wait_for(window, qtbot, lambda: bool(window.catalog))
    window.session.set_metrics(["mse", "volsim"])
    window.controller.set_metric_weights("lsim", str(shared_dir / "weights" / "LSIM" / "LSiM.pth"), remember=False)
    assert window.session.metrics == ["mse", "volsim", "lsim"]
    window.controller.set_metric_weights("volsim", None, remember=False)  # back to a default: nothing added
    assert window.session.metrics == ["mse", "volsim", "lsim"]


def test_loading_a_pair_refits_the_colours_and_slices_once(window, qtbot, monkeypatch):
    # both slots change at once: the work that reads both runs on the second signal only
    wait_for(window, qtbot, lambda: bool(window.catalog))
    ed = window.panels["transfer"]
    calls = {"fit": 0, "slices": 0}
    ctl = window.controller
    fit, slices = ed.fit_range, ctl.update_slices
    monkeypatch.setattr(ed, "fit_range", lambda *a, **k: (calls.__setitem__("fit", calls["fit"] + 1), fit(*a, **k)))
    monkeypatch.setattr(ctl, "update_slices",
                        lambda *a, **k: (calls.__setitem__("slices", calls["slices"] + 1), slices(*a, **k)))
    window.load_demo("plume", 16)
    wait_for(window, qtbot, lambda: window.session.has_pair())
    assert calls == {"fit": 1, "slices": 1}
    lo, hi = ed.lo_box.value(), ed.hi_box.value()
    a, b = (window.session.item(s).volume.scalar().data for s in ("A", "B"))
    assert (lo, hi) == pytest.approx(display_range(a, b))
