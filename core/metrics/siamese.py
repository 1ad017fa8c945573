"""Learned comparison of Siamese feature maps (VolSiM, LSiM): normalise, weight, reduce — 2D or 3D.

For every compared layer ``l`` with ``C_l`` channels and features ``F`` of one input:

    F_hat = (F - mu_l) / (sigma_l + eps) / (sqrt(C_l) - 1)

with ``mu_l``/``sigma_l`` spatial maps shared by all channels, stored at the training feature size
(Welford accumulators ``mean``, ``M2`` and ``count``) and resized with linear interpolation and
``align_corners=True`` when the feature map has another size (``M2`` is resized first, then
``sigma = sqrt(M2 / (count - 1))``, as the official code does). Then

    t_l = mean_spatial( sum_c w_{l,c} * (F_hat_a - F_hat_b)_c^2 ),   d = sqrt( sum_l t_l )

with the per-channel weights clamped to ``>= 0`` on every use. ``mu_l`` cancels in the
difference, so the fast path (:meth:`FeatureComparison.terms`) only scales the raw feature
difference by ``1 / ((sigma_l + eps)(sqrt(C_l) - 1))``; :meth:`FeatureComparison.terms_reference`
is the literal formula (tests check both agree). ``embed`` stores that scaled (mean-free)
embedding per input so a distance matrix compares cached embeddings without another forward pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.metrics.base import ScaleFeatures

_LINEAR = {1: "linear", 2: "bilinear", 3: "trilinear"}
LAYER_CHUNK_BYTES = 4 << 20  # feature difference per partial sum in layer_term (no autograd): bounded memory, and
# float32 sums over at most 1M values, added in float64 (one float32 sum over a 256³ layer is off by ~1e-4)


def distance_from_terms(terms: torch.Tensor) -> torch.Tensor:
    """``sqrt(sum_l t_l)`` over the last axis (terms ``[N, L]`` -> ``[N]``)."""
    return torch.sqrt(terms.sum(dim=-1))


class FeatureComparison(nn.Module):
    """Per-layer feature normalisation maps and non-negative channel weights of a Siamese metric."""

    def __init__(
        self,
        channels: Sequence[int],
        mean_maps: Sequence[torch.Tensor | np.ndarray],
        m2_maps: Sequence[torch.Tensor | np.ndarray],
        counts: Sequence[int | float],
        weights: Sequence[torch.Tensor | np.ndarray] | None = None,
        names: Sequence[str] | None = None,
        eps: float = 1e-10,
        init_weight: float = 0.05,
    ):
        super().__init__()
        n = len(channels)
        if not (len(mean_maps) == len(m2_maps) == len(counts) == n):
            raise ValueError(f"need {n} mean/M2 maps and counts, got {len(mean_maps)}/{len(m2_maps)}/{len(counts)}")
        for c in channels:
            if int(c) < 2:
                raise ValueError("layers need at least 2 channels (the normalisation divides by sqrt(C) - 1)")
        self.channels = [int(c) for c in channels]
        self.names = list(names) if names is not None else [f"layer{i}" for i in range(n)]
        self.eps = float(eps)
        self.counts = [float(c) for c in counts]
        self.spatial_dims = torch.as_tensor(mean_maps[0]).ndim
        for i, (m, m2) in enumerate(zip(mean_maps, m2_maps, strict=True)):
            self.register_buffer(f"mean{i}", torch.as_tensor(m, dtype=torch.float32).clone())
            self.register_buffer(f"m2_{i}", torch.as_tensor(m2, dtype=torch.float32).clone())
        if weights is None:
            weights = [torch.full((c,), init_weight) for c in self.channels]
        self.weights = nn.ParameterList(
            [nn.Parameter(torch.as_tensor(w, dtype=torch.float32).reshape(-1).clone()) for w in weights]
        )
        for i, (w, c) in enumerate(zip(self.weights, self.channels, strict=True)):
            if w.numel() != c:
                raise ValueError(f"layer {i}: {w.numel()} weights for {c} channels")
        self._cache: dict[tuple, Any] = {}

    def __len__(self) -> int:
        return len(self.channels)

    def mean_map(self, layer: int) -> torch.Tensor:
        return getattr(self, f"mean{layer}")

    def m2_map(self, layer: int) -> torch.Tensor:
        return getattr(self, f"m2_{layer}")

    def clamped_weights(self, layer: int) -> torch.Tensor:
        """The layer's channel weights, clamped to be non-negative (as in every official forward)."""
        return self.weights[layer].clamp(min=0)

    def _stats(self, layer: int, size: tuple[int, ...], device: torch.device) -> tuple[torch.Tensor, ...]:
        """(mean, std, inverse scale) maps ``[*size]`` for a feature map of spatial ``size``."""
        key = (layer, size, str(device))
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        mean, m2 = self.mean_map(layer), self.m2_map(layer)
        if tuple(mean.shape) != size:
            mode = _LINEAR[len(size)]
            mean = F.interpolate(mean[None, None], size=size, mode=mode, align_corners=True)[0, 0]
            m2 = F.interpolate(m2[None, None], size=size, mode=mode, align_corners=True)[0, 0]
        std = torch.sqrt(m2 / (self.counts[layer] - 1))
        inv = 1.0 / ((std + self.eps) * (math.sqrt(self.channels[layer]) - 1))
        out = (mean.to(device), std.to(device), inv.to(device))
        self._cache[key] = out
        return out

    def reset_statistics(self) -> None:
        """Zero the normalisation accumulators (before a calibration pass with :meth:`accumulate`)."""
        for i in range(len(self)):
            self.mean_map(i).zero_()
            self.m2_map(i).zero_()
        self.counts = [0.0] * len(self)
        self.clear_cache()

    @torch.no_grad()
    def accumulate(self, feats: Sequence[torch.Tensor]) -> None:
        """Welford update of the per-layer spatial mean/M2 maps with a batch of features (channel-averaged).

        The training-time calibration of the original method: ``count += N``;
        ``mean += sum_n mean_c((F - mean) / count)``; ``M2 += sum_n mean_c((F - mean_old)(F - mean_new))``.
        Feature maps must have the stored maps' spatial size.
        """
        for i, f in enumerate(feats):
            mean, m2 = self.mean_map(i), self.m2_map(i)
            if tuple(f.shape[2:]) != tuple(mean.shape):
                raise ValueError(f"layer {i}: features {tuple(f.shape[2:])} do not match the maps {tuple(mean.shape)}")
            f = f.detach().to(mean.device, torch.float32)
            self.counts[i] += f.shape[0]
            delta = f - mean
            mean += (delta / self.counts[i]).mean(dim=1).sum(dim=0)
            m2 += (delta * (f - mean)).mean(dim=1).sum(dim=0)
        self.clear_cache()

    @torch.no_grad()
    def flatten_statistics(self) -> None:
        """Make every layer's normalisation spatially uniform: one scale per layer, the map's mean std.

        Every position of a volume then counts alike (the comparison is translation invariant up to
        padding) instead of following where the calibration data happened to vary. The mean of
        the stds (not of the gains 1/std^2) keeps a few near-dead, floored locations from setting
        a layer's scale. The mean map becomes its spatial average (it cancels in the difference of
        two volumes' features anyway).
        """
        for i in range(len(self)):
            mean, m2 = self.mean_map(i), self.m2_map(i)
            n = self.counts[i] - 1
            if n <= 0:
                raise ValueError(f"layer {i}: no statistics to flatten (count {self.counts[i]:g})")
            std = float(torch.sqrt(m2.double() / n).mean())
            m2.fill_(std**2 * n)
            mean.fill_(float(mean.double().mean()))
        self.clear_cache()

    def clear_cache(self) -> None:
        """Forget resized normalisation maps (call after changing the stored statistics)."""
        self._cache.clear()

    def normalize(self, layer: int, feat: torch.Tensor) -> torch.Tensor:
        """The literal normalisation ``(F - mu) / (sigma + eps) / (sqrt(C) - 1)`` of ``[N, C, *S]``."""
        mean, std, _ = self._stats(layer, tuple(feat.shape[2:]), feat.device)
        return (feat - mean) / (std + self.eps) / (math.sqrt(feat.shape[1]) - 1)

    def scaled(self, layer: int, feat: torch.Tensor) -> torch.Tensor:
        """``F / ((sigma + eps)(sqrt(C) - 1))``: the normalised features up to the mean, which cancels."""
        _, _, inv = self._stats(layer, tuple(feat.shape[2:]), feat.device)
        return feat * inv

    def _term(self, layer: int, diff_scaled: torch.Tensor) -> torch.Tensor:
        spatial = tuple(range(2, diff_scaled.ndim))
        per_channel = (diff_scaled * diff_scaled).mean(dim=spatial)  # [N, C]
        return per_channel @ self.clamped_weights(layer).to(per_channel.dtype)

    def layer_term(self, layer: int, fa: torch.Tensor, fb: torch.Tensor) -> torch.Tensor:
        """The term ``[N]`` of one layer (fast path: scaled raw difference; the mean cancels)."""
        if fa.requires_grad or fb.requires_grad:
            _, _, inv = self._stats(layer, tuple(fa.shape[2:]), fa.device)
            return self._term(layer, (fa - fb) * inv)
        # no autograd: square in place, then one weighted reduction sum_s diff^2 inv^2 (a batched
        # matrix-vector product) instead of scaling, squaring and averaging in separate passes; a
        # large layer goes in slabs along its first spatial axis, so the difference never needs
        # more than LAYER_CHUNK_BYTES at a time
        n, c = fa.shape[:2]
        inv2 = self._inv_squared(layer, tuple(fa.shape[2:]), fa.device)
        plane = inv2.numel() // fa.shape[2]
        rows = max(1, LAYER_CHUNK_BYTES // max(1, n * c * plane * fa.element_size()))
        per_channel = None
        for r0 in range(0, fa.shape[2], rows):
            r1 = min(fa.shape[2], r0 + rows)
            sq = fa[:, :, r0:r1] - fb[:, :, r0:r1]
            sq.mul_(sq)
            w = inv2[r0 * plane:r1 * plane]
            if sq.dim() == 5 and sq.is_contiguous(memory_format=torch.channels_last_3d):
                part = w @ sq.permute(0, 2, 3, 4, 1).reshape(n, -1, c)  # [N, C]
            else:
                part = sq.reshape(n, c, -1) @ w
            part = part.double()  # partial sums of at most LAYER_CHUNK_BYTES, added in float64
            per_channel = part if per_channel is None else per_channel + part
        per_channel = per_channel / inv2.numel()
        return (per_channel @ self.clamped_weights(layer).to(per_channel.dtype)).to(fa.dtype)

    def _inv_squared(self, layer: int, size: tuple[int, ...], device: torch.device) -> torch.Tensor:
        """The squared inverse scale map, flattened (cached with the other resized maps)."""
        key = ("inv2", layer, size, str(device))
        hit = self._cache.get(key)
        if hit is None:
            inv = self._stats(layer, size, device)[2]
            hit = (inv * inv).reshape(-1).contiguous()
            self._cache[key] = hit
        return hit

    def terms(self, feats_a: Sequence[torch.Tensor], feats_b: Sequence[torch.Tensor]) -> torch.Tensor:
        """Per-layer terms ``[N, L]`` (fast path, see :meth:`layer_term`)."""
        return torch.stack([self.layer_term(i, fa, fb) for i, (fa, fb) in enumerate(zip(feats_a, feats_b,
                                                                                           strict=True))], dim=-1)

    def terms_reference(self, feats_a: Sequence[torch.Tensor], feats_b: Sequence[torch.Tensor]) -> torch.Tensor:
        """Per-layer terms ``[N, L]`` by the literal formula (normalise both, square, weight, mean)."""
        out = []
        for i, (fa, fb) in enumerate(zip(feats_a, feats_b, strict=True)):
            diff = (self.normalize(i, fb) - self.normalize(i, fa)) ** 2
            w = self.clamped_weights(i).reshape(1, -1, *([1] * (diff.ndim - 2)))
            weighted = (diff * w).sum(dim=1)
            out.append(weighted.mean(dim=tuple(range(1, weighted.ndim))))
        return torch.stack(out, dim=-1)

    def embed(self, feats: Sequence[torch.Tensor], dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
        """Scaled features of each layer (``[N, C, *S]``), to compare later with :meth:`compare_embeddings`."""
        return [self.scaled(i, f).to(dtype) for i, f in enumerate(feats)]

    def compare_embeddings(self, emb_a: Sequence[torch.Tensor], emb_b: Sequence[torch.Tensor]) -> torch.Tensor:
        """Per-layer terms ``[N, L]`` from two embeddings (broadcast over the leading axis)."""
        out = []
        for i, (ea, eb) in enumerate(zip(emb_a, emb_b, strict=True)):
            out.append(self._term(i, ea.float() - eb.float()))
        return torch.stack(out, dim=-1)

    gram_tolerance = 1e-2  # entries below this fraction of their norms are recomputed directly

    def pairwise_terms(self, rows: Sequence[torch.Tensor], cols: Sequence[torch.Tensor] | None = None,
                       chunk: int = 0, cancelled: Callable[[], bool] | None = None) -> torch.Tensor:
        """Terms ``[R, K, L]`` (float64) between every row and column embedding, without pair differences.

        ``t_ij = |r_i - k_j|^2_w = |r_i|^2_w + |k_j|^2_w - 2 r_i . k_j`` with the channel weights
        ``w_c / S`` folded in as ``sqrt(w_c / S)`` per channel, so each layer is one Gram product
        (a float32 matrix multiply over chunks of ``chunk`` voxels, default about 2^18 values per
        row, summed across chunks in float64). The cancellation that makes this trick lose
        precision is removed first: within each chunk, the rows' mean embedding is subtracted
        from rows and columns alike (it cancels in every difference), so the products are of the
        order of the distances themselves and float32 keeps ~1e-6 relative (tests compare with the
        direct difference). Entries still much smaller than their norms (two nearly equal volumes
        in a varied set) are recomputed from the differences. ``cols=None`` compares the rows
        with themselves (exact zero diagonal).
        """
        out = []
        for i, r in enumerate(rows):
            k = r if cols is None else cols[i]
            n_r, n_k, c = r.shape[0], k.shape[0], r.shape[1]
            fr, fk = r.reshape(n_r, c, -1), k.reshape(n_k, c, -1)
            spatial = fr.shape[-1]
            root_w = (self.clamped_weights(i).detach().float().to(r.device) / spatial).sqrt()[None, :, None]
            step = chunk or max(1, (1 << 18) // c)
            cross = torch.zeros(n_r, n_k, dtype=torch.float64, device=r.device)
            sq_r = torch.zeros(n_r, dtype=torch.float64, device=r.device)
            sq_k = torch.zeros(n_k, dtype=torch.float64, device=r.device)
            for start in range(0, spatial, step):
                if cancelled is not None and cancelled():
                    from core.metrics.matrix import Cancelled

                    raise Cancelled("distance computation cancelled")
                part_r = fr[:, :, start : start + step].float()
                centre = part_r.mean(dim=0, keepdim=True)
                br = ((part_r - centre) * root_w).reshape(n_r, -1)
                if cols is None:
                    cross += (br @ br.T).double()
                else:
                    bk = ((fk[:, :, start : start + step].float() - centre) * root_w).reshape(n_k, -1)
                    cross += (br @ bk.T).double()
                    sq_r += (br * br).sum(dim=1).double()
                    sq_k += (bk * bk).sum(dim=1).double()
            if cols is None:
                sq_r = sq_k = cross.diagonal().clone()
            terms = (sq_r[:, None] + sq_k[None, :] - 2 * cross).clamp(min=0)
            # Where a distance is tiny next to the (centred) norms, the subtraction above has lost
            # digits: recompute those entries from the differences themselves.
            close = terms < self.gram_tolerance * (sq_r[:, None] + sq_k[None, :])
            if cols is None:
                close.fill_diagonal_(False)
            for a in torch.nonzero(close.any(dim=1)).flatten().tolist():
                js = torch.nonzero(close[a]).flatten()
                block = max(1, (1 << 22) // (c * spatial))  # bounded scratch: ~16 MB of differences
                for b0 in range(0, js.numel(), block):
                    jb = js[b0 : b0 + block]
                    diff = (fk[jb].float() - fr[a : a + 1].float()) * root_w
                    terms[a, jb] = (diff * diff).sum(dim=(1, 2)).double()
            out.append(terms)
        return torch.stack(out, dim=-1)

    def feature_maps(
        self, feats_a: Sequence[torch.Tensor], feats_b: Sequence[torch.Tensor], index: int = 0
    ) -> dict[str, ScaleFeatures]:
        """Normalised features of both inputs and the weighted squared difference, per layer, as numpy."""
        out: dict[str, ScaleFeatures] = {}
        for i, (fa, fb) in enumerate(zip(feats_a, feats_b, strict=True)):
            na = self.normalize(i, fa[index : index + 1])[0]
            nb = self.normalize(i, fb[index : index + 1])[0]
            w = self.clamped_weights(i)
            diff = w.reshape(-1, *([1] * (na.ndim - 1))) * (na - nb) ** 2
            out[self.names[i]] = ScaleFeatures(
                a=na.detach().cpu().numpy(),
                b=nb.detach().cpu().numpy(),
                diff=diff.detach().cpu().numpy(),
                weights=w.detach().cpu().numpy(),
            )
        return out
