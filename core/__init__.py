"""volsight core: the data model (Volume), file I/O, metrics and comparison. No Qt, no vispy."""

from core.errors import (
    FieldFileError,
    MetricError,
    ReaderError,
    UnsupportedFormatError,
    VolsightError,
    VolumeError,
    VolumeTooLargeError,
    WeightsError,
)
from core.volume import Volume, normalize_pair

__all__ = [
    "Volume",
    "normalize_pair",
    "VolsightError",
    "VolumeError",
    "ReaderError",
    "UnsupportedFormatError",
    "VolumeTooLargeError",
    "MetricError",
    "WeightsError",
    "FieldFileError",
]
