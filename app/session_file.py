"""Saving what the window shows: session files (JSON) and images of the views and of the whole window."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import VolsightError, WriterError
from core.io.atomic import atomic_path, write_bytes_atomic
from core.region import format_region

if TYPE_CHECKING:
    from app.loading import LoadedItem
    from app.main_window import MainWindow
    from app.panels.slot_view import SlotView

SESSION_VERSION = 1


class SessionFileError(VolsightError):
    """A session file cannot be read or does not describe a volsight session."""


def _to_plain(obj: Any) -> Any:
    """A camera or transfer function as JSON-friendly data (their own ``to_dict``), else None."""
    if obj is None:
        return None
    if isinstance(obj, dict):
        return obj
    to_dict = getattr(obj, "to_dict", None)
    return to_dict() if callable(to_dict) else None


def transfer_to_json(tf: Any) -> dict[str, Any] | None:
    """A TransferFunction as its ParaView colormap form plus the value range."""
    if tf is None:
        return None
    return {"name": tf.name, "value_range": [float(v) for v in tf.value_range], "paraview": tf.to_paraview_json()}


def transfer_from_json(doc: dict[str, Any]) -> Any:
    from renderer.transfer import TransferFunction

    tf = TransferFunction.from_paraview_json(doc["paraview"], value_range=tuple(doc["value_range"]))
    return tf.evolve(name=doc.get("name", tf.name))


def session_dict(window: MainWindow) -> dict[str, Any]:
    """Files, cameras, transfer functions, metrics and view settings of the window."""
    s = window.session
    slots: dict[str, Any] = {}
    for slot in ("A", "B"):
        item = s.item(slot)
        if item is None:
            slots[slot] = None
            continue
        entry = item.to_json()
        if item.kind == "demo":
            entry.update({k: item.info[k] for k in ("demo", "n", "perturbed") if k in item.info})
        slots[slot] = entry
    slices = window.panels.get("slices")
    plane = getattr(window, "plane_action", None)
    cameras = {}
    for slot, view in window.slot_views.items():
        cam = view.view.camera if view.view is not None else s.camera(slot)
        cameras[slot] = _to_plain(cam)
    return {
        "volsight_session": SESSION_VERSION,
        "slots": slots,
        "cameras": cameras,
        "transfer_functions": {k: transfer_to_json(s.transfer(k)) for k in ("A", "B")},
        "metrics": s.metrics,
        "method": s.method,
        "link_cameras": s.link_cameras,
        "shared_transfer_function": s.shared_tf,
        "difference_metric": s.diff_metric,
        "feature_metric": s.feature_metric,
        "difference_view": window.diff_view.isVisible(),
        "slice": None if slices is None else {"axis": slices.axis, "index": slices.slider.value()},
        "slice_plane": True if plane is None else plane.isChecked(),
        "cut": None if slices is None else slices.cut_side,
        "region_only": bool(getattr(window, "region_only_action", None) and window.region_only_action.isChecked()),
        "region": None if s.region is None else format_region(s.region),
    }


def save_session(window: MainWindow, path: str | Path) -> Path:
    """Write the session as JSON (atomically); a field fitted in the window is saved beside it first."""
    p = Path(path)
    doc = session_dict(window)
    for slot, entry in doc["slots"].items():
        item = window.session.item(slot)
        if entry is not None and item is not None and item.kind == "field" and not item.path:
            field_path = p.with_name(f"{p.stem}-{slot}.vsf")
            item.neural_field.save(field_path)  # models.store writes atomically
            entry["path"] = str(field_path)
    write_bytes_atomic(p, json.dumps(doc, indent=2).encode("utf-8"))
    return p


def read_session(path: str | Path) -> dict[str, Any]:
    """Parse a session file; SessionFileError naming the file if it is not one."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SessionFileError(f"{p}: not a readable session file ({exc})") from exc
    if not isinstance(doc, dict) or "volsight_session" not in doc:
        raise SessionFileError(f"{p}: not a volsight session file (no 'volsight_session' key)")
    if doc["volsight_session"] != SESSION_VERSION:
        raise SessionFileError(f"{p}: session format {doc['volsight_session']} is not supported (expected "
                               f"{SESSION_VERSION})")
    return doc


