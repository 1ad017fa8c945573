"""Memory budget for reading: refuse a volume that cannot fit before numpy or the OOM killer does.

The estimate is the float32 size of the result (what a Volume holds), compared with the memory the
kernel says is available (``MemAvailable`` in /proc/meminfo). Override it with the environment
variable ``VOLSIGHT_MEMORY_LIMIT`` (bytes, or with a K/M/G/T suffix) or per call with the reader
option ``max_bytes``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

from core.errors import VolumeTooLargeError

ENV_LIMIT = "VOLSIGHT_MEMORY_LIMIT"
_SUFFIXES = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str) -> int:
    """Bytes from text such as ``"512M"``, ``"2G"`` or ``"1048576"``."""
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    unit = t[-1:] if t[-1:] in _SUFFIXES else ""
    number = t[: len(t) - len(unit)] if unit else t
    try:
        value = float(number) * _SUFFIXES[unit]
    except ValueError as exc:
        raise ValueError(f"not a size: {text!r} (use e.g. 512M or 2G)") from exc
    if value < 0 or not math.isfinite(value):
        raise ValueError(f"not a size: {text!r}")
    return int(value)


def available_memory() -> int:
    """Bytes volsight may use for one volume: the override, else MemAvailable, else a large guess."""
    env = os.environ.get(ENV_LIMIT)
    if env:
        try:
            return parse_size(env)
        except ValueError:
            pass  # a bad override must not make every read fail; fall back to the kernel's figure
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 1 << 62  # unknown: do not block reads


def format_bytes(n: float) -> str:
    """Human-readable size (binary units)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def float32_bytes(shape: Sequence[int]) -> int:
    """Bytes of a float32 array of ``shape``."""
    return 4 * math.prod(int(n) for n in shape)


def check_fits(path: str | os.PathLike, shape: Sequence[int], what: str = "volume",
               max_bytes: int | None = None, hint: str = "", extra_bytes: int = 0) -> None:
    """Raise VolumeTooLargeError when a float32 array of ``shape`` (plus ``extra_bytes`` of transient
    buffers, e.g. a whole compressed member) would not fit in memory."""
    need = float32_bytes(shape) + int(extra_bytes)
    limit = available_memory() if max_bytes is None else int(max_bytes)
    if need > limit:
        dims = "×".join(str(int(n)) for n in shape)
        advice = hint or ("crop or downsample the data first (for a sequence, read one frame at a time with "
                          "index=...)")
        buffers = " (with read buffers)" if extra_bytes else ""
        raise VolumeTooLargeError(
            Path(path),
            f"{what} {dims} needs {format_bytes(need)} as float32{buffers} but only {format_bytes(limit)} of memory is "
            f"available; {advice}, or raise the limit with {ENV_LIMIT}",
        )
