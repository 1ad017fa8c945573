"""Open a NetCDF-4/HDF5 file once in a child process before trusting it in ours.

Damaged HDF5 metadata can make netcdf-c/HDF5 loop forever, crash, or leak the open file (and HDF5
then hands that stale handle to every later open of the same inode). A fuzz run found all three.
The probe opens the file in a short-lived child (about 0.15 s of CPU), walks its metadata and reads
one value of each variable; a hang, a crash or a failure becomes a ReaderError here and the file is
never opened in-process. A file that passed is remembered by (device, inode, size, mtime) so later
reads of the same file version (frames of a sequence, info then read) skip the probe.

Set ``VOLSIGHT_NETCDF_PROBE=0`` to skip probing (trusted files, many small reads) and
``VOLSIGHT_NETCDF_PROBE_TIMEOUT`` (seconds, default 30) to change how long a probe may take.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from core.errors import ReaderError

ENV_PROBE = "VOLSIGHT_NETCDF_PROBE"
ENV_TIMEOUT = "VOLSIGHT_NETCDF_PROBE_TIMEOUT"
TIMEOUT_S = 30.0
_PASSED: set[tuple[int, int, int, int]] = set()

_SCRIPT = r"""
import sys
import netCDF4
ds = netCDF4.Dataset(sys.argv[1], "r")
for name, var in ds.variables.items():
    var.dimensions, var.shape, var.dtype
    for k in var.ncattrs():
        try:
            var.getncattr(k)
        except Exception:
            pass
    if var.ndim and var.size:
        try:
            var[(0,) * var.ndim]
        except Exception:
            pass
for k in ds.ncattrs():
    try:
        ds.getncattr(k)
    except Exception:
        pass
ds.close()
print("volsight-probe-ok")
"""


def probe_enabled() -> bool:
    return os.environ.get(ENV_PROBE, "1").strip().lower() not in ("0", "no", "off", "false")


def _timeout() -> float:
    try:
        return max(0.1, float(os.environ.get(ENV_TIMEOUT, TIMEOUT_S)))
    except ValueError:
        return TIMEOUT_S


def probe_open(path: str | os.PathLike, timeout: float | None = None) -> None:
    """Raise ReaderError unless a child process can open and walk ``path`` with netCDF4."""
    timeout = _timeout() if timeout is None else timeout
    p = Path(path)
    st = p.stat()
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    if key in _PASSED:
        return
    env = {**os.environ, "HDF5_USE_FILE_LOCKING": os.environ.get("HDF5_USE_FILE_LOCKING", "FALSE")}
    try:
        done = subprocess.run([sys.executable, "-c", _SCRIPT, os.fspath(p)], capture_output=True, timeout=timeout,
                              env=env, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise ReaderError(p, f"the NetCDF/HDF5 library did not finish opening the file within {timeout:.0f} s; "
                             "it is probably corrupt (damaged HDF5 metadata can make the library loop)") from exc
    except OSError:  # cannot start a child process here: fall back to opening in-process, as without a probe
        _PASSED.add(key)
        return
    if done.returncode < 0:
        raise ReaderError(p, f"the NetCDF/HDF5 library crashed on this file (signal {-done.returncode}); "
                             "the file is corrupt")
    if done.returncode != 0 or b"volsight-probe-ok" not in done.stdout:
        lines = [ln for ln in done.stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
        last = lines[-1].strip() if lines else f"exit status {done.returncode}"
        if ":" in last and last.split(":", 1)[0].replace(".", "").isidentifier():
            last = last.split(":", 1)[1].strip() or last  # "OSError: [Errno -51] ..." -> the reason
        raise ReaderError(p, f"not a readable NetCDF file ({last}); it may be truncated, corrupt or of "
                             "another format")
    _PASSED.add(key)
