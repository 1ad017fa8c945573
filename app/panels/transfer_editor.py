"""Transfer-function editor: opacity control points over the data's histogram, colormap presets, value range.

Drag a point to move it, click empty space to add one, right-click a point to remove it. The
end points stay at the ends of the value range. Edits reach the views when the drag ends (a
volume upload per mouse move would stall software GL).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtWidgets import QComboBox, QDoubleSpinBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from app.panels.ticks import value_ticks
from app.session import Session

if TYPE_CHECKING:
    from types import ModuleType

    from pyqtgraph.GraphicsScene.mouseEvents import MouseClickEvent, MouseDragEvent

HIST_BINS = 128
STRIP = (-0.16, -0.04)  # y extent of the colormap strip under the curve


def transfer_module() -> ModuleType | None:
    """renderer.transfer, or None when the renderer package is not installed."""
    import importlib

    try:
        return importlib.import_module("renderer.transfer")
    except ModuleNotFoundError as exc:
        if exc.name not in ("renderer.transfer", "renderer"):
            raise
        return None


class OpacityPoints(pg.GraphItem):
    """Draggable control points (t in [0, 1], opacity in [0, 1]) joined by a line."""

    def __init__(self, on_change, on_release):
        super().__init__()
        self.points = np.array([[0.0, 0.0], [1.0, 1.0]])
        self._on_change = on_change
        self._on_release = on_release
        self._drag_index: int | None = None
        self._redraw()

    def set_points(self, pts: np.ndarray) -> None:
        self.points = np.array(pts, dtype=float).reshape(-1, 2)
        self._redraw()

    def _redraw(self) -> None:
        n = len(self.points)
        adj = np.stack([np.arange(n - 1), np.arange(1, n)], axis=1) if n > 1 else np.zeros((0, 2), int)
        self.setData(pos=self.points, adj=adj, size=11, symbol="o", symbolBrush=pg.mkBrush("#f0f0f0"),
                     symbolPen=pg.mkPen("#202020"), pen=pg.mkPen("#f0f0f0", width=2), pxMode=True)

    def _nearest(self, pos: QPointF) -> int | None:
        pts = self.scatter.pointsAt(pos)
        if len(pts) == 0:
            return None
        return int(pts[0].index())

    def mouseDragEvent(self, ev: MouseDragEvent) -> None:  # noqa: N802 - pyqtgraph override
        if ev.button() != Qt.MouseButton.LeftButton:
            ev.ignore()
            return
        if ev.isStart():
            self._drag_index = self._nearest(ev.buttonDownPos())
            if self._drag_index is None:
                ev.ignore()
                return
        elif self._drag_index is None:
            ev.ignore()
            return
        i = self._drag_index
        p = ev.pos()
        x = float(np.clip(p.x(), 0.0, 1.0))
        if i == 0:
            x = 0.0
        elif i == len(self.points) - 1:
            x = 1.0
        else:  # keep the points ordered
            x = float(np.clip(x, self.points[i - 1, 0] + 1e-4, self.points[i + 1, 0] - 1e-4))
        self.points[i] = (x, float(np.clip(p.y(), 0.0, 1.0)))
        self._redraw()
        self._on_change()
        if ev.isFinish():
            self._drag_index = None
            self._on_release()
        ev.accept()

    def mouseClickEvent(self, ev: MouseClickEvent) -> None:  # noqa: N802 - pyqtgraph override
        i = self._nearest(ev.pos())
        if ev.button() == Qt.MouseButton.RightButton and i is not None and 0 < i < len(self.points) - 1:
            self.points = np.delete(self.points, i, axis=0)
        elif ev.button() == Qt.MouseButton.LeftButton and i is None:
            x, y = float(np.clip(ev.pos().x(), 0, 1)), float(np.clip(ev.pos().y(), 0, 1))
            if not 0.0 < x < 1.0:
                ev.ignore()
                return
            self.points = np.vstack([self.points, [x, y]])
            self.points = self.points[np.argsort(self.points[:, 0], kind="stable")]
        else:
            ev.ignore()
            return
        ev.accept()
        self._redraw()
        self._on_change()
        self._on_release()


class TransferEditor(QWidget):
    """Edits the transfer function of A and B (shared) or of one slot, writing it to the session."""

    edited = Signal(object)

    def __init__(self, session: Session, parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.tfmod = transfer_module()
        self._target = "A"
        self._updating = False
        self._drawn_range: tuple[float, float] | None = None  # the value range the histogram is drawn over
        self.target_box = QComboBox()
        self.target_box.addItems(["A and B"])
        self.target_box.currentIndexChanged.connect(self._on_target)
        self.preset_box = QComboBox()
        self.lo_box = QDoubleSpinBox()
        self.hi_box = QDoubleSpinBox()
        for b in (self.lo_box, self.hi_box):
            b.setDecimals(4)
            b.setRange(-1e12, 1e12)
            b.setKeyboardTracking(False)
            b.valueChanged.connect(lambda _v: self.apply())
        self.reset_button = QPushButton("Fit range")
        self.reset_button.setToolTip(
            "set the value range to the data's min and max; where many voxels share one low background level "
            "above the minimum (an exact zero beside a noisy copy), the range starts there, so that the "
            "background stays transparent")
        self.reset_button.clicked.connect(self.fit_range)

        self.plot = pg.PlotWidget()
        self.plot.setObjectName("transfer_plot")
        self.plot.setMinimumHeight(90)
        self.plot.setMenuEnabled(False)
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.hideButtons()
        self.plot.setXRange(0, 1, padding=0.02)
        self.plot.setYRange(STRIP[0], 1.0, padding=0.02)
        self.plot.setLabel("left", "opacity")
        # the data's log histograms, one per slot in its colour (A filled, B outlined over it), on one
        # scale so that a shift between the two distributions shows
        self.hists = {
            "A": pg.PlotCurveItem(x=[0.0, 1.0], y=[0.0], stepMode="center", fillLevel=0,
                                  brush=pg.mkBrush(76, 139, 245, 70), pen=pg.mkPen(76, 139, 245, 200)),
            "B": pg.PlotCurveItem(x=[0.0, 1.0], y=[0.0], stepMode="center", pen=pg.mkPen(245, 167, 66, 230, width=1.5)),
        }
        for item in self.hists.values():
            self.plot.addItem(item)
        self.strip = pg.ImageItem()
        self.plot.addItem(self.strip)
        self.points = OpacityPoints(self._on_drag, self.apply)
        self.plot.addItem(self.points)
        self.range_label = QLabel("")
        self.range_label.setStyleSheet("color: #888;")

        top = QHBoxLayout()
        for w in (QLabel("for"), self.target_box, QLabel("colormap"), self.preset_box):
            top.addWidget(w)
        top.addStretch(1)
        rng = QHBoxLayout()
        for w in (QLabel("range"), self.lo_box, QLabel("to"), self.hi_box, self.reset_button):
            rng.addWidget(w)
        rng.addStretch(1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addLayout(top)
        lay.addWidget(self.plot, 1)
        lay.addLayout(rng)
        lay.addWidget(self.range_label)

        if self.tfmod is None:
            self.setEnabled(False)
            self.range_label.setText("transfer functions unavailable: the renderer package is not installed")
            return
        self.preset_box.addItems(self.tfmod.preset_names())
        if self.preset_box.findText("viridis") >= 0:
            self.preset_box.setCurrentText("viridis")
        self.preset_box.currentTextChanged.connect(lambda _t: self.apply())
        session.shared_tf_changed.connect(lambda _on: self._fill_targets())
        session.item_changed.connect(self._on_item_changed)
        session.transfer_changed.connect(self._on_session_tf)
        self._fill_targets()
        self.points.set_points([[0.0, 0.0], [0.25, 0.02], [1.0, 0.6]])
        self._draw_strip()

    # ------------------------------------------------------------------ state
    def _fill_targets(self) -> None:
        self._updating = True
        self.target_box.clear()
        self.target_box.addItems(["A and B"] if self.session.shared_tf else ["A", "B"])
        self._updating = False
        self._on_target()

    def _on_target(self, *_a) -> None:
        if self._updating:
            return
        self._target = "A" if self.target_box.currentText() in ("A and B", "A") else "B"
        tf = self.session.transfer(self._target)
        if tf is not None:
            self.show_tf(tf)
        self._draw_histogram()

    def _slots(self) -> list[str]:
        """The slots the edited function colours: both when shared, else the target."""
        return ["A", "B"] if self.session.shared_tf else [self._target]

    def _slot_data(self) -> dict[str, np.ndarray]:
        return {s: self.session.item(s).volume.scalar().data for s in self._slots() if self.session.item(s) is not None}

    def _on_item_changed(self, slot: str) -> None:
        if self.session.shared_tf and self.session.more_items_coming:  # one fit over both, on the second signal
            return
        if self.session.transfer(slot) is None or slot == self._target or self.session.shared_tf:
            self.fit_range(apply=True)

    def fit_range(self, apply: bool = True) -> None:
        arrays = list(self._slot_data().values())
        if self.tfmod is None or not any(a.size for a in arrays):
            return
        lo, hi = self.tfmod.display_range(*arrays)
        self._updating = True
        self.lo_box.setValue(lo)
        self.hi_box.setValue(hi)
        self._updating = False
        self._draw_histogram()
        if apply:
            self.apply()

    def _on_session_tf(self, slot: str, tf: Any) -> None:
        if slot == self._target and tf is not None and not self._updating:
            self.show_tf(tf)

    def show_tf(self, tf: Any) -> None:
        """Put ``tf``'s range, colormap and opacity points into the controls (no feedback)."""
        self._updating = True
        self.lo_box.setValue(tf.value_range[0])
        self.hi_box.setValue(tf.value_range[1])
        if self.preset_box.findText(tf.name) >= 0:
            self.preset_box.setCurrentText(tf.name)
        self.points.set_points(np.asarray(tf.opacity_points))
        self._updating = False
        self._draw_strip()
        self._draw_histogram()

    def current(self) -> Any:
        """The TransferFunction the controls describe."""
        lo, hi = self.lo_box.value(), self.hi_box.value()
        base = self.tfmod.TransferFunction.preset(self.preset_box.currentText(), value_range=(lo, hi))
        return base.with_opacity(self.points.points.copy())

    def apply(self) -> None:
        if self._updating or self.tfmod is None:
            return
        tf = self.current()
        self._draw_strip()
        if tf.value_range != self._drawn_range:  # a range typed in: the histogram and axis follow it
            self._draw_histogram()
        self._updating = True
        try:
            self.session.set_transfer(self._target, tf)
        finally:
            self._updating = False
        self.edited.emit(tf)

    def _on_drag(self) -> None:
        lo, hi = self.lo_box.value(), self.hi_box.value()
        self.range_label.setText(" ".join(f"({lo + x * (hi - lo):.3g}, {a:.2f})" for x, a in self.points.points))

    # ------------------------------------------------------------------ drawing
    def _draw_strip(self) -> None:
        if self.tfmod is None:
            return
        lut = self.tfmod.TransferFunction.preset(self.preset_box.currentText() or "viridis").lut(256)
        rgb = (np.clip(lut[:, :3], 0, 1) * 255).astype(np.uint8)
        self.strip.setImage(np.repeat(rgb[:, None, :], 2, axis=1), levels=(0, 255))
        self.strip.setRect(0.0, STRIP[0], 1.0, STRIP[1] - STRIP[0])

    def _draw_histogram(self) -> None:
        data = self._slot_data()
        lo, hi = self.lo_box.value(), self.hi_box.value()
        if hi <= lo:
            hi = lo + 1.0
        self._drawn_range = (lo, hi)
        # a strided sample of large volumes: the same picture, without seconds of counting on the GUI thread
        samples = {s: self.tfmod.value_sample(d) for s, d in data.items()}
        logs = {s: np.log1p(np.histogram(x, bins=HIST_BINS, range=(lo, hi))[0].astype(float))
                for s, x in samples.items() if x.size}
        top = max((float(h.max()) for h in logs.values()), default=0.0) or 1.0
        edges = np.linspace(0, 1, HIST_BINS + 1)
        for s, item in self.hists.items():
            if s in logs:
                item.setData(edges, logs[s] / top * 0.95)
                item.setVisible(True)
            else:
                item.setData([0, 1], [0])
                item.setVisible(False)
        names = " and ".join(f"{s} ({'blue' if s == 'A' else 'orange'})" for s in logs) or "the data"
        total = sum(x.size for x in samples.values())
        below = sum(int(np.count_nonzero(x < lo)) for x in samples.values())
        under = f"; {below / total:.1%} of the voxels lie below it (transparent)" if below and total else ""
        self.plot.setLabel("bottom", f"value ({lo:.3g} … {hi:.3g}){under}; log histogram of {names}")
        # the curve lives on t in [0, 1]; the axis names the data values there
        self.plot.getAxis("bottom").setTicks([[((v - lo) / (hi - lo), f"{v:.4g}") for v in value_ticks(lo, hi)]])
