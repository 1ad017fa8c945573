"""The shipped volsight VolSiM weights: small, described by their card, and the default of the volsim metric."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from core.metrics.registry import get_metric
from core.metrics.volsim import DEFAULT_WEIGHTS
from core.training.simulations import generate_sequence
from core.volume import Volume

ROOT = Path(__file__).resolve().parents[3]
WEIGHTS = ROOT / "resources" / "weights" / "volsim_volsight.safetensors"
CARD = WEIGHTS.with_suffix(".json")
LEARNSIM_CARD = ROOT / "resources" / "weights" / "learnsim_ssd_volsight.json"


def test_weights_file_and_card():
    assert WEIGHTS.exists(), "volsight's trained VolSiM weights are missing from resources/weights"
    assert WEIGHTS.stat().st_size < 5 * 1024 * 1024
    card = json.loads(CARD.read_text())
    assert card["sha256"] == hashlib.sha256(WEIGHTS.read_bytes()).hexdigest()
    assert set(card["data"]["train_families"]) == {"advdiff", "burgers", "smoke", "noise"}
    assert card["working_size"] == 32
    for key in ("epochs", "steps", "seed", "git_commit", "wall_minutes"):
        assert key in card["training"], key
    held = card["evaluation"]["held_out_families"]
    assert {"shapes", "waves"} <= set(held) and not set(held) & set(card["data"]["train_families"])
    assert card["evaluation"]["normalisation_scope"] == "sequence"
    assert "volsim (volsight)" in card["evaluation"]["spearman"]


def test_shipped_weights_compare_every_position_alike():
    from core.metrics.volsim_net import load_volsim_weights

    comp = load_volsim_weights(WEIGHTS).comparison
    for k in range(len(comp)):
        m2 = comp.m2_map(k)
        assert float(m2.max() - m2.min()) <= 1e-6 * float(m2.max()), f"layer {k}: scales vary over space"
    card = json.loads(CARD.read_text())
    assert card["normalisation"]["kind"] == card["training"]["config"]["normalisation"] == "flattened"


def test_volsim_defaults_to_the_shipped_weights_and_ranks_a_sequence():
    assert DEFAULT_WEIGHTS.resolve() == WEIGHTS.resolve()
    metric = get_metric("volsim", device="cpu")
    assert Path(metric.weights_path).resolve() == WEIGHTS.resolve()
    seq = generate_sequence("shapes", 7, size=32)  # a held-out family
    frames = [Volume.from_array(f) for f in seq.frames]
    d = [metric.distance(frames[0], frames[j]).value for j in (0, 1, 5, 10)]
    assert d[0] == 0.0
    assert np.isfinite(d).all() and 0.0 < d[1] < d[2] < d[3]


def test_metric_train_defaults_are_the_shipped_recipe():
    import argparse

    from app.commands.metric_train import DEFAULT_EPOCHS, DEFAULT_LR, add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    defaults = parser.parse_args(["-o", "run"])
    assert defaults.model == "volsim" and defaults.lr is None and defaults.epochs is None  # the model's own
    config = json.loads(CARD.read_text())["training"]["config"]
    assert DEFAULT_LR["volsim"] == config["lr"] and DEFAULT_EPOCHS["volsim"] == config["epochs"]
    for key in ("size", "scales", "dropout", "nuisance", "average", "normalisation"):
        assert getattr(defaults, key) == config[key], key
    # and the shipped learned-SSD weights are the learnsim-ssd defaults too
    learnsim = json.loads(LEARNSIM_CARD.read_text())["training"]["config"]
    assert DEFAULT_LR["learnsim-ssd"] == learnsim["lr"] and DEFAULT_EPOCHS["learnsim-ssd"] == learnsim["epochs"]
    assert defaults.average == learnsim["average"] and defaults.size == learnsim["size"]
    assert learnsim["similarity"] == "ssd" and learnsim["mse_factor"] == 0.0


def test_learned_ssd_weights_file_and_card():
    weights = LEARNSIM_CARD.with_suffix(".safetensors")
    assert weights.stat().st_size < 100 * 1024
    card = json.loads(LEARNSIM_CARD.read_text())
    assert card["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert card["format"].startswith("volsight-learnsim v1")
    assert set(card["data"]["train_families"]) == {"advdiff", "burgers", "smoke", "noise"}
    assert {"shapes", "waves", "liquid"} <= set(card["evaluation"]["held_out_families"])
    spearman = card["evaluation"]["spearman"]
    # the reason it ships: it ranks the held-out families better than the plain SSD it starts from
    for family in ("liquid", "shapes", "waves", "held-out mean"):
        assert spearman["learnsim-ssd (volsight)"][family] > spearman["mse"][family], family