def load_slot_entry(entry: dict[str, Any] | None) -> LoadedItem | None:
    """Load one slot of a session file (a file, or the demo pair member)."""
    from app.loading import demo_items, load_item

    if entry is None:
        return None
    if entry.get("kind") == "demo":
        a, b = demo_items(entry.get("demo", "plume"), int(entry.get("n", 64)))
        return b if entry.get("perturbed") else a
    if not entry.get("path"):
        raise SessionFileError(f"slot item {entry.get('name')!r} has no file (a field fitted in the window "
                               "must be saved before the session can restore it)")
    return load_item(entry["path"], variable=entry.get("variable"), index=entry.get("index"),
                     nan_policy="zero" if entry.get("nan_policy") == "zero" else "raise")


def apply_view_settings(window: MainWindow, doc: dict[str, Any]) -> None:
    """Everything but the files: metrics, method, links, slice, cameras and transfer functions."""
    s = window.session
    if doc.get("metrics") is not None:
        s.set_metrics([m for m in doc["metrics"] if isinstance(m, str)])
    if doc.get("method"):
        s.set_method(doc["method"])
    s.set_link_cameras(bool(doc.get("link_cameras", True)))
    s.set_shared_tf(bool(doc.get("shared_transfer_function", True)))
    if doc.get("difference_metric"):
        s.set_diff_metric(doc["difference_metric"])
    if doc.get("feature_metric"):
        s.set_feature_metric(doc["feature_metric"])
    window.diff_action.setChecked(bool(doc.get("difference_view", False)))
    if getattr(window, "plane_action", None) is not None:
        window.plane_action.setChecked(bool(doc.get("slice_plane", True)))
    slices, where = window.panels.get("slices"), doc.get("slice")
    if slices is not None and isinstance(where, dict) and where.get("axis") in (0, 1, 2):
        slices.axis_box.setCurrentIndex(int(where["axis"]))
        index = where.get("index")
        if isinstance(index, int):  # anything else (a hand-edited file) keeps the middle slice
            slices.slider.setValue(index)  # the slider clamps it to the loaded volumes
    if slices is not None and doc.get("cut") in ("below", "above", None):  # anything else: left as it is
        slices.set_cut_side(doc.get("cut"))
    if getattr(window, "region_only_action", None) is not None:
        window.region_only_action.setChecked(bool(doc.get("region_only", False)))
    try:
        from renderer.camera import OrbitCamera
    except ModuleNotFoundError:
        OrbitCamera = None  # noqa: N806 - the renderer is not installed: cameras stay as they are
    for slot, cam in (doc.get("cameras") or {}).items():
        view = window.slot_views.get(slot)
        if cam and OrbitCamera is not None and view is not None and view.view is not None:
            view.view.camera = OrbitCamera.from_dict(cam)
    tfs = doc.get("transfer_functions") or {}
    if any(tfs.values()):
        try:
            import renderer.transfer  # noqa: F401 - only to know the renderer is installed
        except ModuleNotFoundError:
            return
        shared = s.shared_tf
        s.set_shared_tf(False)  # restore each slot's own function, then the sharing choice
        for slot, tf in tfs.items():
            if tf and slot in ("A", "B"):
                s.set_transfer(slot, transfer_from_json(tf))
        s.set_shared_tf(shared)


def apply_region(window: MainWindow, doc: dict[str, Any]) -> None:
    """The session's region of interest, once its files are loaded (it is a box of A's voxels)."""
    from core.errors import MetricError
    from core.region import parse_region

    a, region = window.session.item("A"), doc.get("region")
    if not isinstance(region, str) or a is None:
        window.session.set_region(None)
        return
    try:
        window.session.set_region(parse_region(region, a.shape))
    except MetricError as exc:
        window.session.set_region(None)
        window.report_error(f"{exc}: the session's region does not fit {a.name}; comparing the whole volumes",
                            title="Session")


def save_window_image(window: MainWindow, path: str | Path) -> Path:
    """A PNG of the whole window as it is on screen."""
    p = Path(path)
    with atomic_path(p, suffix=".png") as tmp:
        if not window.grab().save(str(tmp), "PNG"):
            raise WriterError(p, "could not encode the window image as PNG")
    return p


