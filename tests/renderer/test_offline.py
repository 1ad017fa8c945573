import json

import numpy as np
import pytest
from PIL import Image

from app.cli import main
from core.demo import smoke_plume
from core.volume import Volume
from renderer.camera import OrbitCamera
from renderer.offline import render_offline, turntable
from renderer.transfer import TransferFunction


@pytest.fixture(scope="module")
def plume() -> Volume:
    return Volume.from_array(smoke_plume(24, seed=5), name="plume24")


def test_render_offline_image_and_progress(plume):
    passes = []
    img = render_offline(plume, OrbitCamera(), None, (40, 30), method="mip", spp=64, device="cpu",
                         progress=lambda im, i: passes.append(im))
    assert img.shape == (30, 40, 4) and img.dtype == np.uint8 and np.all(img[..., 3] == 255)
    assert len(passes) == 3 and img[..., :3].max() > 100
    np.testing.assert_array_equal(img, render_offline(plume, OrbitCamera(), None, (40, 30), method="mip", spp=64,
                                                      device="cpu"))


def test_turntable_writes_png_sequence_and_gif(plume, tmp_path):
    tf = TransferFunction.preset("inferno", plume.value_range())
    frames = turntable(plume, OrbitCamera(azimuth=0), tf, 4, (32, 32), out_dir=tmp_path / "frames",
                       gif=tmp_path / "spin.gif", method="mip", spp=48, device="cpu")
    assert len(frames) == 4
    pngs = sorted((tmp_path / "frames").glob("frame_*.png"))
    assert [p.name for p in pngs] == [f"frame_{i:04d}.png" for i in range(4)]
    np.testing.assert_array_equal(np.asarray(Image.open(pngs[2])), frames[2])
    # frames differ as the camera turns, and frame k is the render at azimuth 90·k
    assert np.abs(frames[0].astype(int) - frames[1].astype(int)).mean() > 1
    again = render_offline(plume, OrbitCamera(azimuth=180), tf, (32, 32), method="mip", spp=48, device="cpu")
    np.testing.assert_array_equal(frames[2], again)
    gif = Image.open(tmp_path / "spin.gif")
    assert gif.n_frames == 4


def test_cli_render_writes_png(plume, tmp_path, monkeypatch, capsys):
    import renderer.offline as offline

    # the file readers belong to core.io; here the loader is replaced so the command itself is tested
    monkeypatch.setattr(offline, "load_source", lambda path, variable=None, nan_policy="raise": plume)
    cam = tmp_path / "cam.json"
    cam.write_text(json.dumps(OrbitCamera(azimuth=200, polar=80).to_dict()))
    out = tmp_path / "out.png"
    rc = main(["render", str(tmp_path / "in.npy"), "-o", str(out), "--size", "36", "28", "--spp", "48",
               "--method", "mip", "--colormap", "coolwarm", "--camera", str(cam), "--device", "cpu"])
    assert rc == 0 and "wrote" in capsys.readouterr().out
    img = np.asarray(Image.open(out))
    assert img.shape == (28, 36, 4)
    expected = render_offline(plume, OrbitCamera(azimuth=200, polar=80), TransferFunction.preset(
        "coolwarm", plume.value_range()), (36, 28), method="mip", spp=48, device="cpu")
    np.testing.assert_array_equal(img, expected)


