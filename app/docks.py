"""The window's docks and the wiring between session, views and panels (comparison runs, linked cameras)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import QObject, Qt, QTimer
from PySide6.QtGui import QAction, QActionGroup
from PySide6.QtWidgets import QDockWidget, QFileDialog, QWidget

from app import comparing
from app.session import METHODS, SLOTS
from app.workers import Progress, Task

if TYPE_CHECKING:
    from app.main_window import MainWindow

SIGNED_DIFF = "difference"  # the difference view's fallback: A − B per voxel


def add_dock(window: MainWindow, name: str, title: str, widget: QWidget,
             area: Qt.DockWidgetArea = Qt.DockWidgetArea.RightDockWidgetArea) -> QDockWidget:
    dock = QDockWidget(title, window)
    dock.setObjectName(f"dock_{name}")  # saveState/restoreState find docks by object name
    dock.setWidget(widget)
    window.addDockWidget(area, dock)
    window.view_menu.addAction(dock.toggleViewAction())
    window.panels[name] = widget
    window.docks[name] = dock
    return dock


class WindowController(QObject):
    """Keeps views and panels in step with the session and runs comparisons in the background."""

    def __init__(self, window: MainWindow):
        super().__init__(window)
        self.w = window
        self.session = window.session
        self._syncing_camera = False
        self._compare_task: Task | None = None
        self.resample_mismatched = True  # compare volumes of different shapes on A's grid
        self._compare_timer = QTimer(self)
        self._compare_timer.setSingleShot(True)
        self._compare_timer.setInterval(30)
        self._compare_timer.timeout.connect(self.run_comparison)
        self.session.item_changed.connect(self._on_item_changed)
        self.session.metrics_changed.connect(lambda _m: self.schedule_comparison())
        self.session.region_changed.connect(lambda _r: self.schedule_comparison())
        self.session.comparison_changed.connect(self._on_comparison)
        self.session.diff_metric_changed.connect(lambda _m: self.update_difference())
        self.session.method_changed.connect(self._on_method)
        self.session.transfer_changed.connect(self._on_transfer)
        self.session.link_cameras_changed.connect(self._on_link)
        for v in (*window.slot_views.values(), window.diff_view):
            if v.view is not None:
                self._on_view_created(v.slot, v.view)
            v.view_created.connect(lambda view, s=v.slot: self._on_view_created(s, view))

    def _on_view_created(self, slot: str, view: Any) -> None:
        """Bind a new GL view to the session: camera links, rendering method, transfer function."""
        view.camera_changed.connect(lambda cam: self._on_camera(slot, cam))
        view.set_method(self.session.method)
        tf = self.session.transfer(slot)
        if tf is not None:
            view.set_transfer_function(tf)
        others = [v.view for v in (*self.w.slot_views.values(), self.w.diff_view)
                  if v.slot != slot and v.view is not None and v.view is not view]
        if self.session.link_cameras and others:
            view.camera = others[0].camera

    # ------------------------------------------------------------------ metrics
    def set_metric_weights(self, metric: str, path: str | None, remember: bool = True) -> None:
        """Use ``path`` as the weights of learned metric ``metric`` and compare again (a metric not in the
        table yet, e.g. LSiM once its weights are chosen, joins it)."""
        comparing.set_weights(metric, path)
        if remember:
            self.w.prefs.set_metric_weights(metric, path)
        if path and self.session.metrics and metric not in self.session.metrics:
            self.session.set_metrics([*self.session.metrics, metric])
        self.schedule_comparison()

    def ask_metric_weights(self) -> None:
        from PySide6.QtWidgets import QInputDialog

        learned = [n for n, m in self.w.catalog.items() if m.get("learned")]
        if not learned:
            self.w.report_error("no learned metric is installed")
            return
        name, ok = QInputDialog.getItem(self.w, "Weights of a learned metric", "metric", learned, 0, False)
        if not ok:
            return
        path, _ = QFileDialog.getOpenFileName(self.w, f"Weights for {name}", self.w.prefs.last_dir(),
                                              "Weights (*.pth *.pt *.safetensors);;All files (*)")
        if path:
            self.set_metric_weights(name, path)

    def load_catalog(self) -> Task:
        """Find the installed metrics in the background (importing them loads torch: seconds)."""
        task = Task("catalog", lambda progress: comparing.metric_catalog(), label="loading the metric engine")
        task.signals.finished.connect(self.set_catalog)
        task.signals.failed.connect(lambda exc: self.w.report_error(f"the metric engine failed to load: {exc}"))
        self.w.statusBar().showMessage("loading the metric engine…", 3000)
        return self.w.tasks.start(task)

    def set_catalog(self, catalog: list[dict[str, Any]]) -> None:
        """Every panel learns which metrics exist; the default ones are chosen; a loaded pair is compared."""
        self.w.catalog.clear()
        self.w.catalog.update({m["name"]: m for m in catalog})
        if not self.session.metrics:
            self.session.set_metrics(comparing.default_metrics(catalog))
        self.w.panels["distances"].set_catalog(catalog)
        self.w.panels["distances"].refresh()
        self.w.panels["features"].fill_metrics()
        self.w.panels["series"].set_catalog(self.w.catalog)
        menu = self.w.diff_menu
        menu.clear()
        group = QActionGroup(menu)
        for n in [SIGNED_DIFF] + [n for n, m in self.w.catalog.items() if m.get("voxel_map")]:
            label = "A − B" if n == SIGNED_DIFF else (self.w.catalog[n].get("label") or n) + " map"
            act = QAction(label, menu, checkable=True)
            act.setChecked(n == self.session.diff_metric)
            act.triggered.connect(lambda _=False, n=n: self.session.set_diff_metric(n))
            group.addAction(act)
            menu.addAction(act)
        self.w.catalog_ready.emit()
        self.schedule_comparison()

    # ------------------------------------------------------------------ comparison
    def _on_item_changed(self, _slot: str) -> None:
        if self.session.more_items_coming:  # the second signal of a pair: one update for both
            return
        self.update_difference()  # and the slices, with that difference
        if self.session.has_pair():
            self.schedule_comparison()

    def schedule_comparison(self) -> None:
        if self.session.has_pair() and self.w.catalog:
            self._compare_timer.start()

    def resample_grid(self) -> tuple[int, int, int] | None:
        """A's grid when A and B differ in shape and resampling is on (Compare menu), else None."""
        if not self.resample_mismatched or not self.session.has_pair():
            return None
        return comparing.common_grid(self.session.item("A").volume, self.session.item("B").volume)

    def set_resample_mismatched(self, on: bool) -> None:
        self.resample_mismatched = bool(on)
        self.schedule_comparison()

    def features_metric(self) -> str:
        """The learned metric whose feature maps are requested with the distances."""
        fm = self.session.feature_metric
        if fm in self.session.metrics:
            return fm
        learned = [m for m in self.session.metrics if self.w.catalog.get(m, {}).get("learned")]
        return learned[0] if learned else ""

    def run_comparison(self) -> Task | None:
        """Compute the chosen metrics for A and B in a worker (a running comparison is cancelled)."""
        if not self.session.has_pair() or not self.session.metrics or not self.w.catalog:
            return None
        a, b = self.session.item("A").volume, self.session.item("B").volume
        metrics = self.session.metrics
        feat = self.features_metric()
        grid = self.resample_grid()
        region = self.session.region

        def work(progress: Progress) -> dict[str, Any]:
            return comparing.compute_distances(a, b, metrics, features_for=[feat] if feat else [], progress=progress,
                                               resample=grid, on_result=lambda n, d: progress.emit_data((n, d)),
                                               region=region)

        task = Task("compare", work, label=f"comparing {a.name} and {b.name}")
        pair = (self.session.item("A"), self.session.item("B"))

        def one_result(result: tuple[str, Any]) -> None:  # each metric's row fills in as soon as it is done
            if (self.session.item("A"), self.session.item("B")) == pair and self._compare_task is task:
                self.w.panels["distances"].show_result(*result)

        def finished(results: dict[str, Any]) -> None:
            if (self.session.item("A"), self.session.item("B")) == pair:  # still the same pair
                self.session.set_comparison(results)
                self.w.comparison_done.emit(results)

        task.signals.finished.connect(finished)
        task.signals.data.connect(one_result)
        task.signals.failed.connect(lambda exc: self.w.report_error(f"comparison failed: {exc}"))
        self.session.comparison_started.emit()
        self._compare_task = task  # the latest comparison: only its rows are shown as they arrive
        return self.w.tasks.start(task)

    def _on_comparison(self, results: Any) -> None:
        if results is None:
            return
        self._fallback_feature_metric(results)
        self.update_difference()
        if not self.session.diff_metric:
            with_map = [m for m in self.session.metrics if getattr(self.session.distance(m), "voxel_map", None)
                        is not None]
            if with_map:
                self.session.set_diff_metric(with_map[0])

    def _fallback_feature_metric(self, results: dict[str, Any]) -> None:
        """If the feature-map metric failed (e.g. no weights), show another learned metric's maps."""
        fm = self.features_metric()
        if not fm or not isinstance(results.get(fm), BaseException):
            return
        ok = [m for m in self.session.metrics if self.w.catalog.get(m, {}).get("learned")
              and results.get(m) is not None and not isinstance(results.get(m), BaseException)]
        if not ok:
            return
        self.session.set_feature_metric(ok[0])
        if not results[ok[0]].features:
            self.compute_features(ok[0])

    # ------------------------------------------------------------------ difference and slices
    def difference(self) -> tuple[np.ndarray | None, str]:
        """The per-voxel difference shown in the third view and slice: a metric's map, else A − B."""
        if not self.session.has_pair():
            return None, ""
        name = self.session.diff_metric
        d = self.session.distance(name) if name and name != SIGNED_DIFF else None
        if d is not None and d.voxel_map is not None:
            label = self.w.catalog.get(name, {}).get("label") or name
            values, region = np.asarray(d.voxel_map, dtype=np.float32), self.session.region
            if region is not None:  # the map of the region, in place in A's grid (0 outside)
                from core.errors import MetricError
                from core.region import embed

                try:
                    values = embed(values, region, self.session.item("A").shape)
                except MetricError:  # a map on another grid than the region's: nothing to place
                    return None, ""
                label += " (region)"
            return values, f"{label} map"
        try:
            return comparing.signed_difference(self.session.item("A").volume, self.session.item("B").volume), "A − B"
        except Exception:  # noqa: BLE001 - shapes differ: there is no per-voxel difference to show
            return None, ""

    def update_difference(self) -> None:
        arr, label = self.difference()
        view = self.w.diff_view
        signed = arr is not None and float(arr.min()) < 0
        # the 3D view shows a signed difference's magnitude (the slices keep its sign)
        view.title.setText((f"|{label}|" if signed else label) or "no per-voxel difference (shapes differ or "
                                                                  "nothing loaded)")
        if arr is None:
            view.set_volume(None)
            view.legend.set_transfer(None)
        elif view.isVisible():
            from core.volume import Volume

            shown = np.abs(arr) if signed else arr
            view.set_volume(Volume.from_array(shown, name=label))
            self._diff_transfer(view, shown)
        self.update_slices(diff=(arr, label))

    @staticmethod
    def _diff_transfer(view, shown: np.ndarray) -> None:
        """The difference view's own colormap (inferno) over 0 … the largest difference, with its legend."""
        if view.view is None:
            return
        try:
            from renderer.transfer import TransferFunction
        except ModuleNotFoundError:
            return
        hi = float(shown.max()) or 1.0
        tf = TransferFunction.preset("inferno", value_range=(0.0, hi)).with_opacity([[0.0, 0.0], [0.1, 0.02],
                                                                                      [1.0, 0.8]])
        view.view.set_transfer_function(tf)
        view.legend.set_transfer(tf)

    def update_slices(self, diff: tuple[np.ndarray | None, str] | None = None) -> None:
        panel = self.w.panels.get("slices")
        if panel is None:
            return
        arr, label = diff if diff is not None else self.difference()
        items = {s: self.session.item(s) for s in SLOTS}
        data = {s: (None if it is None else it.volume.scalar().data[0]) for s, it in items.items()}
        summary = self.w.catalog.get(self.session.diff_metric, {}).get("map_summary", "mean")
        panel.set_arrays(data["A"], data["B"], arr, label or "difference", summary)

    # ------------------------------------------------------------------ views
    def _on_camera(self, slot: str, camera: Any) -> None:
        if self._syncing_camera:
            return
        self.session.set_camera(slot, camera)
        if not self.session.link_cameras:
            return
        self._syncing_camera = True
        try:
            for v in (*self.w.slot_views.values(), self.w.diff_view):
                if v.slot != slot and v.view is not None:
                    v.view.camera = camera
        finally:
            self._syncing_camera = False

    def _on_link(self, on: bool) -> None:
        if on:  # the others take A's camera now
            a = self.w.slot_views["A"].view
            if a is not None:
                self._on_camera("A", a.camera)

    def _on_transfer(self, slot: str, tf: Any) -> None:
        view = self.w.slot_views.get(slot)
        if view is not None and view.view is not None and tf is not None:
            view.view.set_transfer_function(tf)
        if view is not None:
            view.legend.set_transfer(tf if view.item is not None else None)

    def compute_features(self, metric: str) -> Task | None:
        """Compute ``metric`` again with its feature maps kept (when the comparison ran without them)."""
        if not metric or not self.session.has_pair():
            return None
        a, b = self.session.item("A").volume, self.session.item("B").volume
        pair = (self.session.item("A"), self.session.item("B"))
        grid, region = self.resample_grid(), self.session.region
        task = Task("features", lambda progress: comparing.distance_of(a, b, metric, features=True, resample=grid,
                                                                        region=region),
                    label=f"{metric} feature maps")

        def finished(d: Any) -> None:
            if (self.session.item("A"), self.session.item("B")) == pair:
                results = dict(self.session.comparison or {})
                results[metric] = d
                self.session.set_comparison(results)

        task.signals.finished.connect(finished)
        task.signals.failed.connect(lambda exc: self.w.report_error(f"{metric} feature maps: {exc}"))
        return self.w.tasks.start(task)

    def _on_method(self, method: str) -> None:
        for v in (*self.w.slot_views.values(), self.w.diff_view):
            if v.view is not None:
                v.view.set_method(method)

    def export(self, fmt: str, path: str | None = None) -> str | None:
        """Write the comparison as CSV or JSON, or (``"slices"``) its per-slice curves along the Slices tab's
        axis as CSV, as ``volsight compare --per-slice`` (asks for a file name when ``path`` is None)."""
        results = self.session.comparison
        if not results or not self.session.has_pair():
            self.w.report_error("nothing to export yet: load A and B and wait for the comparison")
            return None
        axis = self.w.panels["slices"].axis
        ext = "json" if fmt == "json" else "csv"
        if path is None:
            name = f"per-slice-{'zyx'[axis]}.csv" if fmt == "slices" else f"comparison.{ext}"
            path, _ = QFileDialog.getSaveFileName(self.w, "Export per-slice curves" if fmt == "slices" else
                                                  f"Export comparison as {ext.upper()}",
                                                  str(Path(self.w.prefs.last_dir()) / name), f"{ext.upper()} (*.{ext})")
            if not path:
                return None
        a, b = self.session.item("A").volume, self.session.item("B").volume
        if fmt == "slices":
            from core.compare import per_slice_table
            from core.errors import MetricError

            try:
                text = per_slice_table(comparing.comparison_of(results, a, b, region=self.session.region), axis)
            except MetricError as exc:  # A and B on different grids (resampling off)
                self.w.report_error(str(exc))
                return None
        else:
            write = comparing.comparison_csv if fmt == "csv" else comparing.comparison_json
            text = write(results, a, b, region=self.session.region)
        from core.io.atomic import write_bytes_atomic

        write_bytes_atomic(path, text.encode("utf-8"))
        self.w.statusBar().showMessage(f"comparison written to {path}", 8000)
        return path


