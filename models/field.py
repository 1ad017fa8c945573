"""The NeuralField interface: a learned map from points in [-1, 1]^3 to the values of a volume.

Conventions (shared with the renderer and the app): points are ``[N, 3]`` with columns (x, y, z),
x along W, y along H, z along D, and -1/+1 at the centres of the first/last voxels
(``align_corners=True``). A field predicts values normalised to [0, 1] over the source volume's data
range; :meth:`NeuralField.query` de-normalises them back to that range.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from core.errors import VolsightError


def grid_points(shape: tuple[int, int, int], start: int = 0, stop: int | None = None,
                device: torch.device | str | None = None) -> torch.Tensor:
    """Coordinates ``[n, 3]`` (x, y, z) of the voxels ``start .. stop`` of a ``(D, H, W)`` grid in raster order."""
    d, h, w = (int(s) for s in shape)
    stop = d * h * w if stop is None else stop
    flat = torch.arange(start, stop, device=device, dtype=torch.int64)
    z, rem = flat // (h * w), flat % (h * w)
    y, x = rem // w, rem % w

    def norm(i: torch.Tensor, n: int) -> torch.Tensor:
        # align_corners: voxel 0 -> -1, voxel n-1 -> +1 (a 1-voxel axis sits at 0)
        return i.to(torch.float32) * (2.0 / (n - 1)) - 1.0 if n > 1 else torch.zeros_like(i, dtype=torch.float32)

    return torch.stack([norm(x, w), norm(y, h), norm(z, d)], dim=1)


# points per forward pass when no gradient is needed: keeps the per-point intermediates (grid
# coordinates, features, hidden activations) in cache; measured 2x faster than one 2^18-point pass.
# With freed memory kept mapped (models/cpu_memory.py) 65536 beat 32768 by 2-14 % (interleaved, 2 threads)
QUERY_CHUNK = 65536


class NeuralField(nn.Module):
    """Base class of every neural field: query points, bake to a Volume, save.

    Subclasses set ``kind`` and ``default_config``, build their parameters from ``self.config`` and
    implement :meth:`forward` (normalised output).
    """

    kind: ClassVar[str] = ""
    default_config: ClassVar[dict[str, Any]] = {}

    def __init__(self, config: dict[str, Any] | None = None, channels: int = 1,
                 value_range: tuple[float, float] = (0.0, 1.0), source_shape: tuple[int, int, int] = (2, 2, 2),
                 name: str = "field", spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)):
        super().__init__()
        unknown = set(config or {}) - set(self.default_config)
        if unknown:
            raise VolsightError(f"{self.kind}: unknown configuration keys {sorted(unknown)}; "
                                f"known are {sorted(self.default_config)}")
        self.config: dict[str, Any] = {**self.default_config, **(config or {})}
        self.channels = int(channels)
        self.value_range = (float(value_range[0]), float(value_range[1]))
        self.source_shape = tuple(int(s) for s in source_shape)
        self.name = name
        self.spacing = tuple(float(v) for v in spacing)  # (z, y, x) voxel size of the source volume
        self.source_path: str | None = None
        self.summary: dict[str, Any] = {}

    # -- subclasses ---------------------------------------------------------------------------------
    def forward(self, points: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """Normalised prediction ``[N, C]`` in [0, 1] (before de-normalisation) at ``points [N, 3]``."""
        raise NotImplementedError

    def forward_reduced(self, points: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` in reduced precision where a model has a faster path (inference only).

        The default is :meth:`forward` itself; models whose decoder can run in bfloat16/float16
        override it. Used by the renderer, never for measurements.
        """
        return self.forward(points)

    def decoder_layers(self) -> list[torch.Tensor]:  # pragma: no cover - abstract
        """The decoder's weight matrices in PyTorch layout ``[out, in]`` (for tinycudann conversion)."""
        raise NotImplementedError

    # -- common -------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        """The device the parameters live on."""
        return next(self.parameters()).device

    def place(self, device: torch.device | str) -> NeuralField:
        """Move to ``device``; on CUDA with tinycudann importable, run the decoder as a fused tcnn MLP."""
        device = torch.device(device)
        self.to(device)
        decoder = getattr(self, "decoder", None)
        if decoder is not None and self.config.get("use_tcnn") and device.type == "cuda":
            from models.tcnn_compat import TcnnDecoder, tcnn_available

            if tcnn_available() and not isinstance(decoder, TcnnDecoder):
                n_in, width, n_hidden, n_out = decoder.sizes[0], decoder.sizes[1], len(decoder.sizes) - 2, \
                    decoder.sizes[-1]
                fused = TcnnDecoder(n_in, width, n_hidden, n_out, None)
                fused.load_state_dict(decoder.state_dict())
                self.decoder = fused.to(device)
        return self

    def parameter_count(self) -> int:
        """Number of learnable scalars (what the file stores, besides the header)."""
        return sum(p.numel() for p in self.parameters())

    def denormalize(self, normalised: torch.Tensor) -> torch.Tensor:
        """Map a [0, 1] prediction back to the data range."""
        lo, hi = self.value_range
        return normalised * (hi - lo) + lo

    def query(self, points: torch.Tensor, reduced_precision: bool = False) -> torch.Tensor:
        """Values ``[N, C]`` in the data range at ``points [N, 3]`` (x, y, z in [-1, 1]).

        ``reduced_precision`` (inference only) evaluates with :meth:`forward_reduced`: faster, with
        errors of about 5e-3 of the range; for pictures, not for measurements.
        """
        if points.ndim != 2 or points.shape[1] != 3:
            raise VolsightError(f"query expects points shaped [N, 3] (x, y, z), got {tuple(points.shape)}")
        pts = points.to(device=self.device, dtype=torch.float32)
        n = pts.shape[0]
        forward = self.forward_reduced if reduced_precision and not torch.is_grad_enabled() else self.forward
        if n > QUERY_CHUNK:
            from models.cpu_memory import keep_freed_memory

            keep_freed_memory()  # the chunks reuse multi-megabyte buffers: no page faults for each
        if torch.is_grad_enabled() or n <= QUERY_CHUNK or self.device.type != "cpu":
            return self.denormalize(forward(pts))
        out = torch.empty(n, self.channels, dtype=torch.float32, device=self.device)
        for start in range(0, n, QUERY_CHUNK):
            out[start: start + QUERY_CHUNK] = forward(pts[start: start + QUERY_CHUNK])
        return self.denormalize(out)

    @torch.no_grad()
    def bake(self, shape: tuple[int, int, int] | None = None, chunk: int = 1 << 18) -> Any:
        """Sample the field on a ``(D, H, W)`` grid (default: the source shape) in chunks of ``chunk`` points."""
        from core.volume import Volume

        shape = tuple(int(s) for s in (shape or self.source_shape))
        if len(shape) != 3 or min(shape) < 2:
            raise VolsightError(f"bake shape must be three sizes (D, H, W) of at least 2, got {shape}")
        if chunk < 1:
            raise VolsightError(f"bake chunk must be positive, got {chunk}")
        total = shape[0] * shape[1] * shape[2]
        out = np.empty((self.channels, total), dtype=np.float32)
        was_training = self.training
        self.eval()
        try:
            for start in range(0, total, chunk):
                stop = min(total, start + chunk)
                pts = grid_points(shape, start, stop, device=self.device)
                out[:, start:stop] = self.query(pts).T.float().cpu().numpy()
        finally:
            self.train(was_training)
        meta = {"field_kind": self.kind, "field_source_shape": list(self.source_shape),
                "field_parameters": self.parameter_count()}
        # the baked grid spans the same box as the source: scale the voxel size accordingly
        spacing = tuple(sp * (src - 1) / (n - 1) for sp, src, n in zip(self.spacing, self.source_shape, shape))
        return Volume(out.reshape(self.channels, *shape), name=f"{self.name} (baked {self.kind})",
                      spacing=spacing, metadata=meta, nan_policy="allow")

    def save(self, path: str | os.PathLike) -> None:
        """Write the field to one file (safetensors + JSON header), atomically."""
        from models.store import save_field

        save_field(self, path)

    def describe(self) -> str:
        """One line: kind, size, parameter count and source."""
        lo, hi = self.value_range
        return (f"{self.kind} field '{self.name}': {self.parameter_count():,} parameters, {self.channels} channel(s), "
                f"source shape {'x'.join(map(str, self.source_shape))}, range [{lo:.6g}, {hi:.6g}]")

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """The tensors a file stores, in a device- and backend-independent layout."""
        return {k: v.detach().float().cpu().contiguous() for k, v in self.state_dict().items()}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Load tensors written by :meth:`state_tensors` (strict: names and shapes must match)."""
        self.load_state_dict(tensors, strict=True)
