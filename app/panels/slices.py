"""Slice panel: one plane along any axis through A, B and the difference (pyqtgraph ImageViews)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from app.panels.slot_view import ElidedLabel
from app.panels.ticks import two_ticks

if TYPE_CHECKING:
    from pyqtgraph.GraphicsScene.mouseEvents import MouseDragEvent

    from core.region import Region

AXES = ("z (axial)", "y", "x")


# the 3D views' cut at the shown slice: (label, side kept)
CUT_CHOICES = (("3D: whole", None), ("3D: cut, keep ≤ slice", "below"), ("3D: cut, keep ≥ slice", "above"))


def slice_of(array: np.ndarray, axis: int, index: int) -> np.ndarray:
    """The 2D plane ``index`` of a ``[D, H, W]`` array perpendicular to ``axis``, as displayed (x right)."""
    index = int(np.clip(index, 0, array.shape[axis] - 1))
    plane = np.take(array, index, axis=axis)
    return np.ascontiguousarray(plane.T)  # ImageView's first axis runs left to right


def voxel_at(axis: int, index: int, u: int, v: int) -> tuple[int, int, int]:
    """The (z, y, x) voxel under image pixel (``u``, ``v``) of the plane :func:`slice_of` shows.

    The plane keeps the two other axes in order (a0, a1) and is displayed transposed, so ``u``
    runs along a1 (drawn to the right) and ``v`` along a0 (drawn upwards).
    """
    a0, a1 = (k for k in range(3) if k != axis)
    voxel = [0, 0, 0]
    voxel[axis], voxel[a0], voxel[a1] = int(index), int(v), int(u)
    return voxel[0], voxel[1], voxel[2]


class BandViewBox(pg.ViewBox):
    """A ViewBox in which Shift + left drag draws a box (a rubber band) instead of panning; on release
    it emits the box in image pixels (u right, v up)."""

    band_drawn = Signal(object)  # QRectF

    def __init__(self) -> None:
        super().__init__(enableMenu=False)
        self.band = pg.QtWidgets.QGraphicsRectItem()
        self.band.setPen(pg.mkPen((255, 184, 64), width=1.5, style=Qt.PenStyle.DashLine, cosmetic=True))
        self.band.setBrush(pg.mkBrush(255, 184, 64, 40))
        self.band.setZValue(20)
        self.band.setVisible(False)
        self.addItem(self.band, ignoreBounds=True)
        self._banding = False

    def mouseDragEvent(self, ev: MouseDragEvent, axis: int | None = None) -> None:  # noqa: N802 (Qt's name)
        if ev.isStart():  # Shift when the drag starts decides: a band, or the usual pan
            self._banding = ev.button() == Qt.MouseButton.LeftButton and bool(
                ev.modifiers() & Qt.KeyboardModifier.ShiftModifier)
        if not self._banding:
            super().mouseDragEvent(ev, axis)
            return
        ev.accept()
        rect = QRectF(self.mapSceneToView(ev.buttonDownScenePos()), self.mapSceneToView(ev.scenePos())).normalized()
        if ev.isFinish():
            self._banding = False
            self.band.setVisible(False)
            self.band_drawn.emit(rect)
        else:
            self.band.setRect(rect)
            self.band.setVisible(True)


def _image_view() -> pg.ImageView:
    # a bare ViewBox (no axes): cheaper to lay out, and the slice index is shown above anyway
    view = pg.ImageView(view=BandViewBox())
    view.ui.roiBtn.hide()
    view.ui.menuBtn.hide()
    # A and B share their levels (set by the panel); three histogram editors would crowd the dock
    view.ui.histogram.hide()
    # no context menus: pyqtgraph keeps menus of named views in a global registry that trips over
    # views deleted with their window
    view.ui.histogram.vb.setMenuEnabled(False)
    view.ui.roiPlot.setMenuEnabled(False)
    view.getView().setMenuEnabled(False)
    # the second in-plane axis grows upwards, as in the 3D views (z up; y up seen from above) and
    # the feature maps
    view.getView().invertY(False)
    return view


class SlicePanel(QWidget):
    """Three linked slice images; A and B share their levels so equal values look equal."""

    plane_changed = Signal(object)  # (axis, fraction of the box) of the shown plane, or None without data
    region_requested = Signal(int, object)  # axis, ((a0 start, stop), (a1 start, stop)): the box zoomed into
    whole_requested = Signal()  # compare the whole volumes again
    marked_changed = Signal(object)  # the voxel (z, y, x) ringed in the images, or None
    cut_changed = Signal(object)  # the side of the shown plane the 3D views keep: "below", "above" or None

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.arrays: dict[str, np.ndarray | None] = {"A": None, "B": None, "diff": None}
        self.diff_label = "A − B"
        self.diff_summary = "mean"  # how the profile sums up a metric's map over a slice
        self.axis_box = QComboBox()
        self.axis_box.addItems(AXES)
        self.axis_box.currentIndexChanged.connect(self._on_axis)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.valueChanged.connect(lambda _v: self.update_images())
        self.index_label = QLabel("0")
        self.index_label.setMinimumWidth(48)
        # the voxel under the mouse in any of the three images, with A's, B's and the difference's value
        self.probe_label = QLabel("")
        self.probe_label.setObjectName("slice_probe")
        # the readout takes the room left beside the controls and clips a long text, so that neither its text
        # nor a narrow dock squeezes the slice slider away
        self.probe_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.probe_label.setStyleSheet("color: #888;")
        self.views = {"A": _image_view(), "B": _image_view(), "diff": _image_view()}
        # long titles ("MSE (region) map: 0.4353") end in "…" with the whole text in the tooltip
        self.titles = {k: ElidedLabel(t) for k, t in (("A", "A"), ("B", "B"), ("diff", self.diff_label))}
        for t in self.titles.values():
            t.setAlignment(Qt.AlignmentFlag.AlignCenter)
            # a title with a value in it must not widen its column (the images would shift under the mouse)
            t.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.views["diff"].setColorMap(pg.colormap.get("CET-D1"))
        for k in ("A", "B"):
            self.views[k].setColorMap(pg.colormap.get("viridis"))
        # A's and B's views pan and zoom together
        self.views["B"].getView().setXLink(self.views["A"].getView())
        self.views["B"].getView().setYLink(self.views["A"].getView())
        self.views["diff"].getView().setXLink(self.views["A"].getView())
        self.views["diff"].getView().setYLink(self.views["A"].getView())
        for view in self.views.values():
            view.scene.sigMouseMoved.connect(lambda pos, view=view: self._on_mouse(view, pos))
            view.getView().band_drawn.connect(self._on_band)
        # the region of interest where the shown plane cuts it (same colour as its outline in the 3D views)
        self.region = None
        self.region_rects = {}
        for k, view in self.views.items():
            rect = pg.QtWidgets.QGraphicsRectItem()
            rect.setPen(pg.mkPen((255, 184, 64), width=1.5, cosmetic=True))
            rect.setZValue(10)
            rect.setVisible(False)
            view.getView().addItem(rect)
            self.region_rects[k] = rect

        # a voxel asked for (the largest difference, say): a ring around it while its slice is shown
        self.marked: tuple[int, int, int] | None = None
        self.markers = {}
        for k, view in self.views.items():
            ring = pg.ScatterPlotItem(size=15, symbol="o", pen=pg.mkPen((255, 255, 255), width=2),
                                      brush=pg.mkBrush(0, 0, 0, 0), pxMode=True)
            ring.setZValue(11)
            ring.setVisible(False)
            view.getView().addItem(ring)
            self.markers[k] = ring

        top = QHBoxLayout()
        top.addWidget(QLabel("axis"))
        top.addWidget(self.axis_box)
        top.addWidget(QLabel("slice"))
        self.slider.setMinimumWidth(120)
        top.addWidget(self.slider, 2)
        top.addWidget(self.index_label)
        self.cut_box = QComboBox()
        for text, side in CUT_CHOICES:
            self.cut_box.addItem(text, side)
        self.cut_box.setToolTip("cut the 3D views open at the shown slice (View › Cut the views at the slice, "
                                "Ctrl+K): they keep the slices up to this one, or from this one on, and the open "
                                "face shows this slice drawn with the transfer function")
        self.cut_box.currentIndexChanged.connect(lambda _i: self.cut_changed.emit(self.cut_side))
        top.addWidget(self.cut_box)
        self.region_button = QPushButton("Region from view")
        self.region_button.setToolTip("compare only what the slice images show now (zoom in with the wheel, pan by "
                                      "dragging): those rows and columns, all planes along this axis. "
                                      "Or Shift + drag a box on any slice image")
        self.region_button.clicked.connect(self._request_region)
        top.addWidget(self.region_button)
        self.whole_button = QPushButton("Whole")
        self.whole_button.setToolTip("compare the whole volumes again (Compare › Whole volumes, Ctrl+Shift+I)")
        self.whole_button.setEnabled(False)  # only while a region is set
        self.whole_button.clicked.connect(self.whole_requested)
        top.addWidget(self.whole_button)
        top.addWidget(self.probe_label, 3)
        # the difference summarised slice by slice along the axis (slice index upwards, as z is in the
        # views); the line marks the shown slice and can be dragged, a click picks a slice
        self.profile = pg.PlotWidget()
        self.profile.setObjectName("slice_profile")
        self.profile.setMenuEnabled(False)
        self.profile.setMouseEnabled(x=False, y=False)
        self.profile.hideButtons()
        self.profile.setFixedWidth(150)  # fixed: its tick labels changing must not move the images beside it
        self.profile.getAxis("bottom").setStyle(tickTextOffset=2)
        self.profile_curve = self.profile.plot([], [], pen=pg.mkPen("#f5a742", width=1.5))
        self.profile_line = pg.InfiniteLine(angle=0, movable=True, pen=pg.mkPen("#4c8bf5", width=1.5))
        self.profile_line.sigPositionChanged.connect(self._on_profile_line)
        self.profile.addItem(self.profile_line)
        self.profile.scene().sigMouseClicked.connect(self._on_profile_click)
        self.profile_title = ElidedLabel("per slice")
        self.profile_title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.profile_title.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.profile_values = np.zeros(0)
        grid = QGridLayout()
        grid.setSpacing(2)
        for i, k in enumerate(("A", "B", "diff")):
            grid.addWidget(self.titles[k], 0, i)
            grid.addWidget(self.views[k], 1, i)
            grid.setColumnStretch(i, 1)
        grid.addWidget(self.profile_title, 0, 3)
        grid.addWidget(self.profile, 1, 3)
        grid.setRowStretch(1, 1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addLayout(top)
        lay.addLayout(grid, 1)

    @property
    def axis(self) -> int:
        return self.axis_box.currentIndex()

    def set_arrays(self, a: np.ndarray | None, b: np.ndarray | None, diff: np.ndarray | None,
                   diff_label: str = "A − B", summary: str = "mean") -> None:
        """New data (``[D, H, W]`` scalar arrays; None where missing); keeps the axis and relative index.
        ``summary``: how the profile sums up a metric's map over a slice ("mean", or "max" for Max error)."""
        old_n = self._axis_length()
        old_i = self.slider.value()
        old_a = self.arrays.get("A")
        if (old_a is None or a is None or old_a.shape != a.shape) and self.marked is not None:
            self.marked = None  # another grid: the voxel marked is not that one any more
            self.marked_changed.emit(None)
        self.arrays = {"A": a, "B": b, "diff": diff}
        self.diff_label = diff_label
        self.diff_summary = summary
        self.titles["diff"].setText(diff_label)
        n = self._axis_length()
        self.slider.blockSignals(True)
        self.slider.setRange(0, max(0, n - 1))
        self.slider.setValue(n // 2 if old_n == 0 else int(round(old_i * (n - 1) / max(1, old_n - 1))))
        self.slider.blockSignals(False)
        self.update_profile()
        self.update_images()

    def _axis_length(self) -> int:
        shapes = [x.shape[self.axis] for x in self.arrays.values() if x is not None]
        return min(shapes) if shapes else 0

    def _on_axis(self, _i: int) -> None:
        n = self._axis_length()
        self.slider.blockSignals(True)
        self.slider.setRange(0, max(0, n - 1))
        self.slider.setValue(n // 2)
        self.slider.blockSignals(False)
        self.update_profile()
        self.update_images()

    def update_profile(self) -> None:
        """The difference's per-slice RMS (A − B) or mean (a metric's map) along the axis."""
        diff = self.arrays["diff"]
        if diff is None:
            self.profile_values = np.zeros(0)
            self.profile_curve.setData([], [])
            self.profile_title.setText("per slice")
            return
        from core.compare import per_slice

        signed = self.diff_label == "A − B"  # the signed difference: its RMS; a metric's map: its mean
        self.profile_values = per_slice(diff, self.axis, rms=signed, summary=self.diff_summary)
        what = "RMS" if signed else self.diff_summary
        idx = np.arange(self.profile_values.size)
        self.profile_curve.setData(self.profile_values, idx)
        self.profile.setYRange(-0.5, max(0.5, idx.size - 0.5), padding=0)
        finite = self.profile_values[np.isfinite(self.profile_values)]
        if finite.size:  # two round values label the narrow plot (automatic ticks run into each other)
            ticks = two_ticks(float(finite.min()), float(finite.max()))
            self.profile.getAxis("bottom").setTicks([[(t, f"{t:.3g}") for t in ticks]])
        name = AXES[self.axis].split()[0]
        self.profile_title.setText(f"RMS(A − B) per {name}" if signed else f"{what} {self.diff_label} per {name}")
        self.profile_title.setToolTip(f"{what} of {self.diff_label} over each slice along {name}; drag the line or "
                                      "click to show that slice")

    def _on_profile_line(self, line) -> None:
        n = self._axis_length()
        if n:
            i = int(np.clip(round(line.value()), 0, n - 1))
            if i != self.slider.value():
                self.slider.setValue(i)

    def _on_profile_click(self, ev) -> None:
        vb = self.profile.getPlotItem().vb
        if not vb.sceneBoundingRect().contains(ev.scenePos()):
            return
        self.profile_line.setValue(vb.mapSceneToView(ev.scenePos()).y())

    def pixel_box(self, u0: float, u1: float, v0: float, v1: float) -> tuple[tuple[int, int], tuple[int, int]] | None:
        """The voxels of the plane that image pixels u0..u1 (right) × v0..v1 (up) touch, clipped to the
        grid: ((a0 start, stop), (a1 start, stop)), the two in-plane axes in array order; None without data."""
        arr = self.arrays["A"] if self.arrays["A"] is not None else self.arrays["B"]
        if arr is None:
            return None
        a0, a1 = (k for k in range(3) if k != self.axis)

        def clip(lo: float, hi: float, n: int) -> tuple[int, int]:  # whole voxels, any part of which is inside
            return int(np.clip(np.floor(lo), 0, n)), int(np.clip(np.ceil(hi), 0, n))

        return clip(v0, v1, arr.shape[a0]), clip(u0, u1, arr.shape[a1])

    def visible_box(self) -> tuple[tuple[int, int], tuple[int, int]] | None:
        """The voxels of the plane the slice images show now (see :meth:`pixel_box`), or None without data."""
        (x0, x1), (y0, y1) = self.views["A"].getView().viewRange()
        return self.pixel_box(x0, x1, y0, y1)

    def _request_region(self) -> None:
        box = self.visible_box()
        if box is not None:
            self.region_requested.emit(self.axis, box)

    def _on_band(self, rect: QRectF) -> None:
        """A box drawn with Shift + drag: its voxels become the region (all planes along this axis); a box
        that covers no whole voxel row or column on the grid (a click, a drag outside the image) is ignored."""
        box = self.pixel_box(rect.left(), rect.right(), rect.top(), rect.bottom())
        if box is not None and all(hi > lo for lo, hi in box) and rect.width() >= 1 and rect.height() >= 1:
            self.region_requested.emit(self.axis, box)

    def set_region(self, region: Region | None) -> None:
        """Outline ``region`` (((z0, z1), (y0, y1), (x0, x1)) of A's voxels, or None) on the planes it crosses."""
        self.region = region
        self.whole_button.setEnabled(region is not None)
        self._draw_region()

    def region_rect(self) -> tuple[float, float, float, float] | None:
        """(u, v, width, height) of the region on the shown plane in image pixels, or None where it is not cut."""
        if self.region is None or not self._axis_length():
            return None
        lo, hi = self.region[self.axis]
        if not lo <= self.slider.value() < hi:
            return None
        a0, a1 = (k for k in range(3) if k != self.axis)
        (v0, v1), (u0, u1) = self.region[a0], self.region[a1]
        return (float(u0), float(v0), float(u1 - u0), float(v1 - v0))

    def _draw_region(self) -> None:
        rect = self.region_rect()
        for item in self.region_rects.values():
            item.setVisible(rect is not None)
            if rect is not None:
                item.setRect(*rect)

    @property
    def cut_side(self) -> str | None:
        """The side of the shown plane the 3D views keep ("below": slices up to it, "above"), or None."""
        return self.cut_box.currentData()

    def set_cut_side(self, side: str | None) -> None:
        """Cut the 3D views at the shown plane keeping ``side`` ("below" or "above"), or not (None)."""
        sides = [choice for _text, choice in CUT_CHOICES]
        if side not in sides:
            raise ValueError(f"a cut keeps one of {sides[1:]} (or None), not {side!r}")
        self.cut_box.setCurrentIndex(sides.index(side))

    @property
    def plane(self) -> tuple[int, float] | None:
        """(array axis, fraction of the box at the centre of the shown slice), None without data."""
        n = self._axis_length()
        return (self.axis, (self.slider.value() + 0.5) / n) if n else None

    def update_images(self) -> None:
        i = self.slider.value()
        self.index_label.setText(f"{i}")
        if abs(self.profile_line.value() - i) > 1e-9:
            self.profile_line.blockSignals(True)
            self.profile_line.setValue(i)
            self.profile_line.blockSignals(False)
        self.plane_changed.emit(self.plane)
        self._draw_region()
        ab = [x for x in (self.arrays["A"], self.arrays["B"]) if x is not None]
        levels = None
        if ab:
            lo = float(min(x.min() for x in ab))
            hi = float(max(x.max() for x in ab))
            levels = (lo, hi if hi > lo else lo + 1.0)
        for k, view in self.views.items():
            arr = self.arrays[k]
            if arr is None or i >= arr.shape[self.axis]:
                view.clear()
                continue
            img = slice_of(arr, self.axis, i)
            if k == "diff":
                m = float(np.abs(arr).max()) or 1.0
                signed = float(arr.min()) < 0
                lv = (-m, m) if signed else (0.0, m)
                if signed != getattr(self, "_diff_signed", None):  # diverging map for A − B, sequential for maps
                    view.setColorMap(pg.colormap.get("CET-D1" if signed else "inferno"))
                    self._diff_signed = signed
            else:
                lv = levels
            view.setImage(img, autoRange=False, autoLevels=False, levels=lv, autoHistogramRange=False)
        if not getattr(self, "_ranged", False) and ab:
            self.views["A"].getView().autoRange()
            self._ranged = True
        self._draw_marker()

    def show_voxel(self, voxel: tuple[int, int, int] | None) -> None:
        """Show the slice through ``voxel`` (z, y, x) along the current axis, ring it in the three images
        and read out its values; None removes the ring."""
        n = self._axis_length()
        if voxel is None or not n:
            if self.marked is not None:
                self.marked = None
                self.marked_changed.emit(None)
            self._draw_marker()
            return
        self.marked = (int(voxel[0]), int(voxel[1]), int(voxel[2]))
        self.marked_changed.emit(self.marked)
        if self.slider.value() != self.marked[self.axis]:
            self.slider.setValue(self.marked[self.axis])  # redraws, ring included
        else:
            self._draw_marker()
        a0, a1 = (k for k in range(3) if k != self.axis)
        self.probe(self.marked[a1], self.marked[a0])

    def _draw_marker(self) -> None:
        on = self.marked is not None and self._axis_length() > 0 and self.slider.value() == self.marked[self.axis]
        for k, ring in self.markers.items():
            ring.setVisible(bool(on) and self.arrays[k] is not None)
            if on:
                a0, a1 = (j for j in range(3) if j != self.axis)
                ring.setData([self.marked[a1] + 0.5], [self.marked[a0] + 0.5])  # the voxel's centre, as drawn

    def _on_mouse(self, view: pg.ImageView, scene_pos: QPointF) -> None:
        item = view.getImageItem()
        if item.image is None or not item.sceneBoundingRect().contains(scene_pos):
            self.probe_label.setText("")
            self._show_titles({})
            return
        p = item.mapFromScene(scene_pos)
        self.probe(int(np.floor(p.x())), int(np.floor(p.y())))

    def probe(self, u: int, v: int) -> str:
        """Show (and return) the voxel under displayed pixel (``u``, ``v``) and the values there."""
        voxel = voxel_at(self.axis, self.slider.value(), u, v)
        parts, values = [], {}
        for key, name in (("A", "A"), ("B", "B"), ("diff", self.diff_label)):
            arr = self.arrays[key]
            if arr is not None and all(0 <= c < n for c, n in zip(voxel, arr.shape)):
                values[key] = f"{float(arr[voxel]):.5g}"
                parts.append(f"{name} {values[key]}")
        text = f"z {voxel[0]}  y {voxel[1]}  x {voxel[2]}:  " + "   ".join(parts) if parts else ""
        self.probe_label.setText(text)
        self._show_titles(values)
        return text

    def _show_titles(self, values: dict[str, str]) -> None:
        """Each image's title, with the value under the mouse when there is one (the readout beside the
        controls may be cut off in a narrow dock; the titles always have room)."""
        for key, base in (("A", "A"), ("B", "B"), ("diff", self.diff_label)):
            self.titles[key].setText(f"{base}: {values[key]}" if key in values else base)

    def image(self, key: str) -> np.ndarray | None:
        """The 2D array shown in view ``key`` ("A", "B", "diff")."""
        return self.views[key].image
