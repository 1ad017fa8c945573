"""CPU fast paths: the decoder's bfloat16 backward (float32 forward unchanged) and the inference fold cache."""

import torch

from models.mlp import MLPDecoder


def _grads(decoder: MLPDecoder, features: torch.Tensor, bf16: bool):
    decoder.bf16_backward = bf16
    decoder.zero_grad(set_to_none=True)
    x = features.clone().requires_grad_()
    out = decoder.forward_planar(x)
    (out.square().sum() + out.sum()).backward()
    return out.detach(), x.grad, [w.grad.clone() for w in decoder.weights]


def test_bf16_backward_matches_float32_gradients():
    gen = torch.Generator().manual_seed(3)
    decoder = MLPDecoder(12, 32, 2, 2, generator=gen)
    features = torch.randn(12, 3000, generator=gen)
    ref_out, ref_x, ref_w = _grads(decoder, features, bf16=False)
    out, gx, gw = _grads(decoder, features, bf16=True)
    assert torch.equal(out, ref_out)  # the forward pass stays float32
    assert gx.shape == features.shape and gx.dtype == torch.float32 and gx.is_contiguous()
    assert (gx - ref_x).norm() / ref_x.norm() < 2e-2
    for a, b in zip(gw, ref_w):
        assert a.dtype == torch.float32
        assert (a - b).norm() / b.norm() < 2e-2


def test_bf16_backward_without_feature_gradient_and_inference_path():
    gen = torch.Generator().manual_seed(4)
    decoder = MLPDecoder(8, 16, 1, 1, generator=gen)
    decoder.bf16_backward = True
    features = torch.randn(8, 500, generator=gen)
    decoder.forward_planar(features).sum().backward()  # features need no gradient
    assert all(w.grad is not None and torch.isfinite(w.grad).all() for w in decoder.weights)
    with torch.no_grad():
        fast = decoder.forward_planar(features)
    decoder.bf16_backward = False
    with torch.no_grad():
        assert torch.equal(fast, decoder.forward_planar(features))


def test_inference_fold_cache_follows_grid_changes():
    # query reuses the folded grids between chunks without autograd; an in-place change must refold
    from models.apmgsrn import APMGSRN
    from models.trilinear import sample_grids_reference

    field = APMGSRN({"n_grids": 2, "n_features": 1, "grid_shape": [4, 5, 6], "width": 8}, channels=1,
                    value_range=(0.0, 1.0), source_shape=(4, 5, 6), name="t").eval()
    pts = torch.rand(300, 3, generator=torch.Generator().manual_seed(5)) * 2 - 1
    with torch.no_grad():
        first = field.features(pts)
        field.feature_grids.add_(torch.randn(field.feature_grids.shape, generator=torch.Generator().manual_seed(6)))
        second = field.features(pts)
        local = field.local_coordinates(pts)
        expected = sample_grids_reference(field.feature_grids, local).reshape(2, -1)
    assert not torch.allclose(first, second)
    assert torch.allclose(second, expected, atol=1e-4)


def test_chunked_inference_equals_one_pass(monkeypatch):
    import models.field
    from models.apmgsrn import APMGSRN

    field = APMGSRN({"n_grids": 3, "n_features": 2, "grid_shape": [5, 6, 7], "width": 16}, channels=1,
                    value_range=(-2.0, 3.0), source_shape=(5, 6, 7), name="t").eval()
    with torch.no_grad():
        field.feature_grids.normal_(generator=torch.Generator().manual_seed(7))
    pts = torch.rand(1000, 3, generator=torch.Generator().manual_seed(8)) * 2 - 1
    whole = field.query(pts).detach()  # autograd on: one pass, no chunks, no fold cache
    monkeypatch.setattr(models.field, "QUERY_CHUNK", 128)
    with torch.no_grad():
        chunked = field.query(pts)
    assert torch.allclose(chunked, whole, atol=1e-5)


def test_reduced_precision_decoder_with_and_without_the_fused_op(monkeypatch):
    import models.mlp
    from models.mlp import MLPDecoder, native_bf16_cpu

    decoder = MLPDecoder(32, 64, 2, 1, torch.Generator().manual_seed(3))
    feats = torch.randn(32, 5000, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        exact = decoder.forward_planar(feats)
        fused = decoder.forward_planar_reduced(feats)
        monkeypatch.setattr(models.mlp, "_linear_relu", lambda: None)
        decoder._bf16_cache = None
        plain = decoder.forward_planar_reduced(feats)
    span = float(exact.max() - exact.min())
    for out in (fused, plain):
        assert out.dtype == torch.float32 and out.shape == exact.shape
        assert float((out - exact).abs().max()) < (2e-2 * span if native_bf16_cpu() else 1e-5)
