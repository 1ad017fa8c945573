"""``volsight [open] [A] [B] ...``: the comparison window (the demo pair when no file is given)."""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.main_window import MainWindow

HELP = "open the comparison window with files A and B (more files: a series); the demo pair when none is given"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="*", help="volume or neural-field files: one goes to A, two to A and B, "
                        "more make a series")
    parser.add_argument("--session", help="restore a saved session (JSON) instead of opening files")
    parser.add_argument("--demo", default="plume", choices=("plume", "turbulence"),
                        help="which built-in demo pair to show when no file is given (default: plume)")
    parser.add_argument("--no-demo", action="store_true", help="start with empty slots instead of the demo pair")
    # for the launch benchmark: print seconds from process start to the window being shown, then quit
    parser.add_argument("--exit-when-shown", action="store_true", help=argparse.SUPPRESS)


def open_main_window(args: argparse.Namespace, start: float | None = None) -> MainWindow:
    """Show the window (frame first, docks right after) and queue what ``args`` ask to load."""
    start = time.perf_counter() if start is None else start
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from app.main_window import build_main_window

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("volsight")
    app.setApplicationDisplayName("volsight")
    app.setDesktopFileName("volsight")
    window = build_main_window(deferred=True)
    window.show()
    if args.session:
        window.when_ready(lambda: window.restore_session(args.session))
    elif args.files:
        window.when_ready(lambda: window.open_paths(args.files))
    elif not args.no_demo:
        window.when_ready(lambda: window.load_demo(args.demo))
    if args.exit_when_shown:
        QTimer.singleShot(0, lambda: print(f"window shown {time.perf_counter() - start:.3f} s after command start",
                                           flush=True))

        def complete() -> None:
            print(f"window complete {time.perf_counter() - start:.3f} s after command start", flush=True)
            window.close()
            app.quit()

        window.when_ready(lambda: QTimer.singleShot(0, complete))
    return window


def run(args: argparse.Namespace) -> int:
    """Open the window and run the Qt event loop until it closes."""
    start = time.perf_counter()
    window = open_main_window(args, start)
    from PySide6.QtWidgets import QApplication

    code = int(QApplication.instance().exec())
    del window
    return code
