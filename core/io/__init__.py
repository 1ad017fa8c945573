"""File I/O: one registry of readers (by extension, then by content) and atomic writers."""

from core.io.registry import (
    FileInfo,
    VariableInfo,
    VolumeReader,
    VolumeWriter,
    file_info,
    frame_count,
    read_sequence,
    read_volume,
    reader_for,
    register_reader,
    register_writer,
    write_volume,
)

__all__ = [
    "FileInfo",
    "VariableInfo",
    "VolumeReader",
    "VolumeWriter",
    "file_info",
    "frame_count",
    "read_volume",
    "read_sequence",
    "reader_for",
    "register_reader",
    "register_writer",
    "write_volume",
]
