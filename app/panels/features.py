"""Feature-map panel: a learned metric's per-scale features of A and B and their weighted difference."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.panels.slices import voxel_at
from app.session import Session

if TYPE_CHECKING:
    from core.metrics.base import ScaleFeatures

PANES = (("a", "A"), ("b", "B"), ("diff", "weighted difference"))


def feature_plane(array: np.ndarray, channel: int, axis: int, index: int) -> np.ndarray:
    """One 2D image of a ``[C, D, H, W]`` (or ``[C, H, W]``) feature array, x running left to right."""
    ch = array[int(np.clip(channel, 0, array.shape[0] - 1))]
    if ch.ndim == 3:
        ch = np.take(ch, int(np.clip(index, 0, ch.shape[axis] - 1)), axis=axis)
    return np.ascontiguousarray(np.asarray(ch, dtype=np.float32).T)


class FeaturePanel(QWidget):
    """Choose metric, scale, channel, slice axis and index; shows A, B and the weighted difference."""

    features_requested = Signal(str)  # metric whose features should be computed

    def __init__(self, session: Session, catalog: dict[str, dict[str, Any]], parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.catalog = catalog
        self._updating = False
        self._depth = 0  # planes along the axis the slider runs through (0: no maps shown yet)
        self.metric_box = QComboBox()
        self.metric_box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.metric_box.setToolTip("learned metric whose feature maps are shown")
        self.scale_box = QComboBox()
        self.scale_box.setToolTip("scale (layer) of the network")
        self.channel_box = QSpinBox()
        self.channel_box.setPrefix("ch ")
        self.axis_box = QComboBox()
        self.axis_box.addItems(["z", "y", "x"])
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setMinimumWidth(80)
        self.compute_button = QPushButton("Compute feature maps")
        self.compute_button.setVisible(False)
        self.compute_button.clicked.connect(lambda: self.features_requested.emit(self.metric_box.currentData() or ""))
        self.info = QLabel("feature maps appear once a learned metric has compared A and B")
        self.info.setWordWrap(True)
        self.info.setStyleSheet("color: #888;")

        self.canvas = pg.GraphicsLayoutWidget()
        self.canvas.setObjectName("feature_canvas")
        self.canvas.setMinimumHeight(90)
        self.images: dict[str, pg.ImageItem] = {}
        self.boxes: dict[str, pg.ViewBox] = {}
        cmap = pg.colormap.get("viridis")
        for key, title in PANES:
            vb = self.canvas.addViewBox(row=1, col=len(self.images))
            label = self.canvas.addLabel(title, row=0, col=len(self.images))
            label.setMaximumHeight(20)
            vb.setAspectLocked(True)
            vb.setMenuEnabled(False)
            img = pg.ImageItem()
            img.setColorMap(pg.colormap.get("inferno") if key == "diff" else cmap)
            vb.addItem(img)
            self.images[key] = img
            self.boxes[key] = vb

        self.canvas.scene().sigMouseMoved.connect(self._on_mouse)
        self.canvas.ci.layout.setRowStretchFactor(1, 10)  # the images get the height, not the titles
        self.canvas.ci.setContentsMargins(2, 2, 2, 2)
        row1 = QHBoxLayout()
        for w in (QLabel("metric"), self.metric_box, QLabel("scale"), self.scale_box, self.channel_box):
            row1.addWidget(w)
        row1.addStretch(1)
        row2 = QHBoxLayout()
        for w in (QLabel("axis"), self.axis_box, QLabel("slice")):
            row2.addWidget(w)
        row2.addWidget(self.slider, 1)
        row2.addWidget(self.compute_button)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addLayout(row1)
        lay.addLayout(row2)
        lay.addWidget(self.info)
        lay.addWidget(self.canvas, 1)

        self.metric_box.currentIndexChanged.connect(self._on_metric)
        self.scale_box.currentIndexChanged.connect(self._on_scale)
        self.channel_box.valueChanged.connect(lambda _v: self.update_images())
        self.axis_box.currentIndexChanged.connect(self._on_axis)
        self.slider.valueChanged.connect(lambda _v: self.update_images())
        session.metrics_changed.connect(lambda _m: self.fill_metrics())
        session.feature_metric_changed.connect(self._on_session_metric)
        session.comparison_changed.connect(lambda _r: self.refresh())
        self.fill_metrics()

    # ------------------------------------------------------------------ choices
    def learned_metrics(self) -> list[str]:
        return [m for m in self.session.metrics if self.catalog.get(m, {}).get("learned")]

    def fill_metrics(self) -> None:
        current = self.session.feature_metric
        self._updating = True
        self.metric_box.clear()
        for m in self.learned_metrics():
            self.metric_box.addItem(self.catalog[m].get("label") or m, m)
        i = self.metric_box.findData(current)
        self.metric_box.setCurrentIndex(max(0, i))
        self._updating = False
        if self.metric_box.count() == 0:
            self.info.setText("no learned metric chosen (or installed): feature maps come from learned metrics")
        self._on_metric()

    def _on_session_metric(self, name: str) -> None:
        i = self.metric_box.findData(name)
        if i >= 0 and i != self.metric_box.currentIndex():
            self.metric_box.setCurrentIndex(i)

    def _on_metric(self, *_args) -> None:
        if self._updating:
            return
        m = self.metric_box.currentData() or ""
        self.session.set_feature_metric(m)
        self.refresh()

    def features(self) -> dict[str, Any] | None:
        d = self.session.distance(self.metric_box.currentData() or "")
        return None if d is None else d.features

    def refresh(self) -> None:
        """Refill the scale list from the current comparison and redraw."""
        feats = self.features()
        metric = self.metric_box.currentData() or ""
        d = self.session.distance(metric)
        self.compute_button.setVisible(bool(metric) and d is not None and not feats)
        self._updating = True
        current = self.scale_box.currentText()
        self.scale_box.clear()
        for name in (feats or {}):
            self.scale_box.addItem(name)
        if current and self.scale_box.findText(current) >= 0:
            self.scale_box.setCurrentText(current)
        self._updating = False
        if not feats:
            for img in self.images.values():
                img.clear()
            if metric and d is None:
                self.info.setText(f"{metric}: no distance yet (load A and B, or see the distance table)")
            elif metric:
                why = (getattr(d, "info", None) or {}).get("features")  # e.g. too large to keep
                self.info.setText(why or f"{metric}: feature maps were not kept with this distance")
            return
        self._on_scale()

    def _on_scale(self, *_args) -> None:
        if self._updating:
            return
        sf = self.current_scale_features()
        if sf is None:
            return
        self.channel_box.setRange(0, sf.a.shape[0] - 1)
        spatial = sf.a.ndim == 4
        self.axis_box.setEnabled(spatial)
        self.slider.setEnabled(spatial)
        self._set_slider_range(sf)
        self.session.select_scale(self.metric_box.currentData() or "", self.scale_box.currentText())
        self.update_images()

    def _on_axis(self, _i: int) -> None:
        sf = self.current_scale_features()
        if sf is not None:
            self._set_slider_range(sf)
        self.update_images()

    def _set_slider_range(self, sf) -> None:
        if sf.a.ndim != 4:
            return
        n = sf.a.shape[1 + self.axis_box.currentIndex()]
        old_n, old_i = self._depth, self.slider.value()
        self._depth = n
        self.slider.blockSignals(True)
        self.slider.setRange(0, n - 1)
        # the same relative depth on a map of another size (a coarser scale, a region); the middle at first
        self.slider.setValue(n // 2 if old_n <= 1 else int(round(old_i * (n - 1) / (old_n - 1))))
        self.slider.blockSignals(False)

    def current_scale_features(self) -> ScaleFeatures | None:
        feats = self.features() or {}
        return feats.get(self.scale_box.currentText())

    # ------------------------------------------------------------------ drawing
    def update_images(self) -> None:
        sf = self.current_scale_features()
        if sf is None:
            return
        c, axis, idx = self.channel_box.value(), self.axis_box.currentIndex(), self.slider.value()
        planes = {k: feature_plane(getattr(sf, k), c, axis, idx) for k, _t in PANES}
        # one colour scale for A and B, robust to the few extreme values a convolution's zero padding
        # leaves along the borders (they would wash out the interior); the mouse readout gives exact values
        both = np.concatenate((planes["a"].ravel(), planes["b"].ravel()))
        lo, hi = (float(v) for v in np.percentile(both, (1.0, 99.0)))
        for k, img in self.images.items():
            levels = (lo, hi if hi > lo else lo + 1) if k != "diff" else (0.0, float(planes["diff"].max()) or 1.0)
            img.setImage(planes[k], levels=levels)
        w = float(np.asarray(sf.weights).reshape(-1)[min(c, np.asarray(sf.weights).size - 1)]) \
            if np.asarray(sf.weights).size else float("nan")
        shape = "×".join(str(n) for n in sf.a.shape[1:])
        self.info.setText(f"scale {self.scale_box.currentText()}: {sf.a.shape[0]} channels of {shape}; "
                          f"channel {c} weight {w:.4g}")
        for vb in self.boxes.values():
            vb.enableAutoRange()  # refit when the plane's shape changes (scale, axis)

    def _on_mouse(self, scene_pos) -> None:
        for img in self.images.values():
            if img.image is not None and img.sceneBoundingRect().contains(scene_pos):
                p = img.mapFromScene(scene_pos)
                self.probe(int(np.floor(p.x())), int(np.floor(p.y())))
                return
        self.canvas.setToolTip("")

    def probe(self, u: int, v: int) -> str:
        """Tooltip (returned too) with the feature position under displayed pixel (``u``, ``v``) and the
        values of the three panes there."""
        sf = self.current_scale_features()
        shown = {k: self.images[k].image for k, _t in PANES}
        if sf is None or any(a is None for a in shown.values()) or not (
                0 <= u < shown["a"].shape[0] and 0 <= v < shown["a"].shape[1]):
            self.canvas.setToolTip("")
            return ""
        if sf.a.ndim == 4:
            z, y, x = voxel_at(self.axis_box.currentIndex(), self.slider.value(), u, v)
            where = f"z {z}, y {y}, x {x}"
        else:
            where = f"y {v}, x {u}"
        values = "   ".join(f"{title} {float(shown[k][u, v]):.5g}" for k, title in PANES)
        text = f"{self.scale_box.currentText()} channel {self.channel_box.value()} at {where}\n{values}"
        self.canvas.setToolTip(text)
        return text

    def shown(self, key: str) -> np.ndarray | None:
        """The image shown in pane ``key`` ("a", "b", "diff")."""
        return self.images[key].image
