"""The window's state with no widgets: what slots A and B hold, view settings, metrics, the comparison.

Views and panels subscribe to the signals and push changes back through the setters; a setter
validates, stores and emits only when the value really changed, so two-way bindings do not loop
(napari's layer-model idiom, with Qt signals as the event system).
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject, Signal

from app.loading import LoadedItem

SLOTS = ("A", "B")
METHODS = ("translucent", "mip", "iso", "attenuated_mip")


class Session(QObject):
    """State of one comparison window."""

    item_changed = Signal(str)  # slot name; the item may be None (cleared)
    comparison_changed = Signal(object)  # dict[str, Distance | Exception] or None
    comparison_started = Signal()
    metrics_changed = Signal(list)
    method_changed = Signal(str)
    link_cameras_changed = Signal(bool)
    shared_tf_changed = Signal(bool)
    transfer_changed = Signal(str, object)  # "A", "B" or "diff"; a TransferFunction
    camera_changed = Signal(str, object)  # slot, camera (OrbitCamera or dict)
    diff_metric_changed = Signal(str)
    feature_metric_changed = Signal(str)
    scale_selected = Signal(str, str)  # metric, scale
    series_changed = Signal(object)
    region_changed = Signal(object)  # a core.region.Region on A's grid, or None for the whole volumes

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._items: dict[str, LoadedItem | None] = {s: None for s in SLOTS}
        self._metrics: list[str] = []
        self._method = "translucent"  # with the transfer function's opacity ramp, empty space stays clear
        self._link_cameras = True
        self._shared_tf = True
        self._transfer: dict[str, Any] = {}
        self._cameras: dict[str, Any] = {}
        self._diff_metric = ""
        self._feature_metric = ""
        self.comparison: dict[str, Any] | None = None  # metric name -> Distance or the error it raised
        self.comparison_pair: tuple[str, str] | None = None  # names of the pair it was computed for
        self.series: Any = None
        self._region: Any = None
        # True while listeners hear the first of two item_changed signals (set_pair, swap): both slots
        # already hold their new items, so work that reads both can wait for the second signal
        self.more_items_coming = False

    # ------------------------------------------------------------------ slots
    def item(self, slot: str) -> LoadedItem | None:
        return self._items[self._check_slot(slot)]

    def set_item(self, slot: str, item: LoadedItem | None) -> None:
        """Put ``item`` in ``slot``; the comparison becomes stale."""
        self._items[self._check_slot(slot)] = item
        self.set_comparison(None)
        self.item_changed.emit(slot)

    def set_pair(self, a: LoadedItem, b: LoadedItem) -> None:
        """Load both slots at once (one comparison afterwards, not two)."""
        self._items["A"], self._items["B"] = a, b
        self.set_comparison(None)
        self._emit_both()

    def _emit_both(self) -> None:
        """``item_changed`` for A, then B, with :attr:`more_items_coming` set during the first."""
        self.more_items_coming = True
        try:
            self.item_changed.emit("A")
        finally:
            self.more_items_coming = False
        self.item_changed.emit("B")

    def swap(self) -> None:
        """Exchange A and B; each volume keeps its transfer function (the comparison becomes stale).

        Listeners see two ``item_changed`` signals, then the transfer functions as they were
        before the swap, so an editor that refits its range on a new item does not undo them.
        """
        items, tfs = dict(self._items), dict(self._transfer)
        self._items["A"], self._items["B"] = items["B"], items["A"]
        self.set_comparison(None)
        self._emit_both()
        for s, other in (("A", "B"), ("B", "A")):
            if other in tfs:
                self._transfer[s] = tfs[other]
                self.transfer_changed.emit(s, tfs[other])

    def has_pair(self) -> bool:
        return all(self._items[s] is not None for s in SLOTS)

    @staticmethod
    def _check_slot(slot: str) -> str:
        if slot not in SLOTS:
            raise ValueError(f"slot must be one of {SLOTS}, got {slot!r}")
        return slot

    # ------------------------------------------------------------------ comparison
    @property
    def metrics(self) -> list[str]:
        return list(self._metrics)

    def set_metrics(self, names: list[str]) -> None:
        names = list(dict.fromkeys(names))
        if names != self._metrics:
            self._metrics = names
            self.metrics_changed.emit(list(names))

    def set_comparison(self, results: dict[str, Any] | None) -> None:
        self.comparison = results
        self.comparison_pair = None
        if results is not None and self.has_pair():
            self.comparison_pair = (self._items["A"].name, self._items["B"].name)  # type: ignore[union-attr]
        self.comparison_changed.emit(results)

    def distance(self, metric: str) -> Any:
        """The Distance of ``metric`` in the current comparison, or None (missing or failed)."""
        d = (self.comparison or {}).get(metric)
        return None if d is None or isinstance(d, BaseException) else d

    # ------------------------------------------------------------------ view settings
    @property
    def method(self) -> str:
        return self._method

    def set_method(self, method: str) -> None:
        if method not in METHODS:
            raise ValueError(f"rendering method must be one of {METHODS}, got {method!r}")
        if method != self._method:
            self._method = method
            self.method_changed.emit(method)

    @property
    def link_cameras(self) -> bool:
        return self._link_cameras

    def set_link_cameras(self, on: bool) -> None:
        if bool(on) != self._link_cameras:
            self._link_cameras = bool(on)
            self.link_cameras_changed.emit(self._link_cameras)

    @property
    def shared_tf(self) -> bool:
        return self._shared_tf

    def set_shared_tf(self, on: bool) -> None:
        if bool(on) != self._shared_tf:
            self._shared_tf = bool(on)
            self.shared_tf_changed.emit(self._shared_tf)
            if self._shared_tf and "A" in self._transfer:
                self.set_transfer("A", self._transfer["A"])

    def transfer(self, slot: str) -> Any:
        return self._transfer.get(slot)

    def set_transfer(self, slot: str, tf: Any) -> None:
        """Set the transfer function of ``slot``; with shared TFs, A and B get the same one."""
        targets = ["A", "B"] if (self._shared_tf and slot in SLOTS) else [slot]
        for s in targets:
            self._transfer[s] = tf
            self.transfer_changed.emit(s, tf)

    def camera(self, slot: str) -> Any:
        return self._cameras.get(slot)

    def set_camera(self, slot: str, camera: Any) -> None:
        """Record ``slot``'s camera; with linked cameras the other views follow."""
        self._cameras[slot] = camera
        self.camera_changed.emit(slot, camera)

    @property
    def diff_metric(self) -> str:
        return self._diff_metric

    def set_diff_metric(self, name: str) -> None:
        if name != self._diff_metric:
            self._diff_metric = name
            self.diff_metric_changed.emit(name)

    @property
    def feature_metric(self) -> str:
        return self._feature_metric

    def set_feature_metric(self, name: str) -> None:
        if name != self._feature_metric:
            self._feature_metric = name
            self.feature_metric_changed.emit(name)

    def select_scale(self, metric: str, scale: str) -> None:
        self.scale_selected.emit(metric, scale)

    @property
    def region(self) -> Any:
        """The box of A's voxels the pair is compared in (``((z0, z1), (y0, y1), (x0, x1))``), or None."""
        return self._region

    def set_region(self, region: Any) -> None:
        """Compare only ``region`` (None: the whole volumes); the comparison becomes stale."""
        region = None if region is None else tuple(tuple(int(v) for v in r) for r in region)
        if region != self._region:
            self._region = region
            self.set_comparison(None)
            self.region_changed.emit(region)

    def set_series(self, series: Any) -> None:
        self.series = series
        self.series_changed.emit(series)
