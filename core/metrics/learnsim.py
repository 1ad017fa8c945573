"""LearnSim-style learned SSD and LCC (after Grzech et al., CVPR 2022): a small 3D encoder before SSD/LCC.

Network (notes/metrics.md §4.1): three 3D conv blocks 1 -> 4 -> 8 -> 8 channels (kernel 3,
stride 1, replicate padding, bias, LeakyReLU 0.2, no down-sampling), then a 1×1×1 channel
aggregation 8 -> 1 without bias. Both volumes go through the same weights (Siamese), giving one
feature volume each, ``z_a`` and ``z_b``, that are compared by plain SSD or LCC:

- ``learnsim-ssd`` (distance): ``value = mean_voxels (z_a - z_b)²``; the registration data term
  of the original, ``0.5 · Σ (z_a - z_b)²``, is reported as ``info['energy']``.
- ``learnsim-lcc`` (similarity, larger = more alike): ``value = mean_voxels NCC²`` with the local
  squared correlation ``NCC² = cross² / (var_a · var_b + 1e-5)`` over 3×3×3 boxes (replicate
  padding), so 0 <= value < 1; the original's data term ``-Σ NCC²`` is ``info['energy']``. For very
  smooth inputs the 1e-5 dominates the local variances (as in the original).

Initialisation (exact identity): every conv starts from PyTorch's default random weights except
output channel 0, whose kernel is a single 1 at the centre tap of input channel 0 with bias 0,
and the aggregation weights are ``(1, 0, ..., 0)``. Inputs are min-max normalised (jointly per
pair) to [0, 1], so channel 0 stays non-negative and LeakyReLU passes it unchanged: ``z = x``
exactly, hence learned SSD / LCC equal plain SSD / LCC at initialisation (tested). The other
channels carry random features with zero aggregation weight, so every parameter receives
gradients from the first fine-tuning step on (a pure zero initialisation would be a saddle
point). The original instead multiplies all weights by 1e-7 around random centre taps, which is
an identity only up to ~1e-7.

Weights: the original's trained weights (SSD_learnt / LCC_learnt, learned within brain-MRI
registration) were not available. volsight trains its own on its simulated sequences
(``volsight metric-train --model learnsim-ssd``, :mod:`core.training.learnsim_trainer`) and
ships them: ``learnsim-ssd`` loads ``resources/weights/learnsim_ssd_volsight.safetensors`` by
default (``$VOLSIGHT_LEARNSIM_SSD_WEIGHTS`` overrides, ``weights="identity"`` gives the untrained
identity). ``learnsim-lcc`` ships none (trained, it ranked worse than plain LCC) and starts from
the identity. :meth:`LearnSimMetric.fine_tune` fits the network to target values for given pairs
(Adam, squared error); :meth:`LearnSimNetwork.save` writes volsight's format (safetensors + JSON
header), loaded back with ``weights=PATH``.

Properties: SSD is symmetric with d(x, x) = 0 (no triangle inequality: it is a squared
distance); LCC is a symmetric similarity, not a distance. Vector volumes are compared through
their magnitude.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.errors import MetricError, WeightsError
from core.metrics.base import Distance, Metric, ScaleFeatures, require_feature_memory
from core.metrics.preprocess import joint_minmax
from core.metrics.registry import register
from core.metrics.slicing import pair_data
from core.metrics.weights_io import load_safetensors, save_safetensors
from core.threads import cpu_map
from core.volume import Volume

FORMAT_NAME = "volsight-learnsim"
FORMAT_VERSION = 1
FEATURES = (4, 8, 8)
LCC_EPS = 1e-5
NEGATIVE_SLOPE = 0.2
SLAB_BYTES = 64 << 20  # one encoder layer's activations per slab (inference in slabs, see encode_in_slabs)
Similarity = Literal["ssd", "lcc"]
IDENTITY = "identity"  # weights= value for the untrained identity network
WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "resources" / "weights"


def default_weights_path(similarity: Similarity) -> Path:
    """Where volsight's own learned SSD / LCC weights are (``$VOLSIGHT_LEARNSIM_<KIND>_WEIGHTS`` overrides)."""
    env = os.environ.get(f"VOLSIGHT_LEARNSIM_{similarity.upper()}_WEIGHTS")
    return Path(env) if env else WEIGHTS_DIR / f"learnsim_{similarity}_volsight.safetensors"


