"""Reader registry: pick a reader by extension, then by sniffing the first bytes.

Readers register themselves when ``core.io`` is imported (see ``_load_builtin_readers``).
Every reader returns Volumes and raises only ``core.errors`` types naming the file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import ReaderError, UnsupportedFormatError, VolsightError, WriterError
from core.volume import Volume


@dataclass(frozen=True)
class VariableInfo:
    """One array in a file: its name, shape, dtype and (when cheap to compute) statistics."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    dims: tuple[str, ...] = ()
    value_range: tuple[float, float] | None = None
    nan_count: int | None = None
    frames: int = 1  # length of the time / sequence axis, 1 if none
    is_volume: bool = True  # can be read as a Volume (numeric, >= 3 dims)
    channels: int = 1  # channels of each frame (1 scalar, 3 vector) when is_volume
    layout: str = ""  # axis letters of the stored array (see core.io.layout), e.g. "TDHWC"
    note: str = ""  # why it is not a volume, or why statistics were skipped


@dataclass(frozen=True)
class FileInfo:
    path: str
    format: str
    variables: tuple[VariableInfo, ...]
    attributes: dict[str, Any] = field(default_factory=dict)

    def volume_variables(self) -> list[VariableInfo]:
        return [v for v in self.variables if v.is_volume]


class VolumeReader:
    """Base class of readers. Subclasses set ``name``/``extensions`` and implement the methods."""

    name: str = "reader"
    extensions: tuple[str, ...] = ()

    def sniff(self, head: bytes, path: Path) -> bool:
        """True when the first bytes of the file look like this format."""
        return False

    def info(self, path: Path) -> FileInfo:
        raise NotImplementedError

    def read(self, path: Path, variable: str | None = None, index: int | None = None, **options: Any) -> Volume:
        raise NotImplementedError

    def frame_count(self, path: Path, variable: str | None = None) -> int:
        return 1

    def read_sequence(self, path: Path, variable: str | None = None, **options: Any) -> list[Volume]:
        n = self.frame_count(path, variable)
        return [self.read(path, variable, i if n > 1 else None, **options) for i in range(n)]


class VolumeWriter:
    name: str = "writer"
    extensions: tuple[str, ...] = ()
    label: str = ""  # how error messages name the format (default: the name)

    def write(self, volume: Volume, path: Path, **options: Any) -> None:
        raise NotImplementedError

    def reject_options(self, path: Path, options: dict[str, Any]) -> None:
        """A clear error for writer options this format does not know."""
        if options:
            raise WriterError(path, f"unknown writer option(s) for {self.label or self.name}: "
                                    f"{', '.join(sorted(options))}")

    @staticmethod
    def bare_array(volume: Volume):
        """The data as stored in a bare array file: ``[D, H, W]`` for scalars, ``[C, D, H, W]`` for vectors."""
        return volume.data[0] if volume.channels == 1 else volume.data


_READERS: list[VolumeReader] = []
_WRITERS: list[VolumeWriter] = []


def register_reader(reader: VolumeReader) -> VolumeReader:
    _READERS.append(reader)
    return reader


def register_writer(writer: VolumeWriter) -> VolumeWriter:
    _WRITERS.append(writer)
    return writer


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for r in _READERS + _WRITERS:  # longest multi-part extensions first (".raw.json" etc.)
        for ext in sorted(r.extensions, key=len, reverse=True):
            if name.endswith(ext):
                return ext
    return path.suffix.lower()


def known_extensions() -> list[str]:
    """Every file extension a registered reader takes (lower case, with the dot; multi-part ones included)."""
    _load_builtin_readers()
    return sorted({e for r in _READERS for e in r.extensions})


def reader_for(path: str | os.PathLike) -> VolumeReader:
    """The reader for ``path``: by extension, else by content; UnsupportedFormatError if none."""
    _load_builtin_readers()
    p = Path(path)
    if not p.exists():
        raise ReaderError(p, "file not found")
    if p.is_dir():
        raise ReaderError(p, "is a folder, not a file")
    ext = _suffix(p)
    by_extension = next((r for r in _READERS if ext in r.extensions), None)
    try:
        with open(p, "rb") as f:
            head = f.read(512)
    except OSError as exc:
        raise ReaderError(p, f"cannot open: {exc.strerror or exc}") from exc
    if by_extension is not None and by_extension.sniff(head, p):
        return by_extension
    # content beats a misleading extension (a NetCDF file saved as .dat); else the extension's reader
    # gets the file and explains what is wrong with it
    for r in _READERS:
        if r is not by_extension and r.sniff(head, p):
            return r
    if by_extension is not None:
        return by_extension
    known = known_extensions()
    raise UnsupportedFormatError(p, f"unknown file type {ext or '(no extension)'}; volsight reads {', '.join(known)}")


def _guard(path: Path, func, *args, **kwargs):
    """Run a reader call; anything but our own errors becomes a ReaderError naming the file."""
    try:
        return func(*args, **kwargs)
    except VolsightError:
        raise
    except MemoryError as exc:
        from core.errors import VolumeTooLargeError

        raise VolumeTooLargeError(path, "not enough memory to load this volume") from exc
    except Exception as exc:  # noqa: BLE001 - third-party readers fail in many ways
        raise ReaderError(path, f"cannot read ({type(exc).__name__}: {exc})") from exc


def file_info(path: str | os.PathLike, **options: Any) -> FileInfo:
    """Variables, shapes, dtypes and value ranges of a file, without loading more than needed.

    The built-in readers accept ``stats=False`` (skip value range and NaN count).
    """
    p = Path(path)
    r = reader_for(p)
    return _guard(p, r.info, p, **options)


def read_volume(
    path: str | os.PathLike, variable: str | None = None, index: int | None = None, **options: Any
) -> Volume:
    """Read one Volume: ``variable`` by name (default: the first suitable), ``index`` along time/sequence."""
    p = Path(path)
    r = reader_for(p)
    return _guard(p, r.read, p, variable, index, **options)


def read_sequence(path: str | os.PathLike, variable: str | None = None, **options: Any) -> Sequence[Volume]:
    """All frames of a file with a time / sequence axis (a single volume gives a list of one)."""
    p = Path(path)
    r = reader_for(p)
    return _guard(p, r.read_sequence, p, variable, **options)


def frame_count(path: str | os.PathLike, variable: str | None = None, **options: Any) -> int:
    """Number of frames along the time / sequence axis (1 for a single volume), without reading data."""
    p = Path(path)
    r = reader_for(p)
    return int(_guard(p, r.frame_count, p, variable, **options))


def write_volume(volume: Volume, path: str | os.PathLike, **options: Any) -> Path:
    """Write atomically (temporary file in the same folder, then rename)."""
    _load_builtin_readers()
    p = Path(path)
    ext = _suffix(p)
    for w in _WRITERS:
        if ext in w.extensions:
            w.write(volume, p, **options)
            return p
    known = sorted({e for w in _WRITERS for e in w.extensions})
    raise WriterError(p, f"cannot write {ext or '(no extension)'} files; volsight writes {', '.join(known)}")


_LOADED = False


def _load_builtin_readers() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    import importlib

    for mod in ("core.io.netcdf", "core.io.netcdf_writer", "core.io.numpy_files", "core.io.raw"):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:
                raise
