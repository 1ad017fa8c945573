"""Fitting: quality on an analytic field, determinism, checkpoint/resume, cancellation, progress."""

from __future__ import annotations

import threading

import pytest
import torch

from core.errors import FieldFileError, VolsightError
from models.fit import FitConfig, field_psnr, fit, thin_history

from .conftest import analytic_volume, tiny_fit


def test_apmgsrn_reaches_high_psnr_quickly(volume16):
    # measured: 46.9 dB after 300 iterations of 2048 points at 16^3 (8 grids x 2 features x 12^3, decoder 2x32)
    opts = {"n_grids": 8, "n_features": 2, "grid_shape": [12, 12, 12], "width": 32}
    cfg = {"model": "apmgsrn", "size": "small", "model_options": opts, "iterations": 300, "points": 2048,
           "log_every": 100, "density_points": 512}
    reports = []
    field, summary = fit(volume16, cfg, callback=reports.append, seed=0)
    assert summary["psnr"] > 40.0, summary
    assert summary["psnr"] == pytest.approx(field_psnr(field, volume16))
    assert [r.iteration for r in reports] == [100, 200, 300]
    assert reports[-1].psnr > reports[0].psnr
    assert summary["grids_frozen_at"] is not None and summary["grid_fit_steps"] > 0


SMALL_HASH = {"n_levels": 8, "log2_table_size": 12, "base_resolution": 4, "max_resolution": 32}


@pytest.mark.parametrize(("model", "iterations", "options"), [("fvsrn", 200, {}), ("hashgrid", 100, SMALL_HASH)])
def test_baselines_learn(volume16, model, iterations, options):
    # measured: fvsrn (small) 21.4 dB at 150 iterations, 26.6 dB at 300 (2048 points, 16^3)
    cfg = {"model": model, "size": "small", "model_options": options, "iterations": iterations, "points": 2048,
           "log_every": 100}
    _, summary = fit(volume16, cfg, seed=0)
    assert summary["psnr"] > 20.0, summary


def test_deterministic_for_a_seed(volume16):
    # bit-identical on the CPU (on CUDA grid_sample's backward adds with atomics: see models/fit.py)
    a, _ = fit(volume16, tiny_fit(30), seed=7, device="cpu")
    b, _ = fit(volume16, tiny_fit(30), seed=7, device="cpu")
    c, _ = fit(volume16, tiny_fit(30), seed=8, device="cpu")
    for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), k
    assert not torch.equal(a.feature_grids, c.feature_grids)


