"""Siamese feature comparison: fast path equals the literal formula; weights, resizing, feature maps (2D and 3D)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from core.metrics.siamese import FeatureComparison, distance_from_terms


def _comparison(spatial: tuple[int, ...], channels=(4, 9), seed=0, negative=False):
    g = torch.Generator().manual_seed(seed)
    sizes = [spatial, tuple(max(2, s // 2) for s in spatial)]
    means = [torch.randn(s, generator=g) for s in sizes]
    m2s = [torch.rand(s, generator=g) * 50 + 1 for s in sizes]
    weights = [torch.rand(c, generator=g) - (0.5 if negative else 0.0) for c in channels]
    return FeatureComparison(channels, means, m2s, [100, 100], weights, names=["l0", "l1"]), sizes


@pytest.mark.parametrize("spatial", [(8, 8, 8), (12, 10)])
def test_fast_terms_equal_literal_formula(spatial):
    comp, sizes = _comparison(spatial, negative=True)
    g = torch.Generator().manual_seed(1)
    fa = [torch.rand(2, c, *s, generator=g) for c, s in zip(comp.channels, sizes)]
    fb = [torch.rand(2, c, *s, generator=g) for c, s in zip(comp.channels, sizes)]
    fast, ref = comp.terms(fa, fb), comp.terms_reference(fa, fb)
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=0)
    assert fast.shape == (2, 2) and torch.all(fast >= 0)
    emb_a, emb_b = comp.embed(fa), comp.embed(fb)
    torch.testing.assert_close(comp.compare_embeddings(emb_a, emb_b), ref, rtol=1e-5, atol=0)
    # all pairs at once from Gram products: square (a set with itself) and rectangular (rows x cols)
    both = [torch.cat([ea, eb]) for ea, eb in zip(emb_a, emb_b)]
    square = comp.pairwise_terms(both, chunk=7)
    rect = comp.pairwise_terms(emb_a, emb_b, chunk=7)
    for i in range(2):
        torch.testing.assert_close(square[i, 2 + i].float(), ref[i], rtol=1e-5, atol=1e-9)
        torch.testing.assert_close(rect[i, i].float(), ref[i], rtol=1e-5, atol=1e-9)
    assert torch.all(square.diagonal(dim1=0, dim2=1) == 0)


@pytest.mark.parametrize("spatial", [(8, 8, 8), (12, 10)])
@pytest.mark.parametrize("rows", [1, 3])
def test_layer_terms_in_slabs_equal_the_literal_formula(spatial, rows, monkeypatch):
    """A large layer's difference is formed a few rows at a time (bounded memory): same terms."""
    import core.metrics.siamese as siamese

    comp, sizes = _comparison(spatial)
    g = torch.Generator().manual_seed(2)
    fa = [torch.rand(2, c, *s, generator=g) for c, s in zip(comp.channels, sizes)]
    fb = [torch.rand(2, c, *s, generator=g) for c, s in zip(comp.channels, sizes)]
    ref = comp.terms_reference(fa, fb)
    plane = int(np.prod(spatial[1:]))
    monkeypatch.setattr(siamese, "LAYER_CHUNK_BYTES", 2 * 9 * plane * 4 * rows)  # `rows` rows of the widest layer
    cl = [f.contiguous(memory_format=torch.channels_last_3d) if f.dim() == 5 else f for f in fa]
    clb = [f.contiguous(memory_format=torch.channels_last_3d) if f.dim() == 5 else f for f in fb]
    for a, b in ((fa, fb), (cl, clb)):
        torch.testing.assert_close(comp.terms(a, b), ref, rtol=1e-5, atol=0)


def test_negative_weights_are_clamped():
    comp, sizes = _comparison((6, 6, 6), negative=True)
    assert torch.any(comp.weights[0] < 0)
    assert torch.all(comp.clamped_weights(0) >= 0)
    # a layer whose only positive weight is removed contributes exactly nothing
    with torch.no_grad():
        comp.weights[1].fill_(-1.0)
    fa = [torch.rand(1, c, *s) for c, s in zip(comp.channels, sizes)]
    fb = [torch.rand(1, c, *s) for c, s in zip(comp.channels, sizes)]
    assert float(comp.terms(fa, fb).detach()[0, 1]) == 0.0


def test_stats_resized_with_align_corners_m2_before_sqrt():
    comp, sizes = _comparison((8, 8, 8))
    feat = torch.rand(1, 4, 16, 16, 16)
    got = comp.normalize(0, feat)
    mean = F.interpolate(comp.mean_map(0)[None, None], size=(16, 16, 16), mode="trilinear", align_corners=True)
    m2 = F.interpolate(comp.m2_map(0)[None, None], size=(16, 16, 16), mode="trilinear", align_corners=True)
    std = torch.sqrt(m2 / 99)
    expected = (feat - mean) / (std + 1e-10) / (math.sqrt(4) - 1)
    torch.testing.assert_close(got, expected)


