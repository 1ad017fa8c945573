"""Opening files into the window's slots A and B (and series): one file, a pair, many; drops and dialogs.

A bad file leaves every slot as it was and its error is shown; a file refused only for NaN/Inf
values (fill values, masks) is offered again with those values as 0. Mixed into
:class:`app.main_window.MainWindow`, whose session, slot views, task runner and preferences it uses.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QFileDialog, QMessageBox

from app.loading import LoadedItem, align_fields, expand_folders, load_item
from app.panels.slot_view import dropped_paths
from app.session import SLOTS
from app.workers import Progress, Task
from core.errors import NonFiniteDataError

FILE_FILTER = "Volumes and fields (*.nc *.nc4 *.cdf *.npy *.npz *.raw *.json *.vsf *.safetensors);;All files (*)"


class FileOpening:
    """The file-opening half of the main window (a mixin: ``self`` is the :class:`MainWindow`)."""

    nan_as_zero: set[str]  # files whose NaN/Inf values the user agreed to see as 0

    def open_paths(self, paths: Sequence[str], slot: str | None = None) -> None:
        """One file → ``slot`` (or the first empty slot); two → A and B; more → a series. A folder stands for
        the volume and field files in it (a folder of time steps opens as a series)."""
        from core.errors import ReaderError

        try:
            paths = expand_folders(paths)
        except ReaderError as exc:  # nothing loaded is touched
            self.load_failed(exc)
            return
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
        other_slot = "B" if slot == "A" else "A"
        other = self.session.item(other_slot)

        def work(progress: Progress) -> dict[str, LoadedItem]:
            item = load_item(path, variable=variable, index=index, progress=progress, nan_policy=policy)
            pair = {slot: item, other_slot: other}
            return {slot: item, **align_fields(pair["A"], pair["B"], progress)}

        def finished(items: dict[str, LoadedItem]) -> None:
            if self.session.item(other_slot) is not other:  # the other slot changed meanwhile: leave it
                items.pop(other_slot, None)
            self._loaded(items, [path])

        task = Task(f"load_{slot}", work, label=f"loading {Path(path).name}")
        task.signals.finished.connect(finished)
        task.signals.failed.connect(lambda exc: self.load_failed(
            exc, [slot], retry=lambda: self.load_into(slot, path, variable, index)))
        task.signals.cancelled.connect(lambda: self._restore_titles([slot]))
        return self.tasks.start(task)

    def load_pair(self, path_a: str, path_b: str) -> Task:
        """Read two files into A and B together; if either fails, neither slot changes."""
        for s in SLOTS:
            self.slot_views[s].set_message("loading…")

        policy_a, policy_b = self.nan_policy_for(path_a), self.nan_policy_for(path_b)

        def work(progress: Progress) -> tuple[LoadedItem, LoadedItem]:
            a = load_item(path_a, progress=lambda f, m: progress(None, m), nan_policy=policy_a)
            b = load_item(path_b, progress=lambda f, m: progress(None, m), nan_policy=policy_b)
            baked = align_fields(a, b, lambda f, m: progress(None, m))
            return baked.get("A", a), baked.get("B", b)

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
        """Put already loaded items into slots (demo pair, fitted fields, series cells, restored sessions)."""
        for it in items.values():  # another step or variable of such a file is read the same way
            if it.nan_policy == "zero" and it.path:
                self.nan_as_zero.add(os.path.realpath(it.path))
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

    def open_folder_dialog(self) -> None:
        """File → Open folder as a series: a non-blocking folder dialog; the folder's files open as a series."""
        dlg = QFileDialog(self, "Open a folder of volumes as a series", self.prefs.last_dir())
        dlg.setFileMode(QFileDialog.FileMode.Directory)
        dlg.setOption(QFileDialog.Option.ShowDirsOnly, True)
        dlg.setObjectName("open_folder_dialog")
        dlg.fileSelected.connect(lambda folder: self.open_paths([folder]) if folder else None)
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
