import os

import pytest

from core.io.atomic import atomic_path, write_bytes_atomic


def test_new_file_gets_umask_mode_and_replaces_atomically(tmp_path):
    target = tmp_path / "out.bin"
    old = os.umask(0o022)
    try:
        write_bytes_atomic(target, b"abc")
    finally:
        os.umask(old)
    assert target.read_bytes() == b"abc"
    assert target.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]  # no temporary left behind


def test_existing_file_keeps_its_mode_and_failure_leaves_it_untouched(tmp_path):
    target = tmp_path / "keep.bin"
    target.write_bytes(b"old")
    target.chmod(0o640)
    write_bytes_atomic(target, b"new")
    assert target.read_bytes() == b"new" and target.stat().st_mode & 0o777 == 0o640
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("writer failed")
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.bin"]
