"""``volsight install-desktop``: install the launcher (.desktop) and icon for the current user (XDG)."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from core.errors import WriterError

HELP = "install the .desktop launcher and icon for the current user, so a double-click starts volsight"
RESOURCES = Path(__file__).resolve().parents[2] / "resources"
DESKTOP_NAME = "volsight.desktop"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-home", help="XDG data folder to install into (default: $XDG_DATA_HOME or "
                        "~/.local/share)")
    parser.add_argument("--uninstall", action="store_true", help="remove the launcher and icons again")
    parser.add_argument("--dry-run", action="store_true", help="print what would be written, write nothing")


def data_home(explicit: str | None = None) -> Path:
    """Where per-user applications and icons go (the XDG base-directory rules)."""
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("XDG_DATA_HOME")
    return Path(env) if env and Path(env).is_absolute() else Path.home() / ".local" / "share"


def launch_command() -> tuple[str, str]:
    """(Exec line, TryExec target) that start this installation's window."""
    script = Path(sys.executable).parent / "volsight-gui"
    if script.is_file():
        return f"{script} %F", str(script)
    # not installed as a package (e.g. run from a checkout): start the module with this interpreter
    root = RESOURCES.parent
    return f"env PYTHONPATH={root} {sys.executable} -m app.cli open %F", sys.executable


def desktop_entry(exec_line: str, try_exec: str) -> str:
    """The shipped .desktop text with Exec/TryExec pointing at this installation."""
    lines = []
    for line in (RESOURCES / DESKTOP_NAME).read_text(encoding="utf-8").splitlines():
        if line.startswith("Exec="):
            line = f"Exec={exec_line}"
        elif line.startswith("TryExec="):
            line = f"TryExec={try_exec}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def targets(home: Path) -> dict[str, Path]:
    return {
        "desktop": home / "applications" / DESKTOP_NAME,
        "svg": home / "icons" / "hicolor" / "scalable" / "apps" / "volsight.svg",
        "png": home / "icons" / "hicolor" / "256x256" / "apps" / "volsight.png",
    }


def install(home: Path) -> dict[str, Path]:
    """Write the launcher and icons under ``home`` (atomically); returns what was written."""
    from core.io.atomic import write_bytes_atomic

    exec_line, try_exec = launch_command()
    out = targets(home)
    try:
        write_bytes_atomic(out["desktop"], desktop_entry(exec_line, try_exec).encode("utf-8"))
        write_bytes_atomic(out["svg"], (RESOURCES / "icons" / "volsight.svg").read_bytes())
        write_bytes_atomic(out["png"], (RESOURCES / "icons" / "volsight.png").read_bytes())
    except OSError as exc:
        raise WriterError(getattr(exc, "filename", None) or home, f"cannot install the launcher: {exc}") from exc
    os.chmod(out["desktop"], 0o755)
    # refresh the menu caches where the tools exist; the files work without it
    for tool, arg in (("update-desktop-database", out["desktop"].parent),
                      ("gtk-update-icon-cache", home / "icons" / "hicolor")):
        if shutil.which(tool):
            subprocess.run([tool, "-q", str(arg)], check=False, capture_output=True)
    return out


def uninstall(home: Path) -> list[Path]:
    removed = []
    for p in targets(home).values():
        if p.exists():
            p.unlink()
            removed.append(p)
    return removed


def run(args: argparse.Namespace) -> int:
    home = data_home(args.data_home)
    if args.uninstall:
        for p in uninstall(home):
            print(f"removed {p}")
        return 0
    if args.dry_run:
        exec_line, try_exec = launch_command()
        for p in targets(home).values():
            print(f"would write {p}")
        print(desktop_entry(exec_line, try_exec), end="")
        return 0
    for name, p in install(home).items():
        print(f"installed {name}: {p}")
    return 0
