"""Raw binary volumes described by a JSON sidecar, memory-mapped read-only.

The sidecar of ``vol.raw`` is ``vol.raw.json`` or ``vol.json``; opening the sidecar itself works too::

    {"dtype": "float32", "shape": [D, H, W] | [C, D, H, W] | [T, C, D, H, W],
     "byte_order": "little" | "big",            # default little
     "layout": "TDHWC",                          # optional, see core.io.layout; default by rank:
                                                 # DHW, CDHW, TCDHW
     "spacing": [dz, dy, dx], "origin": [z, y, x], "offset": 0}   # optional

The file size must be exactly ``offset + prod(shape) * itemsize``.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import ReaderError, WriterError
from core.io.atomic import atomic_path, write_bytes_atomic
from core.io.layout import (
    check_layout,
    frame_count,
    json_safe,
    make_volume,
    resolve_index,
    take_frame,
    to_float32,
    volume_shape,
)
from core.io.memory import check_fits, float32_bytes
from core.io.registry import FileInfo, VariableInfo, VolumeReader, VolumeWriter, register_reader, register_writer
from core.volume import Volume

DTYPES = ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
          "uint64")
DEFAULT_LAYOUT = {3: "DHW", 4: "CDHW", 5: "TCDHW"}
SIDECAR_LIMIT = 1 << 20
STATS_LIMIT = 1 << 30


def data_and_sidecar(path: str | os.PathLike) -> tuple[Path, Path | None]:
    """(data file, sidecar or None) for either the data file or its ``.json`` sidecar."""
    p = Path(path)
    if p.name.lower().endswith(".json"):
        return p.with_name(p.name[: -len(".json")]), p
    for cand in (p.with_name(p.name + ".json"), p.with_suffix(".json")):
        if cand != p and cand.is_file():
            return p, cand
    return p, None


class RawSpec:
    """A validated sidecar."""

    def __init__(self, data: Path, sidecar: Path):
        self.data, self.sidecar = data, sidecar
        try:
            if sidecar.stat().st_size > SIDECAR_LIMIT:
                raise ReaderError(sidecar, "sidecar larger than 1 MiB; expected a small JSON object")
            spec = json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise ReaderError(sidecar, f"sidecar of {data.name} is not valid JSON ({exc})") from exc
        if not isinstance(spec, dict):
            raise ReaderError(sidecar, "sidecar must be a JSON object with dtype and shape")
        self.raw = spec
        dt = spec.get("dtype")
        if dt not in DTYPES:
            raise ReaderError(sidecar, f"dtype {dt!r} not supported; use one of {', '.join(DTYPES)}")
        order = spec.get("byte_order", "little")
        if order not in ("little", "big"):
            raise ReaderError(sidecar, f"byte_order must be 'little' or 'big', got {order!r}")
        self.dtype = np.dtype(dt).newbyteorder("<" if order == "little" else ">")
        shape = spec.get("shape")
        if (not isinstance(shape, list) or not 3 <= len(shape) <= 5
                or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape)):
            raise ReaderError(sidecar, f"shape must be a list of 3 to 5 positive integers ([D,H,W], [C,D,H,W] or "
                                       f"[T,C,D,H,W]), got {shape!r}")
        self.shape = tuple(shape)
        self.layout = check_layout(spec.get("layout") or DEFAULT_LAYOUT[len(shape)], self.shape, sidecar,
                                   data.name)
        off = spec.get("offset", 0)
        if not isinstance(off, int) or isinstance(off, bool) or off < 0:
            raise ReaderError(sidecar, f"offset must be a non-negative integer, got {off!r}")
        self.offset = off
        self.spacing = spec.get("spacing")
        self.origin = spec.get("origin")
        if not data.is_file():
            raise ReaderError(data, f"data file described by {sidecar.name} not found")
        size = data.stat().st_size
        expect = off + math.prod(self.shape) * self.dtype.itemsize
        if size != expect:
            raise ReaderError(data, f"file size {size} bytes does not match its sidecar {sidecar.name}: shape "
                                    f"{list(self.shape)} {dt} with offset {off} needs exactly {expect} bytes")

    def memmap(self) -> np.ndarray:
        return np.memmap(self.data, dtype=self.dtype, mode="r", offset=self.offset, shape=self.shape)


def _spec(path: Path) -> RawSpec:
    data, sidecar = data_and_sidecar(path)
    if sidecar is None:
        raise ReaderError(path, f"raw data needs a JSON sidecar {path.name}.json with at least "
                                '{"dtype": "float32", "shape": [D, H, W]}')
    if not sidecar.is_file():
        raise ReaderError(sidecar, "sidecar not found")
    return RawSpec(data, sidecar)


class RawReader(VolumeReader):
    """Raw binary arrays with a JSON sidecar."""

    name = "raw"
    extensions = (".raw.json", ".raw", ".bin", ".dat", ".vol")

    def sniff(self, head: bytes, path: Path) -> bool:
        if path.name.lower().endswith(".json"):  # a sidecar given directly
            return head.lstrip().startswith(b"{") and b'"dtype"' in head and b'"shape"' in head
        return data_and_sidecar(path)[1] is not None

    def frame_count(self, path: Path, variable: str | None = None, **_: Any) -> int:
        s = _spec(path)
        return frame_count(s.shape, s.layout)

    def read(self, path: Path, variable: str | None = None, index: int | None = None, *,
             nan_policy: str = "raise", max_bytes: int | None = None, **options: Any) -> Volume:
        if options:
            raise ReaderError(path, f"unknown reader option(s) for raw files: {', '.join(sorted(options))} "
                                    "(accepted: index, nan_policy, max_bytes; the layout lives in the sidecar)")
        s = _spec(path)
        if variable not in (None, "", s.data.stem):
            raise ReaderError(s.data, f"a raw file holds one array; there is no variable {variable!r}")
        frames = frame_count(s.shape, s.layout)
        idx = resolve_index(index, frames, s.data, "the raw array")
        check_fits(s.data, volume_shape(s.shape, s.layout), "array" + (" (one frame)" if frames > 1 else ""),
                   max_bytes=max_bytes)
        data = to_float32(take_frame(s.memmap(), s.layout, idx))
        meta = {"format": "raw", "dtype": str(s.dtype), "byte_order": s.raw.get("byte_order", "little"),
                "layout": s.layout, "stored_shape": list(s.shape), "frames": frames, "sidecar": str(s.sidecar)}
        if frames > 1:
            meta["index"] = idx
        extra = s.raw.get("metadata")
        if isinstance(extra, dict):
            meta["sidecar_metadata"] = json_safe(extra)
        name = s.data.stem + (f"[{idx}]" if frames > 1 else "")
        return make_volume(s.data, data, name=name, nan_policy=nan_policy, spacing=s.spacing, origin=s.origin,
                           metadata=meta)

    def info(self, path: Path, stats: bool = True, stats_limit: int = STATS_LIMIT) -> FileInfo:
        s = _spec(path)
        value_range = nan_count = None
        note = ""
        if stats and float32_bytes(s.shape) <= stats_limit:
            from core.io.numpy_files import _stats

            value_range, nan_count = _stats(s.memmap())
        elif stats:
            note = "statistics skipped (large array)"
        var = VariableInfo(name=s.data.stem, shape=s.shape, dtype=str(s.dtype), value_range=value_range,
                           nan_count=nan_count, frames=frame_count(s.shape, s.layout), is_volume=True,
                           channels=volume_shape(s.shape, s.layout)[0], layout=s.layout, note=note)
        return FileInfo(path=str(s.data), format="raw + JSON sidecar", variables=(var,),
                        attributes={"sidecar": str(s.sidecar)})


class RawWriter(VolumeWriter):
    """float32 little-endian [C,D,H,W] (scalars [D,H,W]) plus ``<file>.json``; both written atomically."""

    name = "raw"
    label = "raw files"
    extensions = (".raw",)

    def write(self, volume: Volume, path: Path, **options: Any) -> None:
        self.reject_options(path, options)
        arr = self.bare_array(volume)
        spec = {"dtype": "float32", "shape": list(arr.shape), "byte_order": "little",
                "layout": "DHW" if volume.channels == 1 else "CDHW", "spacing": list(volume.spacing),
                "origin": list(volume.origin), "offset": 0, "name": volume.name,
                "metadata": json_safe(dict(volume.metadata))}
        try:
            with atomic_path(path) as tmp, open(tmp, "wb") as f:
                f.write(np.ascontiguousarray(arr, dtype="<f4").tobytes())
                f.flush()
                os.fsync(f.fileno())
            write_bytes_atomic(path.with_name(path.name + ".json"), json.dumps(spec, indent=1).encode("utf-8"))
        except OSError as exc:
            raise WriterError(path, f"cannot write raw file ({exc.strerror or exc})") from exc


register_reader(RawReader())
register_writer(RawWriter())
