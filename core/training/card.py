"""The JSON card shipped beside volsight's weights: what they are, how they were trained, how they score."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from core.training.evaluate import EvaluationTable, file_digest

# model -> (what the weights are, their format name, the card's license line)
MODELS = {
    "volsim": ("VolSiM", "volsight.volsim", "no official VolSiM weights were used"),
    "learnsim": ("LearnSim", "volsight-learnsim", "no LearnSim weights of the original authors were used"),
}


def make_card(weights: str | os.PathLike, table: EvaluationTable, *, run_dir: str | os.PathLike | None = None,
              test: dict[str, Any] | None = None, extra: dict[str, Any] | None = None,
              model: str = "volsim") -> dict[str, Any]:
    """The JSON card shipped beside a weights file (``model``: volsim or learnsim): what it is, how it was
    trained, how it scores."""
    import json

    import torch

    from core.metrics.weights_io import load_safetensors

    kind, format_name, license_note = MODELS[model]
    path = Path(weights)
    _, header = load_safetensors(path, kind, format_name)
    prov = header.get("provenance", {})
    prov = dict(prov) if isinstance(prov, dict) else {"note": str(prov)}
    card: dict[str, Any] = {
        "name": path.stem,
        "file": path.name,
        "sha256": file_digest(path),
        "bytes": path.stat().st_size,
        "format": f"{header.get('format')} v{header.get('version')} (safetensors + JSON header)",
        "architecture": header.get("architecture", {}),
        "working_size": prov.get("working_size"),
        "data": {
            "generator": "core.training.simulations (volsight's own procedural simulations; no external data)",
            "train_families": prov.get("train_families"),
            "train_sequences": prov.get("train_sequences"),
            "frames_per_sequence": 11,
            "grid": f"{prov.get('working_size')}^3",
        },
        "training": {k: prov.get(k) for k in ("epochs", "steps", "seed", "config", "git_commit", "device",
                                               "threads", "wall_minutes") if k in prov},
        "evaluation": {**table.as_dict(), **(test or {})},
        "license": f"trained by volsight on its own generated data; {license_note}",
    }
    if run_dir is not None:
        run = Path(run_dir)
        hist = run / "history.json"
        if hist.exists():
            card["training"]["history"] = json.loads(hist.read_text())
        ckpt = run / "checkpoint.pt"
        if ckpt.exists():
            state = torch.load(ckpt, map_location="cpu", weights_only=True)
            card["training"]["wall_minutes_total_run"] = round(float(state["elapsed"]) / 60, 1)
            card["training"]["steps_total_run"] = int(state["steps"])
    card.update(extra or {})
    return card
