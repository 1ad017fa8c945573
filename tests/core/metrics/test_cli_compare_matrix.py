"""``volsight compare / matrix / metrics`` end to end, with .npy files in the reference [X, Y, Z, C] layout."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import pickle
import re

import numpy as np
import pytest

from app.cli import main


@pytest.fixture(scope="module")
def reference(shared_dir):
    spec = importlib.util.spec_from_file_location("make_inputs", shared_dir / "reference" / "make_inputs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    records = json.loads((shared_dir / "reference" / "reference_distances.json").read_text())
    return mod, records


@pytest.fixture(scope="module")
def weights(shared_dir):
    return str(shared_dir / "weights" / "VOLSIM" / "MS_3scales.pth")


def _record(records, group, index=0):
    return [r for r in records if r["group"] == group][index]


def _save_pair(tmp_path, mod, rec):
    a, b = mod.make_pair(rec["input"]["recipe"])  # channel-last [X, Y, Z, C]
    pa, pb = tmp_path / "a.npy", tmp_path / "b.npy"
    np.save(pa, a)
    np.save(pb, b)
    return str(pa), str(pb)


@pytest.mark.parametrize("group", ["volsim_vol64_c1_noise_individual_norm", "volsim_vol64_c3_blend_individual_norm",
                                   "volsim_vol64_c1_noise_individual_nonorm"])
def test_compare_reproduces_reference_from_channel_last_npy(tmp_path, capsys, reference, weights, group):
    mod, records = reference
    rec = _record(records, group, 1)
    pa, pb = _save_pair(tmp_path, mod, rec)
    flag = "--normalize" if "normalize=True" in rec["call"] else "--no-normalize"
    assert main(["compare", pa, pb, "--metric", "volsim,mse", "--weights", weights, flag, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["distances"]["volsim"]["value"] == pytest.approx(rec["distance"], rel=1e-5)
    assert data["a"]["shape"] == [64, 64, 64]
    assert data["a"]["channels"] == rec["input"]["recipe"]["channels"]


def test_compare_table_csv_and_output_file(tmp_path, capsys, reference):
    mod, records = reference
    pa, pb = _save_pair(tmp_path, mod, _record(records, "volsim_vol64_c1_noise_individual_norm"))
    assert main(["compare", pa, pb]) == 0
    out = capsys.readouterr().out
    assert "ssim" in out and "similarity" in out
    assert "volsim" in out and "shares: s0.l0" in out  # volsight's own weights are installed: VolSiM by default
    target = tmp_path / "out" / "result.csv"
    assert main(["compare", pa, pb, "--metric", "mse,psnr", "--data-range", "2", "--csv", "-o", str(target)]) == 0
    rows = list(csv.DictReader(io.StringIO(target.read_text())))
    assert [r["metric"] for r in rows] == ["mse", "psnr"]


def test_compare_errors_exit_non_zero(tmp_path, capsys, reference, shared_dir, monkeypatch):
    mod, records = reference
    pa, pb = _save_pair(tmp_path, mod, _record(records, "volsim_vol64_c1_noise_individual_norm"))
    small = tmp_path / "small.npy"
    np.save(small, np.zeros((32, 32, 32, 1), np.float32))
    assert main(["compare", pa, str(small), "--metric", "mse,psnr,ssim"]) == 2
    err = capsys.readouterr().err  # one line for the pair, naming both files, not one per metric
    assert err.count("\n") == 1 and "are on different grids: add --onto-a" in err
    assert f"B ({small}, 32×32×32)" in err and f"A ({pa}, 64×64×64)" in err
    vector = tmp_path / "vector.npy"
    np.save(vector, np.zeros((3, 64, 64, 64), np.float32))
    assert main(["compare", pa, str(vector), "--metric", "mse", "--onto-a"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"B ({vector}) 3" in err and "vector field with a scalar one" in err
    assert main(["compare", pa, str(small), "--metric", "mse", "--onto-a"]) == 0
    capsys.readouterr()
    assert main(["compare", pa, str(small), "--metric", "mse", "--resample", "32"]) == 0
    capsys.readouterr()

    monkeypatch.setenv("VOLSIGHT_VOLSIM_WEIGHTS", str(tmp_path / "absent.safetensors"))
    assert main(["compare", pa, pb, "--metric", "volsim"]) == 2
    err = capsys.readouterr().err
    assert "no VolSiM weights are installed" in err and "--weights PATH" in err
    assert main(["compare", pa, pb]) == 0  # no weights: the default set is the classical one
    assert "volsim" not in capsys.readouterr().out

    lsim = str(shared_dir / "weights" / "LSIM" / "LSiM.pth")
    assert main(["compare", pa, pb, "--metric", "volsim", "--weights", lsim]) == 2
    assert "not a VolSiM checkpoint" in capsys.readouterr().err

    evil = tmp_path / "evil.pth"
    with open(evil, "wb") as f:
        pickle.dump({"stateDict": _Payload()}, f, protocol=2)
    assert main(["compare", pa, pb, "--metric", "volsim", "--weights", str(evil)]) == 2
    assert "evil.pth" in capsys.readouterr().err

    # a 2D metric slices along all three axes unless told otherwise, as the window does
    assert main(["compare", pa, pb, "--metric", "watson-dct", "--json"]) == 0
    default = json.loads(capsys.readouterr().out)["distances"]["watson-dct"]["value"]
    assert main(["compare", pa, pb, "--metric", "watson-dct", "--axis", "all", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["distances"]["watson-dct"]["value"] == default
    assert main(["compare", pa, pb, "--metric", "watson-dct", "--axis", "z", "--stride", "16"]) == 0
    assert "watson-dct" in capsys.readouterr().out
    assert main(["compare", pa, pb, "--metric", "mse", "--axis", "z"]) == 2
    assert "2D metrics" in capsys.readouterr().err
    assert main(["compare", pa, pb, "--metric", "nosuch"]) == 2
    assert "unknown metric" in capsys.readouterr().err
    assert main(["compare", pa, str(tmp_path / "missing.npy")]) == 2
    capsys.readouterr()

    # NaN/Inf values (a masked region) are refused with the way out named; --nan zero reads them as 0
    masked = np.load(pa)
    masked[:8] = np.nan
    pm = str(tmp_path / "masked.npy")
    np.save(pm, masked)
    assert main(["compare", pa, pm, "--metric", "mse"]) == 2
    assert "masked.npy" in (err := capsys.readouterr().err) and "--nan zero" in err
    assert main(["compare", pa, pm, "--metric", "mse", "--nan", "zero", "--json"]) == 0
    filled = np.where(np.isfinite(masked), masked, 0.0)
    expected = float(np.mean((np.load(pa).astype(np.float64) - filled) ** 2))
    assert json.loads(capsys.readouterr().out)["distances"]["mse"]["value"] == pytest.approx(expected, rel=1e-5)
    assert main(["matrix", pa, pb, pm, "--metric", "mse", "--nan", "zero"]) == 0


class _Payload:
    def __reduce__(self):
        return (print, ("never runs",))


def test_matrix_command(tmp_path, capsys, weights):
    rng = np.random.default_rng(3)
    base = rng.normal(size=(32, 32, 32)).astype(np.float32)
    files = []
    for k in range(3):
        p = tmp_path / f"v{k}.npy"
        np.save(p, base + 0.2 * k * rng.normal(size=base.shape).astype(np.float32))
        files.append(str(p))
    out = tmp_path / "m.csv"
    assert main(["matrix", *files, "--metric", "volsim", "--weights", weights, "-o", str(out), "-q"]) == 0
    rows = list(csv.reader(io.StringIO(out.read_text())))
    assert rows[0] == ["", "v0", "v1", "v2"]
    m = np.array([[float(x) for x in r[1:]] for r in rows[1:]])
    assert np.allclose(m, m.T) and np.all(np.diag(m) == 0) and m[0, 2] > m[0, 1] > 0
    assert main(["matrix", *files, "--metric", "rmse"]) == 0
    captured = capsys.readouterr()
    assert "v2" in captured.out
    # stderr is not a terminal here: whole progress lines, no carriage returns piling up in a log
    assert "\r" not in captured.err
    assert re.fullmatch(r"(\d+)/\1", captured.err.strip().splitlines()[-1])
    assert main(["matrix", files[0], "--metric", "rmse"]) == 2


def test_metrics_command(capsys):
    assert main(["metrics"]) == 0
    out = capsys.readouterr().out
    for name in ("mse", "rmse", "psnr", "ssim", "ncc", "lcc", "volsim"):
        assert name in out
    assert "preprocessing" in out
    assert main(["metrics", "--json"]) == 0
    items = {d["name"]: d for d in json.loads(capsys.readouterr().out)}
    assert items["volsim"]["learned"] and items["volsim"]["dims"] == [3]
    assert items["rmse"]["metric_properties"] is True


def test_output_into_a_closed_pipe_ends_quietly():
    """`volsight metrics | head -1`: the reader leaves early; no traceback, the shell's SIGPIPE status."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "metrics"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()  # before the command writes anything: its first write meets a closed pipe
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert "Traceback" not in err and "BrokenPipe" not in err


