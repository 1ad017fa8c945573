"""The neural-field file: safetensors tensors plus a JSON header in the safetensors metadata.

Layout: a standard safetensors file (8-byte little-endian header length, JSON header, raw tensor
bytes) whose ``__metadata__`` has one entry ``"volsight"`` holding the volsight header as JSON:
``{"format": "volsight-field", "version": 1, "kind": "field" | "checkpoint", "model": ..., "config":
..., "channels": ..., "value_range": [min, max], "source": {"name", "shape", "path"}, "summary": ...}``.
Files are written atomically and read without pickle; anything else (a truncated file, another
version, an .npz or random bytes under a field's name) raises :class:`core.errors.FieldFileError`.
"""

from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import FieldFileError

if TYPE_CHECKING:  # torch loads only with the tensors: telling a field file apart (info, drops) needs none
    import torch

FORMAT_NAME = "volsight-field"
FORMAT_VERSION = 1
FIELD_SUFFIX = ".vsf"
_META_KEY = "volsight"
_MAX_HEADER = 100 * 1024 * 1024


def _model_classes() -> dict[str, type]:
    from models.registry import MODEL_CLASSES

    return MODEL_CLASSES


def write_tensor_file(path: str | os.PathLike, tensors: dict[str, torch.Tensor], header: dict[str, Any]) -> None:
    """Write ``tensors`` with the volsight ``header`` atomically."""
    from safetensors.torch import save

    from core.io.atomic import write_bytes_atomic

    header = {"format": FORMAT_NAME, "version": FORMAT_VERSION, **header}
    data = save({k: v.detach().cpu().contiguous() for k, v in tensors.items()},
                metadata={_META_KEY: json.dumps(header, sort_keys=True)})
    write_bytes_atomic(path, data)


def _describe_foreign(head: bytes) -> str:
    if head.startswith(b"PK"):
        return "it is a zip archive (for example .npz), not a volsight field file"
    if head.startswith(b"\x93NUMPY"):
        return "it is a NumPy .npy array, not a volsight field file"
    if head.startswith(b"\x89HDF") or head.startswith(b"CDF"):
        return "it is a NetCDF/HDF5 file (a volume?), not a volsight field file"
    return "it is not a volsight field file (no safetensors header)"


