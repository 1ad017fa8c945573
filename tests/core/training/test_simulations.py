"""Simulation families: seeded determinism, sane physics, parameters that grow with the frame index."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from core.training.simulations import FAMILIES, generate_sequence
from core.training.simulations.advection import advect_diffuse, random_density, random_flow
from core.training.simulations.grid import central_divergence, project_divergence_free, random_field
from core.training.simulations.smoke import smoke

N = 16


@pytest.mark.parametrize("family", list(FAMILIES))
def test_sequence_is_seeded_and_shaped(family):
    a = generate_sequence(family, 3, size=N)
    b = generate_sequence(family, 3, size=N)
    c = generate_sequence(family, 4, size=N)
    assert a.frames.shape[0] == 11 and a.frames.shape[2:] == (N, N, N)
    assert a.frames.dtype == np.float32 and np.isfinite(a.frames).all()
    np.testing.assert_array_equal(a.frames, b.frames)
    assert a.parameter == b.parameter
    assert not np.array_equal(a.frames, c.frames)
    expected_channels = FAMILIES[family][1]
    if expected_channels is not None:
        assert a.frames.shape[1] == expected_channels
    # one parameter moves in equal steps away from the reference value of frame 0
    offsets = np.abs(a.values - a.values[0])
    assert np.all(np.diff(offsets) > 0)
    np.testing.assert_allclose(np.diff(a.values), np.diff(a.values)[0], rtol=1e-9)
    # and the frames drift away from the reference as the parameter moves
    f = a.frames.astype(np.float64)
    rms = [np.sqrt(((f[j] - f[0]) ** 2).mean()) for j in range(11)]
    assert rms[0] == 0.0
    assert rms[10] > rms[1] > 0.0


def test_unknown_family_and_parameter_are_refused():
    with pytest.raises(ValueError, match="unknown simulation family"):
        generate_sequence("lava", 0, size=N)
    with pytest.raises(ValueError, match="varies one of"):
        generate_sequence("advdiff", 0, size=N, parameter="colour")


def test_advection_diffusion_conserves_mass():
    rng = np.random.default_rng(5)
    n = 24
    rho = random_density(rng, n)[None].repeat(2, 1, 1, 1, 1)
    flow = random_flow(rng, n)[None].repeat(2, 1, 1, 1, 1) * 0.8
    out = advect_diffuse(rho, flow, torch.tensor([0.0, 0.02]), duration=1.0)
    before = rho.double().sum(dim=(1, 2, 3, 4))
    after = out.double().sum(dim=(1, 2, 3, 4))
    np.testing.assert_allclose(after.numpy(), before.numpy(), rtol=1e-5)
    # and it did move the density (the test would pass trivially for an identity solver otherwise)
    assert float((out - rho).abs().max()) > 0.05
    # diffusion smooths: the diffusive run has the smaller variance
    assert float(out[1].var()) < float(out[0].var())


def test_projection_removes_divergence():
    rng = np.random.default_rng(2)
    u = random_field(rng, 24, slope=2.0, k_high=10.0, channels=3)
    div_before = central_divergence(u).abs().mean()
    p = project_divergence_free(u)
    div_after = central_divergence(p).abs().mean()
    scale = p.abs().mean() / (2 * math.pi / 24)  # |u| / dx: the size of one derivative term
    assert float(div_before) > 0.1 * float(scale)
    assert float(div_after) < 1e-5 * float(scale)
    # projecting twice changes nothing (it is a projection)
    np.testing.assert_allclose(project_divergence_free(p).numpy(), p.numpy(), atol=1e-5)


def test_smoke_velocity_stays_divergence_free_and_plume_rises():
    n = 16
    from core.training.simulations.grid import coordinates

    z, y, x = coordinates(n)
    source = torch.exp(-((z - math.pi) ** 2 + (y - 1.0) ** 2 + (x - math.pi) ** 2) / 0.5)[None, None]
    source = source.repeat(2, 1, 1, 1, 1)
    vel, dens = smoke(torch.zeros(2, 3, n, n, n), torch.zeros(2, 1, n, n, n), source,
                      torch.tensor([0.0, 3.0]), torch.tensor([1.0, 1.0]), steps=10, dt=0.1)
    dx = 2 * math.pi / n
    assert float(central_divergence(vel).abs().max()) < 1e-4 * float(vel.abs().max()) / dx
    # buoyancy lifts the density: its centre of mass sits higher (+y) than without buoyancy
    heights = [float((dens[b, 0].double() * y.double()).sum() / dens[b, 0].double().sum()) for b in range(2)]
    assert heights[1] > heights[0] + 0.05
    assert float(vel[1, 1].max()) > 0.1 and float(vel[0].abs().max()) < 1e-6


def test_liquid_drops_fall_and_the_interface_stays_sharp():
    seq = generate_sequence("liquid", 11, size=32, parameter="drift")
    f = seq.frames[:, 0].astype(np.float64)
    assert f.min() >= 0.0 and f.max() <= 1.0
    # a soft indicator: most voxels are clearly liquid or clearly air, whatever the frame
    assert all(np.mean((g > 0.05) & (g < 0.95)) < 0.25 for g in f)
    z = np.arange(32, dtype=np.float64)[:, None, None]
    # the drops sink further as the downward drift grows: the liquid's centre of mass goes down
    height = [(g * z).sum() / g.sum() for g in f]
    assert np.all(np.diff(height[::5]) < 0)
    # the liquid amount changes little: the flow only moves it (the floor/ceiling taper is not exactly
    # volume-preserving: under 10 %)
    total = f.sum(axis=(1, 2, 3))
    assert np.ptp(total) < 0.1 * total.mean()


def test_blobs_shift_is_an_exact_translation_and_the_level_grows_the_solid():
    from core.training.simulations.blobs import shifted

    rng = np.random.default_rng(2)
    n = 16
    field = random_field(rng, n, slope=3.0, k_high=5.0)[0]
    dx = 2.0 * math.pi / n
    # a whole-voxel offset is a roll of the periodic grid, to rounding
    moved = shifted(field, np.array([2 * dx, -dx, 3 * dx]))
    np.testing.assert_allclose(moved.numpy(), torch.roll(field, (2, -1, 3), dims=(0, 1, 2)).numpy(), atol=1e-5)
    # the level parameter moves the iso level: the solid's volume changes monotonically
    seq = generate_sequence("blobs", 7, size=32, parameter="level")
    volume = seq.frames[:, 0].astype(np.float64).sum(axis=(1, 2, 3))
    steps = np.diff(volume)
    assert np.all(steps > 0) or np.all(steps < 0)


def test_blobs_interfaces_are_sharp_and_flow_keeps_the_solid_amount():
    seq = generate_sequence("blobs", 5, size=32, parameter="flow")
    f = seq.frames[:, 0].astype(np.float64)
    # a soft indicator with some texture: the values cluster around 0 (outside) and 1 (inside)
    hist, _ = np.histogram(f[0], bins=10, range=(-0.25, 1.25))
    assert hist[[0, 1, 2, 7, 8, 9]].sum() > hist[3:7].sum()
    # a divergence-free flow only moves the solid around (semi-Lagrangian: a few % numerical loss)
    total = f.sum(axis=(1, 2, 3))
    assert np.ptp(total) < 0.05 * total.mean()
    assert np.abs(f[10] - f[0]).mean() > np.abs(f[1] - f[0]).mean() > 0.0
