"""Series of more than two volumes (matrix heatmap, distance-to-first, click a cell), a NetCDF time axis,
and the launch paths: demo pair with no files, ``volsight open A B``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyqtgraph as pg
import pytest

from tests.app.conftest import drop_files, smooth_volume, wait_for, write_netcdf


def _series_files(tmp_path, rng, n=4):
    base = smooth_volume(rng, 16)
    paths = []
    for i in range(n):
        noisy = np.clip(base + 0.04 * i * rng.standard_normal(base.shape), 0, None).astype(np.float32)
        paths.append(write_netcdf(tmp_path / f"step{i}.nc", noisy))
    return paths


def test_dropping_four_files_gives_a_matrix_and_a_curve_and_cells_load_pairs(window, qtbot, tmp_path, rng):
    wait_for(window, qtbot, lambda: bool(window.catalog))
    window.session.set_metrics(["mse"])
    series = window.panels["series"]
    series.metric_box.setCurrentIndex(series.metric_box.findData("mse"))
    assert not series.heat.getPlotItem().getAxis("left").isVisible()  # empty: no axes with made-up ranges
    paths = _series_files(tmp_path, rng)
    drop_files(window, paths)
    wait_for(window, qtbot, lambda: series.matrix is not None, timeout=60000)
    assert window.docks["series"].isVisible()
    assert series.heat.getPlotItem().getAxis("left").isVisible()
    assert series.curve.getPlotItem().getAxis("bottom").isVisible()
    m = series.matrix
    from core.io import read_volume
    from core.metrics.matrix import distance_matrix

    vols = [read_volume(p) for p in paths]
    np.testing.assert_allclose(m, distance_matrix(vols, "mse"), rtol=1e-9, atol=1e-15)
    assert np.all(np.diag(m) == 0) and np.all(np.diff(m[0]) > 0)  # more noise, farther from the first
    assert series.curve.getPlotItem().titleLabel.text == "distance to the first"
    xs, ys = series.curve_item.getData()
    np.testing.assert_allclose(ys, m[0])
    (member_ticks,) = series.curve.getAxis("bottom")._tickLevels  # whole members only
    assert [v for v, _ in member_ticks] == [0, 1, 2, 3]
    assert window.session.item("A").path == str(paths[0]) and window.session.item("B").path == str(paths[1])

    # a click on cell (row 3, column 1) puts members 3 and 1 into A and B
    class Click:
        def __init__(self, x, y):
            from PySide6.QtCore import QPointF

            self._p = QPointF(x, y)
            self.accepted = False

        def pos(self):
            return self._p

        def accept(self):
            self.accepted = True

    # the colour bar gives the cells' value range; hovering a cell names its pair and value
    assert series.colorbar.isVisible()
    qtbot.wait(50)
    bar = series.colorbar.mapRectToScene(series.colorbar.boundingRect())
    assert bar.right() <= series.heat.viewport().width() + 0.5  # inside the pane, not clipped off its edge
    assert series.colorbar.levels() == pytest.approx((m.min(), m.max()))
    (ticks,) = series.colorbar.axis._tickLevels  # both ends and the middle, written out
    assert [v for v, _ in ticks] == pytest.approx([m.min(), (m.min() + m.max()) / 2, m.max()])

    class Hover(Click):
        def __init__(self, x, y, exit=False):
            super().__init__(x, y)
            self._exit = exit

        def isExit(self):  # noqa: N802 - pyqtgraph's name
            return self._exit

    series._on_heat_hover(Hover(2.5, 0.5))
    tip = series.heat.toolTip()
    assert f"0: {Path(paths[0]).stem}" in tip and f"2: {Path(paths[2]).stem}" in tip
    assert f"{m[0, 2]:.6g}" in tip
    series._on_heat_hover(Hover(9.5, 0.5))  # outside the matrix: no tip
    assert series.heat.toolTip() == ""
    series._on_heat_hover(Hover(2.5, 0.5, exit=True))
    assert series.heat.toolTip() == ""

    # the mouse near a point of the distance-to-first curve names that member and its distance
    vb = series.curve.getPlotItem().getViewBox()
    near = vb.mapViewToScene(pg.Point(2.0, float(m[0, 2])))
    series._on_curve_mouse(near + pg.Point(3.0, -2.0))
    tip = series.curve.toolTip()
    assert tip.startswith(f"member 2: {Path(paths[2]).stem}") and f"{m[0, 2]:.6g}" in tip, tip
    series._on_curve_mouse(near + pg.Point(0.0, 60.0))  # far from every point
    assert series.curve.toolTip() == ""

    # Export CSV writes what `volsight matrix` writes: names, then full-precision rows
    assert series.export_button.isEnabled()
    out = series.export_csv(str(tmp_path / "matrix.csv"))
    rows = [line.split(",") for line in Path(out).read_text().splitlines()]
    assert rows[0] == ["", *(it.name for it in series.items)] and rows[1][0].startswith(Path(paths[0]).stem)
    np.testing.assert_array_equal(np.array([[float(x) for x in r[1:]] for r in rows[1:]]), m)

    ev = Click(1.5, 3.5)
    series._on_heat_click(ev)
    assert ev.accepted
    assert window.session.item("A").path == str(paths[3]) and window.session.item("B").path == str(paths[1])
    wait_for(window, qtbot, lambda: window.session.comparison is not None, timeout=60000)
    assert window.panels["distances"].values()["mse"] == pytest.approx(m[3, 1], rel=1e-9)

    # a region of interest applies to the series as well
    from core.region import crop_all

    window.session.set_region(((0, 16), (2, 12), (4, 14)))
    wait_for(window, qtbot, lambda: series.matrix is not None, timeout=60000)
    np.testing.assert_allclose(series.matrix, distance_matrix(crop_all(vols, window.session.region), "mse"),
                               rtol=1e-9, atol=1e-15)
    assert "in region 0:16,2:12,4:14" in series.info.text()


def test_netcdf_time_axis_gives_a_selector_and_a_series(window, qtbot, tmp_path, rng):
    import netCDF4

    path = tmp_path / "timeseries.nc"
    frames = np.stack([smooth_volume(rng, 12) for _ in range(3)])
    with netCDF4.Dataset(path, "w") as ds:
        for dim, n in zip(("time", "z", "y", "x"), frames.shape):
            ds.createDimension(dim, n)
        ds.createVariable("density", "f4", ("time", "z", "y", "x"))[:] = frames
        ds.createVariable("temperature", "f4", ("time", "z", "y", "x"))[:] = frames * 2 + 1
    wait_for(window, qtbot, lambda: bool(window.catalog))
    window.session.set_metrics(["mse"])
    drop_files(window.slot_views["A"], [path])
    wait_for(window, qtbot, lambda: window.session.item("A") is not None)
    view = window.slot_views["A"]
    item = window.session.item("A")
    assert item.frames == 3 and item.index == 0 and item.variable == "density"
    np.testing.assert_allclose(item.volume.data[0], frames[0])
    assert view.time_box.isVisibleTo(window) and view.variable_box.isVisibleTo(window)
    view.time_box.setValue(2)
    wait_for(window, qtbot, lambda: window.session.item("A").index == 2)
    np.testing.assert_allclose(window.session.item("A").volume.data[0], frames[2])
    view.variable_box.setCurrentText("temperature")
    wait_for(window, qtbot, lambda: window.session.item("A").variable == "temperature")
    np.testing.assert_allclose(window.session.item("A").volume.data[0], frames[0] * 2 + 1, rtol=1e-6)

    series = window.panels["series"]
    series.metric_box.setCurrentIndex(series.metric_box.findData("mse"))
    series.series_from_time_axis()
    wait_for(window, qtbot, lambda: series.matrix is not None and series.matrix.shape == (3, 3), timeout=60000)
    expected = np.mean((frames[0] * 2 - frames[1] * 2) ** 2)
    assert series.matrix[0, 1] == pytest.approx(expected, rel=1e-4)
    assert series.curve.getPlotItem().getAxis("bottom").labelText == "time step"


def _open(argv):
    import argparse

    from app.commands import open_window

    parser = argparse.ArgumentParser()
    open_window.add_arguments(parser)
    return open_window.open_main_window(parser.parse_args(argv))


def test_launch_with_no_files_loads_and_compares_the_demo_pair(qtbot):
    w = _open([])
    qtbot.addWidget(w)
    assert w.isVisible()
    qtbot.waitUntil(lambda: w.ready, timeout=30000)  # docks and views follow the first paint
    assert set(w.docks) >= {"distances", "features", "slices", "transfer", "fields", "series"}
    qtbot.waitUntil(lambda: w.session.comparison is not None, timeout=120000)
    s = w.session
    assert s.item("A").kind == "demo" and s.item("B").kind == "demo"
    assert s.item("A").name != s.item("B").name
    ok = {k: d for k, d in s.comparison.items() if not isinstance(d, BaseException)}
    assert "mse" in ok and ok["mse"].value > 0
    assert w.slot_views["A"].view is not None and w.slot_views["A"].view.isVisible()
    w.close()


def test_open_command_with_two_files(qtbot, tmp_path, rng):
    a = write_netcdf(tmp_path / "a.nc", smooth_volume(rng, 12))
    b = write_netcdf(tmp_path / "b.nc", smooth_volume(rng, 12))
    w = _open([str(a), str(b)])
    qtbot.addWidget(w)
    qtbot.waitUntil(lambda: w.session.has_pair() or bool(w.errors), timeout=60000)
    assert not w.errors
    s = w.session
    assert (s.item("A").path, s.item("B").path) == (str(a), str(b))
    w.close()


def test_psnr_series_heatmap_shows_its_entries_despite_the_infinite_diagonal(window, qtbot, tmp_path, rng):
    wait_for(window, qtbot, lambda: bool(window.catalog))
    series = window.panels["series"]
    series.metric_box.setCurrentIndex(series.metric_box.findData("psnr"))
    drop_files(window, _series_files(tmp_path, rng, n=4))
    wait_for(window, qtbot, lambda: series.matrix is not None, timeout=60000)
    assert np.isinf(np.diag(series.matrix)).all()  # identical members: PSNR is +inf
    qtbot.wait(200)
    img = series.heat.grab().toImage()
    # the heatmap's cells, sampled across the plot: more than the one colour an unscaled image would give
    colours = {img.pixelColor(int(img.width() * fx), int(img.height() * fy)).rgb()
               for fx in np.linspace(0.2, 0.95, 12) for fy in np.linspace(0.15, 0.85, 12)}
    assert len(colours) >= 4
    levels = series.heat_image.getLevels()
    assert np.isfinite(levels).all() and levels[1] > levels[0]
    # PSNR is a similarity: the plots say so
    assert series.curve.getPlotItem().titleLabel.text == "similarity to the first"
    assert series.heat.getPlotItem().titleLabel.text.startswith("similarity matrix")


def test_series_matrix_takes_2d_metrics_and_grids_volsim_cannot_take_as_the_table_does(rng):
    """LSiM/Watson slice along all three axes, VolSiM runs on the nearest grid it takes (here 16³ for 18³)."""
    from app.comparing import built_metric
    from app.panels.series import series_matrix
    from core.metrics.matrix import distance_matrix
    from core.volume import Volume

    vols = [Volume.from_array(rng.random((18, 18, 18), dtype=np.float32), name=str(i)) for i in range(3)]
    watson = series_matrix(vols, "watson-dct")
    np.testing.assert_allclose(watson, distance_matrix(vols, built_metric("watson-dct"), axis="all"))
    assert watson[0, 1] > 1.0 and abs(watson[0, 0]) < 1e-6
    volsim = series_matrix(vols, "volsim")
    np.testing.assert_allclose(volsim, distance_matrix(vols, built_metric("volsim"), resample=(16, 16, 16)))
    assert np.all(volsim[~np.eye(3, dtype=bool)] > 0)


def test_series_members_on_other_grids_are_resampled_onto_the_first(window, qtbot, tmp_path, rng):
    """A series of files on different grids: every member is compared on the first member's grid (as B is on A's
    in a pair), and a region names the first's voxels; the panel says which grid."""
    from app.panels.series import series_matrix
    from core.metrics.matrix import distance_matrix
    from core.region import crop_all, onto_grid
    from core.volume import Volume

    shapes = [(20, 24, 28), (10, 12, 14), (20, 24, 28), (40, 24, 16)]
    vols = [Volume.from_array(rng.random(s, dtype=np.float32), name=f"m{i}") for i, s in enumerate(shapes)]
    m = series_matrix(vols, "mse")
    on_first = [onto_grid(v, shapes[0]) for v in vols]
    assert [v.shape for v in on_first] == [shapes[0]] * 4 and on_first[0] is vols[0]
    np.testing.assert_allclose(m, distance_matrix(on_first, "mse"))
    # the corner voxels keep their values under the corner-aligned resampling
    assert float(on_first[1].data[0, 0, 0, 0]) == pytest.approx(float(vols[1].data[0, 0, 0, 0]), rel=1e-6)
    region = ((2, 12), (0, 24), (5, 25))
    np.testing.assert_allclose(series_matrix(vols, "mse", region=region),
                               distance_matrix(crop_all(on_first, region), "mse"))

    wait_for(window, qtbot, lambda: bool(window.catalog))
    series = window.panels["series"]
    series.metric_box.setCurrentIndex(series.metric_box.findData("mse"))
    paths = []
    for v in vols:
        paths.append(tmp_path / f"{v.name}.npy")
        np.save(paths[-1], v.data[0])
    drop_files(window, [str(p) for p in paths])
    wait_for(window, qtbot, lambda: series.matrix is not None, timeout=60000)
    np.testing.assert_allclose(series.matrix, m, rtol=1e-6)
    assert "on the grid of 0 (20×24×28)" in series.info.text() and not window.errors
    # A on another grid than the series (loaded after it): A's region names A's voxels, so the series takes
    # the box of its own grid that covers the same part of the domain, and says so
    other = tmp_path / "other.npy"
    np.save(other, rng.random((12, 12, 12), dtype=np.float32))
    window.open_paths([str(other)], slot="A")
    wait_for(window, qtbot, lambda: window.session.item("A").shape == (12, 12, 12))
    window.session.set_region(((0, 6), (0, 12), (0, 12)))
    wait_for(window, qtbot, lambda: series.matrix is not None and "region" in series.info.text(), timeout=60000)
    mapped = ((0, 10), (0, 24), (0, 28))  # A's z 0..5 of 12 voxel centres covers 0..9.1 of the series' 20
    np.testing.assert_allclose(series.matrix, series_matrix(vols, "mse", region=mapped), rtol=1e-6)
    assert "in region 0:10,0:24,0:28 (A's region, on the series' grid)" in series.info.text()


