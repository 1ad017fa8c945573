"""The bias-free ReLU MLP decoder shared by every field (PyTorch path).

Layers: ``in -> width`` + ReLU, ``n_hidden - 1`` times ``width -> width`` + ReLU, then ``width -> out``
(no output activation), no biases, Xavier-normal weights, as in APMGSRN's decoder. The encoders hand
over planar features ``[features, N]``; the layers multiply them as the transposed view
``[N, features] @ W.T`` with ``W.T`` made contiguous (a 64x64 copy): with MKL on this CPU that
layout runs the forward and backward matmuls about 20-25 % faster than ``W @ [features, N]`` or a
transposed-weight view (measured: 84 vs 104 ms CPU for a 2x64 MLP step on 100k points).

On CPUs with native bfloat16 dot products (AVX512-BF16 or AMX) the *backward* pass of training runs
its wide matmuls in bfloat16 with float32 accumulation (oneDNN), about 3x faster than float32 there
(measured 3.2 vs 8.3 ms for the 64x64 weight gradient of 32k points). The forward pass, and so every
prediction and the loss, stays float32; only the gradients carry bfloat16 rounding (relative 2^-9 per
element, unbiased round-to-nearest), which Adam's normalisation absorbs - the same trade mixed
precision training makes on GPUs. ``MLPDecoder.bf16_backward`` switches it off. The one reduced-
precision forward, :meth:`MLPDecoder.forward_planar_reduced`, is for rendering only.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.autograd.function import FunctionCtx


def native_bf16_cpu() -> bool:
    """Whether this CPU multiplies bfloat16 natively (else bfloat16 matmuls are emulated and slow)."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):
        return False


def _linear_relu():
    """oneDNN's fused linear + pointwise op (``torch.ops.mkldnn._linear_pointwise``), or None."""
    if not torch.backends.mkldnn.is_available():
        return None
    try:
        return torch.ops.mkldnn._linear_pointwise
    except (AttributeError, RuntimeError):
        return None


class _BF16BackwardMLP(torch.autograd.Function):
    """float32 forward of the bias-free ReLU MLP; backward matmuls of width >= 2 in bfloat16."""

    @staticmethod
    def forward(ctx: FunctionCtx, features_t: torch.Tensor, *weights: torch.Tensor) -> torch.Tensor:
        h = features_t.t()
        inputs = [h]
        last = len(weights) - 1
        for i, w in enumerate(weights):
            h = h @ w.t().contiguous()
            if i < last:
                h = torch.relu_(h)
                inputs.append(h)
        ctx.save_for_backward(*inputs, *weights)
        ctx.n_layers = len(weights)
        return h

    @staticmethod
    def backward(ctx: FunctionCtx, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        saved = ctx.saved_tensors
        n = ctx.n_layers
        inputs, weights = saved[:n], saved[n:]
        grads_w: list[torch.Tensor | None] = [None] * n
        bf16 = torch.bfloat16
        g = grad_out.contiguous().to(bf16)
        a = inputs[-1].to(bf16)  # each activation is converted once: weight gradient and ReLU mask
        for i in range(n - 1, -1, -1):
            grads_w[i] = (g.t() @ a).float()
            if i == 0:
                if not ctx.needs_input_grad[0]:
                    break
                # planar [in, N] directly (the encoders' layout), one contiguous result
                return ((weights[0].t().to(bf16) @ g.t()).float(), *grads_w)
            g = g @ weights[i].to(bf16)
            # ReLU backward: the input of layer i is the ReLU output of layer i - 1
            g = torch.ops.aten.threshold_backward(g, a, 0.0)
            a = inputs[i - 1].to(bf16)  # layer 0: the transposed view of the planar features
        return (None, *grads_w)


class MLPDecoder(nn.Module):
    """Bias-free ReLU MLP; weights ``weight_i`` are ``[out, in]`` like ``nn.Linear``."""

    def __init__(self, n_input: int, width: int, n_hidden: int, n_output: int,
                 generator: torch.Generator | None = None):
        super().__init__()
        sizes = [n_input] + [width] * n_hidden + [n_output]
        self.sizes = sizes
        self.weights = nn.ParameterList()
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            std = (2.0 / (fan_in + fan_out)) ** 0.5  # Xavier normal, gain 1
            w = torch.randn(fan_out, fan_in, generator=generator) * std
            self.weights.append(nn.Parameter(w))
        self.bf16_backward = native_bf16_cpu()
        self._bf16_cache: tuple[tuple, list[torch.Tensor]] | None = None  # see forward_planar_reduced

    def forward_planar(self, features_t: torch.Tensor) -> torch.Tensor:
        """``[n_input, N]`` -> ``[N, n_output]``."""
        weights = list(self.weights)
        if (self.bf16_backward and features_t.device.type == "cpu" and features_t.dtype == torch.float32
                and torch.is_grad_enabled() and (features_t.requires_grad or any(w.requires_grad for w in weights))):
            return _BF16BackwardMLP.apply(features_t, *weights)
        h = features_t.t()
        last = len(weights) - 1
        for i, w in enumerate(weights):
            h = h @ w.t().contiguous()
            if i < last:
                h = torch.relu_(h)  # in place is safe: the matmul backward does not need its output
        return h

    def forward_planar_reduced(self, features_t: torch.Tensor) -> torch.Tensor:
        """Inference in reduced precision, float32 result: ``[n_input, N]`` -> ``[N, n_output]``.

        bfloat16 matmuls (float32 accumulation) on CPUs that multiply bfloat16 natively, about 1.7x
        faster than float32 for a 2x64 decoder; float16 autocast on CUDA (what APMGSRN's renderer
        does); float32 otherwise. Relative error about 5e-3 of the output range: for rendering,
        not for measuring the field (PSNR and bakes use :meth:`forward_planar`).
        """
        if features_t.device.type == "cuda":
            with torch.autocast("cuda", dtype=torch.float16):
                return self.forward_planar(features_t).float()
        if features_t.device.type != "cpu" or not native_bf16_cpu() or torch.is_grad_enabled():
            return self.forward_planar(features_t)
        key = tuple((w.data_ptr(), w._version) for w in self.weights)
        cached = self._bf16_cache
        fused = _linear_relu()
        if cached is None or cached[0] != key:
            weights = [w.detach().contiguous().to(torch.bfloat16) for w in self.weights]
            if fused is not None:
                try:  # oneDNN's own layout: no reorder of the weights at every call (about 8 %)
                    weights = [w.to_mkldnn() for w in weights]
                except RuntimeError:
                    pass
            cached = (key, weights)
            self._bf16_cache = cached
        h = features_t.t().to(torch.bfloat16)
        weights = cached[1]
        last = len(weights) - 1
        for i, w in enumerate(weights):
            if fused is not None:  # oneDNN linear with the ReLU applied in its epilogue
                h = fused(h, w, None, "relu" if i < last else "none", [], "")
            else:
                h = h @ w.t()
                if i < last:
                    h = torch.relu_(h)
        return h.float()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``[N, n_input]`` -> ``[N, n_output]``."""
        return self.forward_planar(features.t())

    def layers(self) -> list[torch.Tensor]:
        """Weight matrices ``[out, in]`` in order."""
        return [w for w in self.weights]
