"""The reader registry: choice by extension and content, bad paths, atomic writes."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import ReaderError, UnsupportedFormatError, VolsightError, WriterError
from core.io import read_volume, reader_for, write_volume
from core.volume import Volume


@pytest.fixture
def vol(rng) -> Volume:
    return Volume(rng.random((1, 4, 5, 6), dtype=np.float32), spacing=(1, 2, 3), name="v")


@pytest.mark.parametrize("ext", [".nc", ".npz", ".npy", ".raw"])
def test_every_writer_round_trips_through_read_volume(tmp_path, vol, ext):
    path = tmp_path / f"out{ext}"
    assert write_volume(vol, path) == path
    back = read_volume(path)
    np.testing.assert_array_equal(back.data, vol.data)
    assert back.source == str(path)
    if ext != ".npy":  # a bare .npy keeps no geometry
        assert back.spacing == (1, 2, 3)


@pytest.mark.parametrize("written, renamed, reader", [
    ("a.nc", "a.dat", "netcdf"),  # known extension of another format: content wins
    ("a.nc", "a", "netcdf"),
    ("a.npy", "a.bin", "npy"),
    ("a.npz", "a.volume", "npz"),
    ("a.npy", "a.nc", "npy"),
])
def test_content_sniffing_beats_missing_or_misleading_extension(tmp_path, vol, written, renamed, reader):
    write_volume(vol, tmp_path / written)
    (tmp_path / written).rename(tmp_path / renamed)
    assert reader_for(tmp_path / renamed).name == reader
    np.testing.assert_array_equal(read_volume(tmp_path / renamed).data, vol.data)


def test_unknown_extension_missing_file_and_folder(tmp_path):
    odd = tmp_path / "notes.xyz"
    odd.write_text("hello")
    with pytest.raises(UnsupportedFormatError, match=r"notes\.xyz: unknown file type \.xyz; volsight reads .*\.nc"):
        read_volume(odd)
    with pytest.raises(ReaderError, match=r"absent\.nc: file not found"):
        read_volume(tmp_path / "absent.nc")
    folder = tmp_path / "folder.nc"
    folder.mkdir()
    with pytest.raises(ReaderError, match=r"folder\.nc: is a folder"):
        read_volume(folder)
    empty = tmp_path / "empty.npy"
    empty.write_bytes(b"")
    with pytest.raises(ReaderError, match=r"empty\.npy: "):
        read_volume(empty)


def test_unknown_write_extension(tmp_path, vol):
    with pytest.raises(WriterError, match=r"out\.tiff: cannot write \.tiff files; volsight writes .*\.npz"):
        write_volume(vol, tmp_path / "out.tiff")


def test_failed_write_leaves_target_and_folder_untouched(tmp_path, vol, monkeypatch):
    path = tmp_path / "keep.npz"
    write_volume(vol, path)
    before = path.read_bytes()

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", broken)
    with pytest.raises(WriterError, match=r"keep\.npz: cannot write \.npz \(No space left on device\)"):
        write_volume(vol.evolve(name="other"), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.npz"]  # no temporary file left behind


def test_errors_are_one_family(tmp_path):
    assert issubclass(UnsupportedFormatError, ReaderError) and issubclass(ReaderError, VolsightError)
    with pytest.raises(VolsightError):
        read_volume(tmp_path / "missing.npz")
