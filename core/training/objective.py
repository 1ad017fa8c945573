"""What training optimises: pairwise VolSiM distances with autograd, feature calibration, the loss.

The network and its comparison live in :mod:`core.metrics.volsim_net` / :mod:`core.metrics.siamese`;
this module adds the training-only pieces on top of them without changing them:
- :func:`calibrate`: the feature-normalisation pass (Welford mean/M2 maps of the channel-averaged
  features of every layer, one sample per volume; or pooled to one scale per layer), run once
  before training, then frozen;
- :func:`sequence_distances`: distances of all requested frame pairs of one sequence from a single
  forward pass over its frames (features are computed once per frame, not once per pair), with
  optional dropout on the per-channel terms (VolSiM trains its weighting layers with dropout);
- :func:`volsim_loss`: ``mse_factor * mean((d - gt)^2) + corr_factor * 0.5 * (1 - pearson(d, gt))``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F

from core.metrics.volsim_net import MultiScaleEncoder, VolSiMWeights


def all_pairs(frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Index vectors (i, j) of every pair i < j of ``frames`` frames (55 for 11)."""
    i, j = torch.triu_indices(frames, frames, offset=1)
    return i, j


class WelfordMaps:
    """Running mean and M2 of spatial maps (one map per sample), per layer."""

    def __init__(self) -> None:
        self.count = 0
        self.mean: list[torch.Tensor] = []
        self.m2: list[torch.Tensor] = []

    def update(self, maps: list[torch.Tensor]) -> None:
        """Add one sample: a list of per-layer spatial maps."""
        self.count += 1
        if not self.mean:
            self.mean = [m.double().clone() for m in maps]
            self.m2 = [torch.zeros_like(m, dtype=torch.float64) for m in maps]
            return
        for k, m in enumerate(maps):
            m = m.double()
            delta = m - self.mean[k]
            self.mean[k] += delta / self.count
            self.m2[k] += delta * (m - self.mean[k])


NORMALISATIONS = ("flattened", "spatial", "global")


@torch.no_grad()
def calibrate(weights: VolSiMWeights, volumes: Iterable[torch.Tensor], device: torch.device,
              progress: Callable[[int], None] | None = None, normalisation: str = "spatial") -> int:
    """Accumulate and install the normalisation maps from ``volumes`` (batches [N, 3, D, H, W]); returns the count.

    Every volume is one sample; its layer-l sample is the feature map averaged over channels.
    ``normalisation="spatial"`` (and ``"flattened"``, which flattens only the finished metric, see
    :meth:`core.metrics.siamese.FeatureComparison.flatten_statistics`) keeps a mean and std per
    location (VolSiM's maps); ``"global"`` pools every location of a layer into one mean and std,
    stored as constant maps (same file format).
    """
    if normalisation not in NORMALISATIONS:
        raise ValueError(f"normalisation must be one of {NORMALISATIONS}, not {normalisation!r}")
    stats = WelfordMaps()
    weights.encoder.eval()
    for batch in volumes:
        feats = weights.encoder(batch.to(device))
        for n in range(batch.shape[0]):
            stats.update([f[n].mean(dim=0).cpu() for f in feats])
        if progress is not None:
            progress(stats.count)
    if stats.count < 2:
        raise ValueError("calibration needs at least two volumes")
    comp = weights.comparison
    n = stats.count
    for k in range(len(comp)):
        mean, m2 = stats.mean[k], stats.m2[k]
        if normalisation == "global":  # pooled over samples and locations: M2 = sum_x [M2(x) + n (mean(x) - mean)^2]
            pooled_mean = mean.mean()
            total = (m2 + n * (mean - pooled_mean) ** 2).sum()
            var = total / (n * mean.numel() - 1)
            mean = torch.full_like(mean, float(pooled_mean))
            m2 = torch.full_like(m2, float(var) * (n - 1))
        m2 = m2.float()
        # guard against dead (always-zero) locations: a zero std would blow the scale up to 1/eps
        floor = max(float(m2.mean()) * 1e-4, 1e-12)
        comp.mean_map(k).copy_(mean.float().to(comp.mean_map(k).device))
        comp.m2_map(k).copy_(m2.clamp(min=floor).to(comp.m2_map(k).device))
    comp.counts = [float(stats.count)] * len(comp)
    comp.clear_cache()
    return stats.count


