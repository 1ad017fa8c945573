"""Raw binary volumes with a JSON sidecar, and the memory budget."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.errors import ReaderError, VolumeTooLargeError
from core.io import file_info, frame_count, read_sequence, read_volume, write_volume
from core.io import memory as io_memory
from core.volume import Volume


def _raw(tmp_path, arr, sidecar_name=None, **spec):
    path = tmp_path / "vol.raw"
    path.write_bytes(arr.tobytes())
    spec = {"dtype": str(arr.dtype.newbyteorder("=")), "shape": list(arr.shape), **spec}
    (tmp_path / (sidecar_name or "vol.raw.json")).write_text(json.dumps(spec))
    return path


def test_round_trip_scalar_and_vector(tmp_path, rng):
    for c in (1, 3):
        vol = Volume(rng.standard_normal((c, 4, 5, 6)).astype(np.float32), spacing=(2, 3, 4), origin=(1, 1, 1))
        path = tmp_path / f"w{c}.raw"
        write_volume(vol, path)
        assert (tmp_path / f"w{c}.raw.json").is_file()
        back = read_volume(path)
        np.testing.assert_array_equal(back.data, vol.data)
        assert back.spacing == (2, 3, 4) and back.origin == (1, 1, 1) and back.name == f"w{c}"
        assert isinstance(back.data, np.memmap)
        np.testing.assert_array_equal(read_volume(tmp_path / f"w{c}.raw.json").data, vol.data)  # via the sidecar


def test_big_endian_offset_and_stem_sidecar(tmp_path, rng):
    arr = rng.integers(0, 60000, (3, 4, 5)).astype(">u2")
    path = tmp_path / "vol.raw"
    path.write_bytes(b"HEADER" + arr.tobytes())
    (tmp_path / "vol.json").write_text(json.dumps({"dtype": "uint16", "shape": [3, 4, 5], "byte_order": "big",
                                                   "offset": 6}))
    np.testing.assert_array_equal(read_volume(path).data[0], arr.astype(np.float32))


def test_sequence_layout(tmp_path, rng):
    arr = rng.random((4, 3, 5, 6, 3)).astype(np.float32)  # [T, D, H, W, C]
    path = _raw(tmp_path, arr, layout="TDHWC")
    seq = read_sequence(path)
    assert len(seq) == 4 and seq[2].name == "vol[2]"
    np.testing.assert_array_equal(seq[2].data, np.moveaxis(arr[2], -1, 0))
    assert file_info(path).variables[0].frames == 4 and frame_count(path) == 4


@pytest.mark.parametrize("spec, message", [
    ({"dtype": "float32", "shape": [4, 4, 5]}, r"file size 240 bytes does not match its sidecar vol\.raw\.json.*"
                                              r"needs exactly 320 bytes"),
    ({"dtype": "float32", "shape": [3, 4, 5], "offset": 4}, r"needs exactly 244 bytes"),
    ({"dtype": "complex64", "shape": [3, 4, 5]}, r"dtype 'complex64' not supported"),
    ({"dtype": "float32", "shape": [60]}, r"shape must be a list of 3 to 5 positive integers"),
    ({"dtype": "float32", "shape": [3, 4, -5]}, r"shape must be"),
    ({"dtype": "float32", "shape": [3, 4, 5], "byte_order": "middle"}, r"byte_order must be"),
    ({"dtype": "float32", "shape": [5, 3, 2, 2], "layout": "CDHW"}, r"5 channels"),
    ({"dtype": "float32", "shape": [3, 4, 5], "spacing": [1, 0, 1]}, r"spacing must be positive"),
])
def test_bad_sidecars(tmp_path, rng, spec, message):
    path = tmp_path / "vol.raw"
    path.write_bytes(rng.random((3, 4, 5)).astype(np.float32).tobytes())
    (tmp_path / "vol.raw.json").write_text(json.dumps(spec))
    with pytest.raises(ReaderError, match=r"vol\.raw(\.json)?: .*" + message):
        read_volume(path)


def test_missing_or_broken_sidecar(tmp_path):
    path = tmp_path / "lonely.raw"
    path.write_bytes(b"\0" * 64)
    with pytest.raises(ReaderError, match=r"lonely\.raw: raw data needs a JSON sidecar lonely\.raw\.json"):
        read_volume(path)
    (tmp_path / "lonely.raw.json").write_text("{not json")
    with pytest.raises(ReaderError, match=r"lonely\.raw\.json: sidecar of lonely\.raw is not valid JSON"):
        read_volume(path)


def test_one_voxel_axis_and_nan(tmp_path):
    path = _raw(tmp_path, np.ones((4, 1, 5), np.float32))
    with pytest.raises(ReaderError, match=r"vol\.raw: .*at least 2 voxels"):
        read_volume(path)
    arr = np.ones((2, 3, 4), np.float32)
    arr[0, 1, 2] = np.nan
    path = _raw(tmp_path, arr)
    with pytest.raises(ReaderError, match=r"vol\.raw: data has 1 of 24 values missing"):
        read_volume(path)


def test_fake_huge_sparse_file_gives_too_large_not_oom(tmp_path):
    path = tmp_path / "huge.raw"
    shape = [2048, 2048, 4096]  # 64 GiB of float32, stored as a sparse file
    with open(path, "wb") as f:
        f.truncate(4 * 2048 * 2048 * 4096)
    (tmp_path / "huge.raw.json").write_text(json.dumps({"dtype": "float32", "shape": shape}))
    with pytest.raises(VolumeTooLargeError, match=r"huge\.raw: array 1×2048×2048×4096 needs 64\.0 GiB.*crop or "
                                                  r"downsample.*VOLSIGHT_MEMORY_LIMIT"):
        read_volume(path, max_bytes=8 << 30)
    info = file_info(path).variables[0]  # info still answers, without reading 64 GiB for statistics
    assert info.shape == tuple(shape) and info.value_range is None and "statistics skipped" in info.note


def test_memory_limit_override_and_parse(monkeypatch):
    assert io_memory.parse_size("512M") == 512 << 20 and io_memory.parse_size("2GiB") == 2 << 30
    assert io_memory.parse_size("1000") == 1000
    with pytest.raises(ValueError):
        io_memory.parse_size("lots")
    monkeypatch.setenv(io_memory.ENV_LIMIT, "3K")
    assert io_memory.available_memory() == 3072
    monkeypatch.delenv(io_memory.ENV_LIMIT)
    assert io_memory.available_memory() > 1 << 20  # MemAvailable of this machine
