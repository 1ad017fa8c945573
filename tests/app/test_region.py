"""Region of interest in the window: the dialog, the comparison inside the box, outlines, maps, sessions, export."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PySide6.QtWidgets import QDialogButtonBox

from tests.app.conftest import wait_for

METRICS = ["mse", "ssim", "volsim"]


@pytest.fixture
def demo_window(window, qtbot):
    wait_for(window, qtbot, lambda: bool(window.catalog))
    window.session.set_metrics(METRICS)
    window.load_demo("plume", 32)
    wait_for(window, qtbot, lambda: window.session.comparison is not None, timeout=60000)
    return window


def _lit(img: np.ndarray) -> np.ndarray:
    return np.abs(img[..., :3].astype(int) - img[0, 0, :3].astype(int)).sum(axis=-1) > 12


def test_the_pair_is_compared_inside_the_chosen_box(demo_window, qtbot, tmp_path):
    w = demo_window
    s = w.session
    va = w.slot_views["A"].view
    feats = w.panels["features"]
    assert feats.slider.maximum() == 31 and feats.slider.value() == 16  # the middle of A's 32 planes at first
    w.plane_action.setChecked(False)  # only the region's outline differs between the two pictures
    before_img = va.grab_image()
    whole = {m: s.comparison[m].value for m in METRICS}

    from app.region_dialog import ask_region

    dlg = ask_region(w)
    ok = dlg.buttons.button(QDialogButtonBox.StandardButton.Ok)
    (z0, z1), (y0, y1), (x0, x1) = dlg.boxes
    z0.setValue(20)
    z1.setValue(10)  # empty: refused, and why
    assert not ok.isEnabled() and "z 20:10 is outside" in dlg.message.text()
    z0.setValue(4)
    z1.setValue(30)
    y0.setValue(8)
    y1.setValue(22)  # 14 voxels: VolSiM runs on the nearest grid it takes
    assert ok.isEnabled()
    dlg.accept()
    region = ((4, 30), (8, 22), (0, 32))
    assert s.region == region
    wait_for(w, qtbot, lambda: s.comparison is not None, timeout=60000)

    from core.compare import compare
    from core.region import crop_pair

    a, b = s.item("A").volume, s.item("B").volume
    ref = compare(a, b, ["mse", "ssim"], region=region)
    shown = w.panels["distances"].values()
    for m in ("mse", "ssim"):
        assert shown[m] == pytest.approx(ref.value(m), rel=1e-9) and shown[m] != pytest.approx(whole[m], rel=1e-3)
    ca, cb = crop_pair(a, b, region)
    from app import comparing

    vs = compare(ca, cb, {"volsim": comparing.built_metric("volsim")},  # the weights the window uses
                 metric_options={"volsim": {"resample": (24, 16, 32)}})
    assert shown["volsim"] == pytest.approx(vs.value("volsim"), rel=1e-6)
    table = w.panels["distances"]
    assert "region z,y,x 4:30,8:22,0:32" in table.pair_label.text()
    # the feature maps are the region's, at the same relative depth
    assert feats.slider.maximum() == 23 and feats.slider.value() == 12
    volsim_row = next(r for r in range(table.table.rowCount()) if table.table.item(r, 0).text() == "VolSiM")
    assert "on 24×16×32" in table.table.item(volsim_row, 3).text()

    # the box is outlined in every view
    for slot in ("A", "B"):
        lo, hi = w.slot_views[slot].view.region_box
        assert lo == pytest.approx((4 / 32, 8 / 32, 0.0)) and hi == pytest.approx((30 / 32, 22 / 32, 1.0))
    assert (_lit(va.grab_image()) != _lit(before_img)).sum() > 30
    # the difference map is the region's, in place (0 outside the box)
    slices = w.panels["slices"]
    slices.axis_box.setCurrentIndex(0)
    slices.slider.setValue(2)  # below the box
    assert not slices.image("diff").any()
    assert slices.region_rect() is None and not slices.region_rects["A"].isVisible()
    slices.slider.setValue(16)
    inside = slices.image("diff")
    assert inside.any() and not inside[:, :8].any() and not inside[:, 22:].any()  # displayed transposed: [x, y]
    # the slice images outline where the plane cuts the box: x 0..32 across, y 8..22 up
    assert slices.region_rect() == (0.0, 8.0, 32.0, 14.0)
    r = slices.region_rects["A"].rect()
    assert (r.x(), r.y(), r.width(), r.height()) == (0.0, 8.0, 32.0, 14.0) and slices.region_rects["A"].isVisible()
    slices.axis_box.setCurrentIndex(2)  # an x plane: y across, z up
    assert slices.region_rect() == (8.0, 4.0, 14.0, 26.0)
    slices.axis_box.setCurrentIndex(0)

    # exports carry the region and name the crops
    doc = json.loads(open(w.controller.export("json", str(tmp_path / "c.json"))).read())
    assert doc["options"]["region"] == "4:30,8:22,0:32" and doc["a"]["name"].endswith("[4:30,8:22,0:32]")
    assert doc["distances"]["mse"]["value"] == pytest.approx(ref.value("mse"), rel=1e-9)

    # a session keeps it
    path = w.save_session(str(tmp_path / "region.json"))
    from app.main_window import build_main_window

    w2 = build_main_window()
    qtbot.addWidget(w2)
    with qtbot.waitSignal(w2.session_restored, timeout=60000):
        w2.restore_session(str(path))
    assert w2.session.region == region
    w2.tasks.wait_all(30000)
    w2.close()

    # back to the whole volumes: the first numbers again, no outline
    next(a for a in w.compare_menu.actions() if a.text() == "&Whole volumes").trigger()
    assert s.region is None and va.region_box is None and slices.region_rect() is None
    wait_for(w, qtbot, lambda: s.comparison is not None, timeout=60000)
    assert w.panels["distances"].values()["mse"] == pytest.approx(whole["mse"], rel=1e-9)


def test_a_new_a_that_the_region_does_not_fit_drops_it(demo_window, qtbot):
    w = demo_window
    w.session.set_region(((10, 30), (0, 32), (0, 32)))
    from app.loading import demo_items

    small, _ = demo_items("plume", 16)
    w.set_items({"A": small})
    assert w.session.region is None
    assert "does not fit" in w.statusBar().currentMessage()


def test_a_session_region_that_does_not_fit_is_reported_and_dropped(demo_window, qtbot, tmp_path):
    w = demo_window
    path = w.save_session(str(tmp_path / "s.json"))
    doc = json.loads(path.read_text())
    doc["region"] = "0:40,:,:"
    path.write_text(json.dumps(doc))
    errors = len(w.errors)
    with qtbot.waitSignal(w.session_restored, timeout=60000):
        w.restore_session(str(path))
    assert w.session.region is None
    assert "z 0:40 is outside 0:32" in w.errors[errors]


def test_region_from_what_the_slice_images_show(demo_window, qtbot):
    w = demo_window
    slices = w.panels["slices"]
    slices.axis_box.setCurrentIndex(0)  # z planes: x across, y up
    vb = slices.views["A"].getView()
    vb.setRange(xRange=(8.3, 20.6), yRange=(4.2, 15.5), padding=0)
    (x0, x1), (y0, y1) = vb.viewRange()  # the locked aspect may widen one of them
    expected_y = (max(0, int(np.floor(y0))), min(32, int(np.ceil(y1))))
    expected_x = (max(0, int(np.floor(x0))), min(32, int(np.ceil(x1))))
    assert expected_y[1] - expected_y[0] < 32 or expected_x[1] - expected_x[0] < 32  # really zoomed in
    slices.region_button.click()
    assert w.session.region == ((0, 32), expected_y, expected_x)
    wait_for(w, qtbot, lambda: w.session.comparison is not None, timeout=60000)
    # along the plane's own axis the region keeps its range: z from a box set before stays
    w.session.set_region(((10, 20), (0, 32), (0, 32)))
    slices.region_button.click()
    assert w.session.region == ((10, 20), expected_y, expected_x)
    # the whole plane in view: the whole volumes again
    w.session.set_region(None)
    vb.setRange(xRange=(-5, 40), yRange=(-5, 40), padding=0)
    slices.region_button.click()
    assert w.session.region is None and not w.errors


def _drag(qtbot, widget, points, modifiers, *, press: bool = True, release: bool = True) -> None:
    """A left-button drag through ``points`` (widget coordinates) as the mouse sends it: pressed at the
    first point (``press``), moved, and let go at the last (``release``)."""
    from PySide6.QtCore import QEvent, QPointF, Qt
    from PySide6.QtGui import QMouseEvent
    from PySide6.QtWidgets import QApplication

    left, none = Qt.MouseButton.LeftButton, Qt.MouseButton.NoButton
    for k, p in enumerate(points):
        kind, button, held = ((QEvent.Type.MouseButtonPress, left, left) if k == 0 and press else
                              (QEvent.Type.MouseButtonRelease, left, none) if k == len(points) - 1 and release else
                              (QEvent.Type.MouseMove, none, left))
        pos = QPointF(p)
        QApplication.sendEvent(widget, QMouseEvent(kind, pos, widget.mapToGlobal(pos), button, held, modifiers))
        qtbot.wait(20)


def test_shift_drag_on_a_slice_draws_the_region(demo_window, qtbot):
    from PySide6.QtCore import QPointF, Qt

    w = demo_window
    slices = w.panels["slices"]
    slices.axis_box.setCurrentIndex(2)  # x planes: y across, z up
    vb = slices.views["B"].getView()  # any of the three images takes the band
    vb.setRange(xRange=(0, 32), yRange=(0, 32), padding=0)
    gv = slices.views["B"].ui.graphicsView

    def at(u: float, v: float):  # in float widget coordinates: no rounding to whole screen pixels
        return gv.viewportTransform().map(vb.mapViewToScene(QPointF(u, v)))

    shift = Qt.KeyboardModifier.ShiftModifier
    view_before = vb.viewRange()
    band_seen = []
    vb.band_drawn.connect(lambda _r: band_seen.append(True))
    path = [at(5.5 + 2.0 * k, 20.5 - 2.0 * k) for k in range(6)]
    _drag(qtbot, gv.viewport(), path[:-1], shift, release=False)
    assert vb.band.isVisible() and not band_seen  # the band follows the mouse while dragging
    _drag(qtbot, gv.viewport(), [path[-1], path[-1]], shift, press=False)  # a last move, and let go
    # u ran along y (5.5 .. 15.5 touches voxels 5..15), v along z (10.5 .. 20.5: 10..20); x stays whole
    assert w.session.region == ((10, 21), (5, 16), (0, 32))
    assert not vb.band.isVisible()
    assert vb.viewRange() == view_before  # a band does not pan the view
    wait_for(w, qtbot, lambda: w.session.comparison is not None, timeout=60000)
    # the new region is outlined on the slice images (this plane, x = 16, cuts it)
    rect = slices.region_rects["A"].rect()
    assert slices.region_rects["A"].isVisible()
    assert (rect.x(), rect.y(), rect.width(), rect.height()) == (5.0, 10.0, 11.0, 11.0)
    # a plain drag still pans, and sets no region
    _drag(qtbot, gv.viewport(), [at(10 + k, 10) for k in range(6)], Qt.KeyboardModifier.NoModifier)
    assert vb.viewRange() != view_before and w.session.region == ((10, 21), (5, 16), (0, 32))
    # "Whole" beside the region buttons goes back to the whole volumes, and is off without a region
    assert slices.whole_button.isEnabled()
    slices.whole_button.click()
    assert w.session.region is None and not slices.whole_button.isEnabled()
    assert not slices.region_rects["A"].isVisible()


def test_the_views_can_show_only_the_region(demo_window, qtbot, tmp_path):
    w = demo_window
    s = w.session
    va, vb = w.slot_views["A"].view, w.slot_views["B"].view
    w.plane_action.setChecked(False)
    assert not w.region_only_action.isEnabled()  # no region yet
    whole = va.grab_image()
    s.set_region(((0, 32), (0, 32), (0, 10)))  # the low x third
    wait_for(w, qtbot, lambda: s.comparison is not None, timeout=60000)
    assert w.region_only_action.isEnabled() and va.clip_box is None
    outlined = va.grab_image()  # the whole plume, the region's box outlined
    w.region_only_action.setChecked(True)
    box = ((0.0, 0.0, 0.0), (1.0, 1.0, 10 / 32))
    assert va.clip_box == box and vb.clip_box == box and "region of interest only" in va.notice
    only = va.grab_image()
    assert _lit(only).sum() < 0.8 * _lit(whole).sum()  # two thirds of the plume are gone
    # the session keeps it; the field ray-march takes the same box (the cut code path, tested there)
    path = w.save_session(str(tmp_path / "s.json"))
    assert json.loads(path.read_text())["region_only"] is True
    s.set_region(None)  # whole volumes: nothing to clip to
    assert va.clip_box is None and not w.region_only_action.isEnabled()
    s.set_region(((0, 32), (0, 32), (0, 10)))
    assert va.clip_box == box  # the choice holds for the next region
    w.region_only_action.setChecked(False)
    assert va.clip_box is None
    np.testing.assert_array_equal(va.grab_image(), outlined)