def read_header(path: str | os.PathLike, expect_kind: str | None = "field") -> tuple[dict[str, Any], int, int]:
    """Validate a file and return ``(volsight header, data offset, file size)`` without reading tensors."""
    p = Path(path)
    try:
        size = p.stat().st_size
        with open(p, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise FieldFileError(p, f"file is {size} bytes long: too short for a volsight field file "
                                        "(empty or truncated)")
            (n,) = struct.unpack("<Q", head)
            if n < 2 or n > _MAX_HEADER:
                raise FieldFileError(p, _describe_foreign(head))
            if 8 + n > size:
                raise FieldFileError(p, f"truncated: the header needs {8 + n} bytes but the file has {size}; "
                                        "re-save or re-fit the field")
            raw = f.read(n)
    except FileNotFoundError:
        raise FieldFileError(p, "no such file") from None
    except IsADirectoryError:
        raise FieldFileError(p, "is a folder, not a field file") from None
    except PermissionError:
        raise FieldFileError(p, "permission denied") from None
    try:
        table = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise FieldFileError(p, _describe_foreign(head)) from None
    if not isinstance(table, dict):
        raise FieldFileError(p, _describe_foreign(head))
    meta = table.get("__metadata__") or {}
    if _META_KEY not in meta:
        raise FieldFileError(p, "a safetensors file without a volsight header (model weights of another "
                                "program?), not a volsight field file")
    try:
        header = json.loads(meta[_META_KEY])
    except json.JSONDecodeError:
        raise FieldFileError(p, "the volsight header is not valid JSON; the file is damaged") from None
    if header.get("format") != FORMAT_NAME:
        raise FieldFileError(p, f"unknown format {header.get('format')!r}; expected {FORMAT_NAME!r}")
    version = header.get("version")
    if version != FORMAT_VERSION:
        raise FieldFileError(p, f"format version {version!r} is not supported by this volsight (it reads version "
                                f"{FORMAT_VERSION}); use the volsight version that wrote it or re-fit the field")
    if expect_kind is not None and header.get("kind") != expect_kind:
        raise FieldFileError(p, f"holds a {header.get('kind')!r}, expected a {expect_kind!r}")
    # every tensor's bytes must be inside the file
    end = max((int(v["data_offsets"][1]) for k, v in table.items() if k != "__metadata__"), default=0)
    if 8 + n + end > size:
        raise FieldFileError(p, f"truncated: tensors need {8 + n + end} bytes but the file has {size}; "
                                "re-save or re-fit the field")
    return header, 8 + n, size


def read_tensor_file(path: str | os.PathLike, expect_kind: str | None = "field"
                     ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Validate and read a file: ``(header, tensors on the CPU)``; no pickle involved."""
    from safetensors.torch import load

    header, _, _ = read_header(path, expect_kind)
    try:
        tensors = load(Path(path).read_bytes())
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
        raise FieldFileError(path, f"damaged tensor data ({exc})") from None
    return header, tensors


def is_field_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a readable volsight field file (cheap: reads the header only)."""
    try:
        read_header(path, "field")
    except FieldFileError:
        return False
    return True


def field_header(field: Any) -> dict[str, Any]:
    """The JSON header describing ``field`` (without format/version)."""
    return {
        "kind": "field",
        "model": field.kind,
        "config": field.config,
        "channels": field.channels,
        "value_range": list(field.value_range),
        "source": {"name": field.name, "shape": list(field.source_shape), "spacing": list(field.spacing),
                   "path": getattr(field, "source_path", None)},
        "parameters": field.parameter_count(),
        "summary": field.summary,
    }


def save_field(field: Any, path: str | os.PathLike) -> None:
    """Write ``field`` to ``path`` (one file, atomically)."""
    write_tensor_file(path, field.state_tensors(), field_header(field))


def build_field(header: dict[str, Any], path: str | os.PathLike | None = None) -> Any:
    """An untrained field of the model, configuration and source described by ``header``."""
    classes = _model_classes()
    model = header.get("model")
    if model not in classes:
        raise FieldFileError(path, f"unknown model type {model!r}; this volsight knows {sorted(classes)}")
    src = header.get("source") or {}
    try:
        return classes[model](dict(header.get("config") or {}), channels=int(header.get("channels", 1)),
                              value_range=tuple(header.get("value_range", (0.0, 1.0))),
                              source_shape=tuple(src.get("shape") or (2, 2, 2)), name=src.get("name") or "field",
                              spacing=tuple(src.get("spacing") or (1.0, 1.0, 1.0)))
    except Exception as exc:  # noqa: BLE001 - a damaged config may fail in many ways
        raise FieldFileError(path, f"cannot build the {model} field from its header ({exc})") from None


def load_field(path: str | os.PathLike, device: torch.device | str | None = None) -> Any:
    """Read a field file; returns a NeuralField in eval mode on ``device`` (default: CPU)."""
    header, tensors = read_tensor_file(path, "field")
    field = build_field(header, path)
    try:
        field.load_state_tensors(tensors)
    except (RuntimeError, KeyError) as exc:
        raise FieldFileError(path, f"tensors do not match the {header['model']} configuration ({exc})") from None
    field.summary = dict(header.get("summary") or {})
    field.source_path = (header.get("source") or {}).get("path")
    field.eval()
    return field.place(device or "cpu")


def compression_words(parameters: int, values: int, source: str = "its source") -> str:
    """How a field of ``parameters`` weighs against the ``values`` it stands for (both float32):
    ``"3.7 : 1 compression"``, or ``"the field is 3.58× larger than its source"`` when it does not compress."""
    if parameters <= 0 or values <= 0:
        return "compression unknown"
    if values >= parameters:
        return f"{values / parameters:.3g} : 1 compression"
    return f"the field is {parameters / values:.3g}× larger than {source}"


def _compression(parameters: Any, shape: Any, channels: Any) -> str | None:
    """The field's size against its source's values, from a header (which is not trusted to be well formed)."""
    if not (isinstance(parameters, int) and isinstance(shape, list) and shape
            and all(isinstance(n, int) and n > 0 for n in shape)):
        return None
    values = math.prod(shape) * (channels if isinstance(channels, int) and channels > 0 else 1)
    if parameters <= 0:
        return None
    ratio = f"{values / parameters:.3g} : 1"
    return ratio if values >= parameters else f"{ratio} ({compression_words(parameters, values)})"


def field_info(path: str | os.PathLike) -> dict[str, Any]:
    """What ``volsight info`` shows for a field file: model, config, source, parameters, training summary."""
    header, _, size = read_header(path, "field")
    src = header.get("source") or {}
    summary = header.get("summary") or {}
    return {
        "path": os.fspath(path),
        "file_bytes": size,
        "format_version": header.get("version"),
        "model": header.get("model"),
        "config": header.get("config"),
        "parameters": header.get("parameters"),
        "channels": header.get("channels"),
        "value_range": header.get("value_range"),
        "source_name": src.get("name"),
        "source_shape": src.get("shape"),
        "source_spacing": src.get("spacing"),
        "source_path": src.get("path"),
        "compression": _compression(header.get("parameters"), src.get("shape"), header.get("channels")),
        "iterations": summary.get("iterations"),
        "psnr": summary.get("psnr"),
        "train_seconds": summary.get("seconds"),
        "summary": summary,
    }
