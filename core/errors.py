"""The project's exception family: every error a user can cause is one of these.

Messages say what was wrong and, where it helps, what to do. Errors about a file
start with the file's path so a status line or dialog can show them as they are.
"""

from __future__ import annotations

import os


class VolsightError(Exception):
    """Base of every error volsight raises on purpose."""


class VolumeError(VolsightError, ValueError):
    """An array or its metadata cannot form a valid Volume."""


class FileError(VolsightError):
    """A problem with one file; the message starts with the path."""

    def __init__(self, path: str | os.PathLike | None, reason: str):
        self.path = None if path is None else os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}" if self.path else reason)


class ReaderError(FileError):
    """A file could not be read as a volume (corrupt, truncated, wrong layout, ...)."""


class NonFiniteDataError(ReaderError):
    """A file's data has NaN/Inf values (masked regions, fill values) and no policy for them was chosen."""

    def __init__(self, path: str | os.PathLike | None, reason: str, count: int, total: int):
        self.count = int(count)
        self.total = int(total)
        super().__init__(path, reason)


class UnsupportedFormatError(ReaderError):
    """No reader recognises the file (by extension or content)."""


class VolumeTooLargeError(ReaderError):
    """The volume would not fit in the memory available."""


class WriterError(FileError):
    """A file could not be written."""


class MetricError(VolsightError, ValueError):
    """A metric cannot be applied to these inputs or with these options."""


class FeatureMemoryError(MetricError):
    """A learned metric's feature maps would not fit in the memory available (the distance alone may)."""


class WeightsError(FileError):
    """Metric weights are missing, of the wrong kind, or unsafe to load."""


class FieldFileError(FileError):
    """A neural-field file is missing, truncated, of another kind or version."""