def test_a_dropped_folder_opens_its_files_as_a_series_in_natural_order(window, qtbot, tmp_path, rng):
    """A folder of time steps named t1 … t10 (with a raw file's sidecar, a hidden file and a text file among
    them) becomes a series of its volume files in natural order; a folder without any is an error that
    leaves the window as it was."""
    from app.loading import expand_folders
    from core.errors import ReaderError

    folder = tmp_path / "steps"
    folder.mkdir()
    base = smooth_volume(rng, 16)
    for i in (10, 2, 1):
        np.save(folder / f"t{i}.npy", (base + 0.05 * i).astype(np.float32))
    (folder / "notes.txt").write_text("not a volume")
    (folder / ".hidden.npy").write_bytes(b"junk")
    (folder / "raw.raw").write_bytes(np.zeros((16, 16, 16), np.float32).tobytes())
    (folder / "raw.raw.json").write_text('{"dtype": "float32", "shape": [16, 16, 16]}')
    expected = [str(folder / n) for n in ("raw.raw", "t1.npy", "t2.npy", "t10.npy")]
    assert expand_folders([folder]) == expected
    assert expand_folders([str(folder / "t2.npy")]) == [str(folder / "t2.npy")]  # files pass through
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ReaderError, match="holds no volume or neural-field files"):
        expand_folders([empty])

    wait_for(window, qtbot, lambda: bool(window.catalog))
    window.session.set_metrics(["mse"])
    series = window.panels["series"]
    series.metric_box.setCurrentIndex(series.metric_box.findData("mse"))
    drop_files(window, [folder])
    wait_for(window, qtbot, lambda: series.matrix is not None, timeout=60000)
    assert [it.path for it in series.items] == expected and series.matrix.shape == (4, 4)
    before = (window.session.item("A"), window.session.item("B"))
    drop_files(window, [empty])
    wait_for(window, qtbot, lambda: any("holds no volume" in e for e in window.errors))
    assert (window.session.item("A"), window.session.item("B")) == before

    # File › Open folder as a series: the same through a folder dialog
    from PySide6.QtWidgets import QFileDialog

    window.open_folder_dialog()
    dlg = window.findChild(QFileDialog, "open_folder_dialog")
    assert dlg is not None and dlg.fileMode() == QFileDialog.FileMode.Directory
    series.matrix = None
    dlg.fileSelected.emit(str(folder))
    wait_for(window, qtbot, lambda: series.matrix is not None, timeout=60000)
    assert [it.path for it in series.items] == expected
    dlg.close()
