"""How a stored array's axes map to a Volume's ``[C, D, H, W]`` and to a sequence of frames.

A layout is a string of axis letters, one per stored axis: ``T`` frames (time / sequence),
``C`` channels, ``D H W`` the spatial axes (z, y, x) in stored order. Spatial axes are never
reordered: the first spatial axis of the file becomes z (D).

Inference rule for unlabeled arrays (``.npy``/``.npz``/raw and unnamed NetCDF dims), C in {1, 3}:

* 3D → ``DHW`` (scalar).
* 4D → ``CDHW`` if the first axis has size 1 or 3 and the last does not; ``DHWC`` if the last axis
  has size 1 or 3 and the first does not; when both could be channels (e.g. 3×64×64×3) channel-first
  wins; when neither can, the leading axis is a sequence of scalar frames: ``TDHW``.
* 5D → ``TDHWC`` when the last axis has size 1 or 3 (the VolSiM data layout ``[frames, X, Y, Z, C]``,
  spatial axes kept in stored order as VolSiM's own loader does), else ``TCDHW`` when the second
  axis has size 1 or 3.

Pass ``layout="..."`` to a reader to override the rule.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import NonFiniteDataError, ReaderError, VolumeError
from core.volume import SUPPORTED_CHANNELS, Volume

_CH = SUPPORTED_CHANNELS
LAYOUT_HELP = (
    "expected 3D [D,H,W], 4D [C,D,H,W] / [D,H,W,C] / [T,D,H,W], or 5D [T,D,H,W,C] / [T,C,D,H,W] with C in {1, 3}"
)


def infer_layout(shape: Sequence[int], path: str | os.PathLike, what: str = "array") -> str:
    """The layout letters for an unlabeled array of ``shape`` (rule in the module docstring)."""
    shape = tuple(int(n) for n in shape)
    nd = len(shape)
    if nd == 3:
        return "DHW"
    if nd == 4:
        first, last = shape[0] in _CH, shape[-1] in _CH
        if first:
            return "CDHW"
        if last:
            return "DHWC"
        return "TDHW"
    if nd == 5:
        if shape[-1] in _CH:
            return "TDHWC"
        if shape[1] in _CH:
            return "TCDHW"
        raise ReaderError(path, f"{what} has shape {shape}: a 5D array needs a channel axis of size 1 or 3 "
                                f"(last for [T,D,H,W,C], second for [T,C,D,H,W])")
    raise ReaderError(path, f"{what} has {nd} dimension(s), shape {shape}: {LAYOUT_HELP}")


def check_layout(layout: str, shape: Sequence[int], path: str | os.PathLike, what: str = "array") -> str:
    """Validate a layout given by the user or a file for an array of ``shape``."""
    lay = str(layout).upper()
    ok = (len(lay) == len(shape) and sorted(lay.replace("C", "").replace("T", "")) == ["D", "H", "W"]
          and all(lay.count(c) <= 1 for c in "CT") and set(lay) <= set("TCDHW"))
    if not ok:
        raise ReaderError(path, f"layout {layout!r} does not fit {what} of shape {tuple(shape)}: use one letter per "
                                "axis from T (frames), C (channels), D, H, W, e.g. 'TDHWC'")
    if "C" in lay and shape[lay.index("C")] not in _CH:
        raise ReaderError(path, f"{what} has {shape[lay.index('C')]} channels (shape {tuple(shape)}, layout {lay}); "
                                "volsight supports 1 (scalar) or 3 (vector)")
    return lay


def frame_count(shape: Sequence[int], layout: str) -> int:
    """Number of frames (1 when the layout has no T axis)."""
    return int(shape[layout.index("T")]) if "T" in layout else 1


def volume_shape(shape: Sequence[int], layout: str) -> tuple[int, int, int, int]:
    """The ``[C, D, H, W]`` shape of one frame."""
    c = int(shape[layout.index("C")]) if "C" in layout else 1
    return (c, *(int(shape[layout.index(a)]) for a in "DHW"))  # type: ignore[return-value]


def resolve_index(index: int | None, frames: int, path: str | os.PathLike, what: str = "data") -> int | None:
    """Check a frame index (negative counts from the end); None for single volumes or frame 0 by default."""
    if index is None:
        return 0 if frames > 1 else None
    try:
        i = int(index)
    except (TypeError, ValueError) as exc:
        raise ReaderError(path, f"frame index must be an integer, got {index!r}") from exc
    if frames <= 1:
        if i in (0, -1):
            return None
        raise ReaderError(path, f"{what} has no frame axis, so index {i} does not exist (use index 0 or none)")
    if not -frames <= i < frames:
        raise ReaderError(path, f"frame index {i} out of range: {what} has {frames} frames (0..{frames - 1})")
    return i % frames


def take_frame(array: Any, layout: str, index: int | None) -> np.ndarray:
    """One frame as ``[C, D, H, W]`` without copying when the stored order already is that (memory maps)."""
    lay = layout
    if "T" in lay:
        t = lay.index("T")
        array = array[(slice(None),) * t + (int(index or 0),)]
        lay = lay.replace("T", "")
    if "C" not in lay:
        array = array[None]
        lay = "C" + lay
    order = [lay.index(a) for a in "CDHW"]
    if order != [0, 1, 2, 3]:
        array = np.transpose(array, order)
    return array


def to_float32(array: np.ndarray) -> np.ndarray:
    """float32 C-contiguous; the same object (e.g. a read-only memory map) when it already is."""
    if array.dtype == np.float32 and array.flags.c_contiguous and array.dtype.isnative:
        return array
    return np.ascontiguousarray(array, dtype=np.float32)


def make_volume(path: str | os.PathLike, data: np.ndarray, *, name: str, variable: str | None = None,
                nan_policy: str = "raise", spacing: Any = None, origin: Any = None,
                metadata: Mapping[str, Any] | None = None, missing_hint: str = "") -> Volume:
    """Build a Volume from a reader's ``[C, D, H, W]`` array; problems become ReaderErrors naming the file."""
    what = f"variable {variable!r}" if variable else "data"
    if nan_policy not in ("raise", "allow", "zero"):
        raise ReaderError(path, f"nan_policy must be 'raise', 'allow' or 'zero', got {nan_policy!r}")
    if data.dtype.kind == "f" and nan_policy == "raise":
        bad = int(data.size - np.count_nonzero(np.isfinite(data)))
        if bad:
            extra = f" ({missing_hint})" if missing_hint else ""
            raise NonFiniteDataError(
                path, f"{what} has {bad} of {data.size} values missing or non-finite (NaN/Inf){extra}; choose "
                "nan_policy='zero' (command line: --nan zero) to replace them by 0 or 'allow' to keep them as NaN",
                bad, data.size)
    kwargs: dict[str, Any] = {"name": name, "source": os.fspath(Path(path)), "metadata": dict(metadata or {}),
                              "nan_policy": nan_policy}
    if spacing is not None:
        kwargs["spacing"] = spacing
    if origin is not None:
        kwargs["origin"] = origin
    try:
        return Volume(data, **kwargs)
    except VolumeError as exc:
        raise ReaderError(path, f"{what}: {exc}") from exc


def json_safe(value: Any) -> Any:
    """A JSON-serialisable copy of attribute/metadata values (numpy scalars and arrays become lists)."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        return json_safe(value.item())
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)  # JSON has no NaN/Inf
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)
