"""The first window: slots A and B accept real drops; a bad file leaves both slots as they were."""

from __future__ import annotations

import numpy as np
import pytest

from tests.app.conftest import drop_files, smooth_volume, wait_for, write_netcdf


def test_drop_netcdf_on_slot_a_shows_name_and_shape(window, qtbot, tmp_path, rng):
    from core.io import read_volume

    path = write_netcdf(tmp_path / "blobs.nc", smooth_volume(rng, 32)[:, :24, :20].copy())
    enter, drop = drop_files(window.slot_views["A"], [path])
    assert enter.isAccepted()
    wait_for(window, qtbot, lambda: window.session.item("A") is not None)
    expected = read_volume(path)
    title = window.slot_views["A"].title.text()
    assert expected.name in title
    assert "32×24×20" in title
    assert window.session.item("A").shape == (32, 24, 20)
    np.testing.assert_array_equal(window.session.item("A").volume.data, expected.data)
    assert window.session.item("B") is None
    assert "empty" in window.slot_views["B"].title.text()


def test_drag_of_plain_text_is_refused(window):
    from PySide6.QtCore import QMimeData, Qt
    from PySide6.QtGui import QDragEnterEvent
    from PySide6.QtWidgets import QApplication

    mime = QMimeData()
    mime.setText("not a file")
    ev = QDragEnterEvent(window.slot_views["A"].rect().center(), Qt.DropAction.CopyAction, mime,
                         Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(window.slot_views["A"], ev)
    assert not ev.isAccepted()


def test_bad_file_drop_names_the_problem_and_keeps_both_slots(window, qtbot, tmp_path, rng):
    a = write_netcdf(tmp_path / "good_a.nc", smooth_volume(rng, 16))
    b = write_netcdf(tmp_path / "good_b.nc", smooth_volume(rng, 16))
    drop_files(window, [a, b])
    wait_for(window, qtbot, window.session.has_pair)
    before = (window.session.item("A"), window.session.item("B"))
    titles = (window.slot_views["A"].title.text(), window.slot_views["B"].title.text())

    bad = tmp_path / "broken.nc"
    bad.write_bytes(b"CDF\x01" + bytes(range(200)))
    with qtbot.waitSignal(window.error_reported, timeout=20000) as blocker:
        drop_files(window.slot_views["A"], [bad])
    message = blocker.args[0]
    assert "broken.nc" in message
    assert window.statusBar().currentMessage() == message
    assert window._message_box is not None and window._message_box.isVisible()
    assert not window._message_box.isModal()
    assert (window.session.item("A"), window.session.item("B")) == before
    assert (window.slot_views["A"].title.text(), window.slot_views["B"].title.text()) == titles


def test_two_files_dropped_anywhere_fill_a_and_b(window, qtbot, tmp_path, rng):
    a = write_netcdf(tmp_path / "first.nc", smooth_volume(rng, 16))
    b = write_netcdf(tmp_path / "second.nc", smooth_volume(rng, 16))
    drop_files(window.slot_views["B"], [a, b])
    wait_for(window, qtbot, window.session.has_pair)
    assert window.session.item("A").path == str(a)
    assert window.session.item("B").path == str(b)


def test_every_reader_format_drops_into_a_slot(window, qtbot, tmp_path, rng):
    """.npy, .npz, raw with its JSON sidecar, and NetCDF all load through the same drop."""
    import json

    data = smooth_volume(rng, 12)[:, :10, :8].copy()
    npy = tmp_path / "cube.npy"
    np.save(npy, data)
    npz = tmp_path / "cube.npz"
    np.savez(npz, density=data)
    raw = tmp_path / "cube.raw"
    data.astype("<f4").tofile(raw)
    (tmp_path / "cube.raw.json").write_text(json.dumps({"dtype": "float32", "shape": list(data.shape)}))
    nc = write_netcdf(tmp_path / "cube.nc", data)
    for path in (npy, npz, raw, nc):
        drop_files(window.slot_views["B"], [path])
        wait_for(window, qtbot, lambda p=path: window.session.item("B") is not None
                 and window.session.item("B").path == str(p))
        item = window.session.item("B")
        assert item.shape == (12, 10, 8), path.name
        np.testing.assert_allclose(item.volume.data[0], data, rtol=1e-6, err_msg=path.name)
        assert "12×10×8" in window.slot_views["B"].title.text()


def test_a_comparison_can_be_cancelled_from_the_status_bar(window, qtbot):
    wait_for(window, qtbot, lambda: bool(window.catalog))
    window.session.set_metrics(["ssim", "lcc", "mse"])
    window.load_demo("turbulence", 48)
    qtbot.waitUntil(lambda: window.tasks.current("compare") is not None, timeout=60000)
    task = window.tasks.current("compare")
    assert window.cancel_button.isVisible() and window.progress.isVisible()
    with qtbot.waitSignal(task.signals.done, timeout=60000):
        window.cancel_button.click()
    # the metric already running finishes in its thread; the result is dropped and the rest are skipped
    assert task.state == "cancelled"
    assert window.session.comparison is None
    assert "cancelled" in window.statusBar().currentMessage()
    qtbot.waitUntil(lambda: not window.cancel_button.isVisible(), timeout=10000)


def test_volumes_of_different_shapes_are_compared_on_a_common_grid(window, qtbot, tmp_path, rng):
    wait_for(window, qtbot, lambda: bool(window.catalog))
    window.session.set_metrics(["mse", "ssim"])
    a = write_netcdf(tmp_path / "fine.nc", smooth_volume(rng, 16))
    b = write_netcdf(tmp_path / "coarse.nc", smooth_volume(rng, 20)[:, :18, :].copy())
    drop_files(window, [a, b])
    wait_for(window, qtbot, lambda: window.session.comparison is not None, timeout=60000)
    from core.compare import compare
    from core.io import read_volume

    va, vb = read_volume(a), read_volume(b)
    ref = compare(va, vb, ["mse", "ssim"], resample=va.shape)
    shown = window.panels["distances"].values()
    assert shown["mse"] == pytest.approx(ref.value("mse"), rel=1e-9)
    assert shown["ssim"] == pytest.approx(ref.value("ssim"), rel=1e-9)
    assert "shapes differ" in window.panels["distances"].pair_label.text()
    # without resampling, each metric says why it cannot compare them
    window.resample_action.setChecked(False)
    wait_for(window, qtbot, lambda: window.session.comparison is not None
             and isinstance(window.session.comparison.get("mse"), Exception), timeout=60000)
    assert "shape" in str(window.session.comparison["mse"])


def _masked_netcdf(path, data, fill=-999.0):
    """A NetCDF variable with a land-mask-like region stored as _FillValue (read as missing)."""
    import netCDF4

    with netCDF4.Dataset(path, "w") as ds:
        for dim, n in zip(("z", "y", "x"), data.shape, strict=True):
            ds.createDimension(dim, n)
        var = ds.createVariable("density", "f4", ("z", "y", "x"), fill_value=fill)
        stored = data.copy()
        stored[:, :4, :] = fill
        var[:] = stored
    return path


def test_masked_file_is_offered_with_missing_values_as_zero(window, qtbot, tmp_path, rng, monkeypatch):
    """A file refused only for NaN/Inf values is offered again; yes opens it with them as 0, no keeps the slots."""
    data = smooth_volume(rng, 16)
    good = write_netcdf(tmp_path / "good.nc", data)
    masked = _masked_netcdf(tmp_path / "masked.nc", data)
    drop_files(window.slot_views["A"], [good])
    wait_for(window, qtbot, lambda: window.session.item("A") is not None)
    before = window.session.item("A")

    asked = []
    monkeypatch.setattr(window, "ask_nonfinite_as_zero", lambda exc: asked.append(exc) or False)
    drop_files(window.slot_views["A"], [masked])
    qtbot.waitUntil(lambda: bool(asked), timeout=20000)
    assert asked[0].count == 16 * 4 * 16 and asked[0].total == 16**3 and asked[0].path.endswith("masked.nc")
    assert window.session.item("A") is before and "not opened" in window.statusBar().currentMessage()

    monkeypatch.setattr(window, "ask_nonfinite_as_zero", lambda exc: asked.append(exc) or True)
    drop_files(window.slot_views["A"], [masked])
    wait_for(window, qtbot, lambda: window.session.item("A") is not before)
    item = window.session.item("A")
    assert len(asked) == 2 and item.nan_policy == "zero"
    assert np.all(item.volume.data[0, :, :4, :] == 0)
    np.testing.assert_array_equal(item.volume.data[0, :, 4:, :], data[:, 4:, :])
    assert "1,024 NaN/Inf shown as 0" in window.slot_views["A"].title.text()
    from app.session_file import load_slot_entry

    assert load_slot_entry(item.to_json()).nan_policy == "zero"  # a saved session reopens it the same way
    window.nan_as_zero.clear()  # as in a new window restoring that session: the restored item carries the choice
    window.set_items({"A": load_slot_entry(item.to_json())})
    assert window.nan_policy_for(masked) == "zero"

    # the choice holds for the file: loading it again (a pair) asks no more
    drop_files(window, [good, masked])
    wait_for(window, qtbot, lambda: getattr(window.session.item("B"), "path", None) == str(masked))
    assert len(asked) == 2


def test_a_vector_volume_is_drawn_as_its_magnitude_and_says_so(window, qtbot, tmp_path, rng):
    field = np.stack([smooth_volume(rng, 16) - 0.5 for _ in range(3)])  # [3, D, H, W] velocity
    path = tmp_path / "velocity.npy"
    np.save(path, field)
    drop_files(window.slot_views["A"], [path])
    wait_for(window, qtbot, lambda: window.session.item("A") is not None)
    title = window.slot_views["A"].title.text()
    assert "16×16×16 ×3 ch" in title and "shown as magnitude" in title
    shown = window.slot_views["A"].view.displayed_volume
    np.testing.assert_allclose(shown.data[0], np.linalg.norm(field, axis=0), rtol=1e-5, atol=1e-6)
    # a scalar volume's title does not claim it
    scalar = tmp_path / "scalar.npy"
    np.save(scalar, field[0])
    drop_files(window.slot_views["B"], [scalar])
    wait_for(window, qtbot, lambda: window.session.item("B") is not None)
    assert "magnitude" not in window.slot_views["B"].title.text()
