"""Training LearnSim's encoder to rank sequences: the loss goes down, runs repeat and resume exactly, export."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.metrics.learnsim import LearnSimNetwork
from core.training.learnsim_trainer import LearnSimTrainConfig, LearnSimTrainer, pair_distances, scalar_unit
from core.training.objective import volsim_loss
from core.training.trainer import BEST, CHECKPOINT


def _config(**kw) -> LearnSimTrainConfig:
    base = dict(size=16, epochs=1, lr=5e-3, seed=4, augment=False, log_every=1000)
    base.update(kw)
    return LearnSimTrainConfig(**base)


def _loss_on_all(trainer: LearnSimTrainer) -> float:
    with torch.no_grad():
        losses = [float(volsim_loss(pair_distances(trainer.network, trainer.frames(trainer.train, k, None),
                                                   trainer.pairs), trainer.targets, 0.0)[0])
                  for k in range(len(trainer.train))]
    return float(np.mean(losses))



def test_scalar_unit_takes_the_magnitude_and_maps_the_sequence_to_unit_range():
    v = torch.zeros(3, 3, 2, 2, 2)
    v[1, 0] = 3.0
    v[2, 1] = -4.0  # magnitude 4: the largest
    out = scalar_unit(v)
    assert out.shape == (3, 1, 2, 2, 2)
    assert float(out.min()) == 0.0 and float(out.max()) == 1.0
    assert float(out[1].mean()) == pytest.approx(0.75)
    assert torch.equal(scalar_unit(torch.ones(2, 1, 2, 2, 2)), torch.zeros(2, 1, 2, 2, 2))
    with pytest.raises(ValueError, match="1- or 3-channel"):
        scalar_unit(torch.zeros(2, 2, 2, 2, 2))


def test_training_starts_at_plain_ssd_and_lowers_the_loss(tiny_cache, tmp_path):
    train, val = tiny_cache
    trainer = LearnSimTrainer(_config(epochs=6), train, val, tmp_path)
    assert trainer.network.is_identity()  # step 0 ranks as plain SSD
    frames = trainer.frames(trainer.train, 0, None)
    plain = torch.sqrt(((frames[trainer.pairs[0]] - frames[trainer.pairs[1]]) ** 2).mean(dim=(1, 2, 3, 4)))
    torch.testing.assert_close(pair_distances(trainer.network, frames, trainer.pairs), plain, rtol=1e-4, atol=1e-6)
    before = _loss_on_all(trainer)
    result = trainer.run()
    assert result.steps == 12 and len(result.history) == 6
    assert _loss_on_all(trainer) < before
    assert not trainer.network.is_identity()
    assert (tmp_path / BEST).exists() and (tmp_path / CHECKPOINT).exists()


def test_learnsim_training_is_deterministic_and_resumes_exactly(tiny_cache, tmp_path, one_thread):
    train, val = tiny_cache
    cfg = _config(epochs=2, augment=True, average=0.9)
    straight = LearnSimTrainer(cfg, train, val, tmp_path / "a")
    straight.run()
    again = LearnSimTrainer(cfg, train, val, tmp_path / "c")
    again.run()
    first = LearnSimTrainer(_config(epochs=1, augment=True, average=0.9), train, val, tmp_path / "b")
    first.run()
    resumed = LearnSimTrainer(cfg, train, val, tmp_path / "b")
    assert resumed.load_checkpoint() and resumed.epoch == 1
    assert resumed.run().steps == 4
    for p, q, r in zip(straight.network.parameters(), again.network.parameters(), resumed.network.parameters(),
                       strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
        torch.testing.assert_close(p, r, rtol=0, atol=0)
    for p, r in zip(straight.averaged, resumed.averaged, strict=True):  # the moving average resumes too
        torch.testing.assert_close(p, r, rtol=0, atol=0)
    # the exported metric is the average, not the last weights
    exported = LearnSimNetwork.load(tmp_path / "a" / "last.safetensors")
    for p, avg in zip(exported.parameters(), straight.averaged, strict=True):
        torch.testing.assert_close(p, avg, rtol=0, atol=0)
    assert any(not torch.equal(avg, last) for avg, last in zip(straight.averaged, straight.network.parameters(),
                                                                strict=True))
    other = LearnSimTrainer(_config(epochs=2, augment=True, average=0.9, lr=1e-4), train, val, tmp_path / "b")
    with pytest.raises(ValueError, match="another configuration"):
        other.load_checkpoint()


def test_exported_weights_work_as_the_learnsim_metric(tiny_cache, tmp_path):
    from core.metrics.registry import get_metric
    from core.training.dataset import load_cached
    from core.volume import Volume

    train, val = tiny_cache
    LearnSimTrainer(_config(epochs=2), train, val, tmp_path).run()
    net = LearnSimNetwork.load(tmp_path / BEST)
    assert net.provenance["train_families"] == ["burgers", "noise"]
    assert net.provenance["working_size"] == 16 and net.provenance["config"]["similarity"] == "ssd"
    metric = get_metric("learnsim-ssd", weights=tmp_path / BEST, device="cpu")
    frames = load_cached(val[0]).frames.astype(np.float32)
    a, b = Volume.from_array(frames[0]), Volume.from_array(frames[10])
    assert metric.distance(a, a).value == 0.0
    assert metric.distance(a, b).value > 0.0
    assert metric.distance(a, b).info["weights"] == str(tmp_path / BEST)


def test_lcc_trains_too(tiny_cache, tmp_path):
    train, val = tiny_cache
    trainer = LearnSimTrainer(_config(similarity="lcc", epochs=2), train, val, tmp_path)
    before = _loss_on_all(trainer)
    trainer.run()
    assert _loss_on_all(trainer) < before
    assert LearnSimNetwork.load(tmp_path / BEST).similarity == "lcc"
