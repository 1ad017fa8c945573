"""The launcher: the shipped .desktop file validates, and install-desktop installs it for one user."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VALIDATE = shutil.which("desktop-file-validate")


def _validate(path: Path) -> subprocess.CompletedProcess:
    if VALIDATE is None:
        pytest.fail("desktop-file-validate is missing: install desktop-file-utils (CI does)")
    return subprocess.run([VALIDATE, str(path)], capture_output=True, text=True)


def test_shipped_desktop_file_validates():
    r = _validate(ROOT / "resources" / "volsight.desktop")
    assert r.returncode == 0 and not r.stdout.strip(), r.stdout + r.stderr
    assert (ROOT / "resources" / "icons" / "volsight.svg").is_file()
    assert (ROOT / "resources" / "icons" / "volsight.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_validator_rejects_a_broken_entry(tmp_path):
    # the check can fail: a file without Name= is refused
    text = (ROOT / "resources" / "volsight.desktop").read_text().replace("Name=volsight\n", "")
    bad = tmp_path / "broken.desktop"
    bad.write_text(text)
    assert _validate(bad).returncode != 0


def test_install_desktop_for_current_user(tmp_path, monkeypatch):
    home = tmp_path / "home"
    data = tmp_path / "xdg-data"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_DATA_HOME", str(data))
    r = subprocess.run([sys.executable, "-m", "app.cli", "install-desktop"], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    desktop = data / "applications" / "volsight.desktop"
    assert desktop.is_file()
    assert (data / "icons" / "hicolor" / "scalable" / "apps" / "volsight.svg").is_file()
    assert (data / "icons" / "hicolor" / "256x256" / "apps" / "volsight.png").is_file()
    v = _validate(desktop)
    assert v.returncode == 0, v.stdout + v.stderr
    exec_line = next(line for line in desktop.read_text().splitlines() if line.startswith("Exec="))
    # Exec points at this installation's interpreter or gui-script, by absolute path
    assert exec_line.split("=", 1)[1].split()[0].startswith("/")
    assert exec_line.endswith("%F")
    assert not (home / ".local").exists()  # XDG_DATA_HOME was honoured

    r = subprocess.run([sys.executable, "-m", "app.cli", "install-desktop", "--uninstall"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and not desktop.exists()


def test_install_desktop_defaults_to_home_local_share(tmp_path, monkeypatch):
    from app.commands.install_desktop import data_home, install

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    assert data_home() == tmp_path / ".local" / "share"
    out = install(data_home())
    assert out["desktop"] == tmp_path / ".local" / "share" / "applications" / "volsight.desktop"
    assert out["desktop"].is_file()
