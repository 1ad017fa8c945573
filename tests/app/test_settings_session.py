"""What the window remembers (QSettings) and session files that round-trip."""

from __future__ import annotations

import json

import numpy as np

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
    path = window.save_session(str(tmp_path / "s.json"))
    doc = json.loads(path.read_text())
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
