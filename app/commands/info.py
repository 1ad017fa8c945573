"""``volsight info FILE...``: format, variables, shapes, dtypes, value ranges, NaN counts and frames."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path
from typing import Any

HELP = ("print each file's format and variables (dims, shape, dtype, value range, NaN count, frames); "
        "an unreadable file prints 'path: reason' and makes the exit status 2")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="volume files (.nc, .npy, .npz, raw + sidecar) "
                                                                 "or neural-field files")
    parser.add_argument("--no-stats", action="store_true", help="skip value range and NaN count (faster on big files)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of text")


def _history_words(rows: list) -> str:
    """A fit's (iteration, loss) log in a few words (``--json`` gives all of it)."""
    try:
        rows = [(int(it), float(loss)) for it, loss in rows]
    except (TypeError, ValueError):
        return "malformed"
    if not rows:
        return "none"
    return (f"{len(rows)} points, iterations {rows[0][0]}-{rows[-1][0]}, batch loss {rows[0][1]:.3g} -> "
            f"{rows[-1][1]:.3g} (--json lists them)")


def _field_info(path: Path) -> dict[str, Any] | None:
    """The neural-field description when models.store recognises the file, else None."""
    try:
        from models import store  # optional room: absent until neural fields land
    except Exception:  # noqa: BLE001 - a missing or broken models room must not stop volume files being described
        return None
    is_field = getattr(store, "is_field_file", None)
    describe = getattr(store, "field_info", None)
    if is_field is None or describe is None:
        return None
    field_suffix = getattr(store, "FIELD_SUFFIX", None)
    try:
        # a .vsf file is described (or its damage reported) by the field reader, whatever it holds
        if path.suffix.lower() != field_suffix and not is_field(path):
            return None
    except Exception:  # noqa: BLE001 - a probe that fails means "not a field file"
        return None
    return dict(describe(path))  # FieldFileError propagates and is reported like any unreadable file


def _fmt_num(x: float) -> str:
    return f"{x:.6g}" if math.isfinite(x) else str(x)


def _variable_line(v) -> str:
    parts = [v.name]
    if v.dims:
        parts.append("(" + ", ".join(v.dims) + ")")
    parts.append("×".join(str(n) for n in v.shape) if v.shape else "scalar value")
    parts.append(v.dtype)
    if v.is_volume:
        parts.append("vector" if v.channels == 3 else "scalar")
        if v.frames > 1:
            parts.append(f"{v.frames} frames")
    if v.value_range is not None:
        parts.append(f"range [{_fmt_num(v.value_range[0])}, {_fmt_num(v.value_range[1])}]")
    if v.nan_count is not None:
        parts.append(f"NaN {v.nan_count}")
    if not v.is_volume:
        parts.append(f"(not a volume: {v.note})" if v.note else "(not a volume)")
    elif v.note:
        parts.append(f"({v.note})")
    return "  " + "  ".join(parts)


def _describe(path: Path, stats: bool) -> dict[str, Any]:
    field = _field_info(path)
    if field is not None:
        return {"path": str(path), "format": "neural field", "field": field}
    from core.io import file_info

    info = file_info(path) if stats else file_info(path, stats=False)
    return {"path": str(path), "format": info.format, "attributes": info.attributes,
            "variables": [dataclasses.asdict(v) for v in info.variables], "_info": info}


def run(args: argparse.Namespace) -> int:
    from core.errors import VolsightError

    failed = 0
    documents = []
    for name in args.files:
        path = Path(name)
        try:
            doc = _describe(path, stats=not args.no_stats)
        except VolsightError as exc:
            failed += 1
            msg = str(exc) if str(exc).startswith(str(path)) else f"{path}: {exc}"
            if args.json:
                documents.append({"path": str(path), "error": msg})
            else:
                print(" ".join(msg.split()), file=sys.stderr)  # one line, whatever the reason text holds
            continue
        info = doc.pop("_info", None)
        if args.json:
            documents.append(doc)
        elif "field" in doc:
            print(f"{path}: neural field")
            for key, value in doc["field"].items():
                if key == "summary" and isinstance(value, dict) and isinstance(value.get("history"), list):
                    value = {**value, "history": _history_words(value["history"])}
                print(f"  {key}: {value}")
        else:
            print(f"{path}: {info.format}")
            for v in info.variables:
                print(_variable_line(v))
    if args.json:
        json.dump(documents, sys.stdout, indent=1, default=str)
        print()
    return 2 if failed else 0
