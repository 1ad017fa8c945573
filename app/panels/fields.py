"""Neural-field panel: fit a field to the volume in A with a live loss/PSNR plot; the result goes to B."""

from __future__ import annotations

import importlib
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Signal
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.loading import file_stem, item_from_field
from app.workers import Cancelled, Progress, Task

if TYPE_CHECKING:
    from app.loading import LoadedItem
    from app.main_window import MainWindow
    from models.fit import FitProgress

MODELS = ("apmgsrn", "fvsrn", "hashgrid")
SIZES = ("small", "medium", "large")


def fitting_available() -> bool:
    """True when the neural-field package (models.fit) is installed."""
    try:
        importlib.import_module("models.fit")
    except ModuleNotFoundError as exc:
        if exc.name not in ("models.fit", "models"):
            raise
        return False
    return True


def fit_to_item(volume: Any, config: dict[str, Any], progress: Progress,
                seed: int = 0) -> tuple[LoadedItem, dict[str, Any]]:
    """Fit a field to ``volume`` (reporting (iteration, loss, psnr) as data) and bake it into a slot item."""
    import threading

    from models.fit import fit

    stop = threading.Event()

    def callback(p: FitProgress) -> bool:
        if progress.cancelled:
            stop.set()
            return False
        progress.emit_data((int(p.iteration), float(p.loss), float(p.psnr)))
        progress(p.iteration / max(1, p.iterations), f"fitting: iteration {p.iteration}/{p.iterations}, "
                 f"PSNR {p.psnr:.1f} dB")
        return True

    field, summary = fit(volume, config, callback=callback, cancel=stop, seed=seed)
    if summary.get("cancelled") or progress.cancelled:
        raise Cancelled()
    item = item_from_field(field, None, progress, shape=volume.shape)
    return item, summary


HELP = "Fits a neural field to the volume in A; the field then goes into B and is compared like a volume."
FIT_TITLE = "fit: PSNR and loss per iteration"


def loss_log(rows: Any) -> list[tuple[int, float]]:
    """A field file's fit log ``[[iteration, loss], ...]`` as numbers; [] when it is missing or malformed."""
    out: list[tuple[int, float]] = []
    try:
        for it, loss in rows or []:
            out.append((int(it), float(loss)))
    except (TypeError, ValueError):
        return []
    return out


def batch_psnr(loss: float) -> float:
    """PSNR (dB) of a fit's batch loss, an MSE on values normalised to [0, 1] (as the fit reports it)."""
    return 10.0 * math.log10(1.0 / loss) if loss > 0 else math.inf


def field_file_name(nf: Any) -> str:
    """A default file name for a field: its source and model."""
    return file_stem(f"{nf.name}-{nf.kind}") + ".vsf"


def _count(n: float) -> str:
    return f"{n / 1e6:.1f} M" if n >= 1e6 else f"{n / 1e3:.0f} k" if n >= 1e3 else f"{n:.0f}"


def value_count(volume: Any) -> int:
    """Values a volume stores (voxels × channels): what a field's parameters are weighed against."""
    return int(np.prod(volume.shape)) * int(volume.channels)


def size_estimate(model: str, size: str, volume: Any = None) -> str:
    """What a fit of ``model`` at ``size`` stores, and its compression ratio for ``volume`` (float32 both)."""
    from models.registry import parameter_count
    from models.store import compression_words

    channels = int(getattr(volume, "channels", 1) or 1)
    params = parameter_count(model, size, channels)
    text = f"{model} {size}: {_count(params)} parameters ({4 * params / 2**20:.2f} MiB)"
    if volume is not None:
        values = value_count(volume)
        text += f"; A has {_count(values)} values: " + compression_words(params, values, "A")
    return text