def test_checkpoint_resume_equals_uninterrupted(volume16, tmp_path):
    cfg = tiny_fit(40, grid_fit_start=0.1, grid_fit_end=0.9)
    full, full_summary = fit(volume16, cfg, seed=3, device="cpu")  # bit-identical on the CPU
    ck = tmp_path / "run.ckpt"
    # stop after 15 iterations (callback runs every 5), grids already moving
    part, s1 = fit(volume16, cfg, seed=3, checkpoint=ck, callback=lambda p: p.iteration < 15, device="cpu")
    assert s1["cancelled"] and s1["iterations"] == 15
    resumed, s2 = fit(volume16, cfg, seed=3, checkpoint=ck, resume=ck, device="cpu")
    assert s2["iterations"] == 40 and not s2["cancelled"]
    for (k, x), (_, y) in zip(full.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(x, y), k
    assert s2["grid_fit_steps"] == full_summary["grid_fit_steps"]
    # the loss log survives the checkpoint: the resumed run's is the uninterrupted run's
    assert [it for it, _ in full_summary["history"]] == list(range(5, 41, 5))
    assert s2["history"] == full_summary["history"]
    assert s1["history"] == full_summary["history"][:3]
    with pytest.raises(FieldFileError, match="other fit options"):
        fit(volume16, tiny_fit(41), seed=3, resume=ck, device="cpu")
    with pytest.raises(FieldFileError, match="not this one"):
        fit(analytic_volume(12), cfg, seed=3, resume=ck, device="cpu")
    # a checkpoint of a CUDA fit (its random stream is the CUDA generator's) resumes on CUDA only
    from models.store import read_tensor_file, write_tensor_file

    header, tensors = read_tensor_file(ck, expect_kind="checkpoint")
    assert header["device"] == "cpu"
    write_tensor_file(tmp_path / "cuda.ckpt", tensors, {**header, "device": "cuda"})
    with pytest.raises(FieldFileError, match=r"written by a fit on cuda, and resumes on cuda only .*--device cuda"):
        fit(volume16, cfg, seed=3, resume=tmp_path / "cuda.ckpt", device="cpu")


def test_cancel_event_stops_early(volume16):
    stop = threading.Event()
    seen = []

    def report(p):
        seen.append(p.iteration)
        if p.iteration >= 10:
            stop.set()

    _, summary = fit(volume16, tiny_fit(200), callback=report, cancel=stop)
    assert summary["cancelled"] and summary["iterations"] == 10 and seen == [5, 10]


def test_multichannel_and_options(tmp_path):
    vol = analytic_volume(10, channels=3)
    field, summary = fit(vol, tiny_fit(20, sampling="uniform", evaluate=True), seed=0)
    assert field.channels == 3 and field.bake().channels == 3 and summary["psnr"] > 5
    with pytest.raises(VolsightError, match="unknown fit options"):
        FitConfig.from_any({"iters": 3})
    with pytest.raises(VolsightError, match="sampling"):
        fit(vol, tiny_fit(2, sampling="grid"))


def test_chunked_step_matches_one_pass(volume16, monkeypatch):
    # the same batch in 700-point chunks (grids folded once, gradients accumulated) or in one pass;
    # float32 backward, as bfloat16 gradient rounding differs with the chunking (tests/models/test_mlp.py)
    monkeypatch.setattr("models.mlp.native_bf16_cpu", lambda: False)
    a, _ = fit(volume16, tiny_fit(8, chunk=700), seed=4)
    b, _ = fit(volume16, tiny_fit(8, chunk=0), seed=4)
    for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.allclose(x, y, atol=1e-5, rtol=1e-4), k


def test_the_loss_log_is_thinned_evenly_keeping_both_ends():
    rows = [[float(i), 1.0 / i] for i in range(1, 1001)]
    short = thin_history(rows[:50])
    assert short == [[int(i), loss] for i, loss in rows[:50]]
    thin = thin_history(rows, points=100)
    assert len(thin) == 100 and thin[0] == [1, 1.0] and thin[-1] == [1000, 1.0 / 1000]
    steps = {b[0] - a[0] for a, b in zip(thin, thin[1:])}
    assert steps <= {10, 11}  # evenly spread
    assert all(isinstance(it, int) for it, _ in thin)


def test_rates_held_in_tensors_are_refilled_and_saved_as_numbers():
    import json

    from models.fit import _flatten_optimizer, _set_lr

    p = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.Adam([p], lr=torch.tensor(0.01), foreach=False)
    held = opt.param_groups[0]["lr"]
    _set_lr(opt, 0.005)
    assert opt.param_groups[0]["lr"] is held and float(held) == pytest.approx(0.005)  # in place: a graph reads it
    p.grad = torch.ones(3)
    opt.step()
    _, meta = _flatten_optimizer("opt", opt)
    assert json.loads(json.dumps(meta))["param_groups"][0]["lr"] == pytest.approx(0.005)
    plain = torch.optim.Adam([p], lr=0.01)
    _set_lr(plain, 0.002)
    assert plain.param_groups[0]["lr"] == 0.002


cuda_only = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@cuda_only
def test_cuda_graph_steps_follow_the_eager_steps(volume16, monkeypatch):
    # both modes of the step (grids moving from iteration 6 to 30, then frozen) are captured and replayed;
    # the same points are drawn, so the loss logs agree to float rounding (grid_sample's atomics)
    cfg = tiny_fit(60, grid_fit_start=0.1, grid_fit_end=0.5, chunk=0)
    graphed, gs = fit(volume16, cfg, seed=4, device="cuda")
    # three eager warm-up steps per mode, every later step replayed
    assert gs["cuda_graphs"].startswith(f"{60 - 2 * 3} of the steps replayed from 2 graph"), gs["cuda_graphs"]
    monkeypatch.setenv("VOLSIGHT_CUDA_GRAPHS", "0")
    eager, es = fit(volume16, cfg, seed=4, device="cuda")
    assert "cuda_graphs" not in es
    assert es["grid_fit_steps"] == gs["grid_fit_steps"] > 10
    losses = torch.tensor([loss for _, loss in gs["history"]])
    assert torch.allclose(losses, torch.tensor([loss for _, loss in es["history"]]), rtol=1e-3)
    assert losses[-1] < losses[0] / 5
    # parameters drift apart where Adam scales up rounding-level gradients; the fields agree in quality
    assert field_psnr(graphed, volume16) == pytest.approx(field_psnr(eager, volume16), abs=0.5)


@cuda_only
def test_cuda_graphed_fit_resumes_from_a_checkpoint(volume16, tmp_path):
    cfg = tiny_fit(40, grid_fit_start=0.1, grid_fit_end=0.9, chunk=0)
    _, full = fit(volume16, cfg, seed=3, device="cuda")
    ck = tmp_path / "run.ckpt"
    fit(volume16, cfg, seed=3, checkpoint=ck, callback=lambda p: p.iteration < 15, device="cuda")
    _, resumed = fit(volume16, cfg, seed=3, checkpoint=ck, resume=ck, device="cuda")
    assert "replayed" in resumed["cuda_graphs"] and "failed" not in resumed["cuda_graphs"]
    assert resumed["batch_mse"] == pytest.approx(full["batch_mse"], rel=1e-2)
