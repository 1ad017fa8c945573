"""The ``volsight`` command: subcommands for every GUI action, and the window when none is given.

Subcommand modules are imported lazily so that, e.g., ``volsight compare`` on a headless
server never imports Qt or vispy, and ``volsight --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

# name -> module in app.commands (missing modules are simply not offered)
COMMANDS: dict[str, str] = {
    "open": "app.commands.open_window",
    "info": "app.commands.info",
    "compare": "app.commands.compare",
    "matrix": "app.commands.matrix",
    "metrics": "app.commands.metrics",
    "fit": "app.commands.fit",
    "bake": "app.commands.bake",
    "render": "app.commands.render",
    "metric-train": "app.commands.metric_train",
    "metric-eval": "app.commands.metric_eval",
    "demo": "app.commands.demo",
    "install-desktop": "app.commands.install_desktop",
}

# one-line help shown without importing the modules
SUMMARIES: dict[str, str] = {
    "open": "open the comparison window (default when no subcommand is given)",
    "info": "print variables, shape, dtype, value range and NaN count of files",
    "compare": "distances between two volumes or fields",
    "matrix": "distance matrix over several volumes",
    "metrics": "list the available metrics and what they accept",
    "fit": "fit a neural field to a volume",
    "bake": "sample a neural field on a grid and write a volume",
    "render": "render a volume or field to PNG (offline)",
    "metric-train": "train volsight's own 3D metric weights",
    "metric-eval": "evaluate metrics on generated test sequences",
    "demo": "write the built-in demo volumes to files",
    "install-desktop": "install the .desktop launcher and icon for the current user",
}


def _available() -> dict[str, str]:
    out = {}
    for name, mod in COMMANDS.items():
        if importlib.util.find_spec(mod) is not None:
            out[name] = mod
    return out


def build_parser(commands: dict[str, str] | None = None) -> argparse.ArgumentParser:
    commands = _available() if commands is None else commands
    parser = argparse.ArgumentParser(
        prog="volsight",
        description="See and measure how two volumes differ. With no subcommand, opens the window "
        "(with the given files, or the built-in demo pair).",
    )
    parser.add_argument("--version", action="version", version=f"volsight {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in commands:
        sub.add_parser(name, help=SUMMARIES.get(name, ""), add_help=False)
    return parser


def version() -> str:
    """The installed package's version ("unknown" when run from a source tree that is not installed)."""
    from importlib import metadata

    try:
        return metadata.version("volsight")
    except metadata.PackageNotFoundError:
        return "unknown"


def _command_parser(name: str, module) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"volsight {name}", description=getattr(module, "HELP", SUMMARIES.get(name)))
    module.add_arguments(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = _available()
    if argv and argv[0] in commands:
        name, rest = argv[0], argv[1:]
    elif argv and argv[0] in ("-h", "--help"):
        build_parser(commands).print_help()
        return 0
    elif argv and argv[0] == "--version":
        print(f"volsight {version()}")
        return 0
    else:
        # no subcommand: files (if any) open in the window
        name, rest = "open", argv
    module = importlib.import_module(commands[name])
    args = _command_parser(name, module).parse_args(rest)
    from core.errors import VolsightError

    try:
        return int(module.run(args) or 0)
    except VolsightError as exc:
        print(f"volsight {name}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"volsight {name}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`volsight metrics | head`): stop quietly, as a shell tool does
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


def gui_main() -> int:
    """Entry point of the gui-script: always opens the window."""
    return main(["open", *sys.argv[1:]])


if __name__ == "__main__":
    sys.exit(main())
