"""``volsight fit`` / ``volsight bake`` / ``volsight info`` on a field, end to end through app.cli."""

from __future__ import annotations

import io
import json

import numpy as np

from app.cli import main
from app.commands.fit import ProgressBar
from core.io.registry import read_volume, write_volume
from models.store import load_field

from .conftest import analytic_volume


def test_fit_bake_info_cli(tmp_path, capsys):
    src = tmp_path / "vol.npy"
    write_volume(analytic_volume(12), src)
    field_path = tmp_path / "f.vsf"
    rc = main(["fit", str(src), "--model", "apmgsrn", "--size", "small", "--iterations", "30", "--points", "2048",
               "--seed", "2", "-o", str(field_path)])
    assert rc == 0
    out = capsys.readouterr()
    assert "final PSNR over the full 12x12x12 grid" in out.out
    assert "it 30/30" in out.err and "\r" not in out.err  # not a terminal: plain lines
    # a 12^3 volume has far fewer values than even the small preset has parameters: the user is told
    assert "70,976 parameters for 1,728 values: the field is 41.1× larger than the volume" in out.out
    assert "note: the field stores more numbers than the volume; no apmgsrn preset compresses" in out.err
    field = load_field(field_path)
    assert field.summary["iterations"] == 30 and field.source_shape == (12, 12, 12)

    baked = tmp_path / "baked.nc"
    assert main(["bake", str(field_path), "--shape", "6", "7", "8", "-o", str(baked)]) == 0
    vol = read_volume(baked)
    assert vol.shape == (6, 7, 8)
    np.testing.assert_allclose(vol.data, field.bake((6, 7, 8)).data, rtol=1e-6, atol=1e-6)

    assert main(["info", str(field_path)]) == 0
    text = capsys.readouterr().out
    assert "neural field" in text and "apmgsrn" in text
    assert "compression: 0.0243 : 1 (the field is 41.1× larger than its source)" in text
    # the fit's loss log is in the file; the text output sums it up, --json gives all of it
    history = field.summary["history"]
    assert len(history) == 30 and history[-1][0] == 30
    assert (f"'history': '30 points, iterations 1-30, batch loss {history[0][1]:.3g} -> {history[-1][1]:.3g} "
            "(--json lists them)'") in text
    assert main(["info", "--json", str(field_path)]) == 0
    assert json.loads(capsys.readouterr().out)[0]["field"]["summary"]["history"] == history


def test_fit_cli_errors(tmp_path, capsys):
    assert main(["bake", str(tmp_path / "missing.vsf"), "-o", str(tmp_path / "x.nc")]) == 2
    assert "no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.vsf"
    bad.write_bytes(b"\x00" * 3)
    assert main(["bake", str(bad), "-o", str(tmp_path / "x.nc")]) == 2
    assert "too short" in capsys.readouterr().err
    # a damaged .vsf is reported by the field reader everywhere, not as an unknown volume type
    text = tmp_path / "text.vsf"
    text.write_text("not a field at all, just some text in a file")
    assert main(["render", str(text), "-o", str(tmp_path / "x.png")]) == 2
    assert "not a volsight field file" in capsys.readouterr().err
    assert main(["info", str(text)]) == 2
    captured = capsys.readouterr()
    assert "not a volsight field file" in captured.out + captured.err
    from app.loading import load_item
    from core.errors import VolsightError

    try:
        load_item(text)
    except VolsightError as exc:
        assert "not a volsight field file" in str(exc) and "text.vsf" in str(exc)
    else:
        raise AssertionError("a damaged field file loaded")


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_in_place_on_a_terminal():
    tty = _Tty()
    bar = ProgressBar(100, stream=tty, width=10)
    for i in range(1, 101):
        bar.update(i, 1e-3, 30.0, 0.1 * i)
    text = tty.getvalue()
    assert text.count("\r") == 100 and text.endswith("\n") and text.count("\n") == 1
    assert "[##########] 100.0% it 100/100" in text
    lines = io.StringIO()
    bar = ProgressBar(100, stream=lines, lines=4)
    for i in range(1, 101):
        bar.update(i, 1e-3, 30.0, 0.1 * i)
    assert len(lines.getvalue().splitlines()) == 5  # 0%.. in four steps plus the final line


