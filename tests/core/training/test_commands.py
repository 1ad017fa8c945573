"""The metric-train and metric-eval commands end to end on a tiny configuration."""

from __future__ import annotations

import csv
import json

import pytest

from app.cli import main


def test_train_then_evaluate(tmp_path, capsys):
    cache, out = tmp_path / "cache", tmp_path / "run"
    args = ["metric-train", "-o", str(out), "--cache", str(cache), "--per-family", "1",
            "--validation-per-family", "1", "--train-families", "noise,burgers", "--held-out", "shapes",
            "--size", "16", "--epochs", "1", "--threads", "1", "--export", str(tmp_path / "w.safetensors")]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "calibration:" in text and "epoch 1 done" in text
    assert (out / "best.safetensors").exists() and (tmp_path / "w.safetensors").exists()
    # a second start into the same folder must not silently overwrite the run
    assert main(args) == 2
    assert "--resume" in capsys.readouterr().err

    csv_path = tmp_path / "r.csv"
    assert main(["metric-eval", "-o", str(csv_path), "--weights", str(tmp_path / "w.safetensors"),
                 "--cache", str(cache), "--size", "16", "--per-family", "1", "--families", "shapes,noise",
                 "--metrics", "mse", "--threads", "1", "--bootstrap", "20", "--learnsim-weights", "none",
                 "--card", str(tmp_path / "card.json"), "--run", str(out)]) == 0
    text = capsys.readouterr().out
    assert "volsim (volsight)" in text and "mse" in text
    assert "volsim (volsight) minus each metric" in text
    # held-out families default to those the weights were not trained on (their provenance)
    assert "held-out families: shapes\n" in text and "shapes*" in text and "noise*" not in text
    assert "value normalisation per sequence" in text
    rows = list(csv.reader(open(csv_path)))
    assert [r[0] for r in rows[1:]] == ["volsim (volsight)"] * 2 + ["mse"] * 5  # + mse's bootstrap rows
    card = json.loads((tmp_path / "card.json").read_text())
    assert sorted(card["data"]["train_families"]) == ["burgers", "noise"] and card["working_size"] == 16
    assert card["training"]["history"][0]["epoch"] == 1
    assert card["evaluation"]["held_out_families"] == ["shapes"]
    assert card["evaluation"]["bootstrap"]["reference"] == "volsim (volsight)"
    assert set(card["evaluation"]["bootstrap"]["differences"]["mse"]) == {"shapes", "noise", "held-out mean"}


def test_train_learnsim_then_evaluate_it_with_its_card(tmp_path, capsys):
    from core.metrics.learnsim import LearnSimNetwork

    cache, out = tmp_path / "cache", tmp_path / "run"
    assert main(["metric-train", "--model", "learnsim-ssd", "-o", str(out), "--cache", str(cache),
                 "--per-family", "1", "--validation-per-family", "1", "--train-families", "noise,burgers",
                 "--held-out", "shapes", "--size", "16", "--epochs", "2", "--threads", "1",
                 "--export", str(tmp_path / "ls.safetensors")]) == 0
    text = capsys.readouterr().out
    assert "training learnsim-ssd" in text and "epoch 2 done" in text and "calibration" not in text
    net = LearnSimNetwork.load(tmp_path / "ls.safetensors", "ssd")
    assert net.provenance["source"] == "volsight metric-train --model learnsim-ssd"
    assert net.provenance["config"]["lr"] == 1e-3 and net.provenance["epochs"] in (1, 2)
    assert main(["metric-eval", "-o", str(tmp_path / "r.csv"),
                 "--learnsim-weights", str(tmp_path / "ls.safetensors"), "--held-out", "shapes",
                 "--cache", str(cache), "--size", "16", "--per-family", "1", "--families", "shapes,noise",
                 "--metrics", "mse", "--threads", "1", "--learnsim-card", str(tmp_path / "ls.json"),
                 "--run", str(out)]) == 0
    text = capsys.readouterr().out
    assert "learnsim-ssd (volsight)" in text
    card = json.loads((tmp_path / "ls.json").read_text())
    assert card["name"] == "ls" and card["format"].startswith("volsight-learnsim v1")
    assert sorted(card["data"]["train_families"]) == ["burgers", "noise"] and card["working_size"] == 16
    assert set(card["evaluation"]["spearman"]) == {"volsim (volsight)", "learnsim-ssd (volsight)", "mse"}
    assert len(card["training"]["history"]) == 2
    # a learned-SSD weights file that is not there is refused by name
    assert main(["metric-eval", "-o", str(tmp_path / "r2.csv"), "--learnsim-weights", str(tmp_path / "no.st"),
                 "--cache", str(cache), "--size", "16", "--per-family", "1", "--families", "noise"]) == 2
    assert "no.st" in capsys.readouterr().err


def test_eval_refuses_missing_weights(tmp_path, capsys):
    code = main(["metric-eval", "-o", str(tmp_path / "r.csv"), "--weights", str(tmp_path / "none.safetensors"),
                 "--cache", str(tmp_path), "--size", "16", "--per-family", "1", "--families", "noise"])
    assert code == 2
    assert "none.safetensors" in capsys.readouterr().err


@pytest.mark.parametrize("family", ["lava"])
def test_eval_refuses_unknown_family(tmp_path, family, capsys):
    assert main(["metric-eval", "-o", str(tmp_path / "r.csv"), "--families", family]) == 2


@pytest.mark.parametrize("grids", ["0,2", "a", ""])
def test_train_refuses_bad_nuisance_grids_before_simulating(tmp_path, grids, capsys):
    code = main(["metric-train", "-o", str(tmp_path / "run"), "--cache", str(tmp_path / "cache"),
                 "--per-family", "1", "--train-families", "noise", "--size", "16", "--nuisance-grids", grids])
    assert code == 2
    assert "--nuisance-grids" in capsys.readouterr().err
    assert not (tmp_path / "cache").exists()  # refused before any sequence was simulated


def test_train_wider_network_keeps_every_epoch(tmp_path, capsys):
    from core.metrics.volsim_net import load_volsim_weights

    out = tmp_path / "run"
    assert main(["metric-train", "-o", str(out), "--cache", str(tmp_path / "cache"), "--per-family", "1",
                 "--validation-per-family", "1", "--train-families", "noise", "--held-out", "shapes",
                 "--size", "16", "--epochs", "2", "--threads", "1", "--width", "2", "--keep-epochs",
                 "--value-warp", "0.5"]) == 0
    assert sorted(p.name for p in out.glob("epoch*.safetensors")) == ["epoch001.safetensors", "epoch002.safetensors"]
    weights = load_volsim_weights(out / "epoch002.safetensors")
    assert weights.arch.widths == (8, 16, 32)
    assert json.loads((out / "history.json").read_text())[-1]["epoch"] == 2
    assert weights.provenance["config"]["value_warp"] == 0.5  # the recipe travels with the weights


@pytest.mark.parametrize("option, value, said", [("--width", "0.1", "width 0.1"), ("--value-warp", "2", "0 to 1")])
def test_train_refuses_a_bad_option_before_simulating(tmp_path, capsys, option, value, said):
    code = main(["metric-train", "-o", str(tmp_path / "run"), "--cache", str(tmp_path / "cache"), "--per-family", "1",
                 "--validation-per-family", "1", "--train-families", "noise", "--size", "16", option, value])
    assert code == 2
    assert said in capsys.readouterr().err
    assert not (tmp_path / "cache").exists()  # refused before any sequence was simulated
