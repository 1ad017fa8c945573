"""A bounds-checking parser of NetCDF classic headers (CDF-1, CDF-2, CDF-5), run before netCDF4 opens a file.

netcdf-c trusts the counts and offsets in a classic header; a corrupt or truncated one can crash
the process (a fuzz run with bit flips segfaulted it within a few hundred tries). Parsing the header
here first turns such files into a ReaderError. The layout follows the published "NetCDF Classic
Format Specification" (all integers big-endian).
"""

from __future__ import annotations

import math
import os
import struct
from pathlib import Path

from core.errors import ReaderError

NC_DIMENSION, NC_VARIABLE, NC_ATTRIBUTE = 0x0A, 0x0B, 0x0C
# nc_type -> bytes per value (types 7..11 only in CDF-5)
TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 4, 6: 8, 7: 1, 8: 2, 9: 4, 10: 8, 11: 8}
MAX_NAME = 256
MAX_VAR_DIMS = 1024
STREAMING = (1 << 32) - 1


class _Cursor:
    def __init__(self, buf: bytes, path: Path, version: int):
        self.buf, self.pos, self.path = buf, 4, path
        self.big = version == 5  # CDF-5 uses 8-byte counts

    def fail(self, what: str) -> ReaderError:
        return ReaderError(self.path, f"corrupt or truncated NetCDF classic header ({what} at byte {self.pos})")

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.buf):
            raise self.fail(f"{what} runs past the end of the header")
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out

    def int32(self, what: str) -> int:
        return struct.unpack(">i", self.take(4, what))[0]

    def count(self, what: str) -> int:
        """NON_NEG: 4 bytes (CDF-1/2) or 8 bytes (CDF-5)."""
        v = struct.unpack(">q" if self.big else ">i", self.take(8 if self.big else 4, what))[0]
        if v < 0:
            raise self.fail(f"negative {what}")
        return v

    def name(self, what: str) -> str:
        n = self.count(f"{what} name length")
        if n == 0 or n > MAX_NAME:
            raise self.fail(f"{what} name length {n}")
        raw = self.take(n, f"{what} name")
        self.take((-n) % 4, f"{what} name padding")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self.fail(f"{what} name is not UTF-8") from exc

    def remaining(self) -> int:
        return len(self.buf) - self.pos


def _unique_name(c: _Cursor, kind: str, seen: set[str]) -> str:
    """The next name of a ``kind`` list; a name the list already had is a damaged header."""
    name = c.name(kind)
    if name in seen:
        raise c.fail(f"{kind} name {name!r} repeated")
    seen.add(name)
    return name


def _list_header(c: _Cursor, tag: int, what: str, min_item: int) -> int:
    t = c.int32(f"{what} tag")
    n = c.count(f"{what} count")
    if t == 0 and n == 0:
        return 0
    if t != tag:
        raise c.fail(f"bad {what} tag {t:#x}")
    if n * min_item > c.remaining():
        raise c.fail(f"{what} count {n} larger than the header")
    return n


def _attributes(c: _Cursor, what: str) -> None:
    n = _list_header(c, NC_ATTRIBUTE, f"{what} attribute list", 12)
    for _ in range(n):
        c.name(f"{what} attribute")
        nc_type = c.int32("attribute type")
        if nc_type not in TYPE_SIZES or (nc_type > 6 and not c.big):
            raise c.fail(f"attribute type {nc_type}")
        k = c.count("attribute length")
        size = k * TYPE_SIZES[nc_type]
        c.take(size + (-size) % 4, "attribute values")


def check_classic_header(path: str | os.PathLike) -> dict:
    """Parse and bounds-check a classic header; a summary dict, or ReaderError naming the problem."""
    p = Path(path)
    file_size = p.stat().st_size
    with open(p, "rb") as f:
        # headers are small; 64 MiB bounds the read even for a corrupt count
        buf = f.read(min(file_size, 64 << 20))
    if len(buf) < 4 or buf[:3] != b"CDF" or buf[3] not in (1, 2, 5):
        raise ReaderError(p, "not a NetCDF classic file (bad magic number)")
    version = buf[3]
    c = _Cursor(buf, p, version)
    numrecs = c.count("record count") if version == 5 else struct.unpack(">I", c.take(4, "record count"))[0]

    ndims = _list_header(c, NC_DIMENSION, "dimension list", 8)
    dims: list[int] = []
    record_dim = None
    dim_names: set[str] = set()
    for i in range(ndims):
        _unique_name(c, "dimension", dim_names)
        length = c.count("dimension length")
        if length == 0:
            if record_dim is not None:
                raise c.fail("two record (unlimited) dimensions")
            record_dim = i
        dims.append(length)

    _attributes(c, "global")

    nvars = _list_header(c, NC_VARIABLE, "variable list", 16)
    variables = []
    var_names: set[str] = set()
    for _ in range(nvars):
        vname = _unique_name(c, "variable", var_names)
        nd = c.count("variable rank")
        if nd > MAX_VAR_DIMS:
            raise c.fail(f"variable {vname!r} has {nd} dimensions")
        ids = [c.count("dimension id") for _ in range(nd)]
        for j, d in enumerate(ids):
            if d >= ndims:
                raise c.fail(f"variable {vname!r} uses dimension id {d} of {ndims}")
            if d == record_dim and j != 0:
                raise c.fail(f"variable {vname!r} has the record dimension in position {j}")
        _attributes(c, f"variable {vname!r}")
        nc_type = c.int32("variable type")
        if nc_type not in TYPE_SIZES or (nc_type > 6 and version != 5):
            raise c.fail(f"variable {vname!r} type {nc_type}")
        c.count("variable size")
        begin = struct.unpack(">q" if version != 1 else ">i", c.take(4 if version == 1 else 8, "data offset"))[0]
        is_record = bool(ids) and ids[0] == record_dim
        slab = math.prod(dims[d] for d in (ids[1:] if is_record else ids)) * TYPE_SIZES[nc_type]
        variables.append((vname, begin, slab, is_record))

    header_end = c.pos
    record_vars = [v for v in variables if v[3]]
    recsize = slab_total = 0
    if record_vars:
        slab_total = sum(v[2] for v in record_vars)
        # one record variable is stored without padding; otherwise each slab is padded to 4 bytes
        recsize = slab_total if len(record_vars) == 1 else sum(v[2] + (-v[2]) % 4 for v in record_vars)
    if numrecs == STREAMING or (version == 5 and numrecs == (1 << 63) - 1):
        numrecs = 0  # streaming: length follows from the file size; nothing more to check
    for vname, begin, slab, is_record in variables:
        if begin < header_end:
            raise ReaderError(p, f"corrupt NetCDF classic header: data of variable {vname!r} starts at byte {begin}, "
                                 f"inside the header (ends at {header_end})")
        end = begin + ((numrecs - 1) * recsize + slab if is_record and numrecs else (0 if is_record else slab))
        if end > file_size:
            raise ReaderError(p, f"truncated NetCDF file: variable {vname!r} needs bytes up to {end} but the file "
                                 f"has {file_size}")
    return {"version": version, "numrecs": numrecs, "dims": dims, "variables": [v[0] for v in variables]}
