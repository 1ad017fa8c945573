"""Neural-field workflow: fit a field to A (live loss/PSNR, cancel), the field goes to B and is compared;
a saved field file dropped on a slot is baked and rendered."""

from __future__ import annotations

import numpy as np
import pytest

from core.volume import Volume
from tests.app.conftest import drop_files, wait_for

TINY = {"n_grids": 4, "grid_shape": [8, 8, 8]}


@pytest.fixture
def demo_window(window, qtbot):
    wait_for(window, qtbot, lambda: bool(window.catalog))
    window.session.set_metrics(["mse", "psnr"])
    window.load_demo("plume", 16)
    wait_for(window, qtbot, lambda: window.session.has_pair() and window.session.comparison is not None,
             timeout=60000)
    return window


def test_fit_a_field_to_a_then_compare_it_in_b(demo_window, qtbot, tmp_path):
    window = demo_window
    panel = window.panels["fields"]
    a = window.session.item("A")
    got = []
    panel.fit_finished.connect(got.append)
    plot = panel.plot.getPlotItem()
    assert not any(plot.getAxis(side).isVisible() for side in ("left", "bottom", "right"))  # nothing to show yet
    task = panel.start_fit(model_options=TINY, model="apmgsrn", size="small", iterations=60, points=4096)
    assert task is not None
    wait_for(window, qtbot, lambda: bool(got), timeout=180000)
    summary = got[0]
    assert summary["iterations"] == 60 and not summary["cancelled"]
    b = window.session.item("B")
    assert b.kind == "field" and b.neural_field is not None
    assert b.shape == a.shape and window.session.item("A") is a
    # the status names the size and its ratio to A's values (here the tiny field is the smaller one)
    assert (f"fitted {summary['parameters']} parameters (the field is {summary['parameters'] / 16**3:.3g}× larger "
            "than A)") in panel.status.text()
    # the live plot got the reports
    assert len(panel.history) >= 3
    xs, ys = panel.psnr_curve.getData()
    assert len(xs) == len(panel.history) and np.isfinite(ys).all()
    assert all(plot.getAxis(side).isVisible() for side in ("left", "bottom", "right"))
    # and the pair (A, field) was compared with the numbers compare() gives for the baked field
    wait_for(window, qtbot, lambda: window.session.comparison is not None
             and window.session.comparison_pair == (a.name, b.name), timeout=60000)
    from core.compare import compare

    ref = compare(a.volume, b.volume, ["mse", "psnr"])
    shown = window.panels["distances"].values()
    assert shown["psnr"] == pytest.approx(ref.value("psnr"), rel=1e-9)
    assert shown["mse"] == pytest.approx(ref.value("mse"), rel=1e-9)
    # baked values are what the field gives at the grid points
    np.testing.assert_allclose(b.volume.data, b.neural_field.bake(shape=a.shape).data, rtol=1e-5, atol=1e-6)

    # a session with the fitted field saves the field beside it and restores it
    session_path = window.save_session(str(tmp_path / "fitted.json"))
    assert (tmp_path / "fitted-B.vsf").is_file()
    from app.main_window import build_main_window

    w2 = build_main_window()
    qtbot.addWidget(w2)
    with qtbot.waitSignal(w2.session_restored, timeout=60000):
        w2.restore_session(str(session_path))
    restored = w2.session.item("B")
    assert restored.kind == "field" and restored.path == str(tmp_path / "fitted-B.vsf")
    np.testing.assert_allclose(restored.volume.data, b.volume.data, rtol=1e-5, atol=1e-6)
    w2.tasks.wait_all(30000)
    w2.close()

    # save it, drop the file on A: it is loaded as a field, baked, and rendered
    path = tmp_path / "plume.vsf"
    b.neural_field.save(path)
    drop_files(window.slot_views["A"], [path])
    wait_for(window, qtbot, lambda: window.session.item("A").kind == "field", timeout=60000)
    item = window.session.item("A")
    assert item.path == str(path) and item.shape == a.shape
    np.testing.assert_allclose(item.volume.data, b.volume.data, rtol=1e-5, atol=1e-6)
    assert "neural field" in window.slot_views["A"].title.text()
    img = window.slot_views["A"].view.grab_image()
    assert (np.abs(img[..., :3].astype(int) - img[0, 0, :3].astype(int)).sum(-1) > 12).mean() > 0.01


