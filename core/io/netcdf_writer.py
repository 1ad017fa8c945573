"""NetCDF-4 writer: what volsight and AMGSRN's loader can read back.

One float32 variable with dims ``(z, y, x)`` (``(component, z, y, x)`` for vectors), no coordinate
variables (AMGSRN's loader turns every variable into a channel), spacing and origin as variable
attributes (z, y, x), the Volume's metadata as a JSON global attribute ``volsight_metadata``.
Written to a temporary file beside the target, then renamed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import WriterError
from core.io.atomic import atomic_path
from core.io.layout import json_safe
from core.io.registry import VolumeWriter, register_writer
from core.volume import Volume


class NetCDFWriter(VolumeWriter):
    """Write a Volume as NetCDF-4: float32 (z, y, x) or (component, z, y, x), geometry as attributes."""

    name = "netcdf"
    label = "NetCDF"
    extensions = (".nc", ".nc4")

    def write(self, volume: Volume, path: Path, variable: str | None = None, compress: bool = False,
              **options: Any) -> None:
        self.reject_options(path, options)
        var_name = variable or str(volume.metadata.get("variable") or "data")
        if not var_name.replace("_", "a").isalnum() or var_name[0].isdigit():
            var_name = "data"
        import netCDF4 as nc4  # lazy: only when writing NetCDF
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


register_writer(NetCDFWriter())
