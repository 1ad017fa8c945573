"""Reading and writing metric weights safely: official torch checkpoints and volsight's own format.

- Official checkpoints (``.pth``/``.pt``) are read with ``torch.load(map_location="cpu",
  weights_only=True)``: tensors, lists, dicts and numbers only. A file that needs to run
  pickled code, is not a checkpoint, or lacks the keys a metric needs raises
  :class:`~core.errors.WeightsError` naming the file.
- volsight's own format is a ``.safetensors`` file whose metadata entry ``"volsight"`` holds a
  JSON header (format name and version, architecture, normalisation statistics' counts,
  provenance). It is written atomically.
"""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from core.errors import WeightsError

HEADER_KEY = "volsight"
SAFETENSORS_MAGIC_MAX_HEADER = 100 * 1024 * 1024


def is_safetensors(path: str | os.PathLike) -> bool:
    """True if the file looks like a safetensors file (by suffix or by its 8-byte length prefix + JSON)."""
    p = Path(path)
    if p.suffix == ".safetensors":
        return True
    try:
        with open(p, "rb") as f:
            head = f.read(9)
    except OSError:
        return False
    if len(head) < 9:
        return False
    n = int.from_bytes(head[:8], "little")
    return 0 < n < SAFETENSORS_MAGIC_MAX_HEADER and head[8:9] == b"{"


def _check_exists(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        raise WeightsError(p, "no such weights file; check the path given with --weights")
    if p.is_dir():
        raise WeightsError(p, "is a folder; point --weights at a checkpoint file")
    return p


def load_torch_checkpoint(path: str | os.PathLike, required: Iterable[str], kind: str) -> dict[str, Any]:
    """Load a torch checkpoint without executing pickled code; check it has the ``required`` keys."""
    import torch

    p = _check_exists(path)
    try:
        data = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(
            p, f"refusing to load: the file carries pickled objects/code that a safe load does not run ({first[:200]})"
        ) from exc
    except (RuntimeError, EOFError, OSError, ValueError, AttributeError, KeyError, TypeError) as exc:
        raise WeightsError(p, f"not a readable PyTorch checkpoint ({type(exc).__name__}: {str(exc)[:200]})") from exc
    if not isinstance(data, Mapping):
        raise WeightsError(p, f"not a {kind} checkpoint (top level is a {type(data).__name__}, expected a dict)")
    missing = [k for k in required if k not in data]
    if missing:
        raise WeightsError(
            p, f"not a {kind} checkpoint: missing {', '.join(missing)} (found keys: {', '.join(map(str, data))[:200]})"
        )
    return dict(data)


def save_safetensors(path: str | os.PathLike, tensors: Mapping[str, Any], header: Mapping[str, Any]) -> None:
    """Write ``tensors`` plus a JSON ``header`` to ``path`` atomically (safetensors format)."""
    import torch
    from safetensors.torch import save

    from core.io.atomic import write_bytes_atomic

    clean = {k: torch.as_tensor(v).detach().to("cpu").contiguous() for k, v in tensors.items()}
    data = save(clean, metadata={HEADER_KEY: json.dumps(dict(header), sort_keys=True)})
    write_bytes_atomic(path, data)


def load_safetensors(path: str | os.PathLike, kind: str, format_name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read a volsight safetensors file: (tensors, header). The header's ``format`` must be ``format_name``."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    p = _check_exists(path)
    raw = p.read_bytes()
    try:
        tensors = load(raw)
        n = int.from_bytes(raw[:8], "little")
        meta = json.loads(raw[8 : 8 + n].decode("utf-8")).get("__metadata__") or {}
    except (SafetensorError, ValueError, UnicodeDecodeError) as exc:
        raise WeightsError(p, f"not a readable safetensors file ({str(exc)[:200]})") from exc
    if HEADER_KEY not in meta:
        raise WeightsError(p, f"safetensors file without a volsight header; not a volsight {kind} weights file")
    try:
        header = json.loads(meta[HEADER_KEY])
    except json.JSONDecodeError as exc:
        raise WeightsError(p, f"the volsight header is not valid JSON ({exc})") from exc
    if header.get("format") != format_name:
        raise WeightsError(p, f"holds {header.get('format')!r} weights, not {kind} ({format_name!r})")
    return dict(tensors), header
