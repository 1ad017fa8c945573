"""Series panel: many volumes (or a file's time steps) as a distance-matrix heatmap and a distance-to-first curve."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPushButton, QSplitter, QVBoxLayout, QWidget

from app.loading import LoadedItem, distinct_labels, load_item, onto_first_grid
from app.workers import Progress, Task
from core.region import format_region

if TYPE_CHECKING:
    from app.main_window import MainWindow


def series_matrix(volumes: Sequence[Any], metric: str, progress: Progress | None = None,
                  region: Any = None) -> np.ndarray:
    """The symmetric-use distance matrix of ``volumes`` under ``metric`` (engine's matrix when installed),
    in ``region`` of every volume when one is given. Members on another grid than the first are resampled
    onto the first's (as B is onto A's in a pair) before the region is taken."""
    if len({v.shape for v in volumes}) > 1:
        from core.region import onto_grid

        volumes = [onto_grid(v, volumes[0].shape) for v in volumes]
    if region is not None:
        from core.region import crop_all

        volumes = crop_all(volumes, region)
    try:
        matrix_mod = importlib.import_module("core.metrics.matrix")
    except ModuleNotFoundError as exc:
        if exc.name != "core.metrics.matrix":
            raise
        matrix_mod = None
    if matrix_mod is not None:
        from app.comparing import built_metric, window_options

        def report(done: int, total: int) -> None:
            if progress:
                progress(done / max(1, total), f"{metric}: distance matrix of {len(volumes)} volumes, {done}/{total}")

        cancelled = (lambda: progress.cancelled) if progress is not None and hasattr(progress, "cancelled") else None
        options = window_options(metric, volumes[0].shape) if volumes else {}  # as the pair's table computes it
        out = matrix_mod.distance_matrix(list(volumes), built_metric(metric), progress=report, cancelled=cancelled,
                                         **options)
        if progress is not None:
            progress.check()
        return np.asarray(out, dtype=float)
    from app.comparing import distance_of

    n = len(volumes)
    out = np.zeros((n, n))
    pairs = [(i, j) for i in range(n) for j in range(n) if i != j]
    for k, (i, j) in enumerate(pairs):
        if progress:
            progress(k / len(pairs), f"{metric}: pair {k + 1}/{len(pairs)}")
        out[i, j] = float(distance_of(volumes[i], volumes[j], metric).value)
    return out


def display_values(matrix: np.ndarray) -> np.ndarray:
    """The matrix for the heatmap's colours: infinities (PSNR of identical volumes) and NaNs become the
    nearest finite extreme, so they neither blank the colour scale nor hide the other entries."""
    finite = np.isfinite(matrix)
    if not finite.any():
        return np.zeros_like(matrix, dtype=float)
    lo, hi = float(matrix[finite].min()), float(matrix[finite].max())
    return np.nan_to_num(matrix, nan=lo, posinf=hi, neginf=lo)


class SeriesPanel(QWidget):
    """Heatmap of the pairwise distances and the distance of every member to the first one."""

    pair_chosen = Signal(int, int)

    def __init__(self, window: MainWindow, parent: QWidget | None = None):
        super().__init__(parent)
        self.w = window
        self.items: list[LoadedItem] = []
        self.matrix: np.ndarray | None = None
        self.region: Any = None  # the region the shown matrix was computed in (None: whole volumes)
        self.region_mapped = False  # the region names A's voxels, mapped onto the series' other grid
        self.kinds: dict[str, str] = {}  # metric -> "distance" or "similarity" (from the catalog)
        self.metric_box = QComboBox()
        self.metric_box.setToolTip("metric of the distance matrix")
        self.metric_box.currentIndexChanged.connect(lambda _i: self.compute())
        self.time_button = QPushButton("Time steps of A")
        self.time_button.setToolTip("make a series of every time step of the file in slot A")
        self.time_button.clicked.connect(self.series_from_time_axis)
        self.export_button = QPushButton("Export CSV…")
        self.export_button.setToolTip("write the matrix as CSV (the format of `volsight matrix`)")
        self.export_button.setEnabled(False)
        self.export_button.clicked.connect(lambda: self.export_csv())
        self.info = QLabel("drop more than two volumes (or use the time steps of A) for a series")
        self.info.setWordWrap(True)
        self.info.setStyleSheet("color: #888;")

        # a short title: a long one sets the plot's minimum width, and a narrow pane then clips the colour bar
        self.heat = pg.PlotWidget(title="distance matrix")
        self.heat.setObjectName("series_heatmap")
        self.heat.setMenuEnabled(False)
        self.heat.setAspectLocked(True)
        self.heat.invertY(True)
        self.heat_image = pg.ImageItem()
        self.heat_image.setColorMap(pg.colormap.get("viridis"))
        self.heat.addItem(self.heat_image)
        self.heat_image.mouseClickEvent = self._on_heat_click
        self.heat_image.hoverEvent = self._on_heat_hover
        # the value scale of the cells' colours (read-only: the levels follow the matrix)
        self.colorbar = pg.ColorBarItem(colorMap=pg.colormap.get("viridis"), interactive=False, width=12)
        self.colorbar.setImageItem(self.heat_image, insert_in=self.heat.getPlotItem())
        self.colorbar.axis.setWidth(None)  # as wide as its labels (the bar's default width clips long ones)
        self.curve = pg.PlotWidget(title="distance to the first")
        self.curve.setObjectName("series_curve")
        self.curve.setMenuEnabled(False)
        self.curve.setLabel("bottom", "member")
        self.curve_item = self.curve.plot([], [], pen=pg.mkPen("#4c8bf5", width=2), symbol="o", symbolSize=6)
        self.curve.scene().sigMouseMoved.connect(self._on_curve_mouse)
        self._show_axes(False)  # no series yet: no value axes with made-up ranges

        top = QHBoxLayout()
        top.addWidget(QLabel("metric"))
        top.addWidget(self.metric_box)
        top.addWidget(self.time_button)
        top.addWidget(self.export_button)
        top.addStretch(1)
        split = QSplitter()
        split.addWidget(self.heat)
        split.addWidget(self.curve)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addLayout(top)
        lay.addWidget(self.info)
        lay.addWidget(split, 1)
        self.pair_chosen.connect(self.load_pair)
        window.session.region_changed.connect(lambda _r: self.compute())

    def set_catalog(self, catalog: dict[str, dict[str, Any]]) -> None:
        self.metric_box.blockSignals(True)
        self.metric_box.clear()
        self.kinds = {name: m.get("kind", "distance") for name, m in catalog.items()}
        for name, m in catalog.items():
            self.metric_box.addItem(m.get("label") or name, name)
        first = next((i for i in range(self.metric_box.count()) if self.metric_box.itemData(i) in
                      self.w.session.metrics), 0)
        self.metric_box.setCurrentIndex(first)
        self.metric_box.blockSignals(False)

    @property
    def metric(self) -> str:
        return self.metric_box.currentData() or ""

    # ------------------------------------------------------------------ building a series
    def load_files(self, paths: Sequence[str]) -> Task:
        """Read every file in the background; the first two go to A and B, then the matrix is computed."""
        paths = [str(p) for p in paths]

        policies = [self.w.nan_policy_for(p) for p in paths]

        def work(progress: Progress) -> list[LoadedItem]:
            items = []
            for i, (p, policy) in enumerate(zip(paths, policies, strict=True)):
                progress(i / len(paths), f"reading {Path(p).name} ({i + 1}/{len(paths)})")
                items.append(load_item(p, nan_policy=policy))
            return onto_first_grid(items, progress)

        task = Task("load_pair", work, label=f"reading {len(paths)} files")
        task.signals.finished.connect(lambda items: self.set_series(items, paths))
        task.signals.failed.connect(lambda exc: self.w.load_failed(exc, retry=lambda: self.load_files(paths)))
        return self.w.tasks.start(task)

    def series_from_time_axis(self) -> Task | None:
        item = self.w.session.item("A")
        if item is None or item.frames < 2 or not item.path:
            self.w.report_error("slot A holds no file with a time axis (more than one step)")
            return None
        path, variable, frames = item.path, item.variable, item.frames
        policy = self.w.nan_policy_for(path)

        def work(progress: Progress) -> list[LoadedItem]:
            out = []
            for i in range(frames):
                progress(i / frames, f"reading step {i + 1}/{frames}")
                out.append(load_item(path, variable=variable, index=i, nan_policy=policy))
            return out

        task = Task("load_pair", work, label=f"reading {frames} time steps")
        task.signals.finished.connect(lambda items: self.set_series(items, [], member="time step"))
        task.signals.failed.connect(lambda exc: self.w.report_error(str(exc)))
        return self.w.tasks.start(task)

    def set_series(self, items: list[LoadedItem], paths: Sequence[str], member: str = "member") -> None:
        """Show ``items`` as the series (``member`` names one of them on the curve's axis, e.g. "time step")."""
        self.items = list(items)
        self.curve.setLabel("bottom", member)
        for p in paths:
            self.w.prefs.add_recent(p)
        self.w.docks["series"].setVisible(True)
        self.w.docks["series"].raise_()
        if len(items) >= 2:
            self.w.set_items({"A": items[0], "B": items[1]})
        self.compute()

    def export_csv(self, path: str | None = None) -> str | None:
        """Write the shown matrix as CSV (asks for a file name when ``path`` is None); the path written."""
        if self.matrix is None:
            self.w.report_error("no matrix to export yet: drop three or more volumes first")
            return None
        if path is None:
            from pathlib import Path

            from PySide6.QtWidgets import QFileDialog

            start = str(Path(self.w.prefs.last_dir()) / f"{self.metric}-matrix.csv")
            path, _ = QFileDialog.getSaveFileName(self, "Export matrix as CSV", start, "CSV (*.csv)")
            if not path:
                return None
        from app.commands.matrix import matrix_csv
        from core.io.atomic import write_bytes_atomic

        write_bytes_atomic(path, matrix_csv(distinct_labels(self.items), self.matrix).encode("utf-8"))
        self.w.statusBar().showMessage(f"{self.metric} matrix written to {path}", 8000)
        return path

    def compute(self) -> Task | None:
        """Distance matrix and distance-to-first for the current series, in the background."""
        if len(self.items) < 2 or not self.metric:
            return None
        self.matrix = None  # until the new one arrives, nothing stale can be exported
        self.export_button.setEnabled(False)
        vols = [it.volume for it in self.items]
        metric, region = self.metric, self.w.session.region
        a = self.w.session.item("A")
        # the region names A's voxels; on another grid the series takes the box covering the same part of
        # the domain (corner-aligned, as members on other grids are resampled)
        self.region_mapped = region is not None and a is not None and a.shape != vols[0].shape
        if region is not None and a is None:
            region = None
        elif self.region_mapped:
            from core.region import region_onto_grid

            region = region_onto_grid(region, a.shape, vols[0].shape)
        task = Task("series", lambda progress: series_matrix(vols, metric, progress, region=region),
                    label=f"{metric} matrix of {len(vols)} volumes")
        self.region = region
        task.signals.finished.connect(self.show_matrix)
        task.signals.failed.connect(lambda exc: self.w.report_error(f"series: {exc}"))
        self.info.setText(f"computing the {metric} matrix of {len(vols)} volumes…")
        return self.w.tasks.start(task)

    # ------------------------------------------------------------------ display
    def _show_axes(self, shown: bool) -> None:
        for plot in (self.heat, self.curve):
            for side in ("left", "bottom"):
                plot.showAxis(side, shown)
        self.colorbar.setVisible(shown)

    def show_matrix(self, matrix: np.ndarray) -> None:
        self.matrix = np.asarray(matrix, dtype=float)
        self.export_button.setEnabled(True)
        self._show_axes(True)
        n = self.matrix.shape[0]
        shown = display_values(self.matrix)
        lo, hi = float(shown.min()), float(shown.max())
        levels = (lo, hi if hi > lo else lo + 1.0)
        self.heat_image.setImage(shown.T, levels=levels)
        self.colorbar.setLevels(levels)
        # the ends and middle of the scale, written out (automatic ticks crowd or vanish at tiny values)
        ticks = np.linspace(levels[0], levels[1], 3)
        self.colorbar.axis.setTicks([[(float(t), f"{t:.3g}") for t in ticks]])
        self.heat_image.setRect(-0.5, -0.5, n, n)
        names = [(i, str(i)) for i in range(n)]
        self.heat.getAxis("bottom").setTicks([names])
        self.heat.getAxis("left").setTicks([names])
        self.heat.autoRange()
        self.curve_item.setData(np.arange(n), self.matrix[0])
        step = max(1, int(np.ceil(n / 10)))  # members are whole numbers: no ticks between them
        self.curve.getAxis("bottom").setTicks([[(i, str(i)) for i in range(0, n, step)]])
        self.curve.autoRange()  # now rather than at the next paint, so points map to where they are drawn
        self.curve.setLabel("left", self.metric)
        kind = self.kinds.get(self.metric, "distance")
        self.curve.setTitle(f"{kind} to the first")  # PSNR, SSIM, NCC: higher is closer
        self.heat.setTitle(f"{kind} matrix")  # hovering a cell says that a click compares the pair
        label = ", ".join(f"{i}: {name}" for i, name in enumerate(distinct_labels(self.items)[:8]))
        more = "" if n <= 8 else f", … ({n} in all)"
        where = "" if self.region is None else f" in region {format_region(self.region)}"
        if self.region_mapped:
            where += " (A's region, on the series' grid)"
        grid = self.items[0].volume.shape if self.items else None
        if any(it.volume.shape != grid for it in self.items):
            where += f" on the grid of 0 ({'×'.join(map(str, grid))})"
        self.info.setText(f"{self.metric} between {n} volumes{where} — {label}{more}")

    def cell_text(self, i: int, j: int) -> str:
        """What cell (row ``i``, column ``j``) of the heatmap holds, in words."""
        if self.matrix is None:
            return ""
        names = distinct_labels(self.items)
        a = names[i] if i < len(names) else str(i)
        b = names[j] if j < len(names) else str(j)
        return f"{i}: {a}  vs  {j}: {b}\n{self.metric} = {float(self.matrix[i, j]):.6g} (click to compare)"

    def _cell_at(self, pos) -> tuple[int, int] | None:
        if self.matrix is None:
            return None
        i, j = int(np.floor(pos.y())), int(np.floor(pos.x()))
        n = self.matrix.shape[0]
        return (i, j) if 0 <= i < n and 0 <= j < n else None

    def point_text(self, i: int) -> str:
        """What point ``i`` of the distance-to-first curve stands for, in words."""
        if self.matrix is None or not 0 <= i < self.matrix.shape[0]:
            return ""
        name = self.items[i].name if i < len(self.items) else str(i)
        label = self.curve.getPlotItem().getAxis("bottom").labelText or "member"
        return f"{label} {i}: {name}\n{self.metric} with the first = {float(self.matrix[0, i]):.6g}"

    def _on_curve_mouse(self, scene_pos) -> None:
        """Tooltip for the curve point nearest the mouse (within a few pixels)."""
        if self.matrix is None:
            return
        vb = self.curve.getPlotItem().getViewBox()
        if not vb.sceneBoundingRect().contains(scene_pos):
            self.curve.setToolTip("")
            return
        dist = np.full(self.matrix.shape[0], np.inf)
        for i, y in enumerate(self.matrix[0]):
            if np.isfinite(y):  # e.g. PSNR of the first with itself is +inf and is not drawn
                p = vb.mapViewToScene(pg.Point(float(i), float(y)))
                dist[i] = np.hypot(p.x() - scene_pos.x(), p.y() - scene_pos.y())
        k = int(np.argmin(dist))
        self.curve.setToolTip(self.point_text(k) if dist[k] <= 8.0 else "")

    def _on_heat_hover(self, event) -> None:
        cell = None if event.isExit() else self._cell_at(event.pos())
        self.heat.setToolTip("" if cell is None else self.cell_text(*cell))

    def _on_heat_click(self, event) -> None:
        cell = self._cell_at(event.pos())
        if cell is not None:
            event.accept()
            self.pair_chosen.emit(*cell)

    def load_pair(self, i: int, j: int) -> None:
        """Put members ``i`` and ``j`` into A and B (and so compare them)."""
        if 0 <= i < len(self.items) and 0 <= j < len(self.items):
            self.w.set_items({"A": self.items[i], "B": self.items[j]})
            self.w.statusBar().showMessage(f"series pair {i} / {j} loaded into A and B", 6000)
