"""Open a NetCDF-4/HDF5 file once in a child process before trusting it in ours.

Damaged HDF5 metadata can make netcdf-c/HDF5 loop forever, crash, or leak the open file (and HDF5
then hands that stale handle to every later open of the same inode). A fuzz run found all three.
The probe opens the file in a child process, walks its metadata and reads one value of each
variable; a hang, a crash or a failure becomes a ReaderError here and the file is never opened
in-process. Children are forked from a multiprocessing fork server that has netCDF4 imported
already, so a probe costs milliseconds, and every probe starts from a clean HDF5 state. The answer
is remembered per file version (device, inode, size, mtime), so later reads of the same file
(frames of a sequence, info then read) do not probe again.

Set ``VOLSIGHT_NETCDF_PROBE=0`` to skip probing (trusted files) and ``VOLSIGHT_NETCDF_PROBE_TIMEOUT``
(seconds, default 30) to change how long a probe may take.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from pathlib import Path

from core.errors import ReaderError

ENV_PROBE = "VOLSIGHT_NETCDF_PROBE"
ENV_TIMEOUT = "VOLSIGHT_NETCDF_PROBE_TIMEOUT"
TIMEOUT_S = 30.0
_RESULTS: dict[tuple[int, int, int, int], str | None] = {}  # file version -> None (fine) or why not
_LOCK = threading.Lock()
_CONTEXT = None


def probe_enabled() -> bool:
    return os.environ.get(ENV_PROBE, "1").strip().lower() not in ("0", "no", "off", "false")


def _timeout() -> float:
    try:
        return max(0.1, float(os.environ.get(ENV_TIMEOUT, TIMEOUT_S)))
    except ValueError:
        return TIMEOUT_S


def walk(path: str) -> None:
    """What the child does: open, touch every variable's metadata and first value, close."""
    import netCDF4

    ds = netCDF4.Dataset(path, "r")
    try:
        for var in ds.variables.values():
            _ = (var.dimensions, var.shape, var.dtype)
            for k in var.ncattrs():
                try:
                    var.getncattr(k)
                except Exception:  # noqa: BLE001 - unreadable attributes are reported by the real read
                    pass
            if var.ndim and var.size:
                try:
                    var[(0,) * var.ndim]
                except Exception:  # noqa: BLE001 - unreadable data is reported by the real read
                    pass
        for k in ds.ncattrs():
            try:
                ds.getncattr(k)
            except Exception:  # noqa: BLE001
                pass
    finally:
        ds.close()


def _child(target, path: str, conn) -> None:
    try:
        target(path)
        conn.send(None)
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent as text
        conn.send(str(getattr(exc, "strerror", None) or exc) or type(exc).__name__)
    finally:
        conn.close()


def _context():
    """The fork-server context with netCDF4 preloaded (None where the platform has no fork server)."""
    global _CONTEXT
    if _CONTEXT is None:
        try:
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(["netCDF4", "core.io.netcdf_probe"])
        except ValueError:
            ctx = multiprocessing.get_context("spawn")
        _CONTEXT = ctx
    return _CONTEXT


def _run(path: Path, timeout: float, target) -> str | None:
    """None when the child walked the file; else the reason it did not."""
    ctx = _context()
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(target, os.fspath(path), send), daemon=True)
    try:
        proc.start()
    except OSError:  # cannot start a child here: fall back to opening in-process, as without a probe
        return None
    finally:
        send.close()
    try:
        if recv.poll(timeout):
            try:
                answer = recv.recv()
            except EOFError:  # the child died before answering
                answer = ""
            proc.join(timeout)
            if answer is None:
                return None
            if proc.exitcode is not None and proc.exitcode < 0:
                return f"the NetCDF/HDF5 library crashed on this file (signal {-proc.exitcode}); the file is corrupt"
            return f"not a readable NetCDF file ({answer}); it may be truncated, corrupt or of another format"
        return (f"the NetCDF/HDF5 library did not finish opening the file within {timeout:g} s; it is probably "
                "corrupt (damaged HDF5 metadata can make the library loop)")
    finally:
        recv.close()
        if proc.is_alive():
            proc.kill()
        proc.join()


def probe_open(path: str | os.PathLike, timeout: float | None = None, target=None) -> None:
    """Raise ReaderError unless a child process can open and walk ``path`` with netCDF4.

    ``target`` (default :func:`walk`) is what the child runs; it must be importable by reference.
    """
    timeout = _timeout() if timeout is None else timeout
    target = walk if target is None else target
    p = Path(path)
    st = p.stat()
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    with _LOCK:
        if key in _RESULTS:
            reason = _RESULTS[key]
        else:
            reason = _run(p, timeout, target)
            if reason is None or "did not finish" not in reason:  # a timeout may be load: try again next time
                _RESULTS[key] = reason
    if reason is not None:
        raise ReaderError(p, reason)