def ssd_map(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-voxel squared difference."""
    return (a - b) ** 2


def box_sum(x: torch.Tensor, size: int = 3) -> torch.Tensor:
    """Sum over ``size``³ boxes of ``[N, 1, D, H, W]`` with replicate padding (same size out)."""
    r = size // 2
    kernel = torch.ones(1, 1, size, size, size, dtype=x.dtype, device=x.device)
    return F.conv3d(F.pad(x, (r,) * 6, mode="replicate"), kernel)


def lcc_map(a: torch.Tensor, b: torch.Tensor, eps: float = LCC_EPS, size: int = 3) -> torch.Tensor:
    """Local squared normalised cross-correlation ``cross² / (var_a var_b + eps)`` per voxel."""
    n = float(size**3)
    da = a - box_sum(a, size) / n
    db = b - box_sum(b, size) / n
    cross = box_sum(da * db, size)
    var_a = box_sum(da * da, size)
    var_b = box_sum(db * db, size)
    return cross * cross / (var_a * var_b + eps)


def plain_map(a: torch.Tensor, b: torch.Tensor, similarity: Similarity) -> torch.Tensor:
    """Plain SSD or LCC map of two ``[N, 1, D, H, W]`` volumes."""
    return ssd_map(a, b) if similarity == "ssd" else lcc_map(a, b)


class LearnSimNetwork(nn.Module):
    """Encoder (1 -> 4 -> 8 -> 8, k3, replicate padding, LeakyReLU 0.2) + 1x1x1 aggregation 8 -> 1."""

    def __init__(self, similarity: Similarity = "ssd", seed: int | None = 0) -> None:
        super().__init__()
        if similarity not in ("ssd", "lcc"):
            raise MetricError(f"learnsim: similarity must be 'ssd' or 'lcc', got {similarity!r}")
        self.similarity = similarity
        self.provenance: str | dict[str, Any] | None = None  # the header's, for loaded weights
        gen_state = torch.random.get_rng_state()
        if seed is not None:
            torch.manual_seed(int(seed))
        try:
            chans = (1, *FEATURES)
            self.convs = nn.ModuleList(
                nn.Conv3d(cin, cout, 3, padding=1, padding_mode="replicate") for cin, cout in zip(chans, chans[1:])
            )
            self.aggregate = nn.Conv3d(FEATURES[-1], 1, 1, bias=False)
        finally:
            if seed is not None:
                torch.random.set_rng_state(gen_state)
        self.identity_init()

    @torch.no_grad()
    def identity_init(self) -> None:
        """Make channel 0 an exact identity path and the aggregation pick it (see module docstring)."""
        for conv in self.convs:
            conv.weight[0].zero_()
            conv.weight[0, 0, 1, 1, 1] = 1.0
            conv.bias[0] = 0.0
        self.aggregate.weight.zero_()
        self.aggregate.weight[0, 0] = 1.0

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder features ``[N, 8, D, H, W]`` of ``[N, 1, D, H, W]``."""
        for conv in self.convs:
            x = F.leaky_relu(conv(x), NEGATIVE_SLOPE)
        return x

    @torch.no_grad()
    def encode_in_slabs(self, x: torch.Tensor, slab: int | None = None,
                        keep_features: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(aggregate(encode(x)), encode(x) or None)`` for ``[N, 1, D, H, W]``, slab by slab along D.

        The same values as the whole-volume pass, in bounded memory: each slab is read with a halo of
        one voxel per conv, every conv replicate-pads only where the slab meets the volume's border,
        and only the aggregated map (plus the features when asked) is kept for the whole volume, so a
        256³ pair needs a few hundred MB instead of several GB of activations. ``slab`` (depth per
        slab) defaults to what keeps one layer's activations near :data:`SLAB_BYTES`: a 64³ volume
        is one slab, a 256³ one has slabs of 32.
        """
        n, _, depth, h, w = x.shape
        if slab is None:
            slab = max(1, SLAB_BYTES // (n * FEATURES[-1] * h * w * x.element_size()))
        halo = len(self.convs)
        # channels-last activations: oneDNN's 3D convolutions with few channels run much faster on them
        last = torch.channels_last_3d
        weights = [(c.weight.contiguous(memory_format=last), c.bias) for c in self.convs]
        z = x.new_empty((n, 1, depth, h, w))
        feats = x.new_empty((n, FEATURES[-1], depth, h, w)) if keep_features else None
        for d0 in range(0, depth, slab):
            d1 = min(depth, d0 + slab)
            lo, hi = max(0, d0 - halo), min(depth, d1 + halo)
            t = x[:, :, lo:hi]
            for weight, bias in weights:
                front, back = int(lo == 0), int(hi == depth)
                t = F.pad(t, (1, 1, 1, 1, front, back), mode="replicate").contiguous(memory_format=last)
                t = F.leaky_relu_(F.conv3d(t, weight, bias), NEGATIVE_SLOPE)
                lo, hi = lo + 1 - front, hi - 1 + back
            t = t[:, :, d0 - lo:d1 - lo]
            z[:, :, d0:d1] = F.conv3d(t, self.aggregate.weight)
            if feats is not None:
                feats[:, :, d0:d1] = t
        return z, feats

    def aggregation_weights(self) -> torch.Tensor:
        return self.aggregate.weight.reshape(-1)

    @torch.no_grad()
    def is_identity(self) -> bool:
        """True while the aggregated output is exactly the input for non-negative inputs: channel 0 of every
        conv is the bare centre tap of channel 0 (bias 0) and the aggregation takes channel 0 alone, as
        :meth:`identity_init` leaves it; the other channels then cannot reach the output."""
        for conv in self.convs:
            tap = torch.zeros_like(conv.weight[0])
            tap[0, 1, 1, 1] = 1.0
            if not (torch.equal(conv.weight[0], tap) and float(conv.bias[0]) == 0.0):
                return False
        pick = torch.zeros_like(self.aggregate.weight)
        pick[0, 0] = 1.0
        return torch.equal(self.aggregate.weight, pick)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(per-voxel map ``[N, 1, D, H, W]``, features of a, features of b) from one encoder pass."""
        n = a.shape[0]
        feats = self.encode(torch.cat([a, b], dim=0))
        z = self.aggregate(feats)
        return plain_map(z[:n], z[n:], self.similarity), feats[:n], feats[n:]

    def save(self, path: str | os.PathLike, provenance: str | Mapping[str, Any] = "volsight fine-tuning") -> None:
        """Write the weights in volsight's format (safetensors + JSON header), atomically."""
        header = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "similarity": self.similarity,
            "features": list(FEATURES),
            "architecture": "LearnSim encoder 1-4-8-8 k3 replicate LeakyReLU(0.2) + 1x1x1 aggregation",
            "provenance": provenance if isinstance(provenance, str) else dict(provenance),
        }
        save_safetensors(path, self.state_dict(), header)

    @classmethod
    def load(cls, path: str | os.PathLike, similarity: Similarity | None = None) -> LearnSimNetwork:
        """Read weights written by :meth:`save`; ``similarity`` must match the file's when given."""
        tensors, header = load_safetensors(path, "LearnSim", FORMAT_NAME)
        if int(header.get("version", 0)) > FORMAT_VERSION:
            raise WeightsError(path, f"format version {header.get('version')} is newer than this volsight reads")
        kind = header.get("similarity")
        if kind not in ("ssd", "lcc"):
            raise WeightsError(path, f"LearnSim weights without a valid 'similarity' (got {kind!r})")
        if similarity is not None and kind != similarity:
            raise WeightsError(path, f"holds learned-{kind.upper()} weights, not learned-{similarity.upper()}")
        net = cls(kind, seed=None)
        expected = net.state_dict()
        missing = sorted(set(expected) - set(tensors))
        if missing or any(tuple(tensors[k].shape) != tuple(v.shape) for k, v in expected.items() if k in tensors):
            raise WeightsError(path, f"LearnSim weights do not fit the architecture (missing: {missing[:4]})")
        net.load_state_dict({k: tensors[k] for k in expected})
        net.provenance = header.get("provenance")
        return net


def _as_batch(x: Volume | np.ndarray | torch.Tensor) -> torch.Tensor:
    """One scalar volume as ``[1, D, H, W]`` float32 (vector volumes -> magnitude)."""
    if isinstance(x, Volume):
        x = x.scalar().data
    t = x.float() if isinstance(x, torch.Tensor) else torch.from_numpy(np.array(x, dtype=np.float32))
    if t.ndim == 3:
        t = t[None]
    if t.ndim != 4:
        raise MetricError(f"learnsim: expected a volume [D, H, W] or [C, D, H, W], got shape {tuple(t.shape)}")
    if t.shape[0] == 3:
        t = torch.linalg.vector_norm(t, dim=0, keepdim=True)
    elif t.shape[0] != 1:
        raise MetricError(f"learnsim: accepts 1 or 3 channels, got {t.shape[0]}")
    return t


class LearnSimMetric(Metric):
    """Shared implementation of learned SSD / LCC."""

    similarity: Similarity = "ssd"
    dims = (3,)
    channels = (1, 3)
    learned = True
    symmetric = True
    is_metric = False
    has_voxel_map = True
    preprocessing = "joint min-max of the pair to [0, 1]; vector volumes: magnitude; resample=N optional (trilinear)"
    # a set (series, matrix) is mapped to [0, 1] with the set's bounds, magnitudes first (core.metrics.matrix)
    input_range = (0.0, 1.0)
    normalizes_by_default = True
    compares_magnitudes = True

    def __init__(
        self,
        weights: str | os.PathLike | None = None,
        *,
        seed: int = 0,
        device: str | None = None,
        network: LearnSimNetwork | None = None,
    ) -> None:
        from core.device import select_device

        if network is None and weights is None and default_weights_path(self.similarity).is_file():
            weights = default_weights_path(self.similarity)
        if network is None:
            identity = weights is None or str(weights) == IDENTITY
            network = (LearnSimNetwork(self.similarity, seed=seed) if identity
                       else LearnSimNetwork.load(weights, self.similarity))
            if identity:
                weights = None
        if network.similarity != self.similarity:
            raise MetricError(f"{self.name}: network compares by {network.similarity}, not {self.similarity}")
        self.device = select_device(device)
        self.network = network.to(self.device).eval()
        self.weights_path = None if weights is None else str(weights)

    def prepare(self, a: Volume | np.ndarray, b: Volume | np.ndarray,
                normalize: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Both inputs as ``[1, 1, D, H, W]`` tensors on the device (jointly min-max normalised to [0, 1])."""
        ta, tb = _as_batch(a), _as_batch(b)
        if ta.shape != tb.shape:
            raise MetricError(f"{self.name}: shapes differ ({tuple(ta.shape[1:])} vs {tuple(tb.shape[1:])})")
        if normalize:  # clamped: rounding can leave -1e-12 at the minimum, which LeakyReLU would bend
            ta, tb = (t.clamp_(0.0, 1.0) for t in joint_minmax(ta, tb, (0.0, 1.0)))
        return ta[None].to(self.device), tb[None].to(self.device)

    def reduce(self, voxel_map: torch.Tensor) -> torch.Tensor:
        """The scalar value from the per-voxel map (mean over voxels)."""
        return voxel_map.mean(dim=tuple(range(1, voxel_map.ndim)))

    @classmethod
    def describe(cls) -> dict[str, Any]:
        d = super().describe()
        path = default_weights_path(cls.similarity)
        d["weights"] = os.fspath(path)
        d["weights_installed"] = True  # it runs without any: the untrained network is an exact identity
        if not path.is_file():
            d["weights_note"] = "none installed: the untrained identity (equal to plain SSD / LCC); use --weights PATH"
        return d

    def plain(self, a: Volume | np.ndarray, b: Volume | np.ndarray, normalize: bool = True) -> float:
        """The plain (not learned) SSD / LCC value on the same preprocessed inputs."""
        ta, tb = self.prepare(a, b, normalize)
        with torch.no_grad():
            return float(self.reduce(plain_map(ta, tb, self.similarity))[0])

    def distance(self, a: Volume, b: Volume, *, features: bool = False, **options: Any) -> Distance:
        """Learned SSD (distance) or LCC (similarity) of two volumes, with the per-voxel map."""
        unknown = sorted(k for k in options if k not in ("normalize", "resample", "interpolation"))
        if unknown:
            raise MetricError(f"{self.name}: unknown or unsupported option(s) {', '.join(unknown)}")
        data_a, data_b = pair_data(self, a, b, options)
        normalize = options.get("normalize")
        ta, tb = self.prepare(data_a, data_b, True if normalize is None else bool(normalize))
        if features:  # both inputs' features and their weighted difference are kept whole
            require_feature_memory(self.name, tuple(ta.shape[2:]), 3 * FEATURES[-1] * ta.numel() * ta.element_size())
        if not features and self.network.is_identity() and min(float(ta.min()), float(tb.min())) >= 0.0:
            # untrained (identity) weights map non-negative inputs to themselves exactly: skip the three
            # convolutions, whose other channels never reach the output (a 256³ pair: 9 s on 2 cores)
            (za, fa), (zb, fb) = (ta, None), (tb, None)
        else:  # each input on its own worker, in slabs: bounded memory at any size
            (za, fa), (zb, fb) = cpu_map(lambda t: self.network.encode_in_slabs(t, keep_features=features), [ta, tb])
        with torch.no_grad():
            vmap = plain_map(za, zb, self.network.similarity)
            value = float(self.reduce(vmap)[0])
        voxel_map = vmap[0, 0].cpu().numpy()
        total = float(np.sum(voxel_map, dtype=np.float64))  # float64 accumulation without a float64 copy
        energy = 0.5 * total if self.similarity == "ssd" else -total
        feats = None
        if features:
            w = self.network.aggregation_weights().detach()
            diff = w.view(-1, 1, 1, 1) * (fa[0] - fb[0]) ** 2
            feats = {
                "encoder": ScaleFeatures(
                    a=fa[0].cpu().numpy(), b=fb[0].cpu().numpy(), diff=diff.cpu().numpy(), weights=w.cpu().numpy()
                )
            }
        return Distance(
            metric=self.name,
            value=value,
            contributions={"encoder": value},
            terms={"encoder": value},
            features=feats,
            voxel_map=voxel_map,
            kind=self.kind,
            info={"energy": energy, "reduction": "mean over voxels",
                  "weights": self.weights_path or "identity initialisation"},
        )

    def fine_tune(
        self,
        pairs: Sequence[tuple[Volume | np.ndarray, Volume | np.ndarray]],
        targets: Sequence[float],
        steps: int = 20,
        lr: float = 1e-3,
        normalize: bool = True,
    ) -> list[float]:
        """Fit the network so each pair's value approaches its target (Adam on the squared error).

        Returns the loss before each step plus the final loss (``steps + 1`` numbers).
        """
        if len(pairs) != len(targets) or not pairs:
            raise MetricError(f"{self.name}: fine_tune needs one target per pair (got {len(pairs)} / {len(targets)})")
        prepared = [self.prepare(a, b, normalize) for a, b in pairs]
        if len({tuple(p[0].shape) for p in prepared}) != 1:
            raise MetricError(f"{self.name}: fine_tune pairs must share one shape")
        xa = torch.cat([p[0] for p in prepared])
        xb = torch.cat([p[1] for p in prepared])
        target = torch.as_tensor(np.asarray(targets, dtype=np.float32), device=self.device)
        net = self.network
        net.train()
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        losses: list[float] = []
        try:
            for _ in range(int(steps)):
                opt.zero_grad()
                loss = torch.mean((self.reduce(net(xa, xb)[0]) - target) ** 2)
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
            with torch.no_grad():
                losses.append(float(torch.mean((self.reduce(net(xa, xb)[0]) - target) ** 2)))
        finally:
            net.eval()
        return losses


@register
class LearnSimSSD(LearnSimMetric):
    """Learned SSD (LearnSim encoder + SSD): mean squared feature difference; equals plain SSD at init."""

    name = "learnsim-ssd"
    label = "LearnSim SSD"
    kind = "distance"
    similarity = "ssd"


@register
class LearnSimLCC(LearnSimMetric):
    """Learned LCC (LearnSim encoder + local NCC²): similarity in [0, 1); equals plain LCC at init."""

    name = "learnsim-lcc"
    label = "LearnSim LCC"
    kind = "similarity"
    similarity = "lcc"
