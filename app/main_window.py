"""The comparison window: slots A and B side by side (plus the difference view), docks, menus, status bar.

The window owns widgets and threads only; the state lives in :class:`app.session.Session` and
every long task (reading, baking, comparing, fitting) runs through :class:`app.workers.TaskRunner`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QIcon, QKeySequence
from PySide6.QtWidgets import (
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QSplitter,
    QToolButton,
    QWidget,
)

from app.loading import LoadedItem, load_item
from app.panels.slot_view import SlotView, dropped_paths
from app.session import SLOTS, Session
from app.settings import Preferences
from app.workers import Task, TaskRunner
from core.errors import NonFiniteDataError

LAYOUT_VERSION = 3  # bump when docks are added or renamed: an older saved layout is then ignored
RESOURCES = Path(__file__).resolve().parents[1] / "resources"
FILE_FILTER = "Volumes and fields (*.nc *.nc4 *.cdf *.npy *.npz *.raw *.json *.vsf *.safetensors);;All files (*)"


class MainWindow(QMainWindow):
    """volsight's main window."""

    error_reported = Signal(str)  # every user-facing error message, for tests and logs
    item_loaded = Signal(str)  # slot name, after a load finished
    comparison_done = Signal(object)
    session_restored = Signal(str)
    catalog_ready = Signal()  # the installed metrics are known (window.catalog)

    setup_done = Signal()  # docks, views and metric engine start are in place (see complete_setup)

    def __init__(self, preferences: Preferences | None = None, deferred: bool = False,
                 parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("volsight")
        icon = RESOURCES / "icons" / "volsight.svg"
        if icon.is_file():
            self.setWindowIcon(QIcon(str(icon)))
        self.setAcceptDrops(True)
        self.prefs = preferences or Preferences()
        self.session = Session(self)
        self.tasks = TaskRunner(self)
        self.errors: list[str] = []
        self._message_box: QMessageBox | None = None
        self.nan_as_zero: set[str] = set()  # files whose NaN/Inf values the user agreed to see as 0
        self.panels: dict[str, Any] = {}
        self.docks: dict[str, Any] = {}
        self.catalog: dict[str, dict[str, Any]] = {}
        self.controller: Any = None

        self.ready = False
        self.slot_views: dict[str, SlotView] = {s: SlotView(s, lazy_view=deferred) for s in SLOTS}
        self.diff_view = SlotView("diff", title="A−B", accept_drops=False, lazy_view=True)
        self.diff_view.setVisible(False)
        self.views_splitter = QSplitter(Qt.Orientation.Horizontal)
        self.views_splitter.setObjectName("views_splitter")
        for v in (*self.slot_views.values(), self.diff_view):
            self.views_splitter.addWidget(v)
        self.views_splitter.setChildrenCollapsible(False)
        self.setCentralWidget(self.views_splitter)
        for v in self.slot_views.values():
            v.files_dropped.connect(self._on_slot_drop)
            v.variable_chosen.connect(lambda s, var: self.load_into(s, self._item_path(s), variable=var))
            v.index_chosen.connect(self._on_index_chosen)

        self._build_status_bar()
        self._build_menus()
        self.session.item_changed.connect(self._on_item_changed)
        self.tasks.task_started.connect(self._on_task_started)
        self.tasks.task_progress.connect(self._on_task_progress)
        self.tasks.task_done.connect(self._on_task_done)
        self.resize(1280, 800)
        self.statusBar().showMessage("Drop one file on A or B, or two files anywhere, to compare them.")

    # ------------------------------------------------------------------ construction
    def _build_status_bar(self) -> None:
        sb = self.statusBar()
        self.task_label = QLabel()
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(180)
        self.progress.setTextVisible(False)
        self.cancel_button = QToolButton()
        self.cancel_button.setText("Cancel")
        self.cancel_button.setToolTip("cancel the running background tasks")
        self.cancel_button.clicked.connect(lambda: self.tasks.cancel())
        for w in (self.task_label, self.progress, self.cancel_button):
            sb.addPermanentWidget(w)
            w.setVisible(False)

    def _build_menus(self) -> None:
        mb = self.menuBar()
        self.file_menu = mb.addMenu("&File")
        self._action(self.file_menu, "&Open files…", lambda: self.open_dialog(None), QKeySequence.StandardKey.Open,
                     tip="open one file into A, two into A and B, more as a series")
        self._action(self.file_menu, "Open into &A…", lambda: self.open_dialog("A"))
        self._action(self.file_menu, "Open into &B…", lambda: self.open_dialog("B"))
        self.recent_menu = self.file_menu.addMenu("Open &recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        self.file_menu.addSeparator()
        self._action(self.file_menu, "&Save session…", lambda: self._ask_save("session"),
                     QKeySequence.StandardKey.Save, tip="files, cameras, transfer functions and metrics as JSON")
        self._action(self.file_menu, "Open sess&ion…", self._ask_open_session)
        self._action(self.file_menu, "Save &window image…", lambda: self._ask_save("window"))
        self._action(self.file_menu, "Save &view images…", lambda: self._ask_save("views"),
                     tip="a PNG of view A, view B and the difference view")
        self.file_menu_extra = self.file_menu.addSeparator()
        self._action(self.file_menu, "&Quit", self.close, QKeySequence.StandardKey.Quit)
        self.view_menu = mb.addMenu("&View")
        self.compare_menu = mb.addMenu("&Compare")
        self.help_menu = mb.addMenu("&Help")
        self._action(self.help_menu, "&About volsight", self._about)

    def _action(self, menu, text: str, slot: Callable, shortcut=None, tip: str = "", checkable: bool = False,
                checked: bool = False) -> QAction:
        act = QAction(text, self)
        if shortcut is not None:
            act.setShortcut(shortcut)
        if tip:
            act.setStatusTip(tip)
        if checkable:
            act.setCheckable(True)
            act.setChecked(checked)
            act.toggled.connect(slot)
        else:
            act.triggered.connect(lambda _=False: slot())
        menu.addAction(act)
        return act

    # ------------------------------------------------------------------ opening files
    def open_paths(self, paths: Sequence[str], slot: str | None = None) -> None:
        """One file → ``slot`` (or the first empty slot); two → A and B; more → a series."""
        paths = [str(p) for p in paths]
        if not paths:
            return
        if len(paths) == 1:
            self.load_into(slot or self._free_slot(), paths[0])
        elif len(paths) == 2:
            self.load_pair(paths[0], paths[1])
        else:
            self.load_series(paths)

    def _free_slot(self) -> str:
        return next((s for s in SLOTS if self.session.item(s) is None), "A")

    def _item_path(self, slot: str) -> str:
        item = self.session.item(slot)
        return item.path if item is not None and item.path else ""

    def load_into(self, slot: str, path: str, variable: str | None = None, index: int | None = None) -> Task:
        """Read ``path`` in the background into ``slot``; a bad file leaves every slot as it was."""
        self.slot_views[slot].set_message(f"loading {Path(path).name}…")

        policy = self.nan_policy_for(path)

        def work(progress):
            return load_item(path, variable=variable, index=index, progress=progress, nan_policy=policy)

        task = Task(f"load_{slot}", work, label=f"loading {Path(path).name}")
        task.signals.finished.connect(lambda item: self._loaded({slot: item}, [path]))
        task.signals.failed.connect(lambda exc: self.load_failed(
            exc, [slot], retry=lambda: self.load_into(slot, path, variable, index)))
        task.signals.cancelled.connect(lambda: self._restore_titles([slot]))
        return self.tasks.start(task)

    def load_pair(self, path_a: str, path_b: str) -> Task:
        """Read two files into A and B together; if either fails, neither slot changes."""
        for s in SLOTS:
            self.slot_views[s].set_message("loading…")

        policy_a, policy_b = self.nan_policy_for(path_a), self.nan_policy_for(path_b)

        def work(progress):
            a = load_item(path_a, progress=lambda f, m: progress(None, m), nan_policy=policy_a)
            b = load_item(path_b, progress=lambda f, m: progress(None, m), nan_policy=policy_b)
            return a, b

        task = Task("load_pair", work, label="loading A and B")
        task.signals.finished.connect(lambda ab: self._loaded({"A": ab[0], "B": ab[1]}, [path_a, path_b]))
        task.signals.failed.connect(lambda exc: self.load_failed(
            exc, list(SLOTS), retry=lambda: self.load_pair(path_a, path_b)))
        task.signals.cancelled.connect(lambda: self._restore_titles(list(SLOTS)))
        return self.tasks.start(task)

    def load_series(self, paths: Sequence[str]) -> Task:
        """Several files: the first two go to A and B; the series panel gets all of them."""
        series = self.panels.get("series")
        if series is not None:
            return series.load_files(paths)
        return self.load_pair(paths[0], paths[1])

    def set_items(self, items: dict[str, LoadedItem]) -> None:
        """Put already loaded items into slots (demo pair, fitted fields, series cells)."""
        if set(items) == set(SLOTS):
            self.session.set_pair(items["A"], items["B"])
        else:
            for s, it in items.items():
                self.session.set_item(s, it)

    def _loaded(self, items: dict[str, LoadedItem], paths: list[str]) -> None:
        for p in paths:
            self.prefs.add_recent(p)
        self.set_items(items)
        names = ", ".join(f"{s}: {it.name} ({it.shape_text()})" for s, it in items.items())
        self.statusBar().showMessage(f"loaded {names}", 8000)
        for s in items:
            self.item_loaded.emit(s)

    def nan_policy_for(self, path: str | os.PathLike) -> str:
        """How to read ``path``: ``"zero"`` once the user agreed to see its NaN/Inf values as 0, else ``"raise"``."""
        return "zero" if os.path.realpath(path) in self.nan_as_zero else "raise"

    def load_failed(self, exc: BaseException, slots: Sequence[str] = (),
                    retry: Callable[[], Any] | None = None) -> None:
        """A load went wrong: slots keep what they held, and the error is shown.

        A file refused only for its NaN/Inf values (a masked region, fill values) is offered again
        with those values as 0; if the user agrees, ``retry`` loads it that way.
        """
        self._restore_titles(list(slots))
        if isinstance(exc, NonFiniteDataError) and exc.path and retry is not None:
            if self.ask_nonfinite_as_zero(exc):
                self.nan_as_zero.add(os.path.realpath(exc.path))
                retry()
            else:
                self.statusBar().showMessage(f"{Path(exc.path).name} not opened (NaN/Inf values)", 8000)
            return
        self.report_error(str(exc) if str(exc) else type(exc).__name__, title="Cannot open file")

    def ask_nonfinite_as_zero(self, exc: NonFiniteDataError) -> bool:
        """Ask whether a file's NaN/Inf values may be shown (and measured) as 0."""
        share = 100.0 * exc.count / max(exc.total, 1)
        text = (f"{Path(exc.path or '').name} has {exc.count:,} of {exc.total:,} values ({share:.3g}%) missing or "
                "not finite (NaN/Inf), e.g. a masked region or fill values.\n\nOpen it with those values set to "
                "0? Distances then count them as 0 too.")
        answer = QMessageBox.question(self, "Missing values", text,
                                      QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                      QMessageBox.StandardButton.Yes)
        return answer == QMessageBox.StandardButton.Yes

    def _restore_titles(self, slots: list[str]) -> None:
        for s in slots:
            item = self.session.item(s)
            if item is None:
                self.slot_views[s].set_item(None)
            else:  # the title only: the view keeps what it shows
                self.slot_views[s].set_message(item.summary())

    def _on_item_changed(self, slot: str) -> None:
        self.slot_views[slot].set_item(self.session.item(slot))
        names = [it.name for it in (self.session.item(s) for s in SLOTS) if it is not None]
        self.setWindowTitle("volsight — " + " vs ".join(names) if names else "volsight")

    def _on_slot_drop(self, slot: str, paths: list[str]) -> None:
        self.open_paths(paths, slot if len(paths) == 1 else None)

    def _on_index_chosen(self, slot: str, index: int) -> None:
        item = self.session.item(slot)
        if item is not None and item.path:
            self.load_into(slot, item.path, variable=item.variable, index=index)

    def open_dialog(self, slot: str | None) -> None:
        """File → Open: a non-blocking file dialog starting in the last folder."""
        dlg = QFileDialog(self, "Open volumes or fields" if slot is None else f"Open into {slot}",
                          self.prefs.last_dir(), FILE_FILTER)
        dlg.setFileMode(QFileDialog.FileMode.ExistingFile if slot else QFileDialog.FileMode.ExistingFiles)
        dlg.setObjectName("open_dialog")
        dlg.filesSelected.connect(lambda files: self.open_paths(files, slot))
        dlg.open()

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        files = self.prefs.recent_files()
        for f in files:
            act = self.recent_menu.addAction(f)
            act.triggered.connect(lambda _=False, p=f: self.open_paths([p]))
        if not files:
            self.recent_menu.addAction("(none)").setEnabled(False)
        else:
            self.recent_menu.addSeparator()
            self.recent_menu.addAction("Clear list").triggered.connect(lambda: self.prefs.clear_recent())

    # ------------------------------------------------------------------ drops on the window
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt override
        if dropped_paths(event.mimeData()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 - Qt override
        paths = dropped_paths(event.mimeData())
        if paths:
            event.acceptProposedAction()
            self.open_paths(paths)

    # ------------------------------------------------------------------ messages and progress
    def report_error(self, message: str, title: str = "volsight") -> None:
        """Status line plus a non-modal message box; the state is left as it was."""
        self.errors.append(message)
        self.statusBar().showMessage(message, 15000)
        if self._message_box is None:
            self._message_box = QMessageBox(QMessageBox.Icon.Warning, title, message, QMessageBox.StandardButton.Ok,
                                            self)
            self._message_box.setModal(False)
            self._message_box.setWindowModality(Qt.WindowModality.NonModal)
        self._message_box.setWindowTitle(title)
        self._message_box.setText(message)
        self._message_box.show()
        self.error_reported.emit(message)

    def _on_task_started(self, task: Task) -> None:
        self._update_task_widgets(task.label)

    def _on_task_progress(self, task: Task, fraction: float, message: str) -> None:
        if self.tasks.current(task.name) is not task:
            return
        if fraction < 0:
            self.progress.setRange(0, 0)
        else:
            self.progress.setRange(0, 1000)
            self.progress.setValue(int(1000 * min(1.0, max(0.0, fraction))))
        self.task_label.setText(message or task.label)

    def _on_task_done(self, task: Task) -> None:
        running = self.tasks.running()
        if task.state == "cancelled":
            self.statusBar().showMessage(f"cancelled: {task.label}", 5000)
        self._update_task_widgets(running[-1].label if running else "")

    def _update_task_widgets(self, label: str) -> None:
        busy = bool(self.tasks.running())
        self.task_label.setText(label)
        for w in (self.task_label, self.progress, self.cancel_button):
            w.setVisible(busy)
        if busy:
            self.progress.setRange(0, 0)

    def _about(self) -> None:
        QMessageBox.about(self, "About volsight", "volsight — see and measure how two volumes differ.")

    # ------------------------------------------------------------------ lifetime
    def restore_layout(self) -> None:
        """Size and dock layout of the last run, when there was one."""
        geo = self.prefs.window_geometry()
        if geo is not None:
            self.restoreGeometry(geo)
        state = self.prefs.window_state()
        if state is None or not self.restoreState(state, LAYOUT_VERSION):
            self._default_layout = True

    def showEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        if not self.ready:
            # the window is on screen first; docks and GL views follow right after its first paint
            QTimer.singleShot(30, self, self.complete_setup)
        elif getattr(self, "_default_layout", False):
            self._default_layout = False
            QTimer.singleShot(0, self, self.apply_default_layout)

    def complete_setup(self) -> None:
        """Build the docks and GL views, restore the saved layout, start loading the metric engine."""
        if self.ready:
            return
        from app.docks import install_panels

        install_panels(self)
        for v in self.slot_views.values():
            v.ensure_view()
        self.restore_layout()
        self.controller.load_catalog()  # imports torch: in the background, after the views exist
        self.ready = True
        if self.isVisible() and getattr(self, "_default_layout", False):
            self._default_layout = False
            QTimer.singleShot(0, self, self.apply_default_layout)
        self.setup_done.emit()

    def when_ready(self, fn: Callable[[], Any]) -> None:
        """Run ``fn`` once the setup is complete (at once if it is)."""
        if self.ready:
            fn()
        else:
            self.setup_done.connect(lambda: fn())

    def apply_default_layout(self) -> None:
        """First-run proportions: the views get most of the window, the docks a third of it."""
        d = self.docks
        if "distances" in d and "features" in d:
            self.resizeDocks([d["distances"]], [max(360, int(self.width() * 0.34))], Qt.Orientation.Horizontal)
            self.resizeDocks([d["distances"], d["features"]], [3, 2], Qt.Orientation.Vertical)
        if "slices" in d:
            self.resizeDocks([d["slices"]], [max(200, int(self.height() * 0.3))], Qt.Orientation.Vertical)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt override
        self.prefs.save_window(self.saveGeometry(), self.saveState(LAYOUT_VERSION))
        self.tasks.cancel()
        self.tasks.wait_all(10000)
        if self._message_box is not None:
            self._message_box.close()
        super().closeEvent(event)

    def call_later(self, fn: Callable[[], Any], ms: int = 0) -> None:
        QTimer.singleShot(ms, self, fn)

    # ------------------------------------------------------------------ sessions and images
    def save_session(self, path: str) -> Path:
        from app.session_file import save_session

        p = save_session(self, path)
        self.statusBar().showMessage(f"session saved to {p}", 8000)
        return p

    def restore_session(self, path: str) -> Task | None:
        """Load a session file: both slots in the background, then cameras, TFs and metrics."""
        from app import session_file

        try:
            doc = session_file.read_session(path)
        except Exception as exc:  # noqa: BLE001 - shown to the user, nothing changes
            self.report_error(str(exc), title="Cannot open session")
            return None
        slots = doc.get("slots") or {}

        def work(progress):
            return {s: session_file.load_slot_entry(slots.get(s)) for s in SLOTS}

        def done(items: dict) -> None:
            session_file.apply_view_settings(self, doc)
            loaded = {s: it for s, it in items.items() if it is not None}
            if loaded:
                self.set_items(loaded)
            session_file.apply_view_settings(self, doc)  # cameras again: a new volume may reset a view
            self.statusBar().showMessage(f"session restored from {path}", 8000)
            self.session_restored.emit(path)

        task = Task("load_pair", work, label=f"restoring session {Path(path).name}")
        task.signals.finished.connect(done)
        task.signals.failed.connect(lambda exc: self.report_error(str(exc), title="Cannot restore session"))
        return self.tasks.start(task)

    def _ask_save(self, what: str) -> None:
        from app.session_file import ask_save

        ask_save(self, what)

    def _ask_open_session(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open session", self.prefs.last_dir(), "Session (*.json)")
        if path:
            self.restore_session(path)

    # ------------------------------------------------------------------ demo
    def load_demo(self, kind: str = "plume", n: int = 64) -> Task:
        """Load the built-in demo pair into A and B (then it is compared like any pair)."""
        from app.loading import demo_items

        task = Task("load_pair", lambda progress: demo_items(kind, n), label=f"making the {kind} demo pair")
        task.signals.finished.connect(lambda ab: self._loaded({"A": ab[0], "B": ab[1]}, []))
        task.signals.failed.connect(lambda exc: self.load_failed(exc, list(SLOTS)))
        return self.tasks.start(task)


def build_main_window(preferences: Preferences | None = None, deferred: bool = False) -> MainWindow:
    """The main window with its panels, laid out as the user left it last time.

    ``deferred``: build only the frame now and the docks and GL views right after the window is
    first shown (the launch path: the window appears sooner); otherwise everything is built here.
    """
    window = MainWindow(preferences, deferred=deferred)
    geo = window.prefs.window_geometry()
    if geo is not None:
        window.restoreGeometry(geo)
    if not deferred:
        window.complete_setup()
    return window
