"""Background tasks for the window: a function run on a QThreadPool with progress, cancel and a result.

A task is a plain function ``fn(progress) -> result``. ``progress(fraction, message)`` reports
and raises :class:`Cancelled` once the task has been cancelled, so long loops stop at the next
report. Results and errors come back to the GUI thread through Qt signals (queued connections),
so panels never touch the GUI from a worker thread.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal


class Cancelled(Exception):
    """Raised inside a task when it has been cancelled."""


class Progress:
    """The callable a task receives: ``progress(fraction, message)``; also ``progress.check()``."""

    def __init__(self, task: Task):
        self._task = task

    def __call__(self, fraction: float | None = None, message: str = "") -> None:
        self.check()
        self._task._signals.progress.emit(-1.0 if fraction is None else float(fraction), str(message))

    def check(self) -> None:
        """Raise :class:`Cancelled` if the task was cancelled."""
        if self._task._cancel.is_set():
            raise Cancelled()

    @property
    def cancelled(self) -> bool:
        return self._task._cancel.is_set()

    def emit_data(self, data: Any) -> None:
        """Send an intermediate result (e.g. a loss value) to the GUI thread."""
        self.check()
        self._task._signals.data.emit(data)


class _TaskSignals(QObject):
    progress = Signal(float, str)
    data = Signal(object)
    finished = Signal(object)
    failed = Signal(object)  # the exception
    cancelled = Signal()
    done = Signal()  # after any of the three above


class _Runnable(QRunnable):
    def __init__(self, task: Task):
        super().__init__()
        self.setAutoDelete(True)
        self._task = task

    def run(self) -> None:  # runs in a pool thread
        self._task._execute()


class Task:
    """One unit of background work; connect to ``signals`` before calling :meth:`start`."""

    def __init__(self, name: str, fn: Callable[[Progress], Any], label: str = ""):
        self.name = name
        self.label = label or name
        self._fn = fn
        self._cancel = threading.Event()
        self._finished = threading.Event()
        self._signals = _TaskSignals()
        self.result: Any = None
        self.error: BaseException | None = None
        self.traceback: str = ""
        self.state = "pending"  # pending, running, finished, failed, cancelled

    @property
    def signals(self) -> _TaskSignals:
        return self._signals

    def cancel(self) -> None:
        """Ask the task to stop at its next progress report."""
        self._cancel.set()

    @property
    def is_cancelled(self) -> bool:
        return self._cancel.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the task's function has returned (for shutdown and tests)."""
        return self._finished.wait(timeout)

    @property
    def is_done(self) -> bool:
        return self._finished.is_set()

    def _execute(self) -> None:
        self.state = "running"
        try:
            if self._cancel.is_set():
                raise Cancelled()
            result = self._fn(Progress(self))
            if self._cancel.is_set():
                raise Cancelled()
        except Cancelled:
            self.state = "cancelled"
            self._finished.set()
            self._signals.cancelled.emit()
        except BaseException as exc:  # noqa: BLE001 - every failure goes back to the GUI as a message
            self.error = exc
            self.traceback = traceback.format_exc()
            self.state = "failed"
            self._finished.set()
            self._signals.failed.emit(exc)
        else:
            self.result = result
            self.state = "finished"
            self._finished.set()
            self._signals.finished.emit(result)
        self._signals.done.emit()


class TaskRunner(QObject):
    """Runs tasks on a private thread pool; one running task per name (a new one cancels the old)."""

    task_started = Signal(object)
    task_progress = Signal(object, float, str)
    task_done = Signal(object)

    def __init__(self, parent: QObject | None = None, threads: int = 2):
        super().__init__(parent)
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(threads)
        self._tasks: dict[str, Task] = {}
        self._all: list[Task] = []

    def start(self, task: Task) -> Task:
        """Start ``task``; a running task of the same name is cancelled first."""
        old = self._tasks.get(task.name)
        if old is not None and not old.is_done:
            old.cancel()
        self._tasks[task.name] = task
        self._all = [t for t in self._all if not t.is_done] + [task]
        task.signals.progress.connect(lambda f, m, t=task: self.task_progress.emit(t, f, m))
        task.signals.done.connect(lambda t=task: self._on_done(t))
        self.task_started.emit(task)
        self._pool.start(_Runnable(task))
        return task

    def _on_done(self, task: Task) -> None:
        if self._tasks.get(task.name) is task:
            del self._tasks[task.name]
        self.task_done.emit(task)

    def running(self) -> list[Task]:
        return [t for t in self._tasks.values() if not t.is_done]

    def current(self, name: str) -> Task | None:
        t = self._tasks.get(name)
        return t if t is not None and not t.is_done else None

    def cancel(self, name: str | None = None) -> None:
        """Cancel the task ``name`` or, with no name, every task."""
        for t in list(self._tasks.values()):
            if name is None or t.name == name:
                t.cancel()

    def wait_all(self, timeout_ms: int = 30000) -> bool:
        """Block until every started task has finished (used on close and in tests)."""
        return self._pool.waitForDone(timeout_ms)
