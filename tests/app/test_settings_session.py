"""What the window remembers (QSettings) and session files that round-trip."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.app.conftest import wait_for


def test_settings_remember_size_layout_last_dir_and_recent_files(qtbot, tmp_path, temp_settings):
    from app.main_window import build_main_window
    from app.settings import Preferences

    w = build_main_window()
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    default_size = (w.width(), w.height())
    w.resize(700, 720)
    qtbot.wait(20)
    size = (w.width(), w.height())  # what the screen allowed
    assert size != default_size
    w.docks["slices"].setVisible(False)
    folder = tmp_path / "data"
    folder.mkdir()
    for i in range(12):
        w.prefs.add_recent(str(folder / f"v{i}.nc"))
    w.close()
    assert list(temp_settings.rglob("*.ini")), "settings went somewhere else than the temporary folder"

    w2 = build_main_window()
    qtbot.addWidget(w2)
    w2.show()
    qtbot.waitExposed(w2)
    assert w2.width() == size[0]
    if w2.screen().availableGeometry().height() >= size[1] + 60:  # restoreGeometry fits windows to the screen
        assert w2.height() == size[1]
    assert not w2.docks["slices"].isVisible()
    assert w2.docks["distances"].isVisible()
    prefs = Preferences()
    recent = prefs.recent_files()
    assert len(recent) == 10 and recent[0].endswith("v11.nc")
    assert prefs.last_dir() == str(folder)
    w2._fill_recent_menu()
    assert w2.recent_menu.actions()[0].text().endswith("v11.nc")
    w2.close()


def test_session_round_trip_with_demo_pair(window, qtbot, tmp_path):
    window.load_demo("turbulence", 16)
    wait_for(window, qtbot, window.session.has_pair)
    s = window.session
    s.set_metrics(s.metrics[:1] if s.metrics else [])
    s.set_method("mip")
    s.set_link_cameras(False)
    window.diff_action.setChecked(True)
    window.panels["slices"].set_cut_side("above")
    path = window.save_session(str(tmp_path / "s.json"))
    doc = json.loads(path.read_text())
    assert doc["cut"] == "above"
    assert doc["slots"]["A"]["kind"] == "demo" and doc["slots"]["B"]["perturbed"] is True
    assert doc["method"] == "mip" and doc["link_cameras"] is False and doc["difference_view"] is True
    a_data = s.item("A").volume.data.copy()

    from app.main_window import build_main_window

    w2 = build_main_window()
    qtbot.addWidget(w2)
    w2.show()
    with qtbot.waitSignal(w2.session_restored, timeout=60000):
        w2.restore_session(str(path))
    s2 = w2.session
    assert s2.has_pair()
    np.testing.assert_array_equal(s2.item("A").volume.data, a_data)
    assert s2.item("B").name == s.item("B").name
    assert s2.metrics == s.metrics and s2.method == "mip" and s2.link_cameras is False
    assert w2.diff_view.isVisible()
    assert w2.panels["slices"].cut_side == "above" and w2.cut_action.isChecked()
    for slot in ("A", "B"):  # the restored transfer functions' legends are shown
        legend, tf = w2.slot_views[slot].legend, s2.transfer(slot)
        assert legend.isVisible() and legend.hi.text() == f"{tf.value_range[1]:.3g}", slot
    from app.session_file import session_dict

    again = session_dict(w2)
    assert again["slots"] == doc["slots"] and again["metrics"] == doc["metrics"]
    assert again["cameras"] == doc["cameras"]
    w2.tasks.wait_all(30000)
    w2.close()


def test_a_broken_session_file_is_reported(window, qtbot, tmp_path):
    bad = tmp_path / "nonsense.json"
    bad.write_text("{\"hello\": 1}")
    with qtbot.waitSignal(window.error_reported, timeout=5000) as blocker:
        window.restore_session(str(bad))
    assert "nonsense.json" in blocker.args[0]


def test_file_open_dialog_and_recent_files(window, qtbot, tmp_path, rng):
    from PySide6.QtWidgets import QFileDialog

    from tests.app.conftest import smooth_volume, write_netcdf

    path = write_netcdf(tmp_path / "opened.nc", smooth_volume(rng, 12))
    window.prefs.set_last_dir(str(tmp_path))
    window.open_dialog("B")
    dlg = window.findChild(QFileDialog, "open_dialog")
    assert dlg is not None and dlg.isVisible()  # open(): shown without blocking the event loop
    assert dlg.directory().absolutePath() == str(tmp_path)
    dlg.filesSelected.emit([str(path)])  # what the dialog sends when the user picks the file
    dlg.close()
    wait_for(window, qtbot, lambda: window.session.item("B") is not None)
    assert window.session.item("B").path == str(path)
    assert window.prefs.recent_files()[0] == str(path.resolve())
    # Open recent → the same file again, into the first free slot (A)
    window._fill_recent_menu()
    act = window.recent_menu.actions()[0]
    assert act.text() == str(path.resolve())
    act.trigger()
    wait_for(window, qtbot, lambda: window.session.item("A") is not None)
    assert window.session.item("A").path == str(path.resolve())


def test_save_difference_volume_writes_the_map_shown_on_a_geometry(window, qtbot, tmp_path, rng, monkeypatch):
    """File › Save difference volume: the shown difference (A − B, a metric's map, a region's map in place) as
    a volume on A's geometry, read back equal; never over an input file; a clear error without a pair."""
    from PySide6.QtWidgets import QFileDialog

    from app.comparing import signed_difference
    from app.session_file import save_difference_volume
    from core.errors import WriterError
    from core.io import read_volume
    from tests.app.conftest import drop_files, smooth_volume, write_netcdf

    with pytest.raises(WriterError, match="no per-voxel difference to save"):
        save_difference_volume(window, tmp_path / "none.nc")
    act = next(x for x in window.file_menu.actions() if x.text() == "Save &difference volume…")
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *args, **kw: pytest.fail("asked for a file name"))
    act.trigger()  # nothing to save: said at once, no file dialog
    assert "no per-voxel difference to save yet" in window.errors[-1]
    wait_for(window, qtbot, lambda: bool(window.catalog))
    window.session.set_metrics(["mse"])
    a_arr = smooth_volume(rng, 16)
    from core.io.registry import write_volume
    from core.volume import Volume

    pa = write_volume(Volume.from_array(a_arr, name="a", spacing=(2.0, 1.0, 0.5)), tmp_path / "a.nc")
    pb = write_netcdf(tmp_path / "b.nc", a_arr + 0.1 * smooth_volume(rng, 16))
    drop_files(window, [str(pa), str(pb)])
    wait_for(window, qtbot, lambda: window.session.comparison is not None, timeout=60000)
    a, b = window.session.item("A").volume, window.session.item("B").volume

    from app.docks import SIGNED_DIFF

    window.session.set_diff_metric(SIGNED_DIFF)
    target = tmp_path / "out" / "diff.nc"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *args, **kw: (str(target), ""))
    act.trigger()
    back = read_volume(target)
    np.testing.assert_allclose(back.data[0], signed_difference(a, b), rtol=1e-6, atol=1e-7)
    assert back.spacing == a.spacing
    written = back.metadata["volsight_metadata"]
    assert written["map"] == "A − B" and written["a_file"] == str(pa) and written["b_file"] == str(pb)
    assert "difference volume saved" in window.statusBar().currentMessage()

    # a metric's map, restricted to a region: in place in A's grid, zero outside
    window.session.set_diff_metric("mse")
    window.session.set_region(((2, 10), (0, 16), (4, 12)))
    wait_for(window, qtbot, lambda: window.session.comparison is not None
             and window.controller.difference()[1] == "MSE (region) map", timeout=60000)
    npy = save_difference_volume(window, tmp_path / "map.npy")
    m = np.load(npy)
    expected = (a.data[0] - b.data[0]) ** 2
    assert m.shape == a.shape and np.all(m[:2] == 0) and np.all(m[:, :, :4] == 0)
    np.testing.assert_allclose(m[2:10, :, 4:12], expected[2:10, :, 4:12], rtol=1e-5, atol=1e-8)

    # A's own file is an input: refused, and left as it was
    before = pa.read_bytes()
    with pytest.raises(WriterError, match="that is A's own file"):
        save_difference_volume(window, pa)
    assert pa.read_bytes() == before
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *args, **kw: (str(pb), ""))
    errors = len(window.errors)
    act.trigger()  # through the menu: reported, the window carries on
    assert "that is B's own file" in window.errors[errors]