def install_panels(window: MainWindow) -> WindowController:
    """Create the docks (distances, slices, ...), the View/Compare menus, and wire them to the session."""
    from app.panels.distances import DistancePanel
    from app.panels.features import FeaturePanel
    from app.panels.fields import FieldPanel
    from app.panels.series import SeriesPanel
    from app.panels.slices import SlicePanel
    from app.panels.transfer_editor import TransferEditor

    ctl = WindowController(window)
    window.controller = ctl
    for metric, path in window.prefs.metric_weights().items():
        comparing.set_weights(metric, path)

    dist = DistancePanel(window.session)
    dist.recompute_requested.connect(ctl.run_comparison)
    dist.export_requested.connect(lambda fmt: ctl.export(fmt))
    dist.refresh()
    add_dock(window, "distances", "Distances", dist)
    feats = FeaturePanel(window.session, window.catalog)
    feats.features_requested.connect(ctl.compute_features)
    add_dock(window, "features", "Feature maps", feats)
    bottom = Qt.DockWidgetArea.BottomDockWidgetArea
    slices = add_dock(window, "slices", "Slices", SlicePanel(), bottom)
    tf = add_dock(window, "transfer", "Transfer function", TransferEditor(window.session), bottom)
    fields = add_dock(window, "fields", "Neural field", FieldPanel(window), bottom)
    series = add_dock(window, "series", "Series", SeriesPanel(window), bottom)
    for d in (tf, fields, series):
        window.tabifyDockWidget(slices, d)
    slices.raise_()

    def locate(voxel: tuple[int, int, int]) -> None:  # a located value (Max error) double-clicked
        slices.raise_()
        window.panels["slices"].show_voxel(voxel)
        window.statusBar().showMessage("the Slices tab shows voxel z, y, x = " + ", ".join(map(str, voxel)), 8000)

    dist.locate_requested.connect(locate)

    def mark_in_views(voxel: tuple[int, int, int] | None) -> None:  # the ringed voxel, crossed in 3D
        a = window.session.item("A")
        point = None if voxel is None or a is None else tuple((i + 0.5) / n for i, n in zip(voxel, a.shape))
        for v in (*window.slot_views.values(), window.diff_view):
            if v.view is not None:
                v.view.set_marker(point)

    window.panels["slices"].marked_changed.connect(mark_in_views)
    window.session.item_changed.connect(lambda _slot: window.panels["slices"].show_voxel(None))

    _view_actions(window, ctl)
    from app.window_actions import install_window_actions

    install_window_actions(window)
    return ctl


