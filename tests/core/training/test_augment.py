"""Training-time transforms: the geometric augmentation and the per-frame nuisance noise."""

from __future__ import annotations

import pytest
import torch

from core.training.dataset import SequenceStore, augment, normalize_sequence, nuisance_noise, value_warp


def _scalar_sequence(seed: int = 0, n: int = 16) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    raw = torch.randn((11, 1, n, n, n), generator=g).cumsum(-1).cumsum(-2)
    return normalize_sequence(raw)


def test_augment_moves_every_frame_alike_and_keeps_values():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(4, 3, 8, 8, 8)
    x[1] = x[0] * 2.0  # frame 1 is frame 0 scaled: it must stay so after the shared transform
    y = augment(x, g)
    assert y.shape == x.shape
    torch.testing.assert_close(y[1], 2.0 * y[0])
    torch.testing.assert_close(y.flatten().sort().values, x.flatten().sort().values)


def test_nuisance_noise_differs_per_frame_is_smooth_and_stays_in_range():
    x = _scalar_sequence()
    y = nuisance_noise(x, torch.Generator().manual_seed(1), 0.3)
    assert y.shape == x.shape and float(y.min()) >= -1.0 and float(y.max()) <= 1.0
    d = y - x
    # scalar data (three copies of one channel) keeps its copies identical
    assert torch.equal(y[:, 0], y[:, 1]) and torch.equal(y[:, 0], y[:, 2])
    # each frame, the reference included, gets its own field
    assert float(d[0].abs().max()) > 0 and not torch.allclose(d[0], d[1])
    # the amplitude is at most strength x the sequence's std (clamping only removes)
    assert float(d[0, 0].std()) <= 0.3 * float(x.std()) + 1e-6
    # smooth: neighbouring voxels are strongly correlated, unlike white noise
    a, b = d[:, 0, :, :, :-1].flatten(), d[:, 0, :, :, 1:].flatten()
    assert float(torch.corrcoef(torch.stack([a, b]))[0, 1]) > 0.8


def test_nuisance_noise_is_seeded_off_at_zero_and_independent_per_vector_channel():
    x = _scalar_sequence()
    a = nuisance_noise(x, torch.Generator().manual_seed(7), 0.3)
    b = nuisance_noise(x, torch.Generator().manual_seed(7), 0.3)
    assert torch.equal(a, b)
    assert nuisance_noise(x, torch.Generator().manual_seed(7), 0.0) is x
    v = normalize_sequence(torch.randn(11, 3, 16, 16, 16))
    d = nuisance_noise(v, torch.Generator().manual_seed(2), 0.3) - v
    assert not torch.allclose(d[:, 0], d[:, 1])


def _neighbour_correlation(d: torch.Tensor) -> float:
    a, b = d[:, 0, :, :, :-1].flatten(), d[:, 0, :, :, 1:].flatten()
    return float(torch.corrcoef(torch.stack([a, b]))[0, 1])


def test_nuisance_grids_set_the_noise_correlation_length():
    x = _scalar_sequence()
    white = nuisance_noise(x, torch.Generator().manual_seed(3), 0.3, grids=(1,)) - x
    smooth = nuisance_noise(x, torch.Generator().manual_seed(3), 0.3, grids=(4,)) - x
    assert abs(_neighbour_correlation(white)) < 0.2 < 0.8 < _neighbour_correlation(smooth)
    # a single factor draws no choice: (4,) is the stream of the default
    assert torch.equal(smooth + x, nuisance_noise(x, torch.Generator().manual_seed(3), 0.3))
    # several factors: each sequence gets one of them, and over many draws every one occurs
    seen = set()
    for seed in range(30):
        d = nuisance_noise(x, torch.Generator().manual_seed(seed), 0.3, grids=(1, 4)) - x
        seen.add(_neighbour_correlation(d) > 0.5)
    assert seen == {True, False}
    with pytest.raises(ValueError, match="grids"):
        nuisance_noise(x, torch.Generator().manual_seed(3), 0.3, grids=(0,))


@pytest.mark.parametrize("nuisance", [0.0, 0.3])
def test_store_applies_nuisance_to_about_half_of_the_augmented_draws(tiny_cache, nuisance):
    train, _ = tiny_cache
    store = SequenceStore(train[:1])
    g = torch.Generator().manual_seed(0)
    geometric = torch.Generator().manual_seed(0)
    noisy = 0
    for _ in range(40):
        got = store.frames(0, g, nuisance)
        plain = normalize_sequence(augment(torch.from_numpy(store.sequences[0].frames.astype("float32")), geometric))
        if nuisance > 0:
            geometric.set_state(g.get_state())  # the noise draws advance the stream; follow it
        if not torch.equal(got, plain):
            noisy += 1
    assert noisy == 0 if nuisance == 0 else 10 <= noisy <= 30
    assert torch.equal(store.frames(0), store.frames(0, None, nuisance))  # validation frames stay clean


def test_value_warp_is_one_monotone_curve_for_all_frames_with_fixed_ends():
    x = _scalar_sequence(seed=4)
    kinds = set()
    for seed in range(12):
        y = value_warp(x, torch.Generator().manual_seed(seed))
        assert y.shape == x.shape and float(y.min()) >= -1.0 and float(y.max()) <= 1.0
        assert torch.equal(y[:, 0], y[:, 1]) and torch.equal(y[:, 0], y[:, 2])
        # one curve: sorting every voxel of every frame by x sorts y too (monotone, shared by the frames)
        order = x[:, 0].flatten().argsort()
        assert bool((y[:, 0].flatten()[order].diff() >= -1e-6).all())
        ends = value_warp(torch.tensor([-1.0, 1.0]).view(2, 1, 1, 1, 1), torch.Generator().manual_seed(seed))
        torch.testing.assert_close(ends.flatten(), torch.tensor([-1.0, 1.0]), atol=1e-5, rtol=0)
        # it bends: the middle of the range moves (a gamma or a sigmoid, never the identity)
        mid = value_warp(torch.zeros(1, 1, 1, 1, 1), torch.Generator().manual_seed(seed))
        kinds.add(float(mid) > 0.0)
        assert abs(float(mid)) > 1e-3
    assert kinds == {True, False}  # curves bend both ways over the draws
    assert torch.equal(value_warp(x, torch.Generator().manual_seed(3)), value_warp(x, torch.Generator().manual_seed(3)))
    v = normalize_sequence(torch.randn(11, 3, 8, 8, 8))
    assert value_warp(v, torch.Generator().manual_seed(0)) is v  # vector data keeps its directions


def test_store_warps_the_share_of_draws_it_is_given(tiny_cache):
    train, _ = tiny_cache
    store = SequenceStore(train[:1])  # a scalar (noise) sequence
    for share, low, high in ((0.0, 0, 0), (0.5, 8, 32), (1.0, 40, 40)):
        g, geometric = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
        warped = 0
        for _ in range(40):
            got = store.frames(0, g, warp=share)
            plain = normalize_sequence(augment(torch.from_numpy(store.sequences[0].frames.astype("float32")),
                                               geometric))
            geometric.set_state(g.get_state())
            warped += not torch.equal(got, plain)
        assert low <= warped <= high
