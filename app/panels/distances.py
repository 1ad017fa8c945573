"""Distance panel: the chosen metrics' values for the pair, per-scale contributions, copy and export."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtGui import QFont, QGuiApplication, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMenu,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.session import Session

COLUMNS = ("Metric", "Value", "Kind", "Note")
BAR_BRUSH = pg.mkBrush(76, 139, 245, 200)
BAR_HIGHLIGHT = pg.mkBrush(245, 167, 66, 230)


def format_value(value: float) -> str:
    return f"{value:.6g}"


class DistancePanel(QWidget):
    """Table of metric values (copyable), metric chooser, bar chart of one learned metric's scales."""

    recompute_requested = Signal()
    export_requested = Signal(str)  # "csv" or "json"
    locate_requested = Signal(object)  # (z, y, x) of A's grid: a row's located value (Max error) double-clicked

    def __init__(self, session: Session, parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.catalog: dict[str, dict[str, Any]] = {}
        self.catalog_known = False  # until the metric engine has been imported (in the background)
        self._highlight: tuple[str, str] | None = None
        self._bar_metric = ""

        self.metrics_button = QToolButton()
        self.metrics_button.setText("Metrics")
        self.metrics_button.setToolTip("choose the metrics to compute")
        self.metrics_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.metrics_menu = QMenu(self)
        self.metrics_button.setMenu(self.metrics_menu)
        self.recompute_button = QPushButton("Recompute")
        self.recompute_button.clicked.connect(self.recompute_requested)
        self.export_button = QToolButton()
        self.export_button.setText("Export")
        self.export_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        em = QMenu(self)
        em.addAction("CSV…").triggered.connect(lambda: self.export_requested.emit("csv"))
        em.addAction("JSON…").triggered.connect(lambda: self.export_requested.emit("json"))
        em.addAction("Per-slice curves (CSV)…").triggered.connect(lambda: self.export_requested.emit("slices"))
        self.export_button.setMenu(em)
        self.pair_label = QLabel("no pair loaded")
        self.pair_label.setWordWrap(True)
        self.pair_label.setStyleSheet("color: #888;")

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().setVisible(False)
        # compact rows: every default metric fits the dock without scrolling
        self.table.verticalHeader().setDefaultSectionSize(self.table.fontMetrics().height() + 8)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        hh = self.table.horizontalHeader()
        hh.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        hh.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        hh.setSectionResizeMode(2, QHeaderView.ResizeMode.ResizeToContents)
        hh.setStretchLastSection(True)
        self.table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.table.customContextMenuRequested.connect(self._context_menu)
        self.table.itemSelectionChanged.connect(self._on_selection)
        self.table.cellDoubleClicked.connect(self._on_double_click)
        # Ctrl+C: the table view would copy only the current cell's display text; copy whole rows in
        # full precision instead
        self.table.installEventFilter(self)

        self.bars = pg.PlotWidget()
        self.bars.setObjectName("contributions_plot")
        self.bars.setMinimumHeight(70)
        self.bars.setMenuEnabled(False)
        self.bars.setMouseEnabled(x=False, y=False)
        self.bars.setTitle("per-scale contributions", size="9pt")
        small = QFont()
        small.setPointSizeF(7.0)
        self.bars.getAxis("left").setStyle(tickFont=small)
        self.bar_item: pg.BarGraphItem | None = None
        self.bar_names: list[str] = []

        top = QHBoxLayout()
        top.addWidget(self.metrics_button)
        top.addWidget(self.recompute_button)
        top.addWidget(self.export_button)
        top.addStretch(1)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.table)
        split.addWidget(self.bars)
        split.setSizes([260, 110])
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addLayout(top)
        lay.addWidget(self.pair_label)
        lay.addWidget(split, 1)

        session.metrics_changed.connect(lambda _m: self.refresh())
        session.comparison_changed.connect(lambda _r: self.refresh())
        session.comparison_started.connect(self._on_started)
        session.scale_selected.connect(self.highlight_scale)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt override
        if obj is self.table and event.type() in (QEvent.Type.KeyPress, QEvent.Type.ShortcutOverride) \
                and event.matches(QKeySequence.StandardKey.Copy):
            if event.type() == QEvent.Type.KeyPress:
                self.copy_selection()
            event.accept()
            return True
        return super().eventFilter(obj, event)

    # ------------------------------------------------------------------ metric chooser
    def set_catalog(self, catalog: list[dict[str, Any]]) -> None:
        """Fill the metric chooser with every installed metric (classical and learned)."""
        self.catalog = {m["name"]: m for m in catalog}
        self.catalog_known = True
        self.metrics_menu.clear()
        for group, learned in (("classical", False), ("learned", True)):
            names = [n for n, m in self.catalog.items() if bool(m.get("learned")) == learned]
            if not names:
                continue
            self.metrics_menu.addSection(group)
            for n in names:
                act = self.metrics_menu.addAction(self.catalog[n].get("label") or n)
                act.setCheckable(True)
                act.setChecked(n in self.session.metrics)
                act.setData(n)
                act.toggled.connect(self._on_metric_toggled)
        if not self.catalog:
            self.metrics_menu.addAction("(no metrics installed)").setEnabled(False)

    def _on_metric_toggled(self, _checked: bool) -> None:
        chosen = [a.data() for a in self.metrics_menu.actions() if a.isCheckable() and a.isChecked()]
        order = [m for m in self.session.metrics if m in chosen] + [m for m in chosen if m not in self.session.metrics]
        self.session.set_metrics(order)

    # ------------------------------------------------------------------ table
    def _on_started(self) -> None:
        for r in range(self.table.rowCount()):
            self.table.item(r, 1).setText("…")
            self.table.item(r, 3).setText("computing")

    def refresh(self) -> None:
        """Rebuild the table from the session's metrics and comparison."""
        results = self.session.comparison or {}
        a, b = self.session.item("A"), self.session.item("B")
        if a is not None and b is not None:
            text = f"A: {a.name}   B: {b.name}"
            if a.shape != b.shape:
                text += f"  (shapes differ: {a.shape_text()} vs {b.shape_text()})"
            if self.session.region is not None:
                from core.region import format_region

                text += f"  — region z,y,x {format_region(self.session.region)}"
            self.pair_label.setText(text)
        else:
            self.pair_label.setText("load volumes into A and B to compare them")
        self.table.setRowCount(0)
        if not self.session.metrics:
            self.table.insertRow(0)
            why = ("loading the metric engine…" if not self.catalog_known else
                   "no metric chosen (Metrics menu)" if self.catalog else "no metrics installed")
            for c, text in enumerate(("—", "", "", why)):
                self.table.setItem(0, c, QTableWidgetItem(text))
            self.table.item(0, 0).setData(Qt.ItemDataRole.UserRole, "")
        for name in self.session.metrics:
            r = self.table.rowCount()
            self.table.insertRow(r)
            pending = "waiting for a pair" if a is None or b is None else "not computed"
            for c, it in enumerate(self._row_items(name, results.get(name), pending)):
                self.table.setItem(r, c, it)
        if self._bar_metric not in (self.session.metrics or []):
            self._bar_metric = next((m for m in self.session.metrics if self._contributions(m)), "")
        self.show_contributions(self._bar_metric)

    def _term_word(self, name: str) -> str:
        """What a metric's breakdown is made of: a learned network's layers (VolSiM: 3 scales × 4 layers),
        otherwise its terms (Watson-FFT: amplitude and phase)."""
        return "layers" if self.catalog.get(name, {}).get("learned") else "terms"

    def _row_items(self, name: str, d: Any, pending: str) -> tuple[QTableWidgetItem, ...]:
        """The four cells of ``name``'s row for result ``d`` (a Distance, the exception it raised, or None)."""
        info = self.catalog.get(name, {})
        label = QTableWidgetItem(info.get("label") or name)
        label.setData(Qt.ItemDataRole.UserRole, name)
        label.setToolTip(info.get("doc", ""))
        if d is None:
            value, note = "", pending
        elif isinstance(d, BaseException):
            value, note = "—", getattr(d, "reason", None) or str(d)  # the file is in the tooltip
        else:
            value, note = format_value(d.value), ("learned" if info.get("learned") else "")
            if d.info.get("weights") == "identity initialisation":  # LearnSim without weights: plain SSD / LCC
                note = "identity weights (untrained)"
            if len(d.contributions) > 1:  # a single term is the value itself: nothing to break down
                note = (note + f", {len(d.contributions)} {self._term_word(name)}").lstrip(", ")
            if d.info.get("resampled_to"):  # the network's nearest grid, not the pair's own
                note += f", on {d.info['resampled_to']}"
            if d.info.get("data_range") is not None:  # PSNR's and SSIM's R: say which, as it moves the value
                note = (note + f", data range {float(d.info['data_range']):.4g}").lstrip(", ")
            if d.info.get("slice_axes_left_out"):  # a 2D metric on a slab: the planes it could take only
                note = (note + f", slices along {d.info['slice_axes']} only").lstrip(", ")
            if d.info.get("at") is not None:  # where the value is taken (Max error): double-click goes there
                note = (note + ", at z, y, x = " + ", ".join(map(str, d.info["at"]))).lstrip(", ")
        v = QTableWidgetItem(value)
        v.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if d is not None and not isinstance(d, BaseException):
            v.setData(Qt.ItemDataRole.UserRole, float(d.value))
            v.setToolTip(repr(float(d.value)))
        kind = QTableWidgetItem(info.get("kind", "") if not hasattr(d, "kind") else d.kind)
        n = QTableWidgetItem(note)
        tip = str(d) if isinstance(d, BaseException) else note
        if not isinstance(d, BaseException) and d is not None and d.info.get("slice_axes_left_out"):
            tip = f"{note}: {d.info['slice_axes_left_out']}"
        if note.startswith("identity weights"):
            tip = ("no trained weights are set: the network is an exact identity, so its value is the plain "
                   "voxel-wise SSD or LCC of the pair (min-max normalised together); give it weights with "
                   "Compare › Learned-metric weights…")
        if not isinstance(d, BaseException) and d is not None and d.info.get("at") is not None:
            tip = f"{note}; double-click to show that voxel in the Slices tab"
        n.setToolTip(tip)
        return label, v, kind, n

    def show_result(self, name: str, d: Any) -> None:
        """Fill ``name``'s row with one metric's result as soon as it arrives (the comparison still runs)."""
        for r in range(self.table.rowCount()):
            if self.table.item(r, 0).data(Qt.ItemDataRole.UserRole) == name:
                for c, it in enumerate(self._row_items(name, d, "computing")):
                    self.table.setItem(r, c, it)
                return

    def values(self) -> dict[str, float | None]:
        """Metric name -> the value shown in the table (None where there is none)."""
        out: dict[str, float | None] = {}
        for r in range(self.table.rowCount()):
            name = self.table.item(r, 0).data(Qt.ItemDataRole.UserRole)
            out[name] = self.table.item(r, 1).data(Qt.ItemDataRole.UserRole)
        return out

    def copy_selection(self) -> str:
        """Copy the selected rows (all rows when none is selected) as tab-separated text, full precision."""
        rows = sorted({i.row() for i in self.table.selectedItems()}) or list(range(self.table.rowCount()))
        lines = ["\t".join(COLUMNS)]
        for r in rows:
            cells = []
            for c in range(len(COLUMNS)):
                it = self.table.item(r, c)
                full = it.data(Qt.ItemDataRole.UserRole) if c == 1 else None
                cells.append(repr(full) if isinstance(full, float) else it.text())
            lines.append("\t".join(cells))
        text = "\n".join(lines)
        QGuiApplication.clipboard().setText(text)
        return text

    def _context_menu(self, pos) -> None:
        menu = QMenu(self)
        menu.addAction("Copy").triggered.connect(self.copy_selection)
        menu.addAction("Copy all").triggered.connect(lambda: (self.table.clearSelection(), self.copy_selection()))
        menu.addSeparator()
        menu.addAction("Export CSV…").triggered.connect(lambda: self.export_requested.emit("csv"))
        menu.addAction("Export JSON…").triggered.connect(lambda: self.export_requested.emit("json"))
        menu.popup(self.table.viewport().mapToGlobal(pos))

    def _on_double_click(self, row: int, _column: int) -> None:
        """A row whose value sits at one voxel (Max error): ask for that voxel to be shown."""
        name = self.table.item(row, 0).data(Qt.ItemDataRole.UserRole) if self.table.item(row, 0) else ""
        d = self.session.distance(name) if name else None
        if d is not None and d.info.get("at") is not None:
            self.locate_requested.emit(tuple(int(i) for i in d.info["at"]))

    def _on_selection(self) -> None:
        rows = sorted({i.row() for i in self.table.selectedItems()})
        if rows:
            name = self.table.item(rows[0], 0).data(Qt.ItemDataRole.UserRole)
            if self._contributions(name):
                self.show_contributions(name)

    # ------------------------------------------------------------------ contributions
    def _contributions(self, metric: str) -> dict[str, float]:
        d = self.session.distance(metric)
        return dict(d.contributions) if d is not None and d.contributions else {}

    def show_contributions(self, metric: str) -> None:
        """Bar chart of ``metric``'s per-scale shares of its value."""
        self.bars.clear()
        self.bar_item = None
        contrib = self._contributions(metric) if metric else {}
        self._bar_metric = metric if contrib else ""
        if not contrib:
            self.bars.setTitle("per-layer contributions of a learned metric", size="9pt")
            self.bar_names = []
            return
        self.bar_names = list(contrib)
        x = np.arange(len(contrib), dtype=float)
        h = np.array([contrib[k] for k in self.bar_names], dtype=float)
        brushes = [BAR_HIGHLIGHT if self._highlight == (metric, k) else BAR_BRUSH for k in self.bar_names]
        self.bar_item = pg.BarGraphItem(x=x, height=h, width=0.7, brushes=brushes)
        self.bars.addItem(self.bar_item)
        # a short plot has room for two value labels, not a crowd: 0 and the largest share
        top = float(h.max()) if h.size and h.max() > 0 else 1.0
        self.bars.getAxis("left").setTicks([[(0.0, "0"), (top, f"{top:.2g}")]])
        axis = self.bars.getAxis("bottom")
        axis.setTicks([[(i, k) for i, k in enumerate(self.bar_names)]])
        font = QFont()
        font.setPointSizeF(9.0 if len(self.bar_names) <= 6 else 6.5)  # many scales: smaller names, no overlap
        axis.setStyle(tickFont=font)
        label = self.catalog.get(metric, {}).get("label") or metric
        word = self._term_word(metric).rstrip("s")
        self.bars.setTitle(f"{label} per {word} (sum {format_value(float(h.sum()))})", size="9pt")

    def highlight_scale(self, metric: str, scale: str) -> None:
        """Mark one scale's bar (the feature-map panel's current scale)."""
        self._highlight = (metric, scale)
        if self._contributions(metric):
            self.show_contributions(metric)

    def highlighted_bar(self) -> str | None:
        """The scale whose bar is highlighted, if it is on the chart."""
        if self.bar_item is None or self._highlight is None or self._highlight[0] != self._bar_metric:
            return None
        return self._highlight[1] if self._highlight[1] in self.bar_names else None
