"""``.npy`` and ``.npz`` volumes: plain arrays, channel-first/last vectors and VolSiM sequences.

Axis layouts follow :mod:`core.io.layout` (3D scalar; 4D ``[C,D,H,W]``, ``[D,H,W,C]`` or
``[T,D,H,W]``; 5D VolSiM ``[T,D,H,W,C]`` or ``[T,C,D,H,W]``; ``layout="..."`` overrides).
``.npy`` files are memory-mapped read-only: a float32 C-order ``[C,D,H,W]`` file becomes a Volume
without a copy, and a frame of a sequence reads only that frame. ``.npz`` members are parsed from
the zip stream directly, so a frame of a sequence stored first-axis-major reads only that frame.
Pickled (object) arrays are refused, never loaded. In an ``.npz`` the variable is the member key;
the default is the first member that is a numeric array of 3 or more dimensions.

Written ``.npz`` files hold ``data`` (float32 ``[C,D,H,W]``) and ``volsight`` (UTF-8 JSON as a
uint8 array: layout, name, spacing, origin, metadata), so they round-trip without pickle.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
import zlib
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from core.errors import ReaderError, WriterError
from core.io.atomic import atomic_path
from core.io.layout import (
    check_layout,
    frame_count,
    infer_layout,
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

NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"
META_KEY = "volsight"
STATS_LIMIT = 1 << 30
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError)


class _Header:
    """Shape, dtype, order and data offset of one stored .npy array."""

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype, fortran: bool, offset: int):
        self.shape, self.dtype, self.fortran, self.offset = shape, dtype, fortran, offset

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def _read_header(f: BinaryIO, path: Path, what: str) -> _Header:
    fmt = np.lib.format
    try:
        version = fmt.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(f)
        elif version == (3, 0):
            shape, fortran, dtype = fmt._read_array_header(f, version)  # noqa: SLF001 - no public 3.0 reader
        else:
            raise ValueError(f"unknown .npy format version {version}")
    except Exception as exc:  # noqa: BLE001 - numpy parses an untrusted header; it fails in many ways
        raise ReaderError(path, f"{what} is not a valid .npy array ({type(exc).__name__}: {exc})") from exc
    dtype = np.dtype(dtype)
    if dtype.hasobject:
        raise ReaderError(path, f"{what} holds Python objects (dtype {dtype}); volsight never unpickles data, "
                                "save a numeric array instead")
    if any(int(n) < 0 for n in shape):
        raise ReaderError(path, f"{what} has a negative dimension in shape {shape}")
    return _Header(tuple(int(n) for n in shape), dtype, bool(fortran), f.tell())


def _check_numeric(h: _Header, path: Path, what: str) -> None:
    if h.dtype.kind not in "fiub" or h.dtype.fields is not None or h.dtype.subdtype is not None:
        raise ReaderError(path, f"{what} has dtype {h.dtype}, a volume needs real numbers (float, int, uint, bool)")
    if math.prod(h.shape) == 0:
        raise ReaderError(path, f"{what} is empty (shape {h.shape})")


def _layout(h: _Header, path: Path, what: str, given: str | None) -> str:
    return check_layout(given, h.shape, path, what) if given else infer_layout(h.shape, path, what)


def _name(path: Path, key: str | None, index: int | None, frames: int) -> str:
    base = path.stem if key is None else f"{path.stem}:{key}"
    return base + (f"[{index}]" if frames > 1 and index is not None else "")


def _stats(arr: np.ndarray) -> tuple[tuple[float, float] | None, int]:
    lo, hi, nans = math.inf, -math.inf, 0
    flat = arr.reshape(arr.shape[0], -1) if arr.ndim > 1 else arr.reshape(1, -1)
    step = max(1, (64 << 20) // max(1, flat.shape[1] * 8))
    for s in range(0, flat.shape[0], step):
        block = np.asarray(flat[s:s + step], dtype=np.float64)
        fin = np.isfinite(block)
        nans += int(block.size - np.count_nonzero(fin))
        if fin.any():
            lo, hi = min(lo, float(block[fin].min())), max(hi, float(block[fin].max()))
    return ((lo, hi) if lo <= hi else None), nans


def _variable_info(name: str, h: _Header, path: Path, load, stats: bool, stats_limit: int) -> VariableInfo:
    base = {"name": name, "shape": h.shape, "dtype": str(h.dtype)}
    try:
        _check_numeric(h, path, name)
        layout = infer_layout(h.shape, path, name)
    except ReaderError as exc:
        return VariableInfo(**base, is_volume=False, note=exc.reason.removeprefix(f"{name} "))
    frames, channels = frame_count(h.shape, layout), volume_shape(h.shape, layout)[0]
    value_range = nan_count = None
    note = ""
    if stats:
        if float32_bytes(h.shape) <= stats_limit:
            value_range, nan_count = _stats(load())
        else:
            note = "statistics skipped (large array)"
    return VariableInfo(**base, value_range=value_range, nan_count=nan_count, frames=frames, is_volume=True,
                        channels=channels, layout=layout, note=note)


def _reject_options(path: Path, options: dict[str, Any], kind: str) -> None:
    if options:
        raise ReaderError(path, f"unknown reader option(s) for {kind}: {', '.join(sorted(options))} "
                                "(accepted: variable, index, nan_policy, layout, max_bytes)")


# ---------------------------------------------------------------------------------------------- .npy
class NpyReader(VolumeReader):
    """A single ``.npy`` array, memory-mapped read-only."""

    name = "npy"
    extensions = (".npy",)

    def sniff(self, head: bytes, path: Path) -> bool:
        return head.startswith(NPY_MAGIC)

    def _open(self, path: Path) -> tuple[_Header, np.ndarray]:
        with open(path, "rb") as f:
            h = _read_header(f, path, "the file")
        _check_numeric(h, path, "the array")
        size = path.stat().st_size
        if h.offset + h.nbytes > size:
            raise ReaderError(path, f"truncated .npy: shape {h.shape} {h.dtype} needs {h.offset + h.nbytes} bytes, "
                                    f"the file has {size}")
        arr = np.memmap(path, dtype=h.dtype, mode="r", offset=h.offset, shape=h.shape,
                        order="F" if h.fortran else "C")
        return h, arr

    def frame_count(self, path: Path, variable: str | None = None, layout: str | None = None, **_: Any) -> int:
        h, _arr = self._open(path)
        return frame_count(h.shape, _layout(h, path, "the array", layout))

    def read(self, path: Path, variable: str | None = None, index: int | None = None, *,
             nan_policy: str = "raise", layout: str | None = None, max_bytes: int | None = None,
             spacing: Any = None, origin: Any = None, **options: Any) -> Volume:
        _reject_options(path, options, ".npy")
        if variable not in (None, "", "arr_0", path.stem):
            raise ReaderError(path, f"a .npy file holds one array; there is no variable {variable!r}")
        h, arr = self._open(path)
        lay = _layout(h, path, "the array", layout)
        frames = frame_count(h.shape, lay)
        idx = resolve_index(index, frames, path, "the array")
        check_fits(path, volume_shape(h.shape, lay), "array" + (" (one frame)" if frames > 1 else ""),
                   max_bytes=max_bytes)
        data = to_float32(take_frame(arr, lay, idx))
        meta = {"format": ".npy", "layout": lay, "dtype": str(h.dtype), "stored_shape": list(h.shape),
                "frames": frames}
        if frames > 1:
            meta["index"] = idx
        return make_volume(path, data, name=_name(path, None, idx, frames), nan_policy=nan_policy,
                           spacing=spacing, origin=origin, metadata=meta)

    def info(self, path: Path, stats: bool = True, stats_limit: int = STATS_LIMIT) -> FileInfo:
        with open(path, "rb") as f:
            h = _read_header(f, path, "the file")
        var = _variable_info(path.stem, h, path, lambda: self._open(path)[1], stats, stats_limit)
        return FileInfo(path=str(path), format=".npy", variables=(var,))


# ---------------------------------------------------------------------------------------------- .npz
class _Npz:
    """An open .npz: member headers, and reads of a whole member or of one leading-axis frame."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.zf = zipfile.ZipFile(path)
            infos = [i for i in self.zf.infolist() if not i.is_dir()]
        except (*_ZIP_ERRORS, OSError, ValueError) as exc:
            raise ReaderError(path, f"not a readable .npz (zip) file ({exc}); it may be truncated or corrupt") from exc
        self.members = {i.filename.removesuffix(".npy"): i for i in infos}
        self._headers: dict[str, _Header] = {}

    def close(self) -> None:
        self.zf.close()

    def __enter__(self) -> _Npz:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def header(self, key: str) -> _Header:
        if key not in self._headers:
            try:
                with self.zf.open(self.members[key]) as f:
                    self._headers[key] = _read_header(f, self.path, f"member {key!r}")
            except ReaderError:
                raise
            except (*_ZIP_ERRORS, OSError, ValueError) as exc:
                raise ReaderError(self.path, f"member {key!r} cannot be read ({exc}); the file may be corrupt") from exc
        return self._headers[key]

    def read(self, key: str, frame: int | None = None) -> np.ndarray:
        """The whole member, or (C-order only) the ``frame``-th slice along its first axis."""
        h = self.header(key)
        count, start, shape = h.nbytes, h.offset, h.shape
        if frame is not None and not h.fortran:
            count = h.nbytes // h.shape[0]
            start += frame * count
            shape = h.shape[1:]
        try:
            with self.zf.open(self.members[key]) as f:
                f.seek(start)
                raw = f.read(count)
                if frame is None:
                    f.read(1)  # reading to the end makes zipfile verify the CRC
        except (*_ZIP_ERRORS, OSError, ValueError) as exc:
            raise ReaderError(self.path, f"member {key!r} cannot be read ({exc}); the file may be corrupt") from exc
        if len(raw) != count:
            raise ReaderError(self.path, f"member {key!r} is truncated: {len(raw)} of {count} data bytes")
        arr = np.frombuffer(raw, dtype=h.dtype)
        if h.fortran:
            full = arr.reshape(h.shape[::-1]).T
            return full if frame is None else full[frame]
        return arr.reshape(shape)

    def meta(self) -> dict[str, Any]:
        """The volsight JSON block, if this file was written by volsight."""
        if META_KEY not in self.members:
            return {}
        try:
            h = self.header(META_KEY)
            if h.dtype != np.uint8 or len(h.shape) != 1 or h.nbytes > (16 << 20):
                return {}
            value = json.loads(self.read(META_KEY).tobytes().decode("utf-8"))
            return value if isinstance(value, dict) else {}
        except (ReaderError, ValueError, UnicodeDecodeError):
            return {}  # unreadable extra metadata must not hide the data