def test_cancelling_a_fit_leaves_b_alone(demo_window, qtbot):
    window = demo_window
    panel = window.panels["fields"]
    b_before = window.session.item("B")
    task = panel.start_fit(model_options=TINY, model="apmgsrn", size="small", iterations=100000, points=4096)
    assert task is not None
    wait_for(window, qtbot, lambda: len(panel.history) >= 1, timeout=120000)
    with qtbot.waitSignal(task.signals.cancelled, timeout=60000):
        window.cancel_button.click()  # the status bar's Cancel
    assert task.state == "cancelled"
    assert window.session.item("B") is b_before
    assert "cancelled" in panel.status.text()
    assert panel.fit_button.isEnabled()


def test_size_estimate_follows_model_size_and_the_volume_in_a(demo_window):
    from models.registry import MODEL_CLASSES, model_config, parameter_count

    panel = demo_window.panels["fields"]
    demo_window.docks["fields"].raise_()  # the estimate is made while the tab is shown
    panel.model_box.setCurrentText("apmgsrn")
    panel.size_box.setCurrentText("small")
    field = MODEL_CLASSES["apmgsrn"](model_config("apmgsrn", "small"), channels=1, value_range=(0.0, 1.0))
    params = sum(p.numel() for p in field.parameters())
    assert parameter_count("apmgsrn", "small") == params
    text = panel.estimate.text()
    assert text.startswith(f"apmgsrn small: {params / 1e3:.0f} k parameters")
    assert f"the field is {params / 16**3:.3g}× larger than A" in text  # the 16³ demo volume in A
    from app.panels.fields import size_estimate
    from core.volume import Volume

    big = Volume.from_array(np.zeros((64, 64, 64), np.float32), name="big")
    assert f"{64**3 / params:.3g} : 1 compression" in size_estimate("apmgsrn", "small", big)
    panel.size_box.setCurrentText("medium")
    assert panel.estimate.text().startswith("apmgsrn medium: 1.1 M parameters")
    demo_window.session.set_item("A", None)
    assert "A has" not in panel.estimate.text()


def test_a_field_file_is_named_after_its_source_and_model(tmp_path):
    """The volume and the field fitted to it (the common pair) get different names in headers and tables."""
    from app.loading import load_item
    from models.fit import fit
    from models.store import load_field

    vol = Volume.from_array(np.random.default_rng(0).random((8, 8, 8)).astype(np.float32), name="plume")
    field, _ = fit(vol, {"model": "apmgsrn", "size": "small", "model_options": TINY, "iterations": 5,
                         "points": 512, "log_every": 5}, device="cpu")
    path = tmp_path / "anything.vsf"
    field.save(path)
    item = load_item(path)
    assert item.kind == "field" and item.name == "plume-apmgsrn"
    assert load_field(path).name == "plume"  # the file's source name stays the volume's


def test_a_field_dropped_on_b_is_described_in_the_panel(demo_window, qtbot, tmp_path):
    from app.panels.fields import FIT_TITLE, HELP, field_file_name
    from models.fit import fit

    window = demo_window
    panel = window.panels["fields"]
    assert panel.status.text() == HELP
    a = window.session.item("A")
    field, summary = fit(a.volume, {"model": "apmgsrn", "size": "small", "model_options": TINY, "iterations": 10,
                                    "points": 512, "log_every": 5}, device="cpu")
    path = tmp_path / "f.vsf"
    field.save(path)
    b_volume = window.session.item("B")
    drop_files(window.slot_views["B"], [path])
    wait_for(window, qtbot, lambda: window.session.item("B").kind == "field", timeout=60000)
    params = field.parameter_count()
    assert panel.status.text() == (f"B: apmgsrn field of plume (16×16×16), {params / 1e3:.0f} k parameters, "
                                   f"the field is {params / 16**3:.3g}× larger than its source; "
                                   f"fitted in 10 iterations ({summary['seconds']:.0f} s) "
                                   f"to {summary['psnr']:.2f} dB; its distances to A are in the table")
    # the fit's loss log came with the file: its curves are drawn, titled as B's
    x, y = panel.psnr_curve.getData()
    assert list(x) == [5, 10]
    np.testing.assert_allclose(y, [-10 * np.log10(loss) for _, loss in summary["history"]])
    assert "fit of B (plume)" in panel.plot.getPlotItem().titleLabel.text
    assert panel.plot.getPlotItem().getAxis("left").isVisible()
    assert field_file_name(field) == "plume-apmgsrn.vsf"
    window.set_items({"B": b_volume})  # a volume again: the description and the curves go
    wait_for(window, qtbot, lambda: panel.status.text() == HELP)
    assert panel.psnr_curve.getData()[0] is None or len(panel.psnr_curve.getData()[0]) == 0
    assert panel.plot.getPlotItem().titleLabel.text == FIT_TITLE