def test_a_metric_that_cannot_take_the_pair_leaves_the_others_standing(tmp_path, capsys):
    """SSIM needs 11 voxels along every axis: on a 6-voxel slab it gives no value, with its reason, while the
    other metrics' values still come in every output form; the exit status says that one failed."""
    from core.compare import compare
    from core.errors import MetricError
    from core.volume import Volume

    rng = np.random.default_rng(5)
    a = rng.random((6, 24, 24), dtype=np.float32)
    b = a + 0.1 * rng.random((6, 24, 24), dtype=np.float32)
    pa, pb = str(tmp_path / "a.npy"), str(tmp_path / "b.npy")
    np.save(pa, a)
    np.save(pb, b)
    va, vb = Volume.from_array(a, name="a"), Volume.from_array(b, name="b")
    with pytest.raises(MetricError, match="at least 11 voxels"):
        compare(va, vb, ["mse", "ssim"])
    got = compare(va, vb, ["mse", "ssim", "ncc"], on_error="report")
    assert list(got.distances) == ["mse", "ncc"] and "at least 11 voxels" in got.errors["ssim"]
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    assert got.value("mse") == pytest.approx(mse, rel=1e-6)

    assert main(["compare", pa, pb, "--metric", "mse,ssim"]) == 2
    out, err = capsys.readouterr()
    assert re.search(r"^\s+mse  \S+  \(distance\)$", out, re.M)
    assert "    ssim  no value: every axis needs at least 11 voxels, got (6, 24, 24)" in out
    assert err.strip() == "volsight compare: ssim: every axis needs at least 11 voxels, got (6, 24, 24)"
    assert main(["compare", pa, pb, "--metric", "mse,ssim", "--json"]) == 2
    doc = json.loads(capsys.readouterr().out)
    assert doc["distances"]["mse"]["value"] == pytest.approx(mse, rel=1e-6) and "ssim" in doc["errors"]
    assert main(["compare", pa, pb, "--metric", "mse,ssim", "--csv"]) == 2
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["metric"], r["kind"]) for r in rows] == [("mse", "distance"), ("ssim", "error")]
    assert "at least 11 voxels" in rows[1]["contribution"]


