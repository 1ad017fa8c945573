"""``volsight info``: per-file description, one-line reasons for unreadable files, exit status."""

from __future__ import annotations

import json
import sys
import types

import numpy as np
import pytest

from app.cli import main
from core.errors import FieldFileError
from core.io import write_volume
from core.volume import Volume


@pytest.fixture
def files(tmp_path, rng):
    scalar = tmp_path / "scalar.nc"
    write_volume(Volume(np.linspace(-2, 5, 4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)), scalar,
                 variable="density")
    seq = rng.random((11, 4, 5, 6, 3)).astype(np.float32)
    seq[0, 0, 0, 0, 0] = np.nan
    volsim = tmp_path / "volsim.npz"
    np.savez(volsim, seq)
    return scalar, volsim


def test_info_describes_variables(files, capsys):
    scalar, volsim = files
    assert main(["info", str(scalar), str(volsim)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{scalar}: NetCDF (NETCDF4)"
    assert out[1] == "  density  (z, y, x)  4×5×6  float32  scalar  range [-2, 5]  NaN 0"
    assert out[2] == f"{volsim}: .npz"
    assert out[3].startswith("  arr_0  11×4×5×6×3  float32  vector  11 frames  range [")
    assert out[3].endswith("NaN 1")


def test_unreadable_files_give_one_line_each_and_exit_2(files, tmp_path, capsys):
    scalar, _ = files
    bad = tmp_path / "broken.npz"
    bad.write_bytes(b"PK\x03\x04 definitely not a zip archive")
    odd = tmp_path / "notes.txt"
    odd.write_text("x")
    code = main(["info", str(bad), str(scalar), str(tmp_path / "missing.nc"), str(odd), str(tmp_path)])
    assert code == 2
    captured = capsys.readouterr()
    assert f"{scalar}: NetCDF (NETCDF4)" in captured.out  # the readable file is still described
    errors = captured.err.strip().splitlines()
    assert len(errors) == 4
    assert errors[0].startswith(f"{bad}: not a readable .npz (zip) file")
    assert errors[1] == f"{tmp_path / 'missing.nc'}: file not found"
    assert errors[2].startswith(f"{odd}: unknown file type .txt")
    assert errors[3] == f"{tmp_path}: is a folder, not a file"


def test_info_json_and_no_stats(files, capsys):
    scalar, volsim = files
    assert main(["info", "--json", "--no-stats", str(scalar), str(volsim), "nope.npy"]) == 2
    docs = json.loads(capsys.readouterr().out)
    assert docs[0]["variables"][0]["shape"] == [4, 5, 6] and docs[0]["variables"][0]["value_range"] is None
    assert docs[1]["variables"][0]["frames"] == 11 and docs[1]["variables"][0]["layout"] == "TDHWC"
    assert docs[2] == {"path": "nope.npy", "error": "nope.npy: file not found"}


def test_neural_field_files_are_described_through_models_store(tmp_path, capsys, monkeypatch):
    import models

    field = tmp_path / "fit.vsfield"
    field.write_bytes(b"field")
    broken = tmp_path / "broken.vsfield"
    broken.write_bytes(b"half")

    def field_info(path):
        if path.name == "broken.vsfield":
            raise FieldFileError(path, "truncated field file")
        return {"model": "APMGSRN", "channels": 1, "source_shape": (64, 64, 64)}

    fake = types.SimpleNamespace(is_field_file=lambda p: p.suffix == ".vsfield", field_info=field_info)
    monkeypatch.setitem(sys.modules, "models.store", fake)
    monkeypatch.setattr(models, "store", fake, raising=False)
    assert main(["info", str(field), str(broken)]) == 2
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [f"{field}: neural field", "  model: APMGSRN", "  channels: 1",
                                         "  source_shape: (64, 64, 64)"]
    assert captured.err.strip() == f"{broken}: truncated field file"


def test_version_is_the_installed_packages(capsys):
    from importlib import metadata

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"volsight {metadata.version('volsight')}"


def test_info_reads_volumes_and_field_headers_without_loading_torch(tmp_path):
    """Describing files is a header read: importing torch (about 2 s) is for the tensors, not for telling
    a field file apart or for its size and compression."""
    import subprocess

    from models.registry import MODEL_CLASSES, model_config

    np.save(tmp_path / "v.npy", np.zeros((4, 5, 6), np.float32))
    field = MODEL_CLASSES["apmgsrn"](model_config("apmgsrn", "small"), channels=1, value_range=(0.0, 1.0))
    field.save(tmp_path / "f.vsf")
    code = ("import sys\nfrom app.cli import main\n"
            f"assert main(['info', {str(tmp_path / 'v.npy')!r}, {str(tmp_path / 'f.vsf')!r}]) == 0\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "4×5×6" in run.stdout and "neural field" in run.stdout and "compression:" in run.stdout
