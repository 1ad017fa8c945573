"""View › Ray-march the neural field: a field drawn from the network itself, not from its bake.

The 3D views show a field through its bake (a texture on a grid, at most 256 per axis); this
dialog ray-marches the field itself (``renderer.raymarch.FieldRenderer``, on CUDA when present)
with the slot's camera, transfer function and method, coarse first and then refined, and saves
the picture as PNG. The render runs as a background task; closing the dialog cancels it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QDialog, QFileDialog, QHBoxLayout, QLabel, QPushButton, QVBoxLayout

from app.loading import file_stem
from app.workers import Progress, Task

if TYPE_CHECKING:
    from app.main_window import MainWindow

MAX_SIDE = 512  # pixels: a CPU render of this size takes seconds; the view's aspect is kept


def field_slot(window: MainWindow) -> str | None:
    """The slot whose neural field the action draws: B's, else A's, else None."""
    for slot in ("B", "A"):
        item = window.session.item(slot)
        if item is not None and item.neural_field is not None:
            return slot
    return None


def render_size(width: int, height: int, cap: int = MAX_SIDE) -> tuple[int, int]:
    """The view's size scaled down so that its longer side is at most ``cap`` (at least 16 × 16)."""
    scale = min(1.0, cap / max(1, width, height))
    return max(16, round(width * scale)), max(16, round(height * scale))


class FieldRenderDialog(QDialog):
    """The slot's field ray-marched directly at its view's camera, transfer function and method."""

    def __init__(self, window: MainWindow, slot: str):
        super().__init__(window)
        self.w, self.slot = window, slot
        self.item = window.session.item(slot)
        self.image: np.ndarray | None = None
        self.passes = 0
        self.task: Task | None = None
        self.setWindowTitle(f"{self.item.name}: the neural field ray-marched")
        self.picture = QLabel("rendering…")
        self.picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.picture.setStyleSheet("background: black; color: #aaa;")
        self.status = QLabel("")
        self.save_button = QPushButton("Save PNG…")
        self.save_button.setEnabled(False)
        self.save_button.clicked.connect(self._ask_save)
        self.again_button = QPushButton("Render again")
        self.again_button.setToolTip("with the view's camera, transfer function and method as they are now")
        self.again_button.clicked.connect(lambda: self.start())
        close = QPushButton("Close")
        close.clicked.connect(self.close)
        buttons = QHBoxLayout()
        buttons.addWidget(self.status, 1)
        buttons.addWidget(self.again_button)
        buttons.addWidget(self.save_button)
        buttons.addWidget(close)
        lay = QVBoxLayout(self)
        lay.addWidget(self.picture, 1)
        lay.addLayout(buttons)

    def start(self) -> Task:
        """Render in the background: each pass (coarse to full) replaces the picture (a render still
        running is cancelled first)."""
        view = self.w.slot_views[self.slot].view
        self.passes = 0
        self.save_button.setEnabled(False)
        field = self.item.neural_field
        camera, tf = view.camera, view.transfer_function
        method, threshold = view.method, view.threshold
        from renderer.overlays import cut_box, intersect_boxes

        # what the view shows of the box (a region, a cut), drawn from the network too
        box = intersect_boxes(view.clip_box, None if view.cut is None else cut_box(*view.cut))
        size = render_size(view.width(), view.height())
        self.picture.setMinimumSize(*size)
        t0 = time.perf_counter()

        def work(progress: Progress) -> np.ndarray:
            from renderer.offline import render_offline

            def report(img: np.ndarray, i: int) -> None:
                progress.emit_data((img, i, time.perf_counter() - t0))  # raises Cancelled once closed

            return render_offline(field, camera, tf, size, method=method, threshold=threshold, box=box,
                                  progress=report)

        task = Task("render_field", work, label=f"ray-marching {self.item.name} at {size[0]}×{size[1]}")
        # a pass of a render that "Render again" replaced may still be queued: only the latest one shows
        task.signals.data.connect(lambda data, t=task: self._show_pass(data) if t is self.task else None)
        task.signals.failed.connect(lambda exc: self.status.setText(f"rendering failed: {exc}"))
        self.task = self.w.tasks.start(task)
        return self.task

    def _show_pass(self, data: tuple[np.ndarray, int, float]) -> None:
        img, i, seconds = data
        self.image = np.ascontiguousarray(img[..., :3])
        self.passes = i + 1
        h, w = self.image.shape[:2]
        qimg = QImage(self.image.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
        self.picture.setPixmap(QPixmap.fromImage(qimg))
        final = i >= 2  # progressive(): 1/16 of the pixels, 1/4, then all
        self.status.setText(f"{w}×{h}, {'done' if final else f'pass {i + 1} of 3'} in {seconds:.1f} s "
                            f"({self.w.slot_views[self.slot].view.method}, straight from the network)")
        self.save_button.setEnabled(final)

    def _ask_save(self) -> None:
        if self.image is None:
            return
        default = Path(self.w.prefs.last_dir()) / f"{file_stem(self.item.name)}-raymarched.png"
        path, _ = QFileDialog.getSaveFileName(self, "Save the picture", str(default), "PNG (*.png)")
        if path:
            self.save(path)

    def save(self, path: str) -> Path:
        """Write the finished picture as PNG (atomically)."""
        from renderer.offline import save_png

        out = save_png(self.image, path)
        self.w.statusBar().showMessage(f"saved {out}", 8000)
        return out

    def closeEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        if self.task is not None and self.task.state in ("pending", "running"):
            self.task.cancel()
        super().closeEvent(event)


def show_field_render(window: MainWindow) -> FieldRenderDialog | None:
    """Open the dialog for B's (else A's) field; says so when neither slot holds one."""
    slot = field_slot(window)
    if slot is None:
        window.report_error("neither A nor B holds a neural field: open a .vsf file or fit one (Neural field tab)")
        return None
    if window.slot_views[slot].ensure_view() is None:
        window.report_error("ray-marching a field needs the renderer package, which is not installed")
        return None
    dialog = FieldRenderDialog(window, slot)
    dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    dialog.show()
    dialog.start()
    window.field_render_dialog = dialog
    return dialog