def test_feature_maps_reproduce_terms():
    comp, sizes = _comparison((8, 8, 8))
    fa = [torch.rand(1, c, *s) for c, s in zip(comp.channels, sizes)]
    fb = [torch.rand(1, c, *s) for c, s in zip(comp.channels, sizes)]
    maps = comp.feature_maps(fa, fb)
    terms = comp.terms(fa, fb).detach()[0]
    for i, name in enumerate(["l0", "l1"]):
        sf = maps[name]
        assert isinstance(sf.a, np.ndarray) and sf.a.shape == (comp.channels[i], *sizes[i])
        assert sf.diff.sum(axis=0).mean() == pytest.approx(float(terms[i]), rel=1e-5)
    assert float(distance_from_terms(terms[None])[0]) == pytest.approx(math.sqrt(float(terms.sum())))


def test_single_channel_layer_is_rejected():
    with pytest.raises(ValueError):
        FeatureComparison([1], [torch.zeros(2, 2)], [torch.ones(2, 2)], [3])


def test_calibration_accumulates_channel_averaged_statistics():
    comp, sizes = _comparison((6, 6, 6))
    comp.reset_statistics()
    g = torch.Generator().manual_seed(5)
    batches = [[torch.randn(3, c, *s, generator=g) * 2 + 1 for c, s in zip(comp.channels, sizes)] for _ in range(4)]
    for b in batches:
        comp.accumulate(b)
    for layer in range(2):
        everything = torch.cat([b[layer] for b in batches])  # [12, C, *S]
        # the batched Welford update gives exactly the channel-averaged sample mean
        torch.testing.assert_close(comp.mean_map(layer), everything.mean(dim=(0, 1)), rtol=1e-5, atol=1e-5)
        assert comp.counts[layer] == 12
        std = torch.sqrt(comp.m2_map(layer) / (comp.counts[layer] - 1))
        assert float(std.mean()) == pytest.approx(2.0, rel=0.1)  # the data's standard deviation
    with pytest.raises(ValueError):
        comp.accumulate([torch.zeros(1, 4, 5, 5, 5), torch.zeros(1, 9, 3, 3, 3)])


def test_gram_matrix_keeps_precision_for_nearly_equal_members_of_a_varied_set():
    # two embeddings 1e-4 apart inside a set whose members are ~1 apart: the Gram shortcut alone
    # would lose most digits of that small distance; those entries are recomputed directly
    comp, sizes = _comparison((16, 16, 16), channels=(4, 9))
    g = torch.Generator().manual_seed(3)
    emb = [torch.randn(6, c, *s, generator=g) * 10 + 5 for c, s in zip(comp.channels, sizes)]
    for e in emb:
        e[1] = e[0] + 1e-4 * torch.randn(e[0].shape, generator=g)
    square = comp.pairwise_terms(emb)
    direct = torch.stack([comp.compare_embeddings([e[i : i + 1] for e in emb], emb) for i in range(6)]).double()
    assert torch.all(square >= 0)
    torch.testing.assert_close(square[0, 1], direct[0, 1], rtol=1e-4, atol=0)
    torch.testing.assert_close(square, direct, rtol=1e-4, atol=1e-12)


def test_flattened_statistics_keep_each_layers_mean_std_and_weigh_every_position_alike():
    comp, sizes = _comparison((8, 8, 8))
    stds = [float(comp._stats(layer, s, torch.device("cpu"))[1].double().mean()) for layer, s in enumerate(sizes)]
    g = torch.Generator().manual_seed(7)
    fa = [torch.rand(1, c, *s, generator=g) for c, s in zip(comp.channels, sizes)]
    # the same change at two places: different terms with spatial maps, equal ones once flattened
    fb1 = [f.clone() for f in fa]
    fb2 = [f.clone() for f in fa]
    for f1, f2 in zip(fb1, fb2):
        f1[..., 1, 1, 1] += 1.0
        f2[..., -2, -2, -2] += 1.0
    before = comp.terms(fa, fb1), comp.terms(fa, fb2)
    assert not torch.allclose(*before, rtol=1e-3)
    comp.flatten_statistics()
    for layer, s in enumerate(sizes):
        std = comp._stats(layer, s, torch.device("cpu"))[1]
        assert float(std.max() - std.min()) < 1e-6 * float(std.max())
        assert float(std.double().mean()) == pytest.approx(stds[layer], rel=1e-5)
    torch.testing.assert_close(comp.terms(fa, fb1), comp.terms(fa, fb2), rtol=1e-5, atol=0)
