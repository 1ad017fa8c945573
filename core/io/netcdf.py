"""NetCDF (classic, 64-bit offset, CDF-5 and NetCDF-4/HDF5) volumes via netCDF4.

Reading:

* ``variable`` by name; by default the first numeric variable with at least 3 dimensions that is
  not a coordinate variable (a 1D variable named after its dimension).
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

Writing: one float32 variable with dims ``(z, y, x)`` (``(component, z, y, x)`` for vectors), no
coordinate variables (AMGSRN's loader turns every variable into a channel), spacing and origin as
variable attributes, the Volume's metadata as a JSON global attribute.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
from core.io.netcdf_header import check_classic_header
from core.io.registry import FileInfo, VariableInfo, VolumeReader, VolumeWriter, register_reader, register_writer
from core.volume import Volume

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
CLASSIC_MAGICS = (b"CDF\x01", b"CDF\x02", b"CDF\x05")
TIME_NAMES = {"time", "t", "times", "frame", "frames", "step", "steps", "timestep", "timesteps", "time_step",
              "record", "records", "snapshot", "snapshots", "nt"}
CHANNEL_NAMES = {"c", "channel", "channels", "component", "components", "comp", "vector", "vec", "xyz", "uvw",
                 "ncomp", "dim3"}
SLAB_BYTES = 64 << 20  # read at most this much per netCDF call to bound transient memory
STATS_LIMIT = 1 << 30  # info(): skip value statistics of variables larger than this (stored float32 bytes)


def _netcdf4():
    import netCDF4  # lazy: the CLI must not pay for it unless a NetCDF file is touched

    return netCDF4


def _open(path: Path):
    with open(path, "rb") as f:
        head = f.read(8)
    if head[:4] in CLASSIC_MAGICS:
        # netcdf-c trusts classic headers and can crash on corrupt ones: check them in Python first
        check_classic_header(path)
    elif head[:8] != HDF5_MAGIC and not head.startswith(b"CDF"):
        # HDF5 files may also carry their superblock at 512/1024/...; let netCDF4 decide then
        pass
    try:
        ds = _netcdf4().Dataset(str(path), "r")
    except OSError as exc:
        raise ReaderError(path, f"not a readable NetCDF file ({exc.strerror or exc}); it may be truncated, "
                                "corrupt or of another format") from exc
    ds.set_auto_maskandscale(True)
    return ds


def _is_numeric(var) -> bool:
    dt = var.dtype
    return isinstance(dt, np.dtype) and dt.kind in "fiub"


def _is_coordinate(var) -> bool:
    return len(var.dimensions) == 1 and var.dimensions[0] == var.name


def _is_time_dim(ds, dim_name: str) -> bool:
    if dim_name.lower() in TIME_NAMES:
        return True
    dim = ds.dimensions.get(dim_name)
    if dim is not None and dim.isunlimited():
        return True
    coord = ds.variables.get(dim_name)
    if coord is not None and _is_coordinate(coord):
        attrs = {k.lower(): str(coord.getncattr(k)).lower() for k in coord.ncattrs()}
        if attrs.get("axis") == "t" or attrs.get("standard_name") == "time" or " since " in attrs.get("units", ""):
            return True
    return False


def _layout_of(ds, var, path: Path, given: str | None = None) -> str:
    """Axis letters for a variable: from the caller, else from dim names, else from the shape rule."""
    shape = tuple(int(n) for n in var.shape)
    dims = tuple(var.dimensions)
    what = f"variable {var.name!r} {dims}"
    if given:
        return check_layout(given, shape, path, what)
    nd = len(shape)
    if nd == 3:
        return "DHW"
    if nd not in (4, 5):
        return infer_layout(shape, path, what)  # raises with the accepted layouts
    letters = [""] * nd
    if _is_time_dim(ds, dims[0]):
        letters[0] = "T"
    for i, d in enumerate(dims):
        if not letters[i] and d.lower() in CHANNEL_NAMES and shape[i] in (1, 3):
            letters[i] = "C"
            break
    named = sum(1 for x in letters if x)
    if nd - named == 3:
        spatial = iter("DHW")
        return "".join(x or next(spatial) for x in letters)
    if letters[0] == "T" and nd == 4:
        return "TDHW"
    if letters[0] == "T":  # 5D with a named time axis: channel by the 4D rule on the rest
        rest = infer_layout(shape[1:], path, what)
        if "T" in rest:
            raise ReaderError(path, f"{what} shape {shape}: after the time axis no axis of size 1 or 3 can be "
                                    "the channel axis")
        return "T" + rest
    return infer_layout(shape, path, what)


def _usable(ds) -> list[str]:
    out = []
    for name, var in ds.variables.items():
        if _is_numeric(var) and len(var.dimensions) >= 3 and not _is_coordinate(var):
            out.append(name)
    return out


def _usable_text(ds) -> str:
    names = _usable(ds)
    if not names:
        return "the file has no numeric variable with 3 or more dimensions"
    return f"usable variables: {', '.join(names)}"


def _pick_variable(ds, path: Path, variable: str | None):
    if variable is None:
        names = _usable(ds)
        if not names:
            listing = ", ".join(f"{n}{tuple(v.dimensions)}" for n, v in ds.variables.items()) or "none"
            raise ReaderError(path, f"no numeric variable with at least 3 dimensions (variables: {listing})")
        return ds.variables[names[0]]
    var = ds.variables.get(variable)
    if var is None:
        raise ReaderError(path, f"variable {variable!r} not found; {_usable_text(ds)}")
    if not _is_numeric(var):
        raise ReaderError(path, f"variable {variable!r} is not numeric (type {var.dtype}); {_usable_text(ds)}")
    if len(var.dimensions) < 3:
        raise ReaderError(path, f"variable {variable!r} has {len(var.dimensions)} dimension(s) "
                                f"{tuple(var.dimensions)}, a volume needs 3; {_usable_text(ds)}")
    return var


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
        if coord is None or not _is_coordinate(coord) or not _is_numeric(coord) or coord.size < 2:
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
        if np.ma.isMaskedArray(block):
            m = np.ma.getmaskarray(block)
            masked += int(np.count_nonzero(m))
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
            var = _pick_variable(ds, path, variable)
            return frame_count(var.shape, _layout_of(ds, var, path, layout))
        finally:
            ds.close()

    def read(self, path: Path, variable: str | None = None, index: int | None = None, *,
             nan_policy: str = "raise", layout: str | None = None, max_bytes: int | None = None,
             **options: Any) -> Volume:
        _reject_options(path, options)
        ds = _open(path)
        try:
            var = _pick_variable(ds, path, variable)
            lay = _layout_of(ds, var, path, layout)
            shape = tuple(int(n) for n in var.shape)
            frames = frame_count(shape, lay)
            idx = resolve_index(index, frames, path, f"variable {var.name!r}")
            vshape = volume_shape(shape, lay)
            check_fits(path, vshape, f"variable {var.name!r}" + (" (one frame)" if frames > 1 else ""),
                       max_bytes=max_bytes)
            stored, masked = _read_array(var, idx, lay)
            data = to_float32(take_frame(stored, lay.replace("T", ""), None))
            spacing, origin = _geometry(ds, var, lay)
            meta = {
                "format": f"NetCDF ({ds.data_model})",
                "variable": var.name,
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
                if tvar is not None and _is_coordinate(tvar) and _is_numeric(tvar):
                    try:
                        meta["time"] = json_safe(np.ma.filled(tvar[idx], np.nan))
                        if "units" in tvar.ncattrs():
                            meta["time_units"] = str(tvar.getncattr("units"))
                    except Exception:  # noqa: BLE001 - the time label is a nicety
                        pass
            if masked:
                meta["masked_count"] = masked
            hint = f"{masked} masked by _FillValue/missing_value/valid range" if masked else ""
            return make_volume(path, data, name=_name(path, var.name, idx, frames), variable=var.name,
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
    if not _is_numeric(var):
        return VariableInfo(**base, is_volume=False, note="not numeric")
    if _is_coordinate(var):
        note = "coordinate"
    elif len(shape) < 3:
        note = f"{len(shape)} dimension(s), a volume needs 3"
    else:
        note = ""
    layout, frames, channels = "", 1, 1
    if not note:
        try:
            layout = _layout_of(ds, var, path)
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


class NetCDFWriter(VolumeWriter):
    """Write a Volume as NetCDF-4: float32 (z, y, x) or (component, z, y, x), geometry as attributes."""

    name = "netcdf"
    extensions = (".nc", ".nc4")

    def write(self, volume: Volume, path: Path, variable: str | None = None, compress: bool = False,
              **options: Any) -> None:
        if options:
            raise WriterError(path, f"unknown writer option(s) for NetCDF: {', '.join(sorted(options))}")
        var_name = variable or str(volume.metadata.get("variable") or "data")
        if not var_name.replace("_", "a").isalnum() or var_name[0].isdigit():
            var_name = "data"
        nc4 = _netcdf4()
        try:
            with atomic_path(path) as tmp:
                ds = nc4.Dataset(str(tmp), "w", format="NETCDF4")
                try:
                    dims: tuple[str, ...] = ("z", "y", "x")
                    if volume.channels > 1:
                        ds.createDimension("component", volume.channels)
                        dims = ("component", *dims)
                    for d, n in zip(("z", "y", "x"), volume.shape):
                        ds.createDimension(d, n)
                    v = ds.createVariable(var_name, "f4", dims, zlib=bool(compress), fill_value=False)
                    v.set_auto_maskandscale(False)
                    v[:] = volume.data if volume.channels > 1 else volume.data[0]
                    v.spacing = np.asarray(volume.spacing, dtype=np.float64)
                    v.origin = np.asarray(volume.origin, dtype=np.float64)
                    v.long_name = volume.name
                    ds.Conventions = "CF-1.8"
                    ds.source = "volsight"
                    ds.volsight_metadata = json.dumps(json_safe(dict(volume.metadata)))
                finally:
                    ds.close()
        except OSError as exc:
            raise WriterError(path, f"cannot write NetCDF ({exc.strerror or exc})") from exc


register_reader(NetCDFReader())
register_writer(NetCDFWriter())
