"""Baseline fields in pure PyTorch: an fVSRN-like dense grid + positional encoding, and a hash grid.

* :class:`FVSRN` (after fV-SRN, Weiss et al. 2022, as in APMGSRN's comparisons): one dense latent
  grid ``[F, D, H, W]`` over the whole domain sampled trilinearly, concatenated with a 6-frequency
  positional encoding of (x, y, z) (sin and cos of 2^k * pi * coordinate, 36 values), decoded by the
  bias-free ReLU MLP.
* :class:`HashGridField` (Instant-NGP, Mueller et al. 2022): L levels of feature tables, level l at
  resolution ``base * b^l``; a level is indexed densely while its vertices fit the table and by the
  spatial hash (x * 1 xor y * 2654435761 xor z * 805459861) mod T above that; trilinear per level,
  features concatenated level-major, then the MLP. The index arithmetic follows tiny-cuda-nn's grid
  encoding (scale = base * b^l - 1, position = x01 * scale + 0.5, resolution ceil(scale) + 1, level
  tables of min(T, res^3 rounded up to 8) entries, feature-fastest layout) so the flat table can be
  exchanged with ``tcnn.Encoding(HashGrid)`` params; that exchange is untested here (no tinycudann).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import nn

from models.field import NeuralField
from models.mlp import MLPDecoder
from models.trilinear import sample_grids

FVSRN_SIZES: dict[str, dict[str, Any]] = {
    "small": {"n_features": 2, "grid_shape": [32, 32, 32]},
    "medium": {"n_features": 4, "grid_shape": [64, 64, 64]},
    "large": {"n_features": 8, "grid_shape": [128, 128, 128]},
}

HASHGRID_SIZES: dict[str, dict[str, Any]] = {
    "small": {"n_levels": 17, "n_features": 2, "log2_table_size": 11, "base_resolution": 8, "max_resolution": 256},
    "medium": {"n_levels": 18, "n_features": 2, "log2_table_size": 15, "base_resolution": 16,
               "max_resolution": 512},
    "large": {"n_levels": 17, "n_features": 2, "log2_table_size": 20, "base_resolution": 16,
              "max_resolution": 256},
}

_PRIMES = (1, 2654435761, 805459861)


class FVSRN(NeuralField):
    """Dense latent grid + positional encoding + MLP."""

    kind: ClassVar[str] = "fvsrn"
    default_config: ClassVar[dict[str, Any]] = {
        "n_features": 4, "grid_shape": [64, 64, 64], "n_frequencies": 6,
        "n_layers": 2, "width": 64, "init_seed": 0, "use_tcnn": True,
    }

    def __init__(self, config: dict[str, Any] | None = None, **kwargs: Any):
        super().__init__(config, **kwargs)
        c = self.config
        gen = torch.Generator().manual_seed(int(c["init_seed"]))
        d, h, w = (int(s) for s in c["grid_shape"])
        f = int(c["n_features"])
        self.feature_grid = nn.Parameter(torch.rand(1, f, d, h, w, generator=gen) * 2e-4 - 1e-4)
        k = int(c["n_frequencies"])
        self.register_buffer("frequencies", (2.0 ** torch.arange(k, dtype=torch.float32)) * math.pi,
                             persistent=False)
        self.decoder = MLPDecoder(f + 6 * k, int(c["width"]), int(c["n_layers"]), self.channels, gen)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        """Normalised prediction ``[N, C]``."""
        pts_t = points.t()  # [3, N]
        feats = sample_grids(self.feature_grid, pts_t.unsqueeze(0))[0]  # [F, N]
        angles = self.frequencies[:, None, None] * pts_t.unsqueeze(0)  # [K, 3, N]
        enc = torch.cat([torch.sin(angles), torch.cos(angles)], dim=0).reshape(-1, pts_t.shape[1])
        return self.decoder.forward_planar(torch.cat([feats, enc], dim=0))

    def decoder_layers(self) -> list[torch.Tensor]:
        """Decoder weights ``[out, in]``."""
        return self.decoder.layers()


class HashGridEncoding(nn.Module):
    """The multiresolution hash encoding in PyTorch: points ``[N, 3]`` -> level-major features ``[L * F, N]``."""

    def __init__(self, n_levels: int, n_features: int, log2_table_size: int, base_resolution: float,
                 max_resolution: float, generator: torch.Generator | None = None):
        super().__init__()
        self.n_levels, self.n_features = n_levels, n_features
        self.log2_table_size = log2_table_size
        self.base_resolution = float(base_resolution)
        table = 1 << log2_table_size
        base, top = float(base_resolution), float(max_resolution)
        self.per_level_scale = math.exp((math.log(top) - math.log(base)) / (n_levels - 1)) if n_levels > 1 else 1.0
        scales, resolutions, sizes, dense = [], [], [], []
        for level in range(n_levels):
            scale = base * self.per_level_scale**level - 1.0
            res = int(math.ceil(scale)) + 1
            n_dense = res**3
            size = min(table, (n_dense + 7) // 8 * 8)
            scales.append(scale)
            resolutions.append(res)
            sizes.append(size)
            dense.append(n_dense <= size)
        offsets = [0]
        for s in sizes:
            offsets.append(offsets[-1] + s)
        self.register_buffer("scales", torch.tensor(scales, dtype=torch.float32), persistent=False)
        self.register_buffer("resolutions", torch.tensor(resolutions, dtype=torch.int64), persistent=False)
        self.register_buffer("level_sizes", torch.tensor(sizes, dtype=torch.int64), persistent=False)
        self.register_buffer("level_offsets", torch.tensor(offsets[:-1], dtype=torch.int64), persistent=False)
        self.register_buffer("dense_levels", torch.tensor(dense), persistent=False)
        self.table = nn.Parameter(torch.rand(offsets[-1], n_features, generator=generator) * 2e-4 - 1e-4)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        """Level-major features ``[L * F, N]``."""
        with torch.no_grad():
            x01 = (points.t() + 1.0) * 0.5  # [3, N]
            pos = x01.unsqueeze(0) * self.scales[:, None, None] + 0.5  # [L, 3, N]
            p0f = pos.floor()
            frac = pos - p0f
            p0 = p0f.long()
            res = self.resolutions[:, None]
            sizes = self.level_sizes[:, None]
            offs = self.level_offsets[:, None]
            dense = self.dense_levels[:, None]
        feats = None
        for corner in range(8):
            d = ((corner >> 0) & 1, (corner >> 1) & 1, (corner >> 2) & 1)
            with torch.no_grad():
                cx, cy, cz = p0[:, 0] + d[0], p0[:, 1] + d[1], p0[:, 2] + d[2]  # [L, N]
                dense_idx = cx + cy * res + cz * res * res
                hashed = (cx * _PRIMES[0]) ^ (cy * _PRIMES[1]) ^ (cz * _PRIMES[2])
                idx = torch.where(dense, dense_idx, hashed & 0xFFFFFFFF) % sizes + offs
                wx = frac[:, 0] if d[0] else 1.0 - frac[:, 0]
                wy = frac[:, 1] if d[1] else 1.0 - frac[:, 1]
                wz = frac[:, 2] if d[2] else 1.0 - frac[:, 2]
                w = wx * wy * wz  # [L, N]
            vals = self.table.index_select(0, idx.reshape(-1)).view(*idx.shape, -1)  # [L, N, F]
            term = vals * w.unsqueeze(-1)
            feats = term if feats is None else feats + term
        return feats.permute(0, 2, 1).reshape(-1, feats.shape[1])


class HashGridField(NeuralField):
    """Multiresolution hash encoding + MLP, pure PyTorch (tinycudann on CUDA when it imports)."""

    kind: ClassVar[str] = "hashgrid"
    default_config: ClassVar[dict[str, Any]] = {
        "n_levels": 18, "n_features": 2, "log2_table_size": 15, "base_resolution": 16, "max_resolution": 512,
        "n_layers": 2, "width": 64, "init_seed": 0, "use_tcnn": True,
    }

    def __init__(self, config: dict[str, Any] | None = None, **kwargs: Any):
        super().__init__(config, **kwargs)
        c = self.config
        gen = torch.Generator().manual_seed(int(c["init_seed"]))
        self.encoding = HashGridEncoding(int(c["n_levels"]), int(c["n_features"]), int(c["log2_table_size"]),
                                         float(c["base_resolution"]), float(c["max_resolution"]), gen)
        self.decoder = MLPDecoder(int(c["n_levels"]) * int(c["n_features"]), int(c["width"]), int(c["n_layers"]),
                                  self.channels, gen)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        """Normalised prediction ``[N, C]``."""
        return self.decoder.forward_planar(self.encoding(points))

    def place(self, device: torch.device | str) -> HashGridField:
        """As NeuralField.place, and the hash encoding runs in tinycudann too when it can."""
        super().place(device)
        if self.config.get("use_tcnn") and torch.device(device).type == "cuda":
            from models.tcnn_compat import TcnnHashEncoding, tcnn_available

            if tcnn_available() and isinstance(self.encoding, HashGridEncoding):
                fused = TcnnHashEncoding(self.encoding)
                self.encoding = fused.to(device)
        return self

    def decoder_layers(self) -> list[torch.Tensor]:
        """Decoder weights ``[out, in]``."""
        return self.decoder.layers()
