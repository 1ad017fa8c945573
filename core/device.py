"""Device selection in one place: CUDA when present (or asked for), else CPU."""

from __future__ import annotations

import os
from functools import cache


@cache
def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def select_device(preferred: str | None = None):
    """Return the torch.device to compute on.

    ``preferred`` (or the ``VOLSIGHT_DEVICE`` environment variable) may be ``"cpu"``,
    ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (default: CUDA when available).
    """
    import torch

    choice = (preferred or os.environ.get("VOLSIGHT_DEVICE") or "auto").lower()
    if choice == "auto":
        return torch.device("cuda" if _cuda_available() else "cpu")
    if choice.startswith("cuda") and not _cuda_available():
        from core.errors import VolsightError

        raise VolsightError(f"device {choice!r} requested but CUDA is not available; use 'cpu' or 'auto'")
    return torch.device(choice)
