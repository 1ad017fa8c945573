"""Open a NetCDF-4/HDF5 file once in a child process before trusting it in ours.

Damaged HDF5 metadata can make netcdf-c/HDF5 loop forever, crash, or leak the open file (and HDF5
then hands that stale handle to every later open of the same inode). A fuzz run found all three.
The probe opens the file in a child process, walks its metadata and reads one value of each
variable; a hang, a crash or a failure becomes a ReaderError here and the file is never opened
in-process.

Children are forked by a small private server process (started on first use, netCDF4 imported
once, never opens a file itself), so a probe costs milliseconds and each starts from a clean HDF5
state. It is not ``multiprocessing``: that would re-run the user's ``__main__`` in the children.
The server exits when this process closes its pipe. Answers are remembered per file version
(device, inode, size, mtime), so later reads of the same file do not probe again.

Set ``VOLSIGHT_NETCDF_PROBE=0`` to skip probing (trusted files) and ``VOLSIGHT_NETCDF_PROBE_TIMEOUT``
(seconds, default 30) to change how long a probe may take.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
import subprocess
import sys
import threading
from pathlib import Path

from core.errors import ReaderError

ENV_PROBE = "VOLSIGHT_NETCDF_PROBE"
ENV_TIMEOUT = "VOLSIGHT_NETCDF_PROBE_TIMEOUT"
TIMEOUT_S = 30.0
DEFAULT_TARGET = "core.io.netcdf_probe:walk"
_RESULTS: dict[tuple[int, int, int, int], str | None] = {}  # file version -> None (fine) or why not
_LOCK = threading.Lock()
_SERVER: subprocess.Popen | None = None

# The server: one request per line ({"path", "timeout", "target"}), one JSON answer per line.
_SERVER_CODE = r"""
import importlib, json, os, select, signal, sys, time
sys.path[:0] = json.loads(sys.argv[1])
try:
    import netCDF4  # noqa: F401 - imported once here so that every forked child has it
except Exception:
    pass
for line in sys.stdin:
    req = json.loads(line)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            mod, func = req["target"].split(":")
            getattr(importlib.import_module(mod), func)(req["path"])
            out = {"ok": True}
        except BaseException as exc:
            out = {"error": str(getattr(exc, "strerror", None) or exc) or type(exc).__name__}
        os.write(w, json.dumps(out).encode())
        os._exit(0)
    os.close(w)
    deadline, data, answer = time.monotonic() + float(req["timeout"]), b"", None
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([r], [], [], left)[0]:
            os.kill(pid, signal.SIGKILL)
            answer = {"status": "timeout"}
            break
        chunk = os.read(r, 65536)
        if not chunk:
            break
        data += chunk
    os.close(r)
    _, status = os.waitpid(pid, 0)
    if answer is None:
        if os.WIFSIGNALED(status):
            answer = {"status": "crash", "signal": os.WTERMSIG(status)}
        else:
            try:
                answer = {"status": "done", **json.loads(data or b"{}")}
            except ValueError:
                answer = {"status": "done", "error": "no answer from the child"}
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()
"""


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
                with contextlib.suppress(Exception):  # unreadable parts are reported by the real read
                    var.getncattr(k)
            if var.ndim and var.size:
                with contextlib.suppress(Exception):
                    var[(0,) * var.ndim]
        for k in ds.ncattrs():
            with contextlib.suppress(Exception):
                ds.getncattr(k)
    finally:
        ds.close()


def _stop_server() -> None:
    global _SERVER
    if _SERVER is not None:
        with contextlib.suppress(Exception):
            _SERVER.stdin.close()  # the server ends at EOF
            _SERVER.wait(timeout=5)
        with contextlib.suppress(Exception):
            if _SERVER.poll() is None:
                _SERVER.kill()
                _SERVER.wait()
        _SERVER = None


def _server() -> subprocess.Popen | None:
    global _SERVER
    if _SERVER is not None and _SERVER.poll() is None:
        return _SERVER
    env = {**os.environ, "HDF5_USE_FILE_LOCKING": os.environ.get("HDF5_USE_FILE_LOCKING", "FALSE")}
    paths = json.dumps([p for p in sys.path if isinstance(p, str)])
    try:
        _SERVER = subprocess.Popen([sys.executable, "-c", _SERVER_CODE, paths], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    except OSError:
        _SERVER = None
    return _SERVER


def _ask(path: Path, timeout: float, target: str) -> dict | None:
    """The server's answer, or None when no server can run here (then the file opens without a probe)."""
    server = _server()
    if server is None:
        return None
    try:
        server.stdin.write(json.dumps({"path": os.fspath(path), "timeout": timeout, "target": target}) + "\n")
        server.stdin.flush()
        # the server enforces the timeout on its child; the margin covers its own start-up on a busy machine
        if select.select([server.stdout], [], [], timeout + 60)[0]:
            line = server.stdout.readline()
            if line:
                return json.loads(line)
    except (OSError, ValueError):
        pass
    _stop_server()  # an unresponsive server is replaced on the next probe
    return {"status": "timeout"}


def _reason(answer: dict | None, timeout: float) -> str | None:
    if answer is None or answer.get("ok"):
        return None
    status = answer.get("status")
    if status == "timeout":
        return (f"the NetCDF/HDF5 library did not finish opening the file within {timeout:g} s; it is probably "
                "corrupt (damaged HDF5 metadata can make the library loop)")
    if status == "crash":
        return f"the NetCDF/HDF5 library crashed on this file (signal {answer.get('signal')}); the file is corrupt"
    return f"not a readable NetCDF file ({answer.get('error')}); it may be truncated, corrupt or of another format"


def probe_open(path: str | os.PathLike, timeout: float | None = None, target: str | None = None) -> None:
    """Raise ReaderError unless a child process can open and walk ``path`` with netCDF4.

    ``target`` ("module:function", default :func:`walk`) is what the child calls with the path.
    """
    timeout = _timeout() if timeout is None else timeout
    target = target or DEFAULT_TARGET
    p = Path(path)
    st = p.stat()
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    with _LOCK:
        if key in _RESULTS:
            reason = _RESULTS[key]
        else:
            reason = _reason(_ask(p, timeout, target), timeout)
            if reason is None or "did not finish" not in reason:  # a timeout may be load: try again next time
                _RESULTS[key] = reason
    if reason is not None:
        raise ReaderError(p, reason)


atexit.register(_stop_server)
