"""APMGSRN: adaptively placed multi-grid scene representation network (Wurster et al., VIS 2023).

N feature grids ``[F, D, H, W]``, each with a free 4x4 global-to-local transform (its top 3x4 block
is learned: scale, rotation, shear and translation), are sampled trilinearly (zero outside a grid's
[-1, 1]^3 box), their features concatenated grid-major and decoded by a bias-free ReLU MLP. The
reconstruction loss trains grids and decoder only (coordinates are detached, as in the paper's code);
the transforms move by the density-based grid-fitting loss (:meth:`APMGSRN.grid_fitting_loss`),
see ``models/fit.py`` for the schedule. Own implementation from the facts in notes/amgsrn.md (G1).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import nn

from models.field import NeuralField
from models.trilinear import fold_grids, folded_coordinates_affine, sample_folded

# size presets; "medium" is the train.json model of the APMGSRN repository (1,055,040 parameters)
APMGSRN_SIZES: dict[str, dict[str, Any]] = {
    "small": {"n_grids": 16, "n_features": 1, "grid_shape": [16, 16, 16]},
    "medium": {"n_grids": 16, "n_features": 2, "grid_shape": [32, 32, 32]},
    "large": {"n_grids": 32, "n_features": 1, "grid_shape": [80, 80, 80]},
}

_DENSITY_NORM = (2.0 * math.pi) ** 1.5


class APMGSRN(NeuralField):
    """Adaptive multi-grid field with learnable per-grid affine transforms and an MLP decoder."""

    kind: ClassVar[str] = "apmgsrn"
    default_config: ClassVar[dict[str, Any]] = {
        "n_grids": 16,
        "n_features": 2,
        "grid_shape": [32, 32, 32],  # (D, H, W) of every grid
        "n_layers": 2,  # hidden layers of the decoder
        "width": 64,
        "grid_init": "default",  # default | small | large (initial grid extent)
        "init_seed": 0,
        "use_tcnn": True,  # use tinycudann for the decoder on CUDA when it imports
    }

    def __init__(self, config: dict[str, Any] | None = None, **kwargs: Any):
        super().__init__(config, **kwargs)
        c = self.config
        g, f = int(c["n_grids"]), int(c["n_features"])
        d, h, w = (int(s) for s in c["grid_shape"])
        gen = torch.Generator().manual_seed(int(c["init_seed"]))
        self.feature_grids = nn.Parameter(torch.rand(g, f, d, h, w, generator=gen) * 2e-4 - 1e-4)
        self.transformation_matrices = nn.Parameter(_initial_transforms(g, str(c["grid_init"]), gen))
        from models.tcnn_compat import make_decoder

        # set by the training loop to share one folded copy of the grids between point chunks
        self.folded_grids: torch.Tensor | None = None
        self._fold_cache: tuple[Any, torch.Tensor] | None = None  # see _folded
        self._sampler_cache: tuple[Any, Any] | None = None  # see _cpu_sampler
        self.decoder = make_decoder(g * f, int(c["width"]), int(c["n_layers"]), self.channels, gen,
                                    use_tcnn=bool(c["use_tcnn"]))

    def local_coordinates(self, points: torch.Tensor) -> torch.Tensor:
        """Each grid's local coordinates ``[G, 3, N]`` of global ``points [N, 3]``."""
        m = self.transformation_matrices[:, :3, :]  # [G, 3, 4]
        g, n = m.shape[0], points.shape[0]
        return torch.addmm(m[:, :, 3].reshape(-1, 1), m[:, :, :3].reshape(-1, 3), points.t()).view(g, 3, n)

    def features(self, points: torch.Tensor) -> torch.Tensor:
        """Concatenated grid features in planar layout ``[G * F, N]`` (grid-major)."""
        # the reconstruction loss does not move the grids' transforms (coordinates carry no gradient)
        coords, fz = folded_coordinates_affine(self.transformation_matrices[:, :3, :], points,
                                               tuple(self.feature_grids.shape[2:]))
        image = self.folded_grids if self.folded_grids is not None else self._folded()
        feats = sample_folded(image, coords, fz)  # [G, F, N]
        return feats.reshape(-1, feats.shape[-1])

    def _cpu_sampler(self):
        """The numba sampler for the current grids and transforms (rebuilt when they change), or None."""
        from models import multigrid_cpu

        if not multigrid_cpu.available():
            return None
        grids, mats = self.feature_grids, self.transformation_matrices
        key = (grids.data_ptr(), grids._version, mats.data_ptr(), mats._version)
        cached = self._sampler_cache
        if cached is None or cached[0] != key:
            cached = (key, multigrid_cpu.MultiGridSampler(grids, mats))
            self._sampler_cache = cached
        return cached[1]

    def forward_reduced(self, points: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` for pictures: decoder in bfloat16 (native CPUs) or float16 autocast (CUDA);
        on the CPU, grids read by the compiled sampler (models/multigrid_cpu.py), which suits the
        ray-ordered points of the renderer."""
        decoder = self.decoder
        if not hasattr(decoder, "forward_planar_reduced"):  # tinycudann: already half precision
            return decoder.forward_planar(self.features(points))
        if self._cpu_inference(points):
            return self._forward_in_parts(points, reduced=True)
        return decoder.forward_planar_reduced(self.features(points))

    def _folded(self) -> torch.Tensor:
        """The folded grids; without autograd, cached until the grids change (inference runs in chunks)."""
        grids = self.feature_grids
        if torch.is_grad_enabled():
            return fold_grids(grids)
        key = (grids.data_ptr(), grids.device, grids._version)
        if self._fold_cache is None or self._fold_cache[0] != key:
            self._fold_cache = (key, fold_grids(grids.detach()))
        return self._fold_cache[1]

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        """Normalised prediction ``[N, C]``."""
        return self.decoder.forward_planar(self.features(points))

    def _cpu_inference(self, points: torch.Tensor) -> bool:
        return (not torch.is_grad_enabled() and points.device.type == "cpu" and self.folded_grids is None
                and self._cpu_sampler() is not None)

    def _forward_in_parts(self, points: torch.Tensor, reduced: bool) -> torch.Tensor:
        """CPU inference with the compiled sampler: each worker samples *and* decodes its own range of points.

        The compiled sampler wins on coherent points (a renderer's rays: 8-11 M points/s per core
        against about 4 for the folded ``grid_sample``) and loses on scattered ones (about 4 M/s,
        where ``grid_sample``'s vector gathers hide the cache misses better), so only the rendering
        path (:meth:`forward_reduced`) uses it; :meth:`forward` stays on PyTorch.

        Keeping both steps on the same single-threaded workers (core/threads.py) matters: handing
        the decoder to PyTorch's OpenMP threads after the sampler ran on the pool left the two sets
        of threads fighting over the cores (OpenMP spins after each region) and doubled the time.
        """
        from core.threads import cpu_map, workers

        sampler = self._cpu_sampler()
        decoder = self.decoder
        decode = decoder.forward_planar_reduced if reduced else decoder.forward_planar
        n = points.shape[0]
        parts = max(1, min(workers(), n // 4096))
        if parts == 1:
            return decode(sampler(points))
        bounds = [n * k // parts for k in range(parts + 1)]
        outs = cpu_map(lambda k: decode(sampler(points[bounds[k]:bounds[k + 1]])), list(range(parts)))
        return torch.cat(outs)

    def feature_density(self, points: torch.Tensor) -> torch.Tensor:
        """Sum over grids of a box-like super-Gaussian of each grid's extent, ``[N]`` (differentiable)."""
        local = self.local_coordinates(points)  # [G, 3, N]
        det = _det3(self.transformation_matrices[:, :3, :3])  # [G]
        shape = torch.exp(-0.5 * local.pow(20).sum(dim=1))  # [G, N]
        return (det[:, None] * shape).sum(dim=0) / _DENSITY_NORM

    def grid_fitting_loss(self, points: torch.Tensor, point_errors: torch.Tensor) -> torch.Tensor:
        """KL divergence between the normalised feature density and an error-weighted target.

        ``point_errors [N]`` (detached reconstruction errors at ``points``) raise the target density
        where the model is worse than average: target = density^(mean error / error), normalised.
        """
        density = self.feature_density(points)
        density = density / density.sum().clamp_min(1e-30)
        log_density = torch.log(density.clamp_min(1e-30))
        with torch.no_grad():
            err = point_errors.clamp_min(1e-16)
            log_target = log_density.detach() * (err.mean() / err)
            log_target = log_target - torch.logsumexp(log_target, dim=0)
        # KL(target || density) averaged over points (F.kl_div(..., log_target=True) with 'mean')
        return (log_target.exp() * (log_target - log_density)).mean()

    def transform_parameters(self) -> list[nn.Parameter]:
        """Parameters moved only by the grid-fitting loss."""
        return [self.transformation_matrices]

    def reconstruction_parameters(self) -> list[nn.Parameter]:
        """Parameters moved by the reconstruction loss."""
        return [self.feature_grids, *self.decoder.parameters()]

    def decoder_layers(self) -> list[torch.Tensor]:
        """Decoder weights ``[out, in]``."""
        return self.decoder.layers()

    def grid_boxes(self) -> torch.Tensor:
        """World-space corners ``[G, 8, 3]`` (x, y, z) of every grid's box (for drawing/inspection)."""
        with torch.no_grad():
            inv = torch.linalg.inv(self.transformation_matrices.double())
            corners = torch.tensor([[x, y, z, 1.0] for z in (-1, 1) for y in (-1, 1) for x in (-1, 1)],
                                   dtype=torch.float64, device=inv.device)
            world = torch.einsum("gij,kj->gki", inv, corners)
            return world[..., :3].float()


def _det3(m: torch.Tensor) -> torch.Tensor:
    """Determinants ``[G]`` of ``m [G, 3, 3]`` by cofactors: plain elementwise kernels, which a CUDA graph
    can capture (a batched LU factorisation may not), and differentiable."""
    a, b, c = m[:, 0, 0], m[:, 0, 1], m[:, 0, 2]
    d, e, f = m[:, 1, 0], m[:, 1, 1], m[:, 1, 2]
    g, h, i = m[:, 2, 0], m[:, 2, 1], m[:, 2, 2]
    return a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g)


def _initial_transforms(n_grids: int, mode: str, gen: torch.Generator) -> torch.Tensor:
    """Global-to-local matrices [G, 4, 4]: identity-like plus N(0, 0.05) noise on the top 3 rows."""
    scale = {"default": 1.0, "small": 8.0, "large": 0.8}
    if mode not in scale:
        from core.errors import VolsightError

        raise VolsightError(f"apmgsrn: grid_init must be one of {sorted(scale)}, got {mode!r}")
    m = torch.eye(4).repeat(n_grids, 1, 1)
    m[:, :3, :3] *= scale[mode]
    m[:, :3, :] += torch.randn(n_grids, 3, 4, generator=gen) * 0.05
    if mode == "small":  # small grids scattered over the domain
        m[:, :3, 3] += (torch.rand(n_grids, 3, generator=gen) * 2 - 1) * scale[mode]
    m[:, 3, :] = torch.tensor([0.0, 0.0, 0.0, 1.0])
    return m