class NpzReader(VolumeReader):
    """Arrays in an ``.npz`` archive; the variable is the member key."""

    name = "npz"
    extensions = (".npz",)

    def sniff(self, head: bytes, path: Path) -> bool:
        return head.startswith(ZIP_MAGIC) and b".npy" in head[:300]

    @staticmethod
    def _usable(npz: _Npz) -> list[str]:
        out = []
        for key in npz.members:
            if key == META_KEY:
                continue
            try:
                h = npz.header(key)
                _check_numeric(h, npz.path, key)
            except ReaderError:
                continue
            if len(h.shape) >= 3:
                out.append(key)
        return out

    def _select(self, npz: _Npz, variable: str | None) -> str:
        if variable is None:
            keys = self._usable(npz)
            if not keys:
                listing = ", ".join(npz.members) or "none"
                raise ReaderError(npz.path, f"no numeric array with 3 or more dimensions (members: {listing})")
            return keys[0]
        if variable not in npz.members or variable == META_KEY:
            usable = ", ".join(self._usable(npz)) or "none"
            raise ReaderError(npz.path, f"variable {variable!r} not found; usable variables: {usable}")
        h = npz.header(variable)
        _check_numeric(h, npz.path, f"variable {variable!r}")
        return variable

    def _layout(self, npz: _Npz, key: str, given: str | None) -> str:
        h = npz.header(key)
        stored = npz.meta().get("layout") if key == "data" else None
        return _layout(h, npz.path, f"variable {key!r}", given or (stored if isinstance(stored, str) else None))

    def frame_count(self, path: Path, variable: str | None = None, layout: str | None = None, **_: Any) -> int:
        with _Npz(path) as npz:
            key = self._select(npz, variable)
            return frame_count(npz.header(key).shape, self._layout(npz, key, layout))

    def read(self, path: Path, variable: str | None = None, index: int | None = None, *,
             nan_policy: str = "raise", layout: str | None = None, max_bytes: int | None = None,
             spacing: Any = None, origin: Any = None, **options: Any) -> Volume:
        _reject_options(path, options, ".npz")
        with _Npz(path) as npz:
            key = self._select(npz, variable)
            h = npz.header(key)
            lay = self._layout(npz, key, layout)
            frames = frame_count(h.shape, lay)
            what = f"variable {key!r}"
            idx = resolve_index(index, frames, path, what)
            lazy = lay.startswith("T") and not h.fortran
            # a frame read from the stream needs only its own bytes; anything else loads the member
            check_fits(path, volume_shape(h.shape, lay), what + (" (one frame)" if frames > 1 else ""),
                       max_bytes=max_bytes, extra_bytes=0 if lazy else h.nbytes)
            if lazy:
                arr, lay_frame = npz.read(key, idx), lay[1:]
                data = to_float32(take_frame(arr, lay_frame, None))
            else:
                data = to_float32(take_frame(npz.read(key), lay, idx))
            written = npz.meta() if key == "data" else {}
        meta = {"format": ".npz", "variable": key, "layout": lay, "dtype": str(h.dtype),
                "stored_shape": list(h.shape), "frames": frames}
        if frames > 1:
            meta["index"] = idx
        name = _name(path, key, idx, frames)
        if written:
            meta.update({k: v for k, v in (written.get("metadata") or {}).items() if k not in meta})
            meta.setdefault("written_name", written.get("name"))
            spacing = spacing if spacing is not None else written.get("spacing")
            origin = origin if origin is not None else written.get("origin")
        return make_volume(path, data, name=name, variable=key, nan_policy=nan_policy, spacing=spacing,
                           origin=origin, metadata=meta)

    def info(self, path: Path, stats: bool = True, stats_limit: int = STATS_LIMIT) -> FileInfo:
        with _Npz(path) as npz:
            out = []
            for key in npz.members:
                if key == META_KEY:
                    continue
                h = npz.header(key)
                out.append(_variable_info(key, h, path, lambda k=key: npz.read(k), stats, stats_limit))
            return FileInfo(path=str(path), format=".npz", variables=tuple(out), attributes=npz.meta())


