"""One view slot (A, B or the difference): a header with name and shape, the 3D view, and drops."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QMimeData, Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDragMoveEvent, QDropEvent, QResizeEvent
from PySide6.QtWidgets import QComboBox, QFrame, QHBoxLayout, QLabel, QSizePolicy, QSpinBox, QVBoxLayout, QWidget

from app.loading import LoadedItem

VIEW_BACKGROUND = "#1e1f22"
SLOT_COLORS = {"A": "#4c8bf5", "B": "#f5a742", "diff": "#b36bd6"}


class ElidedLabel(QLabel):
    """A one-line label that ends in "…" when it is narrower than its text, and then shows the whole text
    in its tooltip; ``text()`` is always the whole text."""

    def __init__(self, text: str = "", parent: QWidget | None = None):
        super().__init__(parent)
        self._full = ""
        self._tip = ""
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.setText(text)

    def setText(self, text: str) -> None:  # noqa: N802 - Qt override
        self._full = text
        self._elide()

    def text(self) -> str:
        return self._full

    def setToolTip(self, tip: str) -> None:  # noqa: N802 - Qt override
        self._tip = tip
        self._elide()

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self._elide()

    def _elide(self) -> None:
        shown = self.fontMetrics().elidedText(self._full, Qt.TextElideMode.ElideRight, max(0, self.width()))
        QLabel.setText(self, shown)
        cut = shown != self._full
        QLabel.setToolTip(self, "\n".join(t for t in ((self._full if cut else ""), self._tip) if t))


class ColorLegend(QWidget):
    """A small colour bar for a 3D view: the transfer function's colours from its low value (left) to its
    high value (right), both written beside it, so that a colour in the view reads as a value."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.lo = QLabel()
        self.hi = QLabel()
        self.bar = QLabel()
        self.bar.setFixedSize(72, 10)
        for w in (self.lo, self.hi):
            w.setStyleSheet("color: #666; font-size: 8pt;")
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(3)
        lay.addWidget(self.lo)
        lay.addWidget(self.bar)
        lay.addWidget(self.hi)
        self.colors = None  # [W, 3] uint8: the colours the bar shows
        self.setVisible(False)

    def set_transfer(self, tf: Any) -> None:
        """Show ``tf``'s colours over its value range (None hides the legend)."""
        if tf is None:
            self.setVisible(False)
            return
        import numpy as np
        from PySide6.QtGui import QImage, QPixmap

        width, height = self.bar.width(), self.bar.height()
        rgb = np.clip(np.asarray(tf.colors(np.linspace(0.0, 1.0, width))) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        self.colors = rgb
        img = np.ascontiguousarray(np.broadcast_to(rgb[None], (height, width, 3)))
        self.bar.setPixmap(QPixmap.fromImage(QImage(img.data, width, height, 3 * width,
                                                    QImage.Format.Format_RGB888).copy()))
        lo, hi = tf.value_range
        self.lo.setText(f"{lo:.3g}")
        self.hi.setText(f"{hi:.3g}")
        self.setToolTip(f"colour scale of this view: {lo:.6g} (left) to {hi:.6g} (right)")
        self.setVisible(True)


def dropped_paths(mime: QMimeData | None) -> list[str]:
    """Local file paths carried by a drag's mime data (URLs that are not files are ignored)."""
    if mime is None or not mime.hasUrls():
        return []
    return [u.toLocalFile() for u in mime.urls() if u.isLocalFile() and u.toLocalFile()]


def make_volume_view(parent: QWidget | None = None) -> QWidget | None:
    """The renderer's VolumeView, or None when the renderer package is not installed."""
    try:
        from renderer.gl_view import VolumeView
    except ModuleNotFoundError as exc:
        if exc.name not in ("renderer.gl_view", "renderer"):
            raise
        return None
    return VolumeView(parent)


class SlotView(QFrame):
    """Header (badge, title, variable and time selectors) over a VolumeView; accepts file drops."""

    files_dropped = Signal(str, list)  # slot, paths
    variable_chosen = Signal(str, str)  # slot, variable
    index_chosen = Signal(str, int)  # slot, time index
    view_created = Signal(object)  # the VolumeView, when a lazy slot makes it

    def __init__(self, slot: str, title: str = "", accept_drops: bool = True, lazy_view: bool = False,
                 parent: QWidget | None = None):
        super().__init__(parent)
        self.slot = slot
        self.item: LoadedItem | None = None
        self.setObjectName(f"slot_{slot}")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setAcceptDrops(accept_drops)
        self._updating = False

        badge = QLabel(title or slot)
        badge.setObjectName("badge")
        badge.setAlignment(Qt.AlignmentFlag.AlignCenter)
        badge.setStyleSheet(f"QLabel#badge {{ background: {SLOT_COLORS.get(slot, '#888')}; color: white; "
                            "font-weight: bold; border-radius: 3px; padding: 1px 6px; }")
        self.title = ElidedLabel("empty — drop a volume or field file here" if accept_drops else "")
        self.title.setObjectName("title")
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.variable_box = QComboBox()
        self.variable_box.setToolTip("variable of the file shown in this slot")
        self.variable_box.setVisible(False)
        self.variable_box.currentTextChanged.connect(self._on_variable)
        self.time_box = QSpinBox()
        self.time_box.setPrefix("step ")
        self.time_box.setToolTip("time step (index along the file's time axis)")
        self.time_box.setVisible(False)
        self.time_box.valueChanged.connect(self._on_index)

        head = QHBoxLayout()
        head.setContentsMargins(4, 2, 4, 2)
        head.addWidget(badge)
        head.addWidget(self.title, 1)
        self.legend = ColorLegend()
        head.addWidget(self.legend)
        head.addWidget(self.variable_box)
        head.addWidget(self.time_box)

        # a lazy slot (the difference view, hidden at start) makes its GL view when first given a volume
        self._lazy = lazy_view
        self.view = None if lazy_view else make_volume_view(self)
        self.placeholder = QLabel()
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.placeholder.setWordWrap(True)
        self.placeholder.setStyleSheet(f"background: {VIEW_BACKGROUND}; color: #9aa0a6;")
        self.placeholder.setMinimumSize(160, 160)
        self.placeholder.setText(self._placeholder_text())
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.setSpacing(2)
        lay.addLayout(head)
        lay.addWidget(self.placeholder, 1)
        if self.view is not None:
            self._add_view()

    def _add_view(self) -> None:
        self.view.setMinimumSize(160, 160)
        self.layout().addWidget(self.view, 1)
        self.view.setVisible(False)

    def _placeholder_text(self) -> str:
        if self.slot == "diff":
            return "difference of the chosen metric\n(appears when A and B are compared)"
        lines = [f"Slot {self.slot}", "drop a volume (.nc, .npy, .npz, .raw) or a neural-field file here"]
        if self.view is None and not self._lazy:
            lines.append("(3D view unavailable: the renderer package is not installed)")
        return "\n".join(lines)

    # ------------------------------------------------------------------ content
    def set_item(self, item: LoadedItem | None) -> None:
        """Show ``item``'s name, shape and selectors, and hand its volume to the view."""
        self.item = item
        self._updating = True
        try:
            if item is None:
                self.title.setText("empty — drop a volume or field file here")
                self.legend.set_transfer(None)
                self.variable_box.setVisible(False)
                self.time_box.setVisible(False)
            else:
                self.title.setText(item.summary())
                self.title.setToolTip(item.path or item.volume.describe())
                self.variable_box.clear()
                self.variable_box.addItems(list(item.variables))
                if item.variable:
                    self.variable_box.setCurrentText(item.variable)
                self.variable_box.setVisible(len(item.variables) > 1)
                self.time_box.setRange(0, max(0, item.frames - 1))
                self.time_box.setValue(item.index or 0)
                self.time_box.setVisible(item.frames > 1)
        finally:
            self._updating = False
        notice = ""
        if item is not None and item.kind == "field":
            notice = f"neural field, baked at {item.shape_text()} for display and metrics"
        self.set_volume(None if item is None else item.volume, notice)

    def set_volume(self, volume: Any, notice: str = "") -> None:
        """Show ``volume`` in the 3D view (or the placeholder when there is none or no renderer)."""
        if volume is not None:
            self.ensure_view()
        if self.view is None or volume is None:
            self.placeholder.setText(self._placeholder_text() if volume is None else
                                     f"{volume.describe()}\n(3D view unavailable: renderer not installed)")
            self.placeholder.setVisible(True)
            if self.view is not None:
                self.view.setVisible(False)
            return
        if notice:
            self.view.set_volume(volume, notice=notice)
        else:
            self.view.set_volume(volume)
        self.placeholder.setVisible(False)
        self.view.setVisible(True)

    def ensure_view(self) -> Any:
        """Make the GL view of a lazy slot now (it is made at construction otherwise)."""
        if self.view is None and self._lazy:
            self._lazy = False
            self.view = make_volume_view(self)
            if self.view is not None:
                self._add_view()
                self.view_created.emit(self.view)
            self.placeholder.setText(self._placeholder_text())
        return self.view

    def set_message(self, text: str) -> None:
        """A transient line in the header (loading, failed, ...)."""
        self.title.setText(text)

    def _on_variable(self, name: str) -> None:
        if not self._updating and name and self.item is not None and name != self.item.variable:
            self.variable_chosen.emit(self.slot, name)

    def _on_index(self, index: int) -> None:
        if not self._updating and self.item is not None and index != (self.item.index or 0):
            self.index_chosen.emit(self.slot, int(index))

    # ------------------------------------------------------------------ drops
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt override
        if dropped_paths(event.mimeData()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:  # noqa: N802 - Qt override
        if dropped_paths(event.mimeData()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 - Qt override
        paths = dropped_paths(event.mimeData())
        if not paths:
            event.ignore()
            return
        event.acceptProposedAction()
        self.files_dropped.emit(self.slot, [str(Path(p)) for p in paths])
