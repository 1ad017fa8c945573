"""Persistent preferences (QSettings, ini format): window geometry and layout, last folder, recent files."""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings

APP_NAME = "volsight"
MAX_RECENT = 10


def settings_org() -> str:
    """The organisation name settings are stored under (``VOLSIGHT_SETTINGS_ORG`` overrides it)."""
    return os.environ.get("VOLSIGHT_SETTINGS_ORG") or "volsight"


def open_settings() -> QSettings:
    """The user's settings file (ini under the XDG config folder, or where QSettings.setPath points)."""
    return QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, settings_org(), APP_NAME)


class Preferences:
    """Typed access to what the window remembers between runs."""

    def __init__(self, settings: QSettings | None = None):
        self.qsettings = settings or open_settings()

    def recent_files(self) -> list[str]:
        value = self.qsettings.value("recent_files", [])
        if isinstance(value, str):  # QSettings returns a lone string for a one-element list
            value = [value]
        return [str(v) for v in (value or []) if v]

    def add_recent(self, path: str) -> list[str]:
        """Put ``path`` first in the recent-file list (kept to MAX_RECENT, duplicates removed)."""
        p = str(Path(path).resolve())
        files = [p] + [f for f in self.recent_files() if f != p]
        files = files[:MAX_RECENT]
        self.qsettings.setValue("recent_files", files)
        self.set_last_dir(str(Path(p).parent))
        return files

    def clear_recent(self) -> None:
        self.qsettings.setValue("recent_files", [])

    def last_dir(self) -> str:
        d = str(self.qsettings.value("last_dir", "") or "")
        return d if d and Path(d).is_dir() else str(Path.home())

    def set_last_dir(self, folder: str) -> None:
        self.qsettings.setValue("last_dir", folder)

    def metric_weights(self) -> dict[str, str]:
        """Learned metric name -> weights file the user chose."""
        self.qsettings.beginGroup("weights")
        try:
            return {k: str(self.qsettings.value(k)) for k in self.qsettings.childKeys() if self.qsettings.value(k)}
        finally:
            self.qsettings.endGroup()

    def set_metric_weights(self, metric: str, path: str | None) -> None:
        key = f"weights/{metric}"
        if path:
            self.qsettings.setValue(key, str(path))
        else:
            self.qsettings.remove(key)

    def save_window(self, geometry: QByteArray, state: QByteArray) -> None:
        self.qsettings.setValue("window/geometry", geometry)
        self.qsettings.setValue("window/state", state)
        self.qsettings.sync()

    def window_geometry(self) -> QByteArray | None:
        v = self.qsettings.value("window/geometry")
        return v if isinstance(v, QByteArray) and not v.isEmpty() else None

    def window_state(self) -> QByteArray | None:
        v = self.qsettings.value("window/state")
        return v if isinstance(v, QByteArray) and not v.isEmpty() else None