def test_matrix_takes_a_folder_of_time_steps_in_natural_order(tmp_path, capsys):
    rng = np.random.default_rng(2)
    base = rng.random((8, 8, 8), dtype=np.float32)
    for i in (10, 9, 1):
        np.save(tmp_path / f"t{i}.npy", base + 0.01 * i)
    assert main(["matrix", str(tmp_path), "--metric", "mse"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0] == ["", "t1", "t9", "t10"]
    assert float(rows[1][3]) == pytest.approx(0.09**2, rel=1e-4)  # t1 to t10: 0.09 apart everywhere
    (tmp_path / "empty").mkdir()
    assert main(["matrix", str(tmp_path / "empty"), "--metric", "mse"]) == 2
    assert "holds no volume or neural-field files" in capsys.readouterr().err


def test_matrix_labels_tell_members_of_one_name_apart(tmp_path, capsys):
    from types import SimpleNamespace

    from app.loading import distinct_labels

    items = [SimpleNamespace(name=n, path=p) for n, p in (("plume", "/d/plume.nc"), ("plume-apmgsrn", "/d/a.vsf"),
                                                          ("plume-apmgsrn", "/d/b.vsf"), ("x", "/e/f.vsf"),
                                                          ("x", "/g/f.vsf"), ("y", None))]
    assert distinct_labels(items) == ["plume", "a.vsf", "b.vsf", "f.vsf", "f.vsf (2)", "y"]
    rng = np.random.default_rng(0)
    for folder in ("one", "two"):  # two files of one name (and so one volume name) in two folders
        (tmp_path / folder).mkdir()
        np.save(tmp_path / folder / "v.npy", rng.random((8, 8, 8)).astype(np.float32))
    np.save(tmp_path / "w.npy", rng.random((8, 8, 8)).astype(np.float32))
    assert main(["matrix", str(tmp_path / "w.npy"), str(tmp_path / "one" / "v.npy"), str(tmp_path / "two" / "v.npy"),
                 "--metric", "mse", "--quiet"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == ",w,v.npy,v.npy (2)"
