"""The comparison window: slots A and B side by side (plus the difference view), docks, menus, status bar.

The window owns widgets and threads only; the state lives in :class:`app.session.Session` and
every long task (reading, baking, comparing, fitting) runs through :class:`app.workers.TaskRunner`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QIcon, QKeySequence, QShowEvent
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

from app.opening import FileOpening
from app.panels.slot_view import SlotView
from app.session import SLOTS, Session
from app.settings import Preferences
from app.workers import Progress, Task, TaskRunner

if TYPE_CHECKING:
    from app.loading import LoadedItem

LAYOUT_VERSION = 3  # bump when docks are added or renamed: an older saved layout is then ignored
RESOURCES = Path(__file__).resolve().parents[1] / "resources"


class MainWindow(FileOpening, QMainWindow):
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
        # the right-hand docks (distances, feature maps) run the full height; the bottom tabs sit under the views
        self.setCorner(Qt.Corner.BottomRightCorner, Qt.DockWidgetArea.RightDockWidgetArea)
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
        self._action(self.file_menu, "Open &folder as a series…", self.open_folder_dialog,
                     tip="the volume and field files of a folder (time steps, say), in natural order, as a series")
        self.recent_menu = self.file_menu.addMenu("Open &recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        self.file_menu.addSeparator()
        self._action(self.file_menu, "&Save session…", lambda: self._ask_save("session"),
                     QKeySequence.StandardKey.Save, tip="files, cameras, transfer functions and metrics as JSON")
        self._action(self.file_menu, "Open sess&ion…", self._ask_open_session)
        self._action(self.file_menu, "Save &window image…", lambda: self._ask_save("window"))
        self._action(self.file_menu, "Save &view images…", lambda: self._ask_save("views"),
                     tip="a PNG of view A, view B and the difference view")
        self._action(self.file_menu, "Save &difference volume…", lambda: self._ask_save("difference"),
                     tip="the difference shown (A − B or a metric's map) as a NetCDF or .npy volume on A's grid")
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

    def _on_item_changed(self, slot: str) -> None:
        self.slot_views[slot].set_item(self.session.item(slot))
        names = [it.name for it in (self.session.item(s) for s in SLOTS) if it is not None]
        self.setWindowTitle("volsight — " + " vs ".join(names) if names else "volsight")

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
        from app.window_actions import about_text

        QMessageBox.about(self, "About volsight", about_text())

    # ------------------------------------------------------------------ lifetime
    def restore_layout(self) -> None:
        """Size and dock layout of the last run, when there was one."""
        geo = self.prefs.window_geometry()
        if geo is not None:
            self.restoreGeometry(geo)
        state = self.prefs.window_state()
        if state is None or not self.restoreState(state, LAYOUT_VERSION):
            self._default_layout = True

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 - Qt override
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

        def work(progress: Progress) -> dict[str, LoadedItem | None]:
            from app.loading import align_fields

            items = {s: session_file.load_slot_entry(slots.get(s)) for s in SLOTS}
            return {**items, **align_fields(items["A"], items["B"])}  # a field on the other's grid, as it was

        def done(items: dict) -> None:
            session_file.apply_view_settings(self, doc)
            loaded = {s: it for s, it in items.items() if it is not None}
            if loaded:
                self.set_items(loaded)
            session_file.apply_view_settings(self, doc)  # cameras again: a new volume may reset a view
            session_file.apply_region(self, doc)
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