def test_a_field_is_baked_on_the_grid_of_the_volume_it_is_compared_with(window, qtbot, tmp_path):
    """A field dropped beside a volume on another grid is evaluated at that volume's voxels (no resampling),
    so the distances are exact and the difference view has a per-voxel difference; a new A re-bakes it."""
    from models.fit import fit

    rng = np.random.default_rng(3)
    field, _ = fit(Volume.from_array(rng.random((16, 16, 16)).astype(np.float32), name="src"),
                   {"model": "apmgsrn", "size": "small", "model_options": TINY, "iterations": 5, "points": 512,
                    "log_every": 5}, device="cpu")
    fpath, apath, a2path = tmp_path / "f.vsf", tmp_path / "a.npy", tmp_path / "a2.npy"
    field.save(fpath)
    np.save(apath, rng.random((12, 10, 8)).astype(np.float32))
    np.save(a2path, rng.random((20, 18, 16)).astype(np.float32))
    window.session.set_metrics(["mse"])
    window.load_pair(str(apath), str(fpath))
    wait_for(window, qtbot, lambda: window.session.comparison is not None, timeout=60000)
    b = window.session.item("B")
    assert b.kind == "field" and b.shape == (12, 10, 8)
    np.testing.assert_allclose(b.volume.data, field.bake(shape=(12, 10, 8)).data, rtol=1e-5, atol=1e-6)
    assert "baked at 12×10×8" in window.slot_views["B"].view.notice
    assert "no per-voxel difference" not in window.diff_view.title.text()
    a = window.session.item("A").volume.data
    assert window.session.distance("mse").value == pytest.approx(float(np.mean((a - b.volume.data) ** 2)), rel=1e-5)
    # a volume on yet another grid into A: the field in B follows it
    window.load_into("A", str(a2path))
    wait_for(window, qtbot, lambda: window.session.item("B").shape == (20, 18, 16), timeout=60000)
    assert window.session.item("B").neural_field is b.neural_field
    np.testing.assert_allclose(window.session.item("B").volume.data, field.bake(shape=(20, 18, 16)).data,
                               rtol=1e-5, atol=1e-6)
    # a session with that pair restores the field on A's grid again
    from app.main_window import build_main_window

    session_path = window.save_session(str(tmp_path / "s.json"))
    w2 = build_main_window()
    qtbot.addWidget(w2)
    with qtbot.waitSignal(w2.session_restored, timeout=60000):
        w2.restore_session(str(session_path))
    assert w2.session.item("B").kind == "field" and w2.session.item("B").shape == (20, 18, 16)
    w2.tasks.wait_all(30000)
    w2.close()


