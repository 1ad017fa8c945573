"""Fixtures of the GUI tests: a window with settings in a temporary folder, real drops, small files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication


@pytest.fixture(autouse=True)
def temp_settings(tmp_path_factory, monkeypatch):
    """QSettings ini files under a temporary folder, never the user's."""
    from PySide6.QtCore import QSettings

    folder = tmp_path_factory.mktemp("settings")
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(folder))
    monkeypatch.setenv("VOLSIGHT_SETTINGS_ORG", "volsight-tests")
    return folder


@pytest.fixture(autouse=True)
def default_metric_weights():
    """Weights a test chooses for a learned metric (the official checkpoints, say) end with that test."""
    yield
    from app import comparing

    for name in list(comparing._WEIGHTS):
        comparing.set_weights(name, None)


@pytest.fixture
def window(qtbot):
    """The main window, empty (no demo), shown and exposed."""
    from app.main_window import build_main_window

    w = build_main_window()
    qtbot.addWidget(w)
    w.resize(900, 600)
    w.show()
    qtbot.waitExposed(w)
    yield w
    w.tasks.cancel()
    w.tasks.wait_all(30000)


def write_netcdf(path: Path, data: np.ndarray, variable: str = "density") -> Path:
    """A small NetCDF file with one (z, y, x) variable, written by netCDF4 directly."""
    import netCDF4

    with netCDF4.Dataset(path, "w") as ds:
        for dim, n in zip(("z", "y", "x"), data.shape):
            ds.createDimension(dim, n)
        var = ds.createVariable(variable, "f4", ("z", "y", "x"))
        var[:] = data
    return path


def smooth_volume(rng: np.random.Generator, n: int = 32) -> np.ndarray:
    """A smooth random blob field in [0, 1] (seeded by the caller's generator)."""
    c = np.linspace(-1, 1, n, dtype=np.float32)
    z, y, x = np.meshgrid(c, c, c, indexing="ij")
    out = np.zeros((n, n, n), np.float32)
    for _ in range(4):
        cz, cy, cx = rng.uniform(-0.5, 0.5, 3)
        out += np.exp(-((z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2) / 0.08).astype(np.float32)
    return out / out.max()


def drop_files(widget, paths, pos: QPoint | None = None) -> tuple[QDragEnterEvent, QDropEvent]:
    """Send a real drag-enter and drop of local file URLs to ``widget``."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    pos = pos or widget.rect().center()
    enter = QDragEnterEvent(pos, Qt.DropAction.CopyAction, mime, Qt.MouseButton.NoButton,
                            Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, enter)
    drop = QDropEvent(QPointF(pos), Qt.DropAction.CopyAction, mime, Qt.MouseButton.NoButton,
                      Qt.KeyboardModifier.NoModifier)
    if enter.isAccepted():
        QApplication.sendEvent(widget, drop)
    return enter, drop


def wait_for(window, qtbot, condition, timeout: int = 30000) -> None:
    """Wait until ``condition()`` holds; fail at once with the message if the window reports an error."""
    n = len(window.errors)
    qtbot.waitUntil(lambda: bool(condition()) or len(window.errors) > n, timeout=timeout)
    assert len(window.errors) == n, f"the window reported: {window.errors[n:]}"