def test_compare_and_matrix_take_a_field_baked_on_the_volumes_grid(tmp_path, capsys):
    """As the window: a field beside a volume on another grid is evaluated at that volume's voxels."""
    import json

    from models.fit import fit

    field, _ = fit(analytic_volume(12), {"model": "apmgsrn", "size": "small", "iterations": 5, "points": 512,
                                         "model_options": {"n_grids": 4, "grid_shape": [8, 8, 8]}}, device="cpu")
    fpath, vpath = tmp_path / "f.vsf", tmp_path / "v.npy"
    field.save(fpath)
    vol = analytic_volume(10)
    np.save(vpath, vol.data[0])
    expected = float(np.mean((vol.data - field.bake((10, 10, 10)).data) ** 2))

    assert main(["compare", str(vpath), str(fpath), "-m", "mse", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["options"]["fields_baked_on"] == {"B": [10, 10, 10]} and doc["b"]["shape"] == [10, 10, 10]
    assert abs(doc["distances"]["mse"]["value"] - expected) <= 1e-6 * expected
    assert main(["compare", str(fpath), str(vpath), "-m", "mse"]) == 0  # the field in A: baked on B's grid
    assert "(A: neural field baked on 10×10×10)" in capsys.readouterr().out
    assert main(["compare", str(vpath), str(fpath), "-m", "mse", "--csv"]) == 0
    assert "note: B is a neural field, baked on 10×10×10" in capsys.readouterr().err

    assert main(["matrix", "-m", "mse", "--quiet", str(vpath), str(fpath)]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert abs(float(rows[1].split(",")[2]) - expected) <= 1e-6 * expected


def test_a_sets_fields_are_baked_on_its_first_members_grid(tmp_path, monkeypatch):
    from app import loading
    from app.loading import LoadedItem, item_from_field, onto_first_grid
    from models.fit import fit

    field, _ = fit(analytic_volume(12), {"model": "apmgsrn", "size": "small", "iterations": 5, "points": 512,
                                         "model_options": {"n_grids": 4, "grid_shape": [8, 8, 8]}}, device="cpu")
    first = LoadedItem(volume=analytic_volume(10))
    items = onto_first_grid([first, item_from_field(field), LoadedItem(volume=analytic_volume(12))])
    assert [it.shape for it in items] == [(10, 10, 10), (10, 10, 10), (12, 12, 12)]  # volumes stay as they are
    np.testing.assert_allclose(items[1].volume.data, field.bake((10, 10, 10)).data, rtol=1e-6, atol=1e-6)
    assert items[0] is first and items[1].neural_field is field
    own = item_from_field(field)
    monkeypatch.setattr(loading, "MAX_BAKE_SIZE", 8)  # a first member beyond the bake limit: left to resampling
    assert onto_first_grid([first, own])[1] is own


def test_fit_cli_names_the_compression_and_a_preset_that_gives_one(tmp_path, capsys):
    src = tmp_path / "vol.npy"
    write_volume(analytic_volume(48), src)  # 110,592 values: small (70,976) compresses, medium does not
    assert main(["fit", str(src), "--size", "medium", "--iterations", "1", "--points", "512",
                 "-o", str(tmp_path / "m.vsf")]) == 0
    out = capsys.readouterr()
    assert "1,055,040 parameters for 110,592 values: the field is 9.54× larger than the volume" in out.out
    assert "--size small compresses it" in out.err
    assert main(["fit", str(src), "--size", "small", "--iterations", "1", "--points", "512",
                 "-o", str(tmp_path / "s.vsf")]) == 0
    out = capsys.readouterr()
    assert "70,976 parameters for 110,592 values: 1.56 : 1 compression" in out.out
    assert "note:" not in out.err


def test_compression_words():
    from models.registry import largest_compressing_size
    from models.store import compression_words

    assert compression_words(100, 370) == "3.7 : 1 compression"
    assert compression_words(358, 100, "A") == "the field is 3.58× larger than A"
    assert compression_words(0, 100) == "compression unknown"
    assert largest_compressing_size("apmgsrn", 64**3) == "small"
    assert largest_compressing_size("apmgsrn", 128**3) == "medium"
    assert largest_compressing_size("apmgsrn", 1000) is None