class FieldPanel(QWidget):
    """Model, size and iterations; Fit runs in the background, Cancel stops it, Save writes the field."""

    fit_finished = Signal(object)  # the summary dict

    def __init__(self, window: MainWindow, parent: QWidget | None = None):
        super().__init__(parent)
        self.w = window
        self.task: Task | None = None
        self._estimate_stale = True  # the size estimate waits until the tab is shown
        self.history: list[tuple[int, float, float]] = []
        self._curves_of_b = False  # the curves are a loaded field's log (they go when B changes), not a fit's
        self.model_box = QComboBox()
        self.model_box.addItems(MODELS)
        self.size_box = QComboBox()
        self.size_box.addItems(SIZES)
        self.size_box.setCurrentText("small")
        self.iter_box = QSpinBox()
        self.iter_box.setRange(1, 1_000_000)
        self.iter_box.setValue(500)
        self.points_box = QSpinBox()
        self.points_box.setRange(64, 10_000_000)
        self.points_box.setSingleStep(10_000)
        self.points_box.setValue(50_000)
        self.fit_button = QPushButton("Fit field to A → B")
        self.fit_button.setToolTip("fit a neural field to the volume in A; the field goes to B and is compared")
        self.fit_button.clicked.connect(lambda: self.start_fit())
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.save_button = QPushButton("Save field…")
        self.save_button.setEnabled(False)
        self.save_button.clicked.connect(self._ask_save)
        self.status = QLabel(HELP)
        self.status.setWordWrap(True)
        self.estimate = QLabel("")
        self.estimate.setObjectName("size_estimate")
        self.estimate.setWordWrap(True)
        self.estimate.setStyleSheet("color: #888;")

        self.plot = pg.PlotWidget(title=FIT_TITLE)
        self.plot.setObjectName("fit_plot")
        self.plot.setMinimumHeight(80)
        self.plot.setMenuEnabled(False)
        self.plot.setLabel("bottom", "iteration")
        self.plot.setLabel("left", "PSNR (dB)")
        self.psnr_curve = self.plot.plot([], [], pen=pg.mkPen("#f5a742", width=2), name="PSNR")
        # the loss on a log scale on the right-hand axis
        self.loss_box = pg.ViewBox(enableMenu=False)
        self.plot.showAxis("right")
        self.plot.scene().addItem(self.loss_box)
        self.plot.getAxis("right").linkToView(self.loss_box)
        self.plot.getAxis("right").setLabel("log10 loss")
        self.loss_box.setXLink(self.plot.getPlotItem())
        self.loss_curve = pg.PlotCurveItem(pen=pg.mkPen("#4c8bf5", width=1))
        self.loss_box.addItem(self.loss_curve)
        self.plot.getPlotItem().vb.sigResized.connect(
            lambda: self.loss_box.setGeometry(self.plot.getPlotItem().vb.sceneBoundingRect()))
        self._show_axes(False)  # no fit yet: no axes with made-up ranges

        form = QGridLayout()
        for i, (label, w) in enumerate((("model", self.model_box), ("size", self.size_box),
                                        ("iterations", self.iter_box), ("points / iteration", self.points_box))):
            form.addWidget(QLabel(label), i // 2, 2 * (i % 2))
            form.addWidget(w, i // 2, 2 * (i % 2) + 1)
        buttons = QHBoxLayout()
        for b in (self.fit_button, self.cancel_button, self.save_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        controls = QVBoxLayout()
        controls.addLayout(form)
        controls.addLayout(buttons)
        controls.addWidget(self.estimate)
        controls.addWidget(self.status)
        controls.addStretch(1)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addLayout(controls)
        lay.addWidget(self.plot, 1)
        if not fitting_available():
            self.fit_button.setEnabled(False)
            self.status.setText("fitting unavailable: the neural-field package (models) is not installed")
            return
        self.model_box.currentTextChanged.connect(lambda _t: self.update_estimate())
        self.size_box.currentTextChanged.connect(lambda _t: self.update_estimate())
        window.session.item_changed.connect(lambda slot: self.update_estimate() if slot == "A" else None)
        window.session.item_changed.connect(lambda slot: self.describe_b() if slot == "B" else None)
        self.update_estimate()
        self.describe_b()

    def describe_b(self) -> None:
        """When B is a neural field (a dropped .vsf, say) and no fit is running: what it is, in the status."""
        item = self.w.session.item("B")
        nf = getattr(item, "neural_field", None) if item is not None else None
        if self.task is not None and self.task.state == "running":
            return  # the fit reports its progress there
        if nf is None:
            if self.status.text().startswith("B: "):  # no longer true
                self.status.setText(HELP)
            if self._curves_of_b:  # the curves were of the field B held: they go with it
                self._show_fit_log([], FIT_TITLE)
            return
        if nf is getattr(self, "last_field", None):
            return  # the fit's own summary stays
        from models.store import compression_words

        shape = "×".join(map(str, nf.source_shape))
        params = nf.parameter_count()
        ratio = f", {compression_words(params, int(np.prod(nf.source_shape)) * nf.channels)}" if params else ""
        summary = getattr(nf, "summary", None)
        summary = summary if isinstance(summary, dict) else {}  # a file's header: take nothing on trust
        fitted = ""
        if isinstance(summary.get("iterations"), int) and summary["iterations"] > 0:
            seconds = summary.get("seconds")
            took = f" ({float(seconds):.0f} s)" if isinstance(seconds, (int, float)) else ""
            fitted = f"; fitted in {summary['iterations']} iterations{took}"
            if isinstance(summary.get("psnr"), (int, float)):
                fitted += f" to {float(summary['psnr']):.2f} dB"
        self.status.setText(f"B: {nf.kind} field of {nf.name} ({shape}), {_count(params)} parameters{ratio}"
                            f"{fitted}; its distances to A are in the table")
        # the fit's curves, when the field file kept them (fields fitted by volsight do)
        rows = loss_log(summary.get("history"))
        self._show_fit_log([(it, loss, batch_psnr(loss)) for it, loss in rows],
                           f"fit of B ({nf.name}): PSNR and loss per iteration" if rows else FIT_TITLE)
        self._curves_of_b = bool(rows)

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        if self._estimate_stale:
            self.update_estimate()

    def update_estimate(self) -> None:
        """Parameters and compression ratio of the chosen model and size for the volume in A.

        Built only while the tab is shown (a model is constructed to count its parameters): not at
        start-up, not on every new A behind another tab.
        """
        self._estimate_stale = not self.isVisible()
        if self._estimate_stale:
            return
        item = self.w.session.item("A")
        try:
            text = size_estimate(self.model_box.currentText(), self.size_box.currentText(),
                                 item.volume if item is not None else None)
        except Exception as exc:  # noqa: BLE001 - a hint only; the fit itself reports real errors
            text = f"size unknown: {exc}"
        self.estimate.setText(text)

    def config(self, model_options: dict[str, Any] | None = None) -> dict[str, Any]:
        cfg = {"model": self.model_box.currentText(), "size": self.size_box.currentText(),
               "iterations": int(self.iter_box.value()), "points": int(self.points_box.value())}
        if model_options:
            cfg["model_options"] = dict(model_options)
        return cfg

    def start_fit(self, model_options: dict[str, Any] | None = None, **overrides: Any) -> Task | None:
        """Fit a field to A in the background (options from the panel, ``overrides`` win)."""
        item = self.w.session.item("A")
        if not fitting_available():
            self.w.report_error("fitting needs the neural-field package (models), which is not installed")
            return None
        if item is None:
            self.w.report_error("load a volume into A first: the field is fitted to A")
            return None
        cfg = {**self.config(model_options), **overrides}
        volume = item.volume
        self._show_fit_log([], FIT_TITLE)
        task = Task("fit", lambda progress: fit_to_item(volume, cfg, progress),
                    label=f"fitting {cfg['model']} ({cfg['size']}) to {volume.name}")
        task.signals.data.connect(self._on_progress)
        task.signals.finished.connect(self._on_done)
        task.signals.failed.connect(lambda exc: self._on_end(f"fitting failed: {exc}", error=True))
        task.signals.cancelled.connect(lambda: self._on_end("fitting cancelled"))
        self.fit_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.status.setText(f"fitting {cfg['model']} ({cfg['size']}), {cfg['iterations']} iterations…")
        self.task = self.w.tasks.start(task)
        return self.task

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()

    def _show_axes(self, shown: bool) -> None:
        for side in ("left", "bottom", "right"):
            self.plot.showAxis(side, shown)

    def _on_progress(self, data: tuple[int, float, float]) -> None:
        self.history.append(data)
        self._draw_history()

    def _show_fit_log(self, history: list[tuple[int, float, float]], title: str) -> None:
        """Show ``history`` (a fit starting, or a loaded field's log) under ``title``."""
        self.history = history
        self._curves_of_b = False
        self._draw_history()
        self.plot.setTitle(title)

    def _draw_history(self) -> None:
        """The PSNR and loss curves of ``self.history`` (iteration, loss, PSNR); no axes while it is empty."""
        self._show_axes(bool(self.history))
        if not self.history:
            self.psnr_curve.setData([], [])
            self.loss_curve.setData([], [])
            return
        h = np.array(self.history, dtype=float)
        self.psnr_curve.setData(h[:, 0], np.where(np.isfinite(h[:, 2]), h[:, 2], 0.0))
        self.loss_curve.setData(h[:, 0], np.log10(np.maximum(h[:, 1], 1e-30)))

    def _on_done(self, result) -> None:
        item, summary = result
        self.last_field = item.neural_field
        self.save_button.setEnabled(True)
        psnr = summary.get("psnr", summary.get("batch_psnr", math.nan))
        from models.store import compression_words

        ratio = ""
        source = self.w.session.item("A")
        if source is not None and summary.get("parameters"):
            ratio = f" ({compression_words(summary['parameters'], value_count(source.volume), 'A')})"
        self._on_end(f"fitted {summary.get('parameters', '?')} parameters{ratio} in {summary.get('seconds', 0):.1f} s; "
                     f"PSNR {psnr:.2f} dB over A's value range — the field is in B")
        self.w.set_items({"B": item})
        self.fit_finished.emit(summary)

    def _on_end(self, message: str, error: bool = False) -> None:
        self.fit_button.setEnabled(fitting_available())
        self.cancel_button.setEnabled(False)
        self.status.setText(message)
        if error:
            self.w.report_error(message)

    def _ask_save(self) -> None:
        nf = getattr(self, "last_field", None)
        if nf is None:
            return
        path, _ = QFileDialog.getSaveFileName(self, "Save neural field", str(Path(self.w.prefs.last_dir()) /
                                                                            field_file_name(nf)), "Field (*.vsf)")
        if path:
            try:
                nf.save(path)
                self.w.statusBar().showMessage(f"field saved to {path}", 8000)
            except Exception as exc:  # noqa: BLE001 - reported, nothing else changes
                self.w.report_error(str(exc), title="Cannot save field")
