"""The whole comparison: two NetCDF files dropped → both views render, the table holds the numbers
``volsight compare`` gives, the feature-map panel shows images, exports and copies carry the same values."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.app.conftest import drop_files, smooth_volume, wait_for, write_netcdf

ROOT = Path(__file__).resolve().parents[2]
METRICS = ["mse", "psnr", "ssim", "ncc", "volsim", "learnsim-ssd", "learnsim-lcc"]


def _non_background_fraction(img: np.ndarray) -> float:
    """Share of pixels that differ from the corner (background) colour."""
    bg = img[0, 0, :3].astype(int)
    return float(np.mean(np.abs(img[..., :3].astype(int) - bg).sum(axis=-1) > 12))


@pytest.fixture
def volsim_weights(shared_dir) -> Path:
    return shared_dir / "weights" / "VOLSIM" / "MS_3scales.pth"


@pytest.fixture
def compared(window, qtbot, tmp_path, rng, volsim_weights):
    """A window that has compared two dropped 32³ NetCDF files with METRICS."""
    wait_for(window, qtbot, lambda: bool(window.catalog))
    window.controller.set_metric_weights("volsim", str(volsim_weights), remember=False)
    window.session.set_metrics(METRICS)
    base = smooth_volume(rng, 32)
    a = write_netcdf(tmp_path / "reference.nc", base)
    b = write_netcdf(tmp_path / "perturbed.nc", np.clip(base + 0.05 * rng.standard_normal(base.shape), 0, None)
                     .astype(np.float32))
    enter, _drop = drop_files(window, [a, b])
    assert enter.isAccepted()
    wait_for(window, qtbot, lambda: window.session.comparison is not None
             and set(METRICS) <= set(window.session.comparison), timeout=120000)
    return window, a, b


def test_drop_two_files_renders_and_fills_the_table_with_cli_numbers(compared, qtbot, volsim_weights):
    window, a, b = compared
    s = window.session
    assert s.item("A").path == str(a) and s.item("B").path == str(b)
    failed = {k: str(v) for k, v in s.comparison.items() if isinstance(v, BaseException)}
    assert not failed

    # both views really render the volumes
    for slot in ("A", "B"):
        view = window.slot_views[slot].view
        assert view is not None and view.isVisible()
        img = view.grab_image()
        assert img.ndim == 3 and img.shape[2] == 4
        assert _non_background_fraction(img) > 0.02, f"view {slot} shows only background"

    # the table holds exactly what core.compare gives for the same files
    from core.compare import compare
    from core.io import read_volume

    ref = compare(read_volume(a), read_volume(b), METRICS, weights={"volsim": str(volsim_weights)})
    shown = window.panels["distances"].values()
    for m in METRICS:
        assert shown[m] == pytest.approx(ref.value(m), rel=1e-9, abs=1e-12), m
    # ... and what the CLI prints
    r = subprocess.run([sys.executable, "-m", "app.cli", "compare", str(a), str(b), "--metric", ",".join(METRICS),
                        "--weights", f"volsim={volsim_weights}", "--json"], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    cli = json.loads(r.stdout)["distances"]
    for m in METRICS:
        assert shown[m] == pytest.approx(float(cli[m]["value"]), rel=1e-6), m

    from PySide6.QtCore import Qt

    # VolSiM's per-scale contributions are on the bar chart and sum to its value
    panel = window.panels["distances"]
    panel.show_contributions("volsim")
    d = s.distance("volsim")
    assert len(d.contributions) >= 3 and panel.bar_names == list(d.contributions)
    heights = panel.bar_item.opts["height"]
    assert float(np.sum(heights)) == pytest.approx(d.value, rel=1e-6)
    # the Note column counts the layers (learned) or terms of a metric that breaks its value down, and only then
    notes = {panel.table.item(r, 0).data(Qt.ItemDataRole.UserRole): panel.table.item(r, 3).text()
             for r in range(panel.table.rowCount())}
    for m in METRICS:
        n = len(s.distance(m).contributions)
        word = "layers" if panel.catalog[m].get("learned") else "terms"
        assert (f"{n} {word}" in notes[m]) if n > 1 else ("layers" not in notes[m] and "terms" not in notes[m]), \
            (m, notes[m])
    assert "12 layers" in notes["volsim"] and "VolSiM per layer" in panel.bars.getPlotItem().titleLabel.text
    # learned SSD runs volsight's shipped weights; learned LCC has none, so it is an identity (plain LCC of the
    # pair-normalised inputs) and the note says so
    assert notes["learnsim-ssd"] == "learned"
    assert notes["learnsim-lcc"] == "identity weights (untrained)"
    # PSNR and SSIM say the data range R their value depends on (the pair's joint range here)
    for m in ("psnr", "ssim"):
        assert notes[m] == f"data range {s.distance(m).info['data_range']:.4g}", notes[m]
    # the short chart labels its value axis with 0 and the largest share only
    (ticks,) = panel.bars.getAxis("left")._tickLevels
    assert [v for v, _ in ticks] == [0.0, pytest.approx(float(np.max(heights)))]

    # copy (full precision) and exports agree with the table
    text = panel.copy_selection()
    rows = {line.split("\t")[0]: line.split("\t")[1] for line in text.splitlines()[1:]}
    assert float(rows["MSE"]) == shown["mse"]
    from PySide6.QtGui import QGuiApplication

    assert QGuiApplication.clipboard().text() == text
    # Ctrl+C on the table copies the selected row
    QGuiApplication.clipboard().clear()
    window.activateWindow()
    panel.table.setFocus()
    panel.table.selectRow(1)
    qtbot.keyClick(panel.table, Qt.Key.Key_C, Qt.KeyboardModifier.ControlModifier)
    copied = QGuiApplication.clipboard().text().splitlines()
    assert len(copied) == 2 and copied[1].startswith("PSNR\t") and float(copied[1].split("\t")[1]) == shown["psnr"]
    out = window.controller.export("json", str(Path(a).parent / "cmp.json"))
    exported = json.loads(Path(out).read_text())["distances"]
    assert exported["volsim"]["value"] == pytest.approx(shown["volsim"], rel=1e-12)
    out = window.controller.export("csv", str(Path(a).parent / "cmp.csv"))
    csv_rows = [r for r in csv.DictReader(io.StringIO(Path(out).read_text())) if r["scale"] == ""]
    assert {r["metric"]: float(r["value"]) for r in csv_rows}["psnr"] == pytest.approx(shown["psnr"], rel=1e-12)
    # the per-slice curves along the Slices tab's axis: the same file as volsight compare --per-slice
    window.panels["slices"].axis_box.setCurrentIndex(1)
    out = window.controller.export("slices", str(Path(a).parent / "slices.csv"))
    from app.cli import main

    assert main(["compare", str(a), str(b), "-m", ",".join(METRICS), "--weights", f"volsim={volsim_weights}",
                 "--per-slice", "y", "-o", str(Path(a).parent / "c.csv")]) == 0
    got = list(csv.reader(io.StringIO(Path(out).read_text())))
    cli = list(csv.reader(io.StringIO((Path(a).parent / "c.csv").read_text())))
    assert got[0] == cli[0] and got[0][:3] == ["y", "rms_a_minus_b", "mse"] and len(got) == len(cli)
    np.testing.assert_allclose(np.array(got[1:], float), np.array(cli[1:], float), rtol=1e-6, atol=1e-12)


def test_feature_maps_from_the_same_pass_and_scale_highlight(compared, qtbot):
    window, _a, _b = compared
    s = window.session
    feats = window.panels["features"]
    feats.metric_box.setCurrentIndex(feats.metric_box.findData("volsim"))
    d = s.distance("volsim")
    assert d.features, "VolSiM's distance was computed without its feature maps"
    assert feats.scale_box.count() == len(d.features)
    for i in range(feats.scale_box.count()):
        feats.scale_box.setCurrentIndex(i)
        scale = feats.scale_box.currentText()
        sf = d.features[scale]
        for key in ("a", "b", "diff"):
            img = feats.shown(key)
            assert img is not None and img.size > 1 and np.isfinite(img).all()
        # the B image really is B's features (not A's), and the difference is the stored weighted one
        axis, idx, ch = feats.axis_box.currentIndex(), feats.slider.value(), feats.channel_box.value()
        np.testing.assert_array_equal(feats.shown("b"), np.take(sf.b[ch], idx, axis=axis).T)
        np.testing.assert_array_equal(feats.shown("diff"), np.take(sf.diff[ch], idx, axis=axis).T)
        assert window.panels["distances"].highlighted_bar() == scale
    # another channel and axis
    feats.channel_box.setValue(1)
    feats.axis_box.setCurrentIndex(2)
    sf = d.features[feats.scale_box.currentText()]
    np.testing.assert_array_equal(feats.shown("a"), np.take(sf.a[1], feats.slider.value(), axis=2).T)
    # A and B share one colour scale: the 1st to 99th percentile of both planes (not their extremes, which
    # the zero padding puts along the borders)
    both = np.concatenate((feats.shown("a").ravel(), feats.shown("b").ravel()))
    for key in ("a", "b"):
        assert feats.images[key].getLevels() == pytest.approx(np.percentile(both, (1.0, 99.0)), rel=1e-6)
    # the mouse over a pane: a tooltip with the feature position and the three panes' values there
    from PySide6.QtCore import QPointF

    k = feats.slider.value()
    item = feats.images["diff"]
    feats.canvas.scene().sigMouseMoved.emit(item.mapToScene(QPointF(1.5, 2.5)))  # u = y 1, v = z 2 on an x plane
    tip = feats.canvas.toolTip()
    assert f"channel 1 at z 2, y 1, x {k}" in tip, tip
    assert f"A {sf.a[1, 2, 1, k]:.5g}" in tip and f"B {sf.b[1, 2, 1, k]:.5g}" in tip
    assert f"weighted difference {sf.diff[1, 2, 1, k]:.5g}" in tip
    feats.canvas.scene().sigMouseMoved.emit(item.mapToScene(QPointF(-40.0, -40.0)))
    assert feats.canvas.toolTip() == ""


def test_difference_view_and_slices(compared, qtbot):
    window, _a, _b = compared
    s = window.session
    window.diff_action.setChecked(True)
    s.set_diff_metric("mse")
    mse_map = np.asarray(s.distance("mse").voxel_map)
    slices = window.panels["slices"]
    assert slices.titles["diff"].text().startswith("MSE")
    np.testing.assert_allclose(slices.image("diff"), mse_map[slices.slider.value()].T)
    a = s.item("A").volume.data[0]
    np.testing.assert_array_equal(slices.image("A"), a[slices.slider.value()].T)
    slices.axis_box.setCurrentIndex(1)
    np.testing.assert_array_equal(slices.image("A"), a[:, slices.slider.value(), :].T)

    # the mouse over any slice image reads out its voxel in A, B and the difference
    b = s.item("B").volume.data[0]
    k = slices.slider.value()
    u, v = 5, 9  # displayed pixel: along x (right) and z (down) on a y slice
    from PySide6.QtCore import QPointF

    for key in ("A", "diff"):
        slices.probe_label.setText("")
        item = slices.views[key].getImageItem()
        slices.views[key].scene.sigMouseMoved.emit(item.mapToScene(QPointF(u + 0.5, v + 0.5)))
        text = slices.probe_label.text()
        assert text.startswith(f"z {v}  y {k}  x {u}:"), text
        assert f"A {a[v, k, u]:.5g}" in text and f"B {b[v, k, u]:.5g}" in text
        assert f"{mse_map[v, k, u]:.5g}" in text.split("B ")[1]
        # each image's title carries its own value too (the readout may be cut off in a narrow dock)
        assert slices.titles["A"].text() == f"A: {a[v, k, u]:.5g}"
        assert slices.titles["diff"].text().endswith(f": {mse_map[v, k, u]:.5g}")
    # the per-slice profile of the difference along the axis (mean of the MSE map per y slice here): its
    # line marks the shown slice; dragging it, or clicking the plot, shows another slice
    per_y = mse_map.astype(np.float64).mean(axis=(0, 2))
    np.testing.assert_allclose(slices.profile_values, per_y, rtol=1e-12)
    xs, ys = slices.profile_curve.getData()
    np.testing.assert_allclose(xs, per_y)
    np.testing.assert_array_equal(ys, np.arange(len(xs)))
    assert slices.profile_title.text() == "mean MSE map per y" and slices.profile_line.value() == k
    # the narrow plot labels two round values within the curve's range (automatic ticks would collide)
    ticks = [t for t, _label in slices.profile.getAxis("bottom")._tickLevels[0]]
    span = per_y.max() - per_y.min()
    assert len(ticks) == 2 and per_y.min() + 0.15 * span <= ticks[0] < ticks[1] <= per_y.max() - 0.15 * span
    slices.profile_line.setValue(3.2)
    assert slices.slider.value() == 3 and slices.image("A").shape == a[:, 3, :].T.shape
    np.testing.assert_array_equal(slices.image("A"), a[:, 3, :].T)
    slices.slider.setValue(k)
    assert slices.profile_line.value() == k
    from PySide6.QtCore import QPoint, Qt

    plot_vb = slices.profile.getPlotItem().vb
    target = slices.profile.mapFromScene(plot_vb.mapViewToScene(QPointF(float(xs.mean()), 7.0)))
    qtbot.mouseClick(slices.profile.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(target.x(), target.y()))
    qtbot.waitUntil(lambda: slices.slider.value() == 7, timeout=5000)
    slices.slider.setValue(k)
    off = slices.views["A"].getImageItem().mapToScene(QPointF(-50.0, -50.0))  # off the image
    slices.views["A"].scene.sigMouseMoved.emit(off)
    assert slices.probe_label.text() == "" and slices.titles["A"].text() == "A"
    view = window.diff_view.view
    assert view is not None and view.isVisible()
    qtbot.waitUntil(lambda: _non_background_fraction(view.grab_image()) > 0.01, timeout=20000)
    # its colour legend runs from 0 to the largest value shown, dark to bright (inferno), drawn on screen
    legend = window.diff_view.legend
    assert legend.isVisible() and legend.lo.text() == "0"
    assert legend.hi.text() == f"{float(np.abs(window.controller.difference()[0]).max()):.3g}"
    assert legend.colors[0].sum() < 60 and legend.colors[-1].sum() > 500
    shot = legend.bar.grab().toImage()
    left, right = shot.pixelColor(1, 5), shot.pixelColor(shot.width() - 2, 5)
    assert left.red() + left.green() + left.blue() < 60 and right.red() + right.green() > 400
    # a signed difference: the 3D view shows its magnitude and says so; the slice keeps the sign
    from app.docks import SIGNED_DIFF

    window.session.set_diff_metric(SIGNED_DIFF)
    qtbot.waitUntil(lambda: window.diff_view.title.text() == "|A − B|", timeout=10000)
    assert slices.titles["diff"].text() == "A − B" and float(slices.views["diff"].image.min()) < 0
    signed = window.controller.difference()[0]  # the profile of a signed difference is its RMS per slice
    np.testing.assert_allclose(slices.profile_values, np.sqrt((signed.astype(np.float64) ** 2).mean(axis=(0, 2))),
                               rtol=1e-12)
    assert slices.profile_title.text() == "RMS(A − B) per y"
    assert legend.hi.text() == f"{float(np.abs(window.controller.difference()[0]).max()):.3g}"
    # A and B carry the legends of their own transfer functions
    for slot in ("A", "B"):
        tf = window.session.transfer(slot)
        legend = window.slot_views[slot].legend
        assert legend.isVisible() and legend.hi.text() == f"{tf.value_range[1]:.3g}"


def test_main_window_screenshot(compared, qtbot, artifacts_dir):
    """Saves test-artifacts/main_window.png: the window with a compared pair, difference view and VolSiM bars."""
    window, _a, _b = compared
    window.resize(1400, 900)
    window.diff_action.setChecked(True)
    window.session.set_diff_metric("mse")
    window.panels["distances"].show_contributions("volsim")
    feats = window.panels["features"]
    feats.metric_box.setCurrentIndex(feats.metric_box.findData("volsim"))
    qtbot.wait(300)
    from app.session_file import save_view_images, save_window_image

    path = save_window_image(window, artifacts_dir / "main_window.png")
    from PIL import Image

    img = np.asarray(Image.open(path).convert("RGB"))
    assert img.shape[0] >= 600 and img.shape[1] >= 1000
    assert img.std() > 20  # not a blank grab
    views = save_view_images(window, artifacts_dir, stem="main_window_view")
    assert [p.name for p in views] == ["main_window_view_A.png", "main_window_view_B.png",
                                       "main_window_view_diff.png"]
    for p in views:
        assert _non_background_fraction(np.asarray(Image.open(p).convert("RGBA"))) > 0.01, p.name


def test_the_max_error_row_says_where_and_a_double_click_shows_that_voxel(window, qtbot):
    from app.comparing import default_metrics

    wait_for(window, qtbot, lambda: bool(window.catalog))
    assert "maxerr" in default_metrics()  # shown by default, beside MSE, PSNR, SSIM and NCC
    window.session.set_metrics(["mse", "maxerr"])
    window.load_demo("plume", 16)
    wait_for(window, qtbot, lambda: window.session.distance("maxerr") is not None, timeout=60000)
    a, b = (window.session.item(s).volume.data[0].astype(np.float64) for s in ("A", "B"))
    diff = np.abs(a - b)
    at = tuple(int(i) for i in np.unravel_index(int(diff.argmax()), diff.shape))
    d = window.session.distance("maxerr")
    assert d.value == pytest.approx(float(diff.max()), rel=1e-9) and tuple(d.info["at"]) == at
    dist, slices = window.panels["distances"], window.panels["slices"]
    row = next(r for r in range(dist.table.rowCount()) if dist.table.item(r, 0).text() == "Max error")
    assert dist.table.item(row, 3).text() == "at z, y, x = {}, {}, {}".format(*at)
    window.docks["transfer"].raise_()
    slices.axis_box.setCurrentIndex(1)  # y planes
    dist.table.cellDoubleClicked.emit(row, 1)
    qtbot.waitUntil(lambda: window.docks["slices"].isVisible())
    assert slices.slider.value() == at[1] and slices.marked == at
    ring = slices.markers["A"]
    assert ring.isVisible() and ring.getData()[0][0] == at[2] + 0.5 and ring.getData()[1][0] == at[0] + 0.5
    assert slices.probe_label.text().startswith(f"z {at[0]}  y {at[1]}  x {at[2]}:")
    marked = tuple((i + 0.5) / 16 for i in at)  # and crossed in the 3D views
    assert window.slot_views["A"].view.marker == pytest.approx(marked)
    assert window.slot_views["B"].view.marker == pytest.approx(marked)
    slices.slider.setValue((at[1] + 3) % 16)  # another slice: no ring
    assert not ring.isVisible()
    slices.slider.setValue(at[1])
    assert ring.isVisible()
    # its map in the Slices tab: the profile gives each slice's largest error, as the value is the volume's
    window.session.set_diff_metric("maxerr")
    qtbot.waitUntil(lambda: slices.diff_label == "Max error map")
    assert slices.profile_title.text() == "max Max error map per y"
    np.testing.assert_allclose(slices.profile_values, diff.max(axis=(0, 2)), rtol=1e-6)
    assert slices.profile_values.max() == pytest.approx(d.value, rel=1e-6)
    window.load_demo("turbulence", 16)  # another pair: the mark goes
    wait_for(window, qtbot, lambda: window.session.item("A").name != "plume")
    assert slices.marked is None and not ring.isVisible()
    assert window.slot_views["A"].view.marker is None
