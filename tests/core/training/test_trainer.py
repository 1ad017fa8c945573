"""Training: calibration, a loss that goes down, determinism (one thread), checkpoint/resume, export."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.training.objective import WelfordMaps, all_pairs, pearson, sequence_distances, volsim_loss
from core.training.simulations.ground_truth import linear_distances
from core.training.trainer import BEST, CHECKPOINT, TrainConfig, Trainer


def _config(**kw) -> TrainConfig:
    base = dict(size=16, epochs=1, lr=2e-3, seed=3, dropout=0.0, augment=False, log_every=1000)
    base.update(kw)
    return TrainConfig(**base)


def _loss_on_all(trainer: Trainer) -> float:
    total = 0.0
    with torch.no_grad():
        for k in range(len(trainer.train)):
            pred = sequence_distances(trainer.weights, trainer.train.frames(k), trainer.pairs)
            total += float(volsim_loss(pred, trainer._targets(k))[0])
    return total / len(trainer.train)


def test_welford_matches_numpy():
    rng = np.random.default_rng(0)
    samples = rng.standard_normal((7, 3, 4))
    w = WelfordMaps()
    for s in samples:
        w.update([torch.from_numpy(s)])
    np.testing.assert_allclose(w.mean[0].numpy(), samples.mean(0), atol=1e-12)
    np.testing.assert_allclose(w.m2[0].numpy() / (w.count - 1), samples.var(0, ddof=1), atol=1e-12)


def test_loss_parts():
    gt = torch.linspace(0.1, 1, 10)
    loss, parts = volsim_loss(gt.clone(), gt)
    assert float(loss) == pytest.approx(0.0, abs=1e-6) and parts["pearson"] == pytest.approx(1.0)
    assert float(pearson(gt, -gt)) == pytest.approx(-1.0)
    i, j = all_pairs(11)
    assert len(i) == 55 and bool((i < j).all())


def test_calibration_installs_feature_statistics(tiny_cache, tmp_path):
    train, val = tiny_cache
    trainer = Trainer(_config(), train, val, tmp_path)
    before = trainer.weights.comparison.m2_map(0).clone()
    trainer.calibrate()
    comp = trainer.weights.comparison
    assert comp.counts[0] == 22.0  # 2 sequences x 11 frames, one sample per volume
    assert not torch.equal(before, comp.m2_map(0))
    assert all(float(comp.m2_map(k).min()) > 0 for k in range(len(comp)))


def test_global_calibration_pools_every_location_and_spatial_keeps_the_maps(tiny_cache, tmp_path):
    from core.training.objective import calibrate, encode

    train, val = tiny_cache
    spatial = Trainer(_config(normalisation="spatial"), train, val, tmp_path / "s")
    pooled = Trainer(_config(normalisation="global"), train, val, tmp_path / "g")
    spatial.calibrate()
    pooled.calibrate()
    frames = torch.cat([pooled.train.frames(k) for k in range(len(pooled.train))])
    with torch.no_grad():
        feats = [f.mean(dim=1).double() for f in encode(pooled.weights.encoder, frames)]
    for k, f in enumerate(feats):
        comp_s, comp_g = spatial.weights.comparison, pooled.weights.comparison
        # spatial: one std per location, over the 22 volumes
        np.testing.assert_allclose(comp_s.m2_map(k).numpy() / 21, f.var(dim=0).numpy(), rtol=1e-3, atol=1e-9)
        # global: one constant, the variance over volumes and locations together
        std = comp_g._stats(k, tuple(f.shape[1:]), torch.device("cpu"))[1]
        assert float(std.max() - std.min()) == 0.0
        assert float(std[0, 0, 0]) ** 2 == pytest.approx(float(f.var()), rel=1e-3)
    with pytest.raises(ValueError, match="normalisation"):
        calibrate(pooled.weights, iter([frames]), torch.device("cpu"), normalisation="local")


def test_flattened_normalisation_trains_on_the_maps_and_exports_one_scale_per_layer(tiny_cache, tmp_path):
    from core.metrics.volsim_net import load_volsim_weights

    train, val = tiny_cache
    trainer = Trainer(_config(), train, val, tmp_path)
    assert trainer.config.normalisation == "flattened"
    trainer.calibrate()
    comp = trainer.weights.comparison
    spatial = [comp.m2_map(k).clone() for k in range(len(comp))]
    assert all(float(m.max() - m.min()) > 0 for m in spatial)
    trainer.export(tmp_path / "w.safetensors")
    exported = load_volsim_weights(tmp_path / "w.safetensors").comparison
    for k in range(len(comp)):
        assert torch.equal(comp.m2_map(k), spatial[k])  # training keeps its maps
        m2 = exported.m2_map(k)
        assert float(m2.max() - m2.min()) <= 1e-6 * float(m2.max())
        want = float((spatial[k].double() / (comp.counts[k] - 1)).sqrt().mean())
        got = float((m2.double() / (exported.counts[k] - 1)).sqrt().mean())
        assert got == pytest.approx(want, rel=1e-5)  # one scale per layer: the maps' mean std
    # validation scores the exported (flattened) metric, not the maps used in training
    flat = trainer.metric_weights()
    assert flat.encoder is trainer.weights.encoder and flat.comparison is not comp


def test_a_few_steps_lower_the_loss(tiny_cache, tmp_path):
    train, val = tiny_cache
    trainer = Trainer(_config(), train, val, tmp_path)
    trainer.calibrate()
    start = _loss_on_all(trainer)
    for step in range(10):
        trainer.step(step % len(trainer.train))
    assert _loss_on_all(trainer) < 0.7 * start


def test_moving_average_is_validated_and_exported_while_the_raw_weights_train(tiny_cache, tmp_path):
    from core.metrics.volsim_net import load_volsim_weights

    train, val = tiny_cache
    trainer = Trainer(_config(average=0.8), train, val, tmp_path)
    trainer.calibrate()
    expected = [p.detach().clone() for p in trainer._parameters()]
    for step in range(6):
        trainer.step(step % len(trainer.train))
        decay = min(0.8, (1.0 + trainer.steps) / (10.0 + trainer.steps))
        expected = [decay * e + (1 - decay) * p.detach() for e, p in zip(expected, trainer._parameters(), strict=True)]
    metric = trainer.metric_weights()
    averaged = list(metric.encoder.parameters()) + list(metric.comparison.parameters())
    for got, want in zip(averaged, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
    assert not all(torch.equal(a, r) for a, r in zip(averaged, trainer._parameters(), strict=True))
    assert metric.encoder is not trainer.weights.encoder
    trainer.export(tmp_path / "avg.safetensors")
    loaded = load_volsim_weights(tmp_path / "avg.safetensors")
    for got, want in zip(loaded.encoder.parameters(), metric.encoder.parameters(), strict=True):
        torch.testing.assert_close(got, want.detach(), rtol=0, atol=0)
    # without averaging the metric is the trained network itself
    plain = Trainer(_config(), train, val, tmp_path / "plain")
    assert plain.averaged is None and plain.metric_weights().encoder is plain.weights.encoder
    with pytest.raises(ValueError, match="average"):
        Trainer(_config(average=1.0), train, val, tmp_path / "bad")
    with pytest.raises(ValueError, match="value warp"):
        Trainer(_config(value_warp=1.5), train, val, tmp_path / "bad")



def test_training_is_deterministic_and_resumes_exactly(tiny_cache, tmp_path, one_thread):
    train, val = tiny_cache
    cfg = _config(epochs=2, augment=True, dropout=0.2, nuisance=0.5, average=0.9, value_warp=0.5)
    straight = Trainer(cfg, train, val, tmp_path / "a")
    straight.run()
    # the same seed again, but stopped after one epoch and resumed from the checkpoint
    first = Trainer(_config(epochs=1, augment=True, dropout=0.2, nuisance=0.5, average=0.9, value_warp=0.5), train, val,
                    tmp_path / "b")
    first.run()
    assert (tmp_path / "b" / CHECKPOINT).exists()
    resumed = Trainer(cfg, train, val, tmp_path / "b")
    assert resumed.load_checkpoint()
    assert resumed.epoch == 1
    result = resumed.run()
    assert result.epochs_done == 2 and result.steps == 4
    for p, q in zip(straight.weights.encoder.parameters(), resumed.weights.encoder.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    for p, q in zip(straight.averaged, resumed.averaged, strict=True):  # the moving average resumes too
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    assert (tmp_path / "b" / BEST).exists()


def test_resume_refuses_another_configuration(tiny_cache, tmp_path):
    train, val = tiny_cache
    Trainer(_config(), train, val, tmp_path).run()
    other = Trainer(_config(lr=1e-4), train, val, tmp_path)
    with pytest.raises(ValueError, match="another configuration"):
        other.load_checkpoint()


def test_exported_weights_work_as_the_volsim_metric(tiny_cache, tmp_path):
    from core.metrics.registry import get_metric
    from core.training.dataset import load_cached
    from core.volume import Volume

    train, val = tiny_cache
    trainer = Trainer(_config(), train, val, tmp_path)
    trainer.run()
    metric = get_metric("volsim", weights=tmp_path / BEST, device="cpu")
    frames = load_cached(val[0]).frames.astype(np.float32)
    a, b, c = (Volume.from_array(frames[k]) for k in (0, 1, 10))
    near, far = metric.distance(a, b).value, metric.distance(a, c).value
    assert metric.distance(a, a).value == 0.0
    assert 0.0 < near < far
    # the exported file records how it was made
    assert metric.net.provenance["working_size"] == 16
    assert metric.net.provenance["train_families"] == ["burgers", "noise"]
    assert linear_distances(11)[0, 10] == 1.0


@pytest.mark.parametrize("scales", [1, 3])
def test_scalar_shortcut_matches_the_encoder(scales):
    from core.metrics.volsim_net import VolSiMArchitecture, new_weights
    from core.training.objective import encode

    w = new_weights(VolSiMArchitecture.with_scales(scales), norm_size=16, seed=1)
    scalar = torch.rand(2, 1, 16, 16, 16).expand(-1, 3, -1, -1, -1)
    vector = torch.rand(2, 3, 16, 16, 16)
    for x in (scalar, vector):
        fast, ref = encode(w.encoder, x), w.encoder(x)
        assert len(fast) == len(ref) == 4 * scales
        for a, b in zip(fast, ref, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    # gradients reach the full (3-channel) first kernels through the summed ones
    sum(f.sum() for f in encode(w.encoder, scalar)).backward()
    assert w.encoder.blocks[0][0].weight.grad is not None


def test_init_starts_from_given_weights_and_refuses_another_layout(tiny_cache, tmp_path):
    from core.errors import WeightsError
    from core.metrics.volsim_net import VolSiMArchitecture, new_weights

    train, val = tiny_cache
    source = new_weights(VolSiMArchitecture.with_scales(3), norm_size=16, seed=11)
    with torch.no_grad():
        source.comparison.weights[0].fill_(0.25)
    source.save(tmp_path / "start.safetensors")
    trainer = Trainer(_config(init=str(tmp_path / "start.safetensors")), train, val, tmp_path / "run")
    for mine, theirs in zip(trainer.weights.encoder.parameters(), source.encoder.parameters(), strict=True):
        assert torch.equal(mine, theirs)
    assert torch.all(trainer.weights.comparison.weights[0] == 0.25)
    fresh = Trainer(_config(), train, val, tmp_path / "fresh")
    assert not torch.equal(fresh.weights.encoder.blocks[0][0].weight, source.encoder.blocks[0][0].weight)
    new_weights(VolSiMArchitecture.with_scales(2), norm_size=16, seed=1).save(tmp_path / "two.safetensors")
    with pytest.raises(ValueError, match="2-scale"):
        Trainer(_config(init=str(tmp_path / "two.safetensors")), train, val, tmp_path / "two")
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    with pytest.raises(WeightsError):
        Trainer(_config(init=str(tmp_path / "junk.safetensors")), train, val, tmp_path / "junk")


def test_noise_twins_compare_a_frame_with_itself_under_other_noise(tiny_cache, tmp_path):
    """--noise-twins: a draw gains a copy of one frame under its own nuisance field, paired with that frame at
    target 0; the steps still lower the loss, and the option is off (the old stream) by default."""
    from core.training.dataset import SequenceStore

    train, val = tiny_cache
    store = SequenceStore(train)
    g = torch.Generator().manual_seed(5)
    frames, k = store.frames_with_twin(0, g, 0.5)
    n = store.sequences[0].frames.shape[0]
    assert frames.shape[0] == n + 1 and 0 <= k < n
    diff = frames[-1] - frames[k]
    assert float(diff.abs().max()) > 1e-3  # other noise ...
    assert abs(float(diff.mean())) < 0.05 * float(diff.std())  # ... around the same content
    # with --value-warp the twin's draw is warped like any other, before its noise: still a copy of frame k
    warped, k2 = store.frames_with_twin(0, torch.Generator().manual_seed(5), 0.5, warp=1.0)
    assert not torch.equal(warped, frames)
    diff = warped[-1] - warped[k2]
    assert abs(float(diff.mean())) < 0.05 * float(diff.std())

    cfg = _config(augment=True, nuisance=0.5, noise_twins=True)
    trainer = Trainer(cfg, train, val, tmp_path / "twins")
    trainer.calibrate()
    seen = []
    original = trainer.train.frames_with_twin
    trainer.train.frames_with_twin = lambda *a, **kw: seen.append(1) or original(*a, **kw)
    start = _loss_on_all(trainer)
    for step in range(12):
        trainer.step(step % len(trainer.train))
    assert seen and len(seen) < 12  # about half the draws
    assert _loss_on_all(trainer) < 0.8 * start
    assert TrainConfig().noise_twins is False