def test_ray_marching_the_field_itself_from_the_view_menu(window, qtbot, tmp_path):
    """View › Ray-march the neural field draws B's field from the network (not its bake) with B's camera,
    transfer function and method, coarse to fine, and saves the picture."""
    from app.field_render import FieldRenderDialog, render_size
    from core.io.registry import read_volume
    from models.fit import fit
    from renderer.offline import render_offline

    assert not window.field_render_action.isEnabled()  # no field loaded yet
    rng = np.random.default_rng(5)
    c = np.linspace(-1, 1, 16, dtype=np.float32)
    z, y, x = np.meshgrid(c, c, c, indexing="ij")
    blob = np.exp(-((x - 0.4) ** 2 + (y + 0.3) ** 2 + z**2) / 0.15).astype(np.float32)  # off centre: turns show
    field, _ = fit(Volume.from_array(blob, name="blob"), {"model": "apmgsrn", "size": "small",
                                                          "model_options": TINY, "iterations": 60,
                                                          "points": 4096, "log_every": 20}, device="cpu")
    fpath, apath = tmp_path / "blob.vsf", tmp_path / "blob.npy"
    field.save(fpath)
    np.save(apath, blob + 0.01 * rng.random(blob.shape, dtype=np.float32))
    window.session.set_metrics(["mse"])
    window.load_pair(str(apath), str(fpath))
    wait_for(window, qtbot, lambda: window.session.comparison is not None, timeout=60000)
    assert window.field_render_action.isEnabled()
    window.field_render_action.trigger()
    dialog = window.field_render_dialog
    assert isinstance(dialog, FieldRenderDialog) and dialog.slot == "B"
    qtbot.waitUntil(lambda: dialog.passes == 3, timeout=120000)
    assert dialog.save_button.isEnabled() and "done" in dialog.status.text()
    view = window.slot_views["B"].view
    size = render_size(view.width(), view.height())
    assert dialog.image.shape == (size[1], size[0], 3)
    expected = render_offline(field, view.camera, view.transfer_function, size, method=view.method,
                              threshold=view.threshold)[..., :3]
    assert np.abs(dialog.image.astype(int) - expected.astype(int)).max() <= 2  # the same picture
    lit = (dialog.image.astype(int).sum(-1) > 30).mean()
    assert 0.02 < lit < 0.9, lit  # the blob is drawn, the background is not
    out = dialog.save(str(tmp_path / "pic.png"))
    from PIL import Image

    np.testing.assert_array_equal(np.asarray(Image.open(out))[..., :3], dialog.image)
    # turn the view, render again: the picture follows the camera
    from renderer.camera import OrbitCamera

    before = dialog.image.copy()
    view.camera = OrbitCamera.from_dict({**view.camera.to_dict(), "azimuth": view.camera.azimuth + 90.0})
    dialog.again_button.click()
    assert dialog.passes == 0 and not dialog.save_button.isEnabled()
    qtbot.waitUntil(lambda: dialog.passes == 3, timeout=120000)
    turned = render_offline(field, view.camera, view.transfer_function, size, method=view.method,
                            threshold=view.threshold)[..., :3]
    assert np.abs(dialog.image.astype(int) - turned.astype(int)).max() <= 2
    assert np.abs(dialog.image.astype(int) - before.astype(int)).max() > 10
    # cut the views open at the slice: the network's picture is cut the same way
    from renderer.overlays import cut_box

    window.panels["slices"].axis_box.setCurrentIndex(2)
    window.panels["slices"].slider.setValue(9)
    window.panels["slices"].set_cut_side("below")
    assert view.cut is not None
    whole = dialog.image.copy()
    dialog.again_button.click()
    qtbot.waitUntil(lambda: dialog.passes == 3, timeout=120000)
    cut = render_offline(field, view.camera, view.transfer_function, size, method=view.method,
                         threshold=view.threshold, box=cut_box(*view.cut))[..., :3]
    assert np.abs(dialog.image.astype(int) - cut.astype(int)).max() <= 2
    assert np.abs(dialog.image.astype(int) - whole.astype(int)).max() > 10
    window.panels["slices"].set_cut_side(None)
    dialog.close()
    assert read_volume(apath).shape == (16, 16, 16)  # the input files are untouched


def test_a_field_files_fit_log_is_read_defensively():
    """The log comes from a file's header: whatever it holds, the panel takes numbers or nothing."""
    from app.commands.info import _history_words
    from app.panels.fields import loss_log

    assert loss_log([[5, 0.5], [10, "0.25"]]) == [(5, 0.5), (10, 0.25)]
    for junk in (None, "abc", [[1, 2, 3]], [5], [[1, None]], {"a": 1}):
        assert loss_log(junk) == []
    assert _history_words([[5, 0.5], [10, 0.25]]) == ("2 points, iterations 5-10, batch loss 0.5 -> 0.25 "
                                                      "(--json lists them)")
    assert _history_words("junk") == "malformed" and _history_words([]) == "none"