# ---------------------------------------------------------------------------------------------- writers
def _meta_block(volume: Volume) -> np.ndarray:
    block = {"format": "volsight-volume", "version": 1, "layout": "CDHW", "name": volume.name,
             "spacing": list(volume.spacing), "origin": list(volume.origin),
             "metadata": json_safe(dict(volume.metadata))}
    return np.frombuffer(json.dumps(block).encode("utf-8"), dtype=np.uint8)


class NpzWriter(VolumeWriter):
    """``data`` float32 [C,D,H,W] plus a JSON ``volsight`` block; ``compress=True`` deflates."""

    name = "npz"
    label = ".npz"
    extensions = (".npz",)

    def write(self, volume: Volume, path: Path, compress: bool = False, **options: Any) -> None:
        self.reject_options(path, options)
        save = np.savez_compressed if compress else np.savez
        try:
            with atomic_path(path) as tmp, open(tmp, "wb") as f:
                save(f, data=np.ascontiguousarray(volume.data), **{META_KEY: _meta_block(volume)})
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            raise WriterError(path, f"cannot write .npz ({exc.strerror or exc})") from exc


class NpyWriter(VolumeWriter):
    """A bare array: [D,H,W] for scalars, [C,D,H,W] for vectors (spacing and metadata are not kept)."""

    name = "npy"
    label = ".npy"
    extensions = (".npy",)

    def write(self, volume: Volume, path: Path, **options: Any) -> None:
        self.reject_options(path, options)
        arr = self.bare_array(volume)
        try:
            with atomic_path(path) as tmp, open(tmp, "wb") as f:
                np.lib.format.write_array(f, np.ascontiguousarray(arr), allow_pickle=False)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            raise WriterError(path, f"cannot write .npy ({exc.strerror or exc})") from exc


register_reader(NpyReader())
register_reader(NpzReader())
register_writer(NpzWriter())
register_writer(NpyWriter())

__all__ = ["NpyReader", "NpzReader", "NpzWriter", "NpyWriter"]
