"""NetCDF (classic, 64-bit offset, CDF-5 and NetCDF-4/HDF5) volumes via netCDF4.

Reading:

* ``variable`` by name; by default the first numeric variable with at least 3 dimensions that is
  not a coordinate variable (a 1D variable named after its dimension). Three names (``"u,v,w"``
  or a list) stack three scalar variables on the same dims into one vector field (AMGSRN stores
  vectors that way: one variable per channel).
* CF packing and missing values are honoured (netCDF4's auto mask-and-scale: ``scale_factor``,
  ``add_offset``, ``_FillValue``, ``missing_value``, ``valid_min/max/range``). Masked values
  become NaN and then ``nan_policy`` decides: the default ``"raise"`` refuses them with a message
  that says how many there are, because silently turning e.g. land in an ocean field into zeros
  would distort every distance; ``nan_policy="zero"`` replaces them by 0, ``"allow"`` keeps NaN.
* Axes: dims named like time (``time``, ``t``, ``frame``, ``step``, ``record``..., an unlimited
  dim, or a coordinate with ``axis="T"`` / ``standard_name="time"``) in the leading position make
  a sequence addressable by ``index``; dims named like channels (``component``, ``channel``,
  ``c``, ``vector``, ...) of size 1 or 3 make a vector field. Unnamed 4D/5D variables follow the
  shape rule of :mod:`core.io.layout` (C-first, then C-last, else a leading sequence axis).
  Spatial dims keep their stored order (z, y, x for AMGSRN files).
* Spacing/origin: variable attributes ``spacing``/``origin`` (z, y, x) as written by volsight, else
  uniform increasing 1D coordinate variables of the spatial dims.
* Only the requested frame is read, slab by slab, into float32.

Writing: see :mod:`core.io.netcdf_writer`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import ReaderError
from core.io.layout import (
    frame_count,
    json_safe,
    make_volume,
    resolve_index,
    take_frame,
    to_float32,
    volume_shape,
)
from core.io.memory import check_fits, float32_bytes
from core.io.netcdf_header import check_classic_header
from core.io.netcdf_probe import probe_enabled, probe_open
from core.io.netcdf_variables import (
    check_components,
    component_names,
    is_coordinate,
    is_numeric,
    layout_of,
    pick_variable,
)
from core.io.registry import FileInfo, VariableInfo, VolumeReader, register_reader
from core.volume import Volume

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
CLASSIC_MAGICS = (b"CDF\x01", b"CDF\x02", b"CDF\x05")
SLAB_BYTES = 64 << 20  # read at most this much per netCDF call to bound transient memory
STATS_LIMIT = 1 << 30  # info(): skip value statistics of variables larger than this (stored float32 bytes)


def _netcdf4():
    import netCDF4  # lazy: the CLI must not pay for it unless a NetCDF file is touched

    return netCDF4


# (st_dev, st_ino) of files whose open failed in this process. On some corrupt HDF5 files netcdf-c/HDF5
# leak the open file; HDF5 then shares that stale handle with every later open of the same inode, so a
# file repaired in place would read as its old self. Such files are opened from memory instead.
_FAILED_OPENS: set[tuple[int, int]] = set()


def _has_hdf5_signature(f, size: int) -> bool:
    """HDF5 looks for its superblock at byte 0, 512, 1024, 2048, ... (the user block sizes)."""
    offset = 0
    while offset + 8 <= size:
        f.seek(offset)
        if f.read(8) == HDF5_MAGIC:
            return True
        offset = 512 if offset == 0 else offset * 2
    return False


def _open(path: Path):
    with open(path, "rb") as f:
        head = f.read(8)
        st = os.fstat(f.fileno())
        hdf5 = head[:4] not in CLASSIC_MAGICS and _has_hdf5_signature(f, st.st_size)
    if head[:4] in CLASSIC_MAGICS:
        # netcdf-c trusts classic headers and can crash on corrupt ones: check them in Python first
        check_classic_header(path)
    elif not hdf5:
        raise ReaderError(path, "not a NetCDF file: neither the NetCDF classic signature (CDF) nor an HDF5 "
                                "signature was found; it may be truncated, corrupt or of another format")
    elif probe_enabled():
        probe_open(path)  # HDF5 metadata is too rich to check here: let a child process try it first
    key = (st.st_dev, st.st_ino)
    nc4 = _netcdf4()
    try:
        if key in _FAILED_OPENS:
            check_fits(path, (max(1, st.st_size // 4),), "file (read whole after an earlier failed open)")
            ds = nc4.Dataset(str(path), "r", memory=path.read_bytes())
        else:
            ds = nc4.Dataset(str(path), "r")
    except Exception as exc:  # noqa: BLE001 - netCDF4 raises OSError, but also AttributeError etc. on corrupt files
        _FAILED_OPENS.add(key)
        reason = getattr(exc, "strerror", None) or exc
        raise ReaderError(path, f"not a readable NetCDF file ({reason}); it may be truncated, corrupt or of "
                                "another format") from exc
    ds.set_auto_maskandscale(True)
    return ds


def _attrs(obj) -> dict[str, Any]:
    out = {}
    for k in obj.ncattrs():
        try:
            out[k] = json_safe(obj.getncattr(k))
        except Exception:  # noqa: BLE001 - odd attribute types (vlen, compound) are described, not read
            out[k] = "<unreadable attribute>"
    return out


def _triple_attr(attrs: dict[str, Any], key: str) -> tuple[float, float, float] | None:
    v = attrs.get(key)
    if isinstance(v, list) and len(v) == 3:
        try:
            t = tuple(float(x) for x in v)
        except (TypeError, ValueError):
            return None
        if all(math.isfinite(x) for x in t):
            return t  # type: ignore[return-value]
    return None


def _geometry(ds, var, layout: str) -> tuple[Any, Any]:
    """(spacing, origin) from volsight attributes or uniform coordinate variables; None where unknown."""
    attrs = _attrs(var)
    spacing = _triple_attr(attrs, "spacing")
    origin = _triple_attr(attrs, "origin")
    if spacing is not None and not all(s > 0 for s in spacing):
        spacing = None
    if spacing is not None or origin is not None:
        return spacing, origin
    sp, org, found = [1.0, 1.0, 1.0], [0.0, 0.0, 0.0], False
    for axis, letter in enumerate("DHW"):
        dim = var.dimensions[layout.index(letter)]
        coord = ds.variables.get(dim)
        if coord is None or not is_coordinate(coord) or not is_numeric(coord) or coord.size < 2:
            continue
        try:
            c = np.asarray(np.ma.filled(coord[:].astype(np.float64), np.nan))
        except Exception:  # noqa: BLE001 - a broken coordinate only costs the geometry
            continue
        steps = np.diff(c)
        if not np.all(np.isfinite(c)) or not np.all(steps > 0):
            continue
        if np.allclose(steps, steps[0], rtol=1e-4, atol=0):
            sp[axis], org[axis], found = float(steps[0]), float(c[0]), True
    return (tuple(sp), tuple(org)) if found else (None, None)


def _slabs(shape: tuple[int, ...], first_axis: int) -> Iterator[tuple[slice, ...]]:
    """Index tuples that cover an array of ``shape`` in slabs along ``first_axis`` of <= SLAB_BYTES."""
    n = shape[first_axis] if shape else 1
    per = max(1, float32_bytes(shape) // max(n, 1)) * 2  # *2: netCDF4 may hand back float64
    step = max(1, SLAB_BYTES // per)
    for start in range(0, n, step):
        yield (slice(None),) * first_axis + (slice(start, min(n, start + step)),)


def _read_array(var, index: int | None, layout: str) -> tuple[np.ndarray, int]:
    """The stored frame (T removed) as float32 with masked values as NaN, and the number masked."""
    shape = tuple(int(n) for n in var.shape)
    lead: tuple[Any, ...] = ()
    if "T" in layout:
        lead = (int(index or 0),)
        shape = shape[1:]
    out = np.empty(shape, dtype=np.float32)
    masked = 0
    for sl in _slabs(shape, 0):
        block = var[lead + sl]
        with np.errstate(over="ignore", invalid="ignore"):  # out-of-range values become inf: refused later
            if np.ma.isMaskedArray(block):
                masked += int(np.count_nonzero(np.ma.getmaskarray(block)))
                out[sl] = np.ma.filled(block.astype(np.float32), np.nan)
            else:
                out[sl] = block
    return out, masked


def _name(path: Path, variable: str, index: int | None, frames: int) -> str:
    return f"{path.stem}:{variable}" + (f"[{index}]" if frames > 1 and index is not None else "")


class NetCDFReader(VolumeReader):
    """NetCDF classic / 64-bit offset / CDF-5 / NetCDF-4 (HDF5) files."""

    name = "netcdf"
    extensions = (".nc", ".nc4", ".cdf", ".netcdf", ".h5", ".hdf5", ".he5")

    def sniff(self, head: bytes, path: Path) -> bool:
        return head.startswith(HDF5_MAGIC) or head[:4] in CLASSIC_MAGICS

    def frame_count(self, path: Path, variable: str | None = None, layout: str | None = None, **_: Any) -> int:
        ds = _open(path)
        try:
            var = pick_variable(ds, path, variable)
            return frame_count(var.shape, layout_of(ds, var, path, layout))
        finally:
            ds.close()

    def read(self, path: Path, variable: str | None = None, index: int | None = None, *,
             nan_policy: str = "raise", layout: str | None = None, max_bytes: int | None = None,
             **options: Any) -> Volume:
        _reject_options(path, options)
        components = component_names(variable)
        ds = _open(path)
        try:
            if components:
                parts = [pick_variable(ds, path, n) for n in components]
                var = parts[0]
                check_components(ds, path, parts, layout)
            else:
                var = pick_variable(ds, path, variable)
                parts = [var]
            label = ",".join(v.name for v in parts)
            lay = layout_of(ds, var, path, layout)
            shape = tuple(int(n) for n in var.shape)
            frames = frame_count(shape, lay)
            idx = resolve_index(index, frames, path, f"variable {label!r}")
            vshape = (len(parts), *volume_shape(shape, lay)[1:]) if components else volume_shape(shape, lay)
            check_fits(path, vshape, f"variable {label!r}" + (" (one frame)" if frames > 1 else ""),
                       max_bytes=max_bytes)
            channels, masked = [], 0
            for part in parts:
                stored, m = _read_array(part, idx, lay)
                channels.append(take_frame(stored, lay.replace("T", ""), None))
                masked += m
            data = to_float32(channels[0] if len(channels) == 1 else np.concatenate(channels, axis=0))
            spacing, origin = _geometry(ds, var, lay)
            meta = {
                "format": f"NetCDF ({ds.data_model})",
                "variable": label,
                "dims": list(var.dimensions),
                "layout": lay,
                "attributes": _attrs(var),
                "global_attributes": _attrs(ds),
                "frames": frames,
            }
            written = meta["global_attributes"].pop("volsight_metadata", None)
            if isinstance(written, str):
                try:
                    meta["volsight_metadata"] = json.loads(written)
                except ValueError:
                    pass
            if frames > 1:
                meta["index"] = idx
                tdim = var.dimensions[0]
                tvar = ds.variables.get(tdim)
                if tvar is not None and is_coordinate(tvar) and is_numeric(tvar):
                    try:
                        meta["time"] = json_safe(np.ma.filled(tvar[idx], np.nan))
                        if "units" in tvar.ncattrs():
                            meta["time_units"] = str(tvar.getncattr("units"))
                    except Exception:  # noqa: BLE001 - the time label is a nicety
                        pass
            if masked:
                meta["masked_count"] = masked
            hint = f"{masked} masked by _FillValue/missing_value/valid range" if masked else ""
            if components:
                meta["components"] = [v.name for v in parts]
            return make_volume(path, data, name=_name(path, label, idx, frames), variable=label,
                               nan_policy=nan_policy, spacing=spacing, origin=origin, metadata=meta,
                               missing_hint=hint)
        finally:
            ds.close()

    def read_sequence(self, path: Path, variable: str | None = None, **options: Any) -> list[Volume]:
        n = self.frame_count(path, variable, options.get("layout"))
        return [self.read(path, variable, i if n > 1 else None, **options) for i in range(n)]

    def info(self, path: Path, stats: bool = True, stats_limit: int = STATS_LIMIT) -> FileInfo:
        ds = _open(path)
        try:
            out = [_variable_info(ds, var, path, stats, stats_limit) for var in ds.variables.values()]
            return FileInfo(path=str(path), format=f"NetCDF ({ds.data_model})", variables=tuple(out),
                            attributes=_attrs(ds))
        finally:
            ds.close()


def _variable_info(ds, var, path: Path, stats: bool, stats_limit: int) -> VariableInfo:
    shape = tuple(int(n) for n in var.shape)
    dims = tuple(var.dimensions)
    dtype = str(var.dtype) if isinstance(var.dtype, np.dtype) else getattr(var.dtype, "__name__", str(var.dtype))
    base = {"name": var.name, "shape": shape, "dtype": dtype, "dims": dims}
    if not is_numeric(var):
        return VariableInfo(**base, is_volume=False, note="not numeric")
    if is_coordinate(var):
        note = "coordinate"
    elif len(shape) < 3:
        note = f"{len(shape)} dimension(s), a volume needs 3"
    else:
        note = ""
    layout, frames, channels = "", 1, 1
    if not note:
        try:
            layout = layout_of(ds, var, path)
            frames = frame_count(shape, layout)
            channels = volume_shape(shape, layout)[0]
        except ReaderError as exc:
            note = exc.reason
    value_range, nan_count = None, None
    if stats and var.size:
        if float32_bytes(shape) <= stats_limit:
            lo, hi, nans = math.inf, -math.inf, 0
            flat_shape = shape if shape else (1,)
            for sl in _slabs(flat_shape, 0):
                block = var[sl] if shape else var[...]
                arr = np.ma.filled(np.ma.asarray(block).astype(np.float64), np.nan)
                fin = np.isfinite(arr)
                nans += int(arr.size - np.count_nonzero(fin))
                if fin.any():
                    lo, hi = min(lo, float(arr[fin].min())), max(hi, float(arr[fin].max()))
            value_range = (lo, hi) if lo <= hi else None
            nan_count = nans
        else:
            note = (note + "; " if note else "") + "statistics skipped (large variable)"
    return VariableInfo(**base, value_range=value_range, nan_count=nan_count, frames=frames,
                        is_volume=not note or note.startswith("statistics"), channels=channels, layout=layout,
                        note=note)


def _reject_options(path: Path, options: dict[str, Any]) -> None:
    if options:
        raise ReaderError(path, f"unknown reader option(s) for NetCDF: {', '.join(sorted(options))} "
                                "(accepted: variable, index, nan_policy, layout, max_bytes)")


register_reader(NetCDFReader())
