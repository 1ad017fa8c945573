"""Region of interest: a box of A's voxels in which the pair is compared (Compare menu), outlined in the views."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QGridLayout, QLabel, QPushButton, QSpinBox, QVBoxLayout

from core.errors import MetricError
from core.region import AXES, check_region, format_region, is_whole, region_fractions

if TYPE_CHECKING:
    from app.main_window import MainWindow


class RegionDialog(QDialog):
    """Start and stop voxel (stop excluded) along z, y and x of A's grid."""

    def __init__(self, shape: tuple[int, int, int], region: Any = None, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Region of interest")
        self.shape = tuple(int(n) for n in shape)
        self.boxes: list[tuple[QSpinBox, QSpinBox]] = []
        grid = QGridLayout()
        grid.addWidget(QLabel("from voxel"), 0, 1)
        grid.addWidget(QLabel("to (excluded)"), 0, 2)
        for axis, n in enumerate(self.shape):
            start, stop = QSpinBox(), QSpinBox()
            start.setRange(0, n - 1)
            stop.setRange(1, n)
            lo, hi = region[axis] if region is not None else (0, n)
            start.setValue(lo)
            stop.setValue(hi)
            for b in (start, stop):
                b.valueChanged.connect(lambda _v: self._check())
            grid.addWidget(QLabel(f"{AXES[axis]} (of {n})"), axis + 1, 0)
            grid.addWidget(start, axis + 1, 1)
            grid.addWidget(stop, axis + 1, 2)
            self.boxes.append((start, stop))
        self.message = QLabel("")
        self.message.setStyleSheet("color: #c0392b;")
        whole = QPushButton("Whole volume")
        whole.clicked.connect(self.set_whole)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(QLabel("Compare only this box of A's voxels (B is resampled onto A's grid if they differ)."))
        lay.addLayout(grid)
        lay.addWidget(whole)
        lay.addWidget(self.message)
        lay.addWidget(self.buttons)
        self._check()

    def values(self) -> tuple[tuple[int, int], ...]:
        return tuple((a.value(), b.value()) for a, b in self.boxes)

    def region(self) -> Any:
        """The chosen Region, or None when it spans the whole grid."""
        region = check_region(self.values(), self.shape)
        return None if is_whole(region, self.shape) else region

    def set_whole(self) -> None:
        for (a, b), n in zip(self.boxes, self.shape, strict=True):
            a.setValue(0)
            b.setValue(n)

    def _check(self) -> None:
        try:
            check_region(self.values(), self.shape)
            self.message.setText("")
            ok = True
        except MetricError as exc:
            self.message.setText(str(exc))
            ok = False
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(ok)


def update_region_boxes(window: MainWindow) -> None:
    """Outline the region in every view (B and the difference show the same part of the domain) and on
    the slice images."""
    a, region = window.session.item("A"), window.session.region
    box = region_fractions(region, a.shape) if region is not None and a is not None else (None, None)
    only = getattr(window, "region_only_action", None)
    for v in (*window.slot_views.values(), window.diff_view):
        if v.view is not None:
            v.view.set_region_box(*box)
            v.view.set_clip_box(*(box if only is not None and only.isChecked() else (None, None)))
    if only is not None:
        only.setEnabled(region is not None)
    slices = window.panels.get("slices")
    if slices is not None:
        slices.set_region(region if a is not None else None)


def ask_region(window: MainWindow) -> QDialog | None:
    """Open the region dialog for A's grid; OK sets the session's region (and compares again)."""
    a = window.session.item("A")
    if a is None:
        window.report_error("load a volume into A first: a region is a box of A's voxels")
        return None
    dlg = RegionDialog(a.shape, window.session.region, window)
    dlg.accepted.connect(lambda: window.session.set_region(dlg.region()))
    dlg.open()
    return dlg


def region_from_view(window: MainWindow, axis: int, box: tuple[tuple[int, int], tuple[int, int]]) -> Any:
    """Set the region to what the slice images show: ``box`` in the two in-plane axes; along ``axis``
    the current region's range (the whole axis without one). Returns the region, or None if refused."""
    a = window.session.item("A")
    if a is None:
        return None
    region = [list(r) for r in (window.session.region or tuple((0, n) for n in a.shape))]
    a0, a1 = (k for k in range(3) if k != axis)
    region[a0], region[a1] = list(box[0]), list(box[1])
    try:
        chosen = check_region(region, a.shape)
    except MetricError as exc:
        window.report_error(f"cannot compare that view: {exc}")
        return None
    window.session.set_region(None if is_whole(chosen, a.shape) else chosen)
    return window.session.region


def _drop_unfitting_region(window: MainWindow, slot: str) -> None:
    """A new A whose grid the region does not fit: compare the whole volumes again, and say so."""
    a, region = window.session.item("A"), window.session.region
    if slot != "A" or region is None or a is None:
        return
    try:
        check_region(region, a.shape)
    except MetricError:
        window.session.set_region(None)
        window.statusBar().showMessage(f"region {format_region(region)} does not fit {a.name} {a.shape_text()}: "
                                       "comparing the whole volumes", 10000)


def install_region_actions(window: MainWindow) -> None:
    """Compare › Region of interest… / Whole volumes, the outlines, and a region that follows A."""
    cm = window.compare_menu
    before = window.diff_menu.menuAction()
    for text, slot, key, tip in (
            ("Region of &interest…", lambda: ask_region(window), "Ctrl+I", "compare only a box of A's voxels"),
            ("&Whole volumes", lambda: window.session.set_region(None), "Ctrl+Shift+I", "compare the whole volumes")):
        act = window._action(cm, text, slot, QKeySequence(key), tip=tip)
        cm.insertAction(before, act)
    window.region_only_action = window._action(
        window.view_menu, "Show only the &region", lambda _on: update_region_boxes(window),
        QKeySequence("Ctrl+Shift+K"), checkable=True,
        tip="the 3D views draw only the region of interest (with the slice cut, if one is on)")
    window.view_menu.insertAction(window.link_action, window.region_only_action)
    window.region_only_action.setEnabled(False)  # until there is a region
    window.session.region_changed.connect(lambda _r: update_region_boxes(window))
    window.panels["slices"].region_requested.connect(lambda axis, box: region_from_view(window, axis, box))
    window.panels["slices"].whole_requested.connect(lambda: window.session.set_region(None))
    window.session.item_changed.connect(lambda slot: (_drop_unfitting_region(window, slot),
                                                      update_region_boxes(window)))
    for v in (*window.slot_views.values(), window.diff_view):
        v.view_created.connect(lambda _view: update_region_boxes(window))