def view_image(view: SlotView) -> Any:
    """An RGBA array of one view: the renderer's own grab, or the widget's pixels."""
    import numpy as np

    if view.view is not None and view.view.isVisible() and hasattr(view.view, "grab_image"):
        return np.asarray(view.view.grab_image())
    img = view.grab().toImage().convertToFormat(view.grab().toImage().Format.Format_RGBA8888)
    ptr = img.constBits()
    return np.frombuffer(ptr, np.uint8).reshape(img.height(), img.bytesPerLine() // 4, 4)[:, : img.width()].copy()


def save_view_images(window: MainWindow, folder: str | Path, stem: str = "view") -> list[Path]:
    """PNGs of view A, view B and (when shown) the difference view, into ``folder``."""
    from PIL import Image

    out = []
    folder = Path(folder)
    views = [*window.slot_views.values()] + ([window.diff_view] if window.diff_view.isVisible() else [])
    for v in views:
        arr = view_image(v)
        p = folder / f"{stem}_{v.slot}.png"
        with atomic_path(p, suffix=".png") as tmp:
            Image.fromarray(arr).save(tmp, format="PNG")
        out.append(p)
    return out


NO_DIFFERENCE = ("there is no per-voxel difference to save yet: load A and B on one grid (or let B be resampled "
                 "onto A's) and wait for the map")


def save_difference_volume(window: MainWindow, path: str | Path) -> Path:
    """Write the difference the window shows (A − B, or the chosen metric's map, in place in A's grid with a
    region) as a volume file (NetCDF, .npy or raw by extension; atomically) on A's geometry, naming A, B and
    the map in its metadata. Refuses to write over A's or B's own file: input files are never modified."""
    import numpy as np

    from core.io.registry import write_volume
    from core.volume import Volume

    path = Path(path)
    arr, label = window.controller.difference()
    if arr is None:
        raise WriterError(path, NO_DIFFERENCE)
    items = {s: window.session.item(s) for s in ("A", "B")}
    for slot, it in items.items():
        if it is not None and it.path and Path(it.path).resolve() == path.resolve():
            raise WriterError(path, f"that is {slot}'s own file; volsight does not write over its inputs")
    a = items["A"].volume
    meta = {"map": label, "a": items["A"].name, "b": items["B"].name,
            "a_file": items["A"].path or "", "b_file": items["B"].path or ""}
    if window.session.region is not None:
        meta["region"] = format_region(window.session.region)
    vol = Volume(np.asarray(arr, dtype=np.float32), spacing=a.spacing, origin=a.origin, name=label,
                 metadata=meta, nan_policy="allow")
    return write_volume(vol, path)


def ask_save(window: MainWindow, what: str) -> None:
    """File menu: ask where, then save the session ("session"), the window ("window") or the views ("views")."""
    from PySide6.QtWidgets import QFileDialog

    if what == "views":
        folder = QFileDialog.getExistingDirectory(window, "Folder for the view images", window.prefs.last_dir())
        if folder:
            try:
                files = save_view_images(window, folder)
            except Exception as exc:  # noqa: BLE001 - a failed save is reported, the window carries on
                window.report_error(str(exc), title="Cannot save")
                return
            window.statusBar().showMessage(f"saved {', '.join(p.name for p in files)} in {folder}", 8000)
        return
    if what == "difference" and window.controller.difference()[0] is None:  # say so before asking where
        window.report_error(NO_DIFFERENCE, title="Nothing to save")
        return
    title, name, flt = {"session": ("Save session", "session.json", "Session (*.json)"),
                        "window": ("Save window image", "volsight.png", "PNG image (*.png)"),
                        "difference": ("Save difference volume", "difference.nc",
                                       "NetCDF (*.nc);;NumPy (*.npy)")}[what]
    path, _ = QFileDialog.getSaveFileName(window, title, str(Path(window.prefs.last_dir()) / name), flt)
    if not path:
        return
    try:
        if what == "session":
            window.save_session(path)
        elif what == "difference":
            written = save_difference_volume(window, path)
            window.statusBar().showMessage(f"difference volume saved to {written}", 8000)
        else:
            save_window_image(window, path)
            window.statusBar().showMessage(f"window image saved to {path}", 8000)
    except Exception as exc:  # noqa: BLE001 - a failed save is reported, the window carries on
        window.report_error(str(exc), title="Cannot save")
