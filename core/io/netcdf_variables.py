"""Which NetCDF variable is a volume, and what its dimensions mean (frames, channels, z/y/x).

Rules (documented for users in :mod:`core.io.netcdf`): coordinate variables and variables with
fewer than 3 dims or non-numeric types are not volumes; a leading dim named like time (or unlimited,
or whose coordinate says ``axis="T"`` / ``standard_name="time"`` / ``units="... since ..."``) is the
frame axis; a dim named like a channel axis with size 1 or 3 is the channel axis; anything else
follows the shape rule of :mod:`core.io.layout`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core.errors import ReaderError
from core.io.layout import check_layout, infer_layout

if TYPE_CHECKING:
    import netCDF4

TIME_NAMES = {"time", "t", "times", "frame", "frames", "step", "steps", "timestep", "timesteps", "time_step",
              "record", "records", "snapshot", "snapshots", "nt"}
CHANNEL_NAMES = {"c", "channel", "channels", "component", "components", "comp", "vector", "vec", "xyz", "uvw",
                 "ncomp", "dim3"}


def is_numeric(var: netCDF4.Variable) -> bool:
    """True for real-number variables (float, int, uint, bool)."""
    dt = var.dtype
    return isinstance(dt, np.dtype) and dt.kind in "fiub"


def is_coordinate(var: netCDF4.Variable) -> bool:
    """True for a CF coordinate variable: 1D and named after its dimension."""
    return len(var.dimensions) == 1 and var.dimensions[0] == var.name


def is_time_dim(ds: netCDF4.Dataset, dim_name: str) -> bool:
    """True when a dimension is a time / sequence axis by name, by being unlimited, or by its coordinate."""
    if dim_name.lower() in TIME_NAMES:
        return True
    dim = ds.dimensions.get(dim_name)
    if dim is not None and dim.isunlimited():
        return True
    coord = ds.variables.get(dim_name)
    if coord is not None and is_coordinate(coord):
        attrs = {k.lower(): str(coord.getncattr(k)).lower() for k in coord.ncattrs()}
        if attrs.get("axis") == "t" or attrs.get("standard_name") == "time" or " since " in attrs.get("units", ""):
            return True
    return False


def layout_of(ds: netCDF4.Dataset, var: netCDF4.Variable, path: Path, given: str | None = None) -> str:
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
    if is_time_dim(ds, dims[0]):
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


def usable(ds: netCDF4.Dataset) -> list[str]:
    """Names of the variables that can be read as volumes, in file order."""
    out = []
    for name, var in ds.variables.items():
        if is_numeric(var) and len(var.dimensions) >= 3 and not is_coordinate(var):
            out.append(name)
    return out


def usable_text(ds: netCDF4.Dataset) -> str:
    """The usable variables as a phrase for error messages."""
    names = usable(ds)
    if not names:
        return "the file has no numeric variable with 3 or more dimensions"
    return f"usable variables: {', '.join(names)}"


def pick_variable(ds: netCDF4.Dataset, path: Path, variable: str | None) -> netCDF4.Variable:
    """The requested variable, or the default one; ReaderError naming file, variable and alternatives."""
    if variable is None:
        names = usable(ds)
        if not names:
            listing = ", ".join(f"{n}{tuple(v.dimensions)}" for n, v in ds.variables.items()) or "none"
            raise ReaderError(path, f"no numeric variable with at least 3 dimensions (variables: {listing})")
        return ds.variables[names[0]]
    var = ds.variables.get(variable)
    if var is None:
        raise ReaderError(path, f"variable {variable!r} not found; {usable_text(ds)}")
    if not is_numeric(var):
        raise ReaderError(path, f"variable {variable!r} is not numeric (type {var.dtype}); {usable_text(ds)}")
    if len(var.dimensions) < 3:
        raise ReaderError(path, f"variable {variable!r} has {len(var.dimensions)} dimension(s) "
                                f"{tuple(var.dimensions)}, a volume needs 3; {usable_text(ds)}")
    return var


def component_names(variable: Any) -> list[str] | None:
    """Three variable names that form one vector field ("u,v,w" or a list), else None."""
    if isinstance(variable, str):
        if "," not in variable:
            return None
        names = [n.strip() for n in variable.split(",")]
    elif isinstance(variable, (list, tuple)):
        names = [str(n) for n in variable]
    else:
        return None
    return names


def check_components(ds: netCDF4.Dataset, path: Path, parts: list, layout: str | None) -> None:
    """Component variables must be scalar fields on the same dims (AMGSRN stores one variable per channel)."""
    names = [v.name for v in parts]
    if len(parts) != 3:
        raise ReaderError(path, f"a vector field needs 3 component variables, got {len(parts)}: {', '.join(names)}")
    dims = {tuple(v.dimensions) for v in parts}
    if len(dims) != 1:
        listing = "; ".join(f"{v.name}{tuple(v.dimensions)}" for v in parts)
        raise ReaderError(path, f"component variables must share their dimensions, got {listing}")
    if "C" in layout_of(ds, parts[0], path, layout):
        raise ReaderError(path, f"component variables must be scalar fields; {names[0]!r} already has a "
                                "channel axis")