def encode(encoder: MultiScaleEncoder, x: torch.Tensor) -> list[torch.Tensor]:
    """The encoder's feature maps of ``x`` [N, 3, D, H, W]; cheaper, same values, for repeated scalar data.

    Scalar volumes reach the network as three identical channels, so every convolution that reads
    the input (the first of each scale: the input itself, or its pooled copy beside the skip
    features) equals one on a single channel with the three kernel slices summed. That saves about
    a third of the training cost on scalar data; vector data takes the encoder's own forward.
    """
    arch = encoder.arch
    repeated = x.shape[1] == 3 and torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])
    if arch.in_channels != 3 or not repeated:
        return encoder(x)
    single = x[:, :1]
    feats: list[torch.Tensor] = []
    h = single
    for s, block in enumerate(encoder.blocks):
        first = block[0]
        w = first.weight
        if s == 0:
            kernel, inp = w.sum(dim=1, keepdim=True), single
        else:
            pooled = F.avg_pool3d(single, 2**s)
            kernel = torch.cat((w[:, :3].sum(dim=1, keepdim=True), w[:, 3:]), dim=1) if arch.skip else w.sum(1, True)
            inp = torch.cat((pooled, h), dim=1) if arch.skip else pooled
        h = F.relu(F.conv3d(inp, kernel, first.bias, stride=first.stride, padding=first.padding))
        feats.append(h)
        for conv in block[1:]:
            h = F.relu(conv(h))
            feats.append(h)
    return feats


def sequence_distances(weights: VolSiMWeights, frames: torch.Tensor, pairs: tuple[torch.Tensor, torch.Tensor],
                       dropout: float = 0.0, training: bool = False) -> torch.Tensor:
    """Distances [P] of the frame pairs ``pairs`` of one sequence ``frames`` [F, 3, D, H, W] (autograd on)."""
    i, j = pairs
    feats = encode(weights.encoder, frames)
    comp = weights.comparison
    terms = []
    for k, f in enumerate(feats):
        scaled = comp.scaled(k, f)  # F / ((sigma + eps)(sqrt(C) - 1)); the mean cancels in differences
        diff = scaled[i] - scaled[j]
        per_channel = diff.pow(2).mean(dim=tuple(range(2, diff.ndim)))  # [P, C]
        if training and dropout > 0:
            per_channel = F.dropout(per_channel, p=dropout, training=True)
        terms.append(per_channel @ comp.clamped_weights(k))
    total = torch.stack(terms, dim=-1).sum(dim=-1)
    # the gradient of sqrt is infinite at 0; identical frames never occur in training pairs, but be safe
    return torch.sqrt(total + 1e-12)


def pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of two vectors (0 when either is constant)."""
    a = a - a.mean()
    b = b - b.mean()
    denom = torch.sqrt((a * a).sum() * (b * b).sum())
    return (a * b).sum() / denom.clamp(min=1e-12)


def volsim_loss(pred: torch.Tensor, target: torch.Tensor, mse_factor: float = 1.0,
                corr_factor: float = 0.7) -> tuple[torch.Tensor, dict[str, float]]:
    """VolSiM's training loss over the pairs of one sequence, and its parts for logging."""
    mse = (pred - target).pow(2).mean()
    corr = pearson(pred, target)
    loss = mse_factor * mse + corr_factor * 0.5 * (1.0 - corr)
    return loss, {"loss": float(loss.detach()), "mse": float(mse.detach()), "pearson": float(corr.detach())}


def finite_or_raise(value: torch.Tensor, what: str) -> None:
    if not math.isfinite(float(value.detach())):
        raise FloatingPointError(f"{what} became non-finite; lower the learning rate")
