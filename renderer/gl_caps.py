"""GL capability limits and the display-resolution decision made from them (no GL imports here).

The view module probes the live context (``GL_MAX_3D_TEXTURE_SIZE``) and hands the numbers to
``fit_to_texture``, which decides how much a volume must be downsampled to be shown.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# OpenGL 4.x guarantees at least 2048 per 3D-texture side; used until the live context is probed.
ASSUMED_MAX_3D_TEXTURE_SIZE = 2048
DEFAULT_TEXTURE_BUDGET_BYTES = 512 * 1024**2  # one float32 512³ texture
GL_MAX_3D_TEXTURE_SIZE = 0x8073


@dataclass(frozen=True)
class GLCaps:
    """What the live GL context allows (as far as the volume view cares)."""

    max_3d_texture_size: int = ASSUMED_MAX_3D_TEXTURE_SIZE
    renderer: str = "unknown"
    version: str = "unknown"
    probed: bool = False


@dataclass(frozen=True)
class TextureFit:
    """How a [D, H, W] grid is shown: the integer block-mean factor and why."""

    factor: int
    shape: tuple[int, int, int]
    source_shape: tuple[int, int, int]
    reason: str = ""

    @property
    def downsampled(self) -> bool:
        return self.factor > 1

    def notice(self) -> str:
        """A one-line text for the view's overlay ('' when shown at full resolution)."""
        if not self.downsampled:
            return ""
        s = "×".join(str(n) for n in self.shape)
        src = "×".join(str(n) for n in self.source_shape)
        return f"Downsampled {self.factor}× for display: {s} of {src} voxels ({self.reason})"


def fit_to_texture(
    shape: tuple[int, int, int],
    caps: GLCaps = GLCaps(),
    budget_bytes: int = DEFAULT_TEXTURE_BUDGET_BYTES,
    bytes_per_voxel: int = 4,
) -> TextureFit:
    """The smallest integer factor f so that every side / f fits the texture limit and the budget."""
    shape = tuple(int(n) for n in shape)
    limit = int(caps.max_3d_texture_size)
    f_size = max(1, max(math.ceil(n / limit) for n in shape))
    voxels = math.prod(shape) * bytes_per_voxel
    f_mem = 1
    while voxels / f_mem**3 > budget_bytes:
        f_mem += 1
    f = max(f_size, f_mem)
    reasons = []
    if f_size > 1:
        reasons.append(f"GL_MAX_3D_TEXTURE_SIZE {limit}")
    if f_mem > 1:
        reasons.append(f"texture budget {budget_bytes / 1024**2:.3g} MiB")
    new = tuple(max(2, n // f) for n in shape)
    return TextureFit(f, new, shape, ", ".join(reasons))  # type: ignore[arg-type]
