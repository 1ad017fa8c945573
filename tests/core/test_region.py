"""Regions of interest: parsing, cropping, comparisons restricted to a box (also across grids and on the CLI)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from app.cli import main
from core.compare import compare
from core.errors import MetricError
from core.region import crop, crop_pair, format_region, is_whole, parse_region, region_onto_grid
from core.volume import Volume


@pytest.fixture
def pair(rng):
    a = rng.random((20, 24, 28), dtype=np.float32)
    b = np.clip(a + 0.1 * rng.standard_normal(a.shape).astype(np.float32), 0, 1)
    b[:, :, :12] += 0.5  # the pair differs most in the low x
    return Volume.from_array(a, name="a", spacing=(2.0, 1.0, 0.5)), Volume.from_array(b, name="b")


def test_parse_and_format_regions():
    shape = (20, 24, 28)
    assert parse_region(":,4:12,:", shape) == ((0, 20), (4, 12), (0, 28))
    assert parse_region(" 2:18 , : , 10:", shape) == ((2, 18), (0, 24), (10, 28))
    assert format_region(((2, 18), (0, 24), (10, 28))) == "2:18,0:24,10:28"
    assert is_whole(None, shape) and is_whole(parse_region(":,:,:", shape), shape)
    assert not is_whole(parse_region(":,:,1:", shape), shape)
    for text, why in (("1:5,2:6", "three ranges"), (":,:,30:40", "x 30:40 is outside 0:28"),
                      ("3:4,:,:", "z 3:4 has fewer than 2 voxels"), (":,a:b,:", "not two whole numbers"),
                      (":,5,:", "not start:stop"), ("8:2,:,:", "outside")):
        with pytest.raises(MetricError, match=why):
            parse_region(text, shape)


def test_crop_keeps_the_voxels_and_moves_the_origin(pair):
    a, _ = pair
    box = ((2, 10), (0, 24), (5, 25))
    c = crop(a, box)
    np.testing.assert_array_equal(c.data, a.data[:, 2:10, :, 5:25])
    assert c.origin == (4.0, 0.0, 2.5) and c.spacing == a.spacing and c.name == "a[2:10,0:24,5:25]"


def test_compare_in_a_region_is_the_comparison_of_the_crops(pair):
    a, b = pair
    box = "0:20,0:24,0:12"
    inside = compare(a, b, ["mse", "ssim", "psnr"], region=box)
    box_t = parse_region(box, a.shape)
    direct = compare(crop(a, box_t), crop(b, box_t), ["mse", "ssim", "psnr"])
    for m in ("mse", "ssim", "psnr"):
        assert inside.value(m) == direct.value(m)
    assert inside.options["region"] == box
    outside = compare(a, b, ["mse"], region="0:20,0:24,12:28")
    assert inside.value("mse") > 10 * outside.value("mse")  # the box where they differ, and where they do not
    assert json.loads(inside.to_json())["options"]["region"] == box


def test_a_region_on_different_grids_is_taken_from_b_resampled_onto_a(pair):
    a, b = pair
    coarse = Volume.from_array(b.data[:, ::2, ::2, ::2], name="coarse")  # 10 x 12 x 14
    got = compare(a, coarse, ["mse"], region=":,:,0:10", resample=a.shape)
    ca, cb = crop_pair(a, coarse, parse_region(":,:,0:10", a.shape))
    assert cb.shape == ca.shape == (20, 24, 10)
    assert got.value("mse") == compare(ca, cb, ["mse"]).value("mse")
    assert "resample" not in got.options  # A's grid was the only one asked for


def test_compare_command_takes_a_region(pair, tmp_path, capsys):
    a, b = pair
    pa, pb = tmp_path / "a.npy", tmp_path / "b.npy"
    np.save(pa, a.data[0])
    np.save(pb, b.data[0])
    assert main(["compare", str(pa), str(pb), "-m", "mse", "--region", ":,:,0:10", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["options"]["region"] == "0:20,0:24,0:10"
    assert doc["distances"]["mse"]["value"] == pytest.approx(float(np.mean((a.data[0, :, :, :10]
                                                                            - b.data[0, :, :, :10]) ** 2)))
    assert main(["compare", str(pa), str(pb), "-m", "mse", "--region", ":,:,27:28"]) == 2
    assert "x 27:28 has fewer than 2 voxels" in capsys.readouterr().err


def test_matrix_command_takes_a_region(pair, tmp_path, capsys):
    from core.metrics.matrix import distance_matrix
    from core.region import crop_all

    a, b = pair
    paths = []
    for v in (a, b, a):
        paths.append(tmp_path / f"{len(paths)}.npy")
        np.save(paths[-1], v.data[0])
    assert main(["matrix", *map(str, paths), "-m", "mse", "--region", ":,:,0:12", "-q"]) == 0
    import csv
    import io

    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    got = np.array([[float(x) for x in r[1:]] for r in rows[1:]])
    np.testing.assert_allclose(got, distance_matrix(crop_all([a, b, a], ":,:,0:12"), "mse"), rtol=1e-12)
    assert rows[1][0] == "0[0:20,0:24,0:12]"
    assert main(["matrix", *map(str, paths), "-m", "mse", "--region", ":,:,20:40", "-q"]) == 2
    assert "0: region x 20:40 is outside 0:28 (its grid is (20, 24, 28))" in capsys.readouterr().err


def test_embed_places_a_region_map_in_the_whole_grid():
    from core.region import embed

    values = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4) + 1
    out = embed(values, ((1, 3), (0, 3), (2, 6)), (4, 3, 6))
    assert out.shape == (4, 3, 6) and out.dtype == np.float32
    np.testing.assert_array_equal(out[1:3, :, 2:6], values)
    assert out.sum() == values.sum()  # zero elsewhere
    with pytest.raises(MetricError, match="does not fill region"):
        embed(values, ((0, 2), (0, 3), (0, 5)), (4, 3, 6))


def test_volsim_compares_an_odd_grid_or_region_on_the_nearest_grid_it_takes(pair, tmp_path, capsys):
    """The default metrics include VolSiM, which takes only multiples of 4: a pair (or region) on another grid
    is compared on the nearest grid it takes, said in the table, instead of failing every metric."""
    from core.metrics.registry import get_metric

    a, b = pair
    pa, pb = tmp_path / "a.npy", tmp_path / "b.npy"
    np.save(pa, a.data[0, :19, :, :])  # 19 × 24 × 28: z is not a multiple of 4
    np.save(pb, b.data[0, :19, :, :])
    assert main(["compare", str(pa), str(pb)]) == 0
    out = capsys.readouterr().out
    assert "volsim" in out and "(distance, on 20×24×28)" in out and "mse" in out
    # the same region on the command line: the crop 19 × 24 × 10 goes to 20 × 24 × 8
    assert main(["compare", str(pa), str(pb), "-m", "volsim,mse", "--region", ":,:,0:10", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["distances"]["volsim"]["info"]["resampled_to"] == "20×24×8"
    assert "resampled_to" not in doc["distances"]["mse"]["info"]
    assert main(["compare", str(pa), str(pb), "-m", "volsim,mse", "--csv"]) == 0  # CSV: the note on stderr
    assert capsys.readouterr().err.strip() == "note: volsim computed on the grid 20×24×28"
    volsim = get_metric("volsim")
    ca, cb = crop_pair(Volume.from_array(np.load(pa)), Volume.from_array(np.load(pb)), ((0, 19), (0, 24), (0, 10)))
    assert doc["distances"]["volsim"]["value"] == pytest.approx(volsim.distance(ca, cb, resample=(20, 24, 8)).value,
                                                                rel=1e-6)
    # an explicit --resample the network cannot take is still refused, with the grid it would take
    assert main(["compare", str(pa), str(pb), "-m", "volsim", "--resample", "30"]) == 2
    assert "(32, 32, 32), the nearest grid it takes" in capsys.readouterr().err
    # and so does a matrix of such volumes, saying so on stderr
    assert main(["matrix", "-m", "volsim", str(pa), str(pb)]) == 0
    captured = capsys.readouterr()
    assert "comparing on 20×24×28, the nearest grid it takes" in captured.err
    value = float(captured.out.splitlines()[1].split(",")[2])
    assert value == pytest.approx(volsim.distance(Volume.from_array(np.load(pa)), Volume.from_array(np.load(pb)),
                                                  resample=(20, 24, 28)).value, rel=1e-5)


def test_matrix_command_compares_volumes_on_other_grids_on_the_first_ones(pair, tmp_path, capsys):
    from core.metrics.matrix import distance_matrix
    from core.region import onto_grid

    a, b = pair
    small = Volume.from_array(b.data[0, ::2, ::2, ::2].copy(), name="small")
    paths = [tmp_path / "a.npy", tmp_path / "small.npy"]
    np.save(paths[0], a.data[0])
    np.save(paths[1], small.data[0])
    assert main(["matrix", "-m", "mse", *map(str, paths)]) == 0
    captured = capsys.readouterr()
    assert "comparing on the grid of a 20×24×28" in captured.err
    value = float(captured.out.splitlines()[1].split(",")[2])
    expected = distance_matrix([Volume.from_array(a.data[0]), onto_grid(small, a.shape)], "mse")[0, 1]
    assert value == pytest.approx(expected, rel=1e-9)


def test_compare_onto_a_puts_b_on_a_grid_as_the_window_does(pair, tmp_path, capsys):
    from app import comparing

    a, b = pair
    small = Volume.from_array(b.data[0, ::2, ::2, ::2].copy(), name="small")
    pa, ps = tmp_path / "a.npy", tmp_path / "small.npy"
    np.save(pa, a.data[0])
    np.save(ps, small.data[0])
    assert main(["compare", str(pa), str(ps), "-m", "mse"]) == 2
    assert "add --onto-a to compare B resampled onto A's grid" in capsys.readouterr().err  # the way out is named
    assert main(["compare", str(pa), str(ps), "-m", "mse,ssim", "--onto-a", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["options"]["b_resampled_from"] == [10, 12, 14] and doc["b"]["shape"] == [20, 24, 28]
    va, vs = Volume.from_array(np.load(pa), name="a"), Volume.from_array(np.load(ps), name="small")
    for m in ("mse", "ssim"):  # the window's numbers for that pair (B resampled onto A's grid)
        shown = comparing.distance_of(va, vs, m, resample=comparing.common_grid(va, vs)).value
        assert doc["distances"][m]["value"] == pytest.approx(shown, rel=1e-6)
    assert main(["compare", str(pa), str(ps), "-m", "mse", "--onto-a"]) == 0
    assert "(resampled from (10, 12, 14))" in capsys.readouterr().out
    assert main(["compare", str(pa), str(ps), "-m", "mse", "--onto-a", "--csv"]) == 0
    captured = capsys.readouterr()
    assert "B (small) resampled from (10, 12, 14) onto A's grid (20, 24, 28)" in captured.err
    assert captured.out.splitlines()[0].startswith("a,b,metric")  # the CSV itself stays one table


def test_a_region_maps_onto_another_grid_of_the_same_domain():
    box = ((2, 8), (0, 10), (3, 5))
    assert region_onto_grid(box, (10, 10, 10), (10, 10, 10)) == box
    # twice as fine (19 voxel centres where there were 10, corner-aligned): centre i goes to 2i
    assert region_onto_grid(box, (10, 10, 10), (19, 19, 19)) == ((4, 15), (0, 19), (6, 9))
    # coarser: rounded outwards, so the box still covers the region, and never thinner than 2 voxels
    assert region_onto_grid(((4, 6), (0, 10), (8, 10)), (10, 10, 10), (4, 4, 4)) == ((1, 3), (0, 4), (2, 4))
    with pytest.raises(MetricError, match="outside"):
        region_onto_grid(((0, 12), (0, 10), (0, 10)), (10, 10, 10), (4, 4, 4))