def test_cli_render_cuts_the_volume_open_at_a_slice(plume, tmp_path, capsys):
    from renderer.overlays import cut_box

    np.save(tmp_path / "in.npy", plume.data[0])
    out = tmp_path / "cut.png"
    assert main(["render", str(tmp_path / "in.npy"), "-o", str(out), "--size", "32", "32", "--spp", "48",
                 "--cut", "x:9:above", "--device", "cpu"]) == 0
    tf = TransferFunction.preset("viridis", plume.value_range())
    expected = render_offline(plume, OrbitCamera(azimuth=30, polar=60, distance=5.0), tf, (32, 32), spp=48,
                              device="cpu", box=cut_box(2, 9.5 / 24, "above"))
    np.testing.assert_array_equal(np.asarray(Image.open(out)), expected)
    whole = render_offline(plume, OrbitCamera(azimuth=30, polar=60, distance=5.0), tf, (32, 32), spp=48,
                           device="cpu")
    assert np.abs(whole.astype(int) - expected.astype(int)).max() > 10
    assert cut_box(0, 0.25, "below") == ((0.0, 0.0, 0.0), (0.25, 1.0, 1.0))
    # --region draws only a box of voxels, and with --cut what both keep
    from renderer.overlays import intersect_boxes

    assert intersect_boxes(None, None) is None
    assert intersect_boxes(((0, 0.5, 0), (1, 1, 0.5)), ((0.25, 0, 0), (1, 1, 1)), None) == \
        ((0.25, 0.5, 0.0), (1.0, 1.0, 0.5))
    assert main(["render", str(tmp_path / "in.npy"), "-o", str(out), "--size", "32", "32", "--spp", "48",
                 "--region", "0:24,6:18,0:12", "--cut", "x:9:above", "--device", "cpu"]) == 0
    both = render_offline(plume, OrbitCamera(azimuth=30, polar=60, distance=5.0), tf, (32, 32), spp=48, device="cpu",
                          box=((0.0, 6 / 24, 9.5 / 24), (1.0, 18 / 24, 12 / 24)))
    np.testing.assert_array_equal(np.asarray(Image.open(out)), both)
    capsys.readouterr()
    assert main(["render", str(tmp_path / "in.npy"), "-o", str(out), "--region", "0:30,:,:"]) == 2
    assert "outside" in capsys.readouterr().err
    for spec, words in (("x:24", "x runs from 0 to 23"), ("w:3", "AXIS one of z, y, x"),
                        ("z:3:left", "AXIS:INDEX:above|below"), ("z:one", "a whole number")):
        assert main(["render", str(tmp_path / "in.npy"), "-o", str(out), "--cut", spec]) == 2
        assert words in capsys.readouterr().err, spec


def test_cli_turntable_and_errors(plume, tmp_path, monkeypatch, capsys):
    import renderer.offline as offline

    monkeypatch.setattr(offline, "load_source", lambda path, variable=None, nan_policy="raise": plume)
    gif = tmp_path / "turn.gif"
    rc = main(["render", "x.npy", "-o", str(gif), "--turntable", "3", "--size", "24", "24", "--spp", "32",
               "--method", "mip", "--device", "cpu"])
    assert rc == 0 and gif.exists() and len(list((tmp_path / "turn").glob("*.png"))) == 3
    assert main(["render", "x.npy", "-o", str(tmp_path / "a.jpg"), "--size", "8", "8"]) == 2
    assert "must be a .png" in capsys.readouterr().err
    assert main(["render", "x.npy", "-o", str(tmp_path / "b.png"), "--colormap", "nosuch"]) == 2
    assert "unknown colormap" in capsys.readouterr().err
    assert main(["render", "x.npy", "-o", str(tmp_path / "c.png"), "--dist", "0"]) == 2


def test_cli_missing_file_is_a_one_line_error(tmp_path, capsys):
    assert main(["render", str(tmp_path / "missing.npy"), "-o", str(tmp_path / "m.png")]) == 2
    err = capsys.readouterr().err
    assert "missing.npy" in err and "no such file" in err


def test_cli_renders_a_real_npy_file(tmp_path):
    data = smoke_plume(20, seed=9)
    src = tmp_path / "plume.npy"
    np.save(src, data)
    out = tmp_path / "plume.png"
    rc = main(["render", str(src), "-o", str(out), "--size", "32", "24", "--spp", "48", "--method", "mip",
               "--azi", "15", "--polar", "75", "--dist", "4.5", "--device", "cpu"])
    assert rc == 0
    expected = render_offline(Volume.from_array(data), OrbitCamera(azimuth=15, polar=75, distance=4.5),
                              TransferFunction.preset("viridis", (float(data.min()), float(data.max()))),
                              (32, 24), method="mip", spp=48, device="cpu")
    np.testing.assert_array_equal(np.asarray(Image.open(out)), expected)
