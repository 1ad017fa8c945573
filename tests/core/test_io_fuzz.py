"""Fuzz the readers: random bytes, truncations and bit flips of valid files, under right and wrong names.

The only acceptable outcomes are a valid Volume / FileInfo or one of the project's errors whose
message names the file. (A crash of the process would fail the whole run.)
"""

from __future__ import annotations

import json
from pathlib import Path

import netCDF4
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import VolsightError
from core.io import file_info, read_volume, write_volume
from core.io.registry import FileInfo
from core.volume import Volume

FUZZ = settings(max_examples=100, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])
NAMES = ["", ".nc", ".npy", ".npz", ".raw", ".dat", ".h5", ".bin"]


def _classic(path: Path, fmt: str, data: np.ndarray) -> None:
    ds = netCDF4.Dataset(path, "w", format=fmt)
    for d, n in zip("zyx", data.shape):
        ds.createDimension(d, n)
    v = ds.createVariable("density", "f4", ("z", "y", "x"))
    v[:] = data
    v.scale_factor = 2.0
    ds.title = "fuzz seed"
    ds.close()


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> dict[str, dict[str, bytes]]:
    """Valid files of every format, as {kind: {suffix: bytes}} (raw carries its sidecar)."""
    d = tmp_path_factory.mktemp("fuzz_seeds")
    rng = np.random.default_rng(99)
    vol = Volume(rng.random((1, 4, 5, 6), dtype=np.float32), spacing=(1, 2, 3))
    vec = Volume(rng.standard_normal((3, 3, 4, 5)).astype(np.float32))
    out: dict[str, dict[str, bytes]] = {}
    write_volume(vol, d / "a.nc")
    out["nc4"] = {".nc": (d / "a.nc").read_bytes()}
    write_volume(vec, d / "v.nc")
    out["nc4_vector"] = {".nc": (d / "v.nc").read_bytes()}
    for fmt in ("NETCDF3_CLASSIC", "NETCDF3_64BIT_DATA"):
        _classic(d / f"{fmt}.nc", fmt, rng.random((3, 4, 5)).astype(np.float32))
        out[fmt] = {".nc": (d / f"{fmt}.nc").read_bytes()}
    write_volume(vol, d / "a.npz")
    out["npz"] = {".npz": (d / "a.npz").read_bytes()}
    np.savez_compressed(d / "seq.npz", rng.random((3, 4, 5, 6, 3)).astype(np.float32))
    out["npz_volsim"] = {".npz": (d / "seq.npz").read_bytes()}
    np.save(d / "a.npy", rng.random((3, 4, 5, 6)).astype(np.float32))
    out["npy"] = {".npy": (d / "a.npy").read_bytes()}
    write_volume(vol, d / "a.raw")
    out["raw"] = {".raw": (d / "a.raw").read_bytes(), ".raw.json": (d / "a.raw.json").read_bytes()}
    return out


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz_work")


def _check(work: Path, files: dict[str, bytes], name_suffix: str | None) -> None:
    for p in work.iterdir():
        p.unlink()
    main_suffix = next(iter(files))
    suffix = main_suffix if name_suffix is None else name_suffix
    target = work / f"fuzzed{suffix}"
    for sfx, content in files.items():
        path = target if sfx == main_suffix else work / f"fuzzed{suffix}{sfx.removeprefix(main_suffix)}"
        path.write_bytes(content)
    for call in (read_volume, file_info):
        try:
            result = call(target)
        except VolsightError as exc:
            assert "fuzzed" in str(exc), f"error does not name the file: {exc}"
        else:
            assert isinstance(result, (Volume, FileInfo))
            if isinstance(result, Volume):
                assert result.data.dtype == np.float32 and result.channels in (1, 3)


def _mutate_flips(content: bytes, flips: list[tuple[int, int]]) -> bytes:
    b = bytearray(content)
    for pos, bit in flips:
        b[pos % len(b)] ^= 1 << bit
    return bytes(b)


KINDS = ["nc4", "nc4_vector", "NETCDF3_CLASSIC", "NETCDF3_64BIT_DATA", "npz", "npz_volsim", "npy", "raw"]
flip_lists = st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 7)), min_size=1, max_size=8)
renames = st.sampled_from([None, *NAMES])


@FUZZ
@given(kind=st.sampled_from(KINDS), flips=flip_lists, rename=renames, in_sidecar=st.booleans())
def test_bit_flips(samples, work, kind, flips, rename, in_sidecar):
    files = dict(samples[kind])
    key = ".raw.json" if kind == "raw" and in_sidecar else next(iter(files))
    files[key] = _mutate_flips(files[key], flips)
    _check(work, files, rename)


@FUZZ
@given(kind=st.sampled_from(KINDS), cut=st.floats(0, 1, exclude_max=True), rename=renames,
       in_sidecar=st.booleans())
def test_truncations(samples, work, kind, cut, rename, in_sidecar):
    files = dict(samples[kind])
    key = ".raw.json" if kind == "raw" and in_sidecar else next(iter(files))
    files[key] = files[key][: int(cut * len(files[key]))]
    _check(work, files, rename)


@FUZZ
@given(content=st.binary(max_size=2048), rename=st.sampled_from(NAMES),
       magic=st.sampled_from([b"", b"CDF\x01", b"CDF\x02", b"CDF\x05", b"\x89HDF\r\n\x1a\n", b"\x93NUMPY\x01\x00",
                              b"PK\x03\x04"]))
def test_random_bytes(work, content, rename, magic):
    _check(work, {rename or ".x": magic + content}, rename)


@FUZZ
@given(spec=st.dictionaries(st.sampled_from(["dtype", "shape", "byte_order", "layout", "spacing", "origin",
                                             "offset"]),
                            st.one_of(st.none(), st.booleans(), st.integers(-5, 1 << 40), st.floats(),
                                      st.text(max_size=8), st.lists(st.integers(-2, 70), max_size=6),
                                      st.sampled_from(["float32", "uint8", "float64", "little", "big", "TDHWC"]))))
def test_random_sidecars(samples, work, spec):
    _check(work, {".raw": samples["raw"][".raw"], ".raw.json": json.dumps(spec).encode()}, None)
