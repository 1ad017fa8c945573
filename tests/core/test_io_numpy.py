""".npy / .npz reading and writing: layouts, VolSiM sequences, memory maps, refusals."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from core.errors import ReaderError, VolumeTooLargeError
from core.io import file_info, frame_count, read_sequence, read_volume, write_volume
from core.io import memory as io_memory
from core.volume import Volume


@pytest.mark.parametrize("shape, layout, expected", [
    ((4, 5, 6), "DHW", lambda a: a[None]),
    ((1, 4, 5, 6), "CDHW", lambda a: a),
    ((3, 4, 5, 6), "CDHW", lambda a: a),
    ((4, 5, 6, 3), "DHWC", lambda a: np.moveaxis(a, -1, 0)),
    ((4, 5, 6, 1), "DHWC", lambda a: np.moveaxis(a, -1, 0)),
    ((3, 4, 5, 3), "CDHW", lambda a: a),  # ambiguous: channel-first wins
])
def test_npy_layouts(tmp_path, rng, shape, layout, expected):
    arr = rng.standard_normal(shape).astype(np.float32)
    path = tmp_path / "a.npy"
    np.save(path, arr)
    vol = read_volume(path)
    assert vol.metadata["layout"] == layout and vol.name == "a"
    np.testing.assert_array_equal(vol.data, expected(arr))


def test_npy_float32_channel_first_is_memory_mapped_without_copy(tmp_path, rng):
    arr = rng.random((3, 4, 5, 6), dtype=np.float32)
    path = tmp_path / "m.npy"
    np.save(path, arr)
    vol = read_volume(path)
    assert isinstance(vol.data, np.memmap) and not vol.data.flags.writeable
    np.testing.assert_array_equal(vol.data, arr)
    # other dtypes and orders are converted to a float32 C-order copy
    np.save(path, np.asfortranarray(arr.astype(np.float64)))
    vol = read_volume(path)
    assert not isinstance(vol.data, np.memmap) and vol.data.dtype == np.float32 and vol.data.flags.c_contiguous
    np.testing.assert_allclose(vol.data, arr)


def test_npy_big_endian_and_integer(tmp_path, rng):
    arr = rng.integers(0, 1000, (4, 5, 6)).astype(">i4")
    np.save(tmp_path / "be.npy", arr)
    np.testing.assert_array_equal(read_volume(tmp_path / "be.npy").data[0], arr.astype(np.float32))


def test_volsim_sequence_npy_npz_and_named_keys(tmp_path, rng):
    seq = rng.random((11, 6, 7, 8, 3)).astype(np.float32)  # [frames, X, Y, Z, C]
    scal = rng.random((11, 6, 7, 8, 1)).astype(np.float32)
    np.save(tmp_path / "s.npy", seq)
    np.savez_compressed(tmp_path / "s.npz", seq)
    np.savez(tmp_path / "named.npz", velocity=seq, density=scal, params=np.arange(4.0))
    for path in (tmp_path / "s.npy", tmp_path / "s.npz"):
        assert frame_count(path) == 11
        v = read_volume(path, index=7)
        assert v.channels == 3 and v.shape == (6, 7, 8) and v.metadata["layout"] == "TDHWC"
        np.testing.assert_array_equal(v.data, np.moveaxis(seq[7], -1, 0))
    assert read_volume(tmp_path / "s.npz", index=7).name == "s:arr_0[7]"
    frames = read_sequence(tmp_path / "named.npz", variable="density")
    assert len(frames) == 11 and all(f.channels == 1 for f in frames)
    np.testing.assert_array_equal(frames[10].data[0], scal[10, ..., 0])
    assert read_volume(tmp_path / "named.npz").metadata["variable"] == "velocity"  # first usable key
    info = {v.name: v for v in file_info(tmp_path / "named.npz").variables}
    assert info["velocity"].frames == 11 and info["velocity"].channels == 3
    assert not info["params"].is_volume
    with pytest.raises(ReaderError, match=r"named\.npz: variable 'nope' not found; usable variables: velocity, "
                                          r"density"):
        read_volume(tmp_path / "named.npz", variable="nope")


def test_npz_frame_read_is_lazy(tmp_path, rng, monkeypatch):
    seq = rng.random((6, 4, 5, 6, 1)).astype(np.float32)
    path = tmp_path / "lazy.npz"
    np.savez(path, seq)
    monkeypatch.setattr(io_memory, "available_memory", lambda: 4 * 4 * 5 * 6 + 10)  # room for one frame only
    v = read_volume(path, index=4)
    np.testing.assert_array_equal(v.data[0], seq[4, ..., 0])
    np.save(tmp_path / "lazy.npy", seq)
    np.testing.assert_array_equal(read_volume(tmp_path / "lazy.npy", index=5).data[0], seq[5, ..., 0])


def test_four_d_without_channel_axis_is_a_sequence_and_layout_override(tmp_path, rng):
    arr = rng.random((5, 4, 6, 7)).astype(np.float32)
    np.save(tmp_path / "t.npy", arr)
    assert read_volume(tmp_path / "t.npy", index=2).metadata["layout"] == "TDHW"
    three = rng.random((3, 4, 6, 7)).astype(np.float32)
    np.save(tmp_path / "three.npy", three)
    assert read_volume(tmp_path / "three.npy").channels == 3  # the rule
    v = read_volume(tmp_path / "three.npy", layout="TDHW", index=1)  # the user knows better
    assert v.channels == 1
    np.testing.assert_array_equal(v.data[0], three[1])
    with pytest.raises(ReaderError, match=r"three\.npy: layout 'XYZW' does not fit"):
        read_volume(tmp_path / "three.npy", layout="XYZW")


def test_npz_round_trip_keeps_geometry_and_metadata(tmp_path, rng):
    vol = Volume(rng.standard_normal((3, 4, 5, 3)).astype(np.float32), spacing=(1, 2, 3), origin=(4, 5, 6),
                 name="vel", metadata={"units": "m/s", "step": np.int64(3)})
    for compress in (False, True):
        path = tmp_path / f"rt{compress}.npz"
        write_volume(vol, path, compress=compress)
        back = read_volume(path)
        np.testing.assert_array_equal(back.data, vol.data)
        assert back.spacing == (1, 2, 3) and back.origin == (4, 5, 6)
        assert back.metadata["units"] == "m/s" and back.metadata["step"] == 3
        assert back.metadata["layout"] == "CDHW" and back.metadata["written_name"] == "vel"
        with zipfile.ZipFile(path) as zf:
            assert sorted(zf.namelist()) == ["data.npy", "volsight.npy"]
        with np.load(path, allow_pickle=False) as z:  # plain numpy reads it without pickle
            assert json.loads(z["volsight"].tobytes())["name"] == "vel"


def test_npy_round_trip(tmp_path, rng):
    for c in (1, 3):
        vol = Volume(rng.random((c, 4, 5, 6), dtype=np.float32))
        write_volume(vol, tmp_path / f"w{c}.npy")
        np.testing.assert_array_equal(read_volume(tmp_path / f"w{c}.npy").data, vol.data)


def test_object_arrays_are_refused_without_unpickling(tmp_path):
    arr = np.empty((2, 2, 2), dtype=object)
    np.save(tmp_path / "obj.npy", arr, allow_pickle=True)
    with pytest.raises(ReaderError, match=r"obj\.npy: .*Python objects.*never unpickles"):
        read_volume(tmp_path / "obj.npy")
    np.savez(tmp_path / "obj.npz", x=arr)
    with pytest.raises(ReaderError, match=r"obj\.npz: .*Python objects"):
        read_volume(tmp_path / "obj.npz", variable="x")
    with pytest.raises(ReaderError, match=r"obj\.npz: no numeric array with 3 or more dimensions"):
        read_volume(tmp_path / "obj.npz")


@pytest.mark.parametrize("shape, message", [
    ((4, 5), r"2 dimension\(s\)"),
    ((2, 2, 2, 2, 2, 2), r"6 dimension\(s\)"),
    ((2, 4, 5, 6, 7), r"5D array needs a channel axis"),
    ((1, 4, 5), r"at least 2 voxels"),
    ((3, 4, 1, 5), r"at least 2 voxels"),
    ((0, 4, 5), r"empty"),
])
def test_wrong_dimensionality(tmp_path, shape, message):
    np.save(tmp_path / "bad.npy", np.ones(shape, np.float32))
    with pytest.raises(ReaderError, match=r"bad\.npy: .*" + message):
        read_volume(tmp_path / "bad.npy")
    np.savez(tmp_path / "bad.npz", v=np.ones(shape, np.float32))
    with pytest.raises(ReaderError, match=r"bad\.npz"):
        read_volume(tmp_path / "bad.npz", variable="v")


def test_non_numeric_dtypes(tmp_path):
    np.save(tmp_path / "c.npy", np.ones((3, 3, 3), np.complex64))
    with pytest.raises(ReaderError, match=r"c\.npy: .*dtype complex64"):
        read_volume(tmp_path / "c.npy")
    np.save(tmp_path / "s.npy", np.full((3, 3, 3), "a"))
    with pytest.raises(ReaderError, match=r"s\.npy: .*dtype <U1"):
        read_volume(tmp_path / "s.npy")


def test_nan_and_inf(tmp_path):
    arr = np.ones((3, 4, 5), np.float32)
    arr[1, 1, 1], arr[2, 2, 2] = np.nan, -np.inf
    np.save(tmp_path / "n.npy", arr)
    with pytest.raises(ReaderError, match=r"n\.npy: data has 2 of 60 values missing or non-finite.*nan_policy"):
        read_volume(tmp_path / "n.npy")
    assert read_volume(tmp_path / "n.npy", nan_policy="allow").nan_count() == 2
    assert file_info(tmp_path / "n.npy").variables[0].nan_count == 2


def test_truncated_and_corrupt(tmp_path, rng):
    np.save(tmp_path / "ok.npy", rng.random((6, 6, 6)).astype(np.float32))
    raw = (tmp_path / "ok.npy").read_bytes()
    for cut in (len(raw) - 1, 200, 60, 5):
        (tmp_path / "cut.npy").write_bytes(raw[:cut])
        with pytest.raises(ReaderError, match=r"cut\.npy: "):
            read_volume(tmp_path / "cut.npy")
    np.savez_compressed(tmp_path / "ok.npz", rng.random((6, 6, 6)).astype(np.float32))
    raw = (tmp_path / "ok.npz").read_bytes()
    for cut in (len(raw) - 10, len(raw) // 2, 30):
        (tmp_path / "cut.npz").write_bytes(raw[:cut])
        with pytest.raises(ReaderError, match=r"cut\.npz: "):
            read_volume(tmp_path / "cut.npz")
    corrupt = bytearray(raw)
    corrupt[len(raw) // 3: len(raw) // 3 + 40] = b"\xff" * 40  # inside the deflate stream
    (tmp_path / "corrupt.npz").write_bytes(bytes(corrupt))
    with pytest.raises(ReaderError, match=r"corrupt\.npz: "):
        read_volume(tmp_path / "corrupt.npz")


def test_too_large_npz_member(tmp_path, rng, monkeypatch):
    np.savez(tmp_path / "big.npz", rng.random((8, 8, 8)).astype(np.float32))
    monkeypatch.setenv(io_memory.ENV_LIMIT, "1K")
    with pytest.raises(VolumeTooLargeError, match=r"big\.npz: variable 'arr_0' 1×8×8×8 needs 4\.0 KiB as float32 "
                                                  r"\(with read buffers\) but only 1\.0 KiB"):
        read_volume(tmp_path / "big.npz")