def _view_actions(window: MainWindow, ctl: WindowController) -> None:
    s = window.session
    vm = window.view_menu
    vm.addSeparator()
    window.link_action = window._action(vm, "&Link cameras", s.set_link_cameras, checkable=True,
                                        checked=s.link_cameras, tip="rotate A, B and the difference together")
    window.shared_tf_action = window._action(vm, "&Shared transfer function", s.set_shared_tf, checkable=True,
                                             checked=s.shared_tf, tip="one transfer function for A and B")

    def show_diff(on: bool) -> None:
        window.diff_view.setVisible(on)
        n = 3 if on else 2
        window.views_splitter.setSizes([window.views_splitter.width() // n] * n + ([] if on else [0]))
        ctl.update_difference()

    window.diff_action = window._action(vm, "&Difference view", show_diff, checkable=True, checked=False,
                                        tip="a third view of the chosen metric's per-voxel difference")
    methods = vm.addMenu("Rendering &method")
    group = QActionGroup(window)
    for m in METHODS:
        act = QAction(m.replace("_", " "), window, checkable=True)
        act.setChecked(m == s.method)
        act.triggered.connect(lambda _=False, m=m: s.set_method(m))
        group.addAction(act)
        methods.addAction(act)
    vm.addSeparator()

    cm = window.compare_menu
    window.recompute_action = window._action(cm, "&Recompute", ctl.run_comparison,
                                             tip="compute the chosen metrics again")
    window._action(cm, "&Cancel", lambda: window.tasks.cancel("compare"))
    window.diff_menu = cm.addMenu("&Difference shows")
    cm.addSeparator()
    window.resample_action = window._action(
        cm, "Resample &B onto A's grid when shapes differ", ctl.set_resample_mismatched, checkable=True,
        checked=ctl.resample_mismatched, tip="metrics need one grid; trilinear resampling (core.metrics.preprocess)")
    window._action(cm, "Learned-metric &weights…", ctl.ask_metric_weights,
                   tip="choose a weights file for VolSiM, LSiM, ... (e.g. the official checkpoints)")
    cm.addSeparator()
    window._action(cm, "Export &CSV…", lambda: ctl.export("csv"))
    window._action(cm, "Export &JSON…", lambda: ctl.export("json"))
    window._action(cm, "Export &per-slice curves…", lambda: ctl.export("slices"),
                   tip="CSV of the RMS of A − B and each metric map's mean over every slice along the Slices tab's "
                       "axis (volsight compare --per-slice)")
