"""Torch ray-marcher for neural fields (and volumes, through ``VolumeField``), on CPU or CUDA.

For every pixel a ray (renderer/camera.py) is clipped against the world box (slab test), then
sampled at a fixed step Δ = |box diagonal| / spp, stratified (one random offset per ray, seeded)
or at step midpoints. Rays advance together in depth chunks (a wavefront): each chunk queries the
field only where needed, maps values through the transfer function's LUT and composites front to
back; rays leave the wavefront when they exit the box or become opaque (early termination at
the same 0.99 as vispy's translucent shader). The per-method wavefronts are in
renderer/wavefronts.py; on the CPU the rays go in tiles to single-threaded workers.

Empty-space skipping: the field is baked once at the corners of a coarse grid of cells
(``OccupancyGrid``); each cell keeps the min/max of its corners, widened to its 26 neighbours and
by a margin of the value range (a safety dilation for features between the corners; ``grid_dilation``). A sample
is skipped without querying the field when its cell cannot contribute: for ``translucent`` the
transfer function's opacity is zero over the cell's whole value interval; for ``mip`` the cell
max is not above the ray's running max; for ``iso`` the cell max is below the threshold.

Opacity: the TF gives the opacity of a one-voxel step; a step of s voxels uses 1 − (1 − a)^s
(see renderer/transfer.py), which is what makes this image and the GL view's agree.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from core.errors import VolsightError
from renderer.camera import OrbitCamera, box_half_extents
from renderer.fields import field_channels, field_shape, field_spacing, field_value_range
from renderer.occupancy import OccupancyGrid
from renderer.overlays import world_box
from renderer.transfer import TransferFunction
from renderer.wavefronts import LUT_SIZE, WavefrontMarches, _Rays, _slab_box

if TYPE_CHECKING:
    import torch

__all__ = ["LUT_SIZE", "METHODS", "FieldRenderer", "MarchSettings", "MarchStats", "render_field"]

METHODS = ("translucent", "mip", "iso", "attenuated_mip")
_MIN_TILE_RAYS = 512  # rays per tile at least (smaller tiles cost more in per-chunk overhead than they balance)
_MAX_TILE_RAYS = 4096


@dataclass(frozen=True)
class MarchSettings:
    """How rays are sampled and what is skipped."""

    method: str = "translucent"
    spp: int = 256  # samples across the box diagonal (AMGSRN's convention)
    stratified: bool = True
    seed: int = 0
    early_termination: float | None = 0.99  # stop a ray when its opacity exceeds this (None: never)
    skip_empty: bool = True
    grid_resolution: int = 64  # occupancy cells along the longest side
    grid_margin: float = 0.02  # value-range fraction added around each cell's min/max
    grid_dilation: int = 1  # cells: each cell's interval also covers this many neighbours per side
    min_opacity: float = 0.0  # per-voxel opacity at or below which a cell counts as empty (0: exact)
    depth_chunk: int = 32  # samples per ray per wavefront step
    query_chunk: int = 2**14  # points per field query (small: the per-point intermediates stay in cache)
    # neural fields: decoder in bfloat16 (CPUs with native support) or float16 (CUDA), as APMGSRN's
    # renderer autocasts; about 5e-3 of the value range, below one 8-bit level in the images
    reduced_precision: bool = True
    fast_composite: bool = True  # CPU: composite with the compiled one-pass kernel when numba is there
    threshold: float | None = None  # iso threshold (data units); None: middle of the TF range
    attenuation: float = 0.05  # attenuated MIP, per voxel of normalised value (as in the GL view)
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)
    # draw only this part of the box: (lo, hi) fractions along (z, y, x), as a cut keeps
    # (renderer.overlays.cut_box); None: the whole box
    box: tuple[tuple[float, float, float], tuple[float, float, float]] | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise VolsightError(f"unknown rendering method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.spp < 2:
            raise VolsightError(f"spp (samples per ray) must be at least 2, got {self.spp}")

    def evolve(self, **changes: Any) -> MarchSettings:
        return replace(self, **changes)


@dataclass
class MarchStats:
    """What one render cost."""

    rays: int = 0
    samples_marched: int = 0  # sample positions visited
    samples_queried: int = 0  # of which the field was evaluated at
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def samples_per_second(self) -> float:
        return self.samples_queried / self.seconds if self.seconds > 0 else 0.0


class FieldRenderer(WavefrontMarches):
    """Renders one field; caches its box geometry and occupancy grid across frames."""

    def __init__(self, source: Any, device=None):
        import torch

        from core.device import select_device
        from core.volume import Volume

        if isinstance(source, Volume):
            from renderer.fields import VolumeField

            source = VolumeField(source, device=device)
        if not hasattr(source, "query"):
            raise VolsightError(f"cannot render {type(source).__name__}: expected a Volume or a field with query()")
        from models.field import NeuralField

        self.field = source
        self._neural = isinstance(source, NeuralField)
        self.device = torch.device(device) if device is not None else select_device()
        self.shape = field_shape(source)
        self.half = box_half_extents(self.shape or (2, 2, 2), field_spacing(source))
        self.channels = field_channels(source)
        lo, hi = field_value_range(source)
        if self.channels == 3:
            lo, hi = 0.0, math.sqrt(3.0) * max(abs(lo), abs(hi))
        self.value_range = (lo, hi)
        if self.shape is not None:
            n = np.array([self.shape[2], self.shape[1], self.shape[0]], dtype=np.float64)
            self._to_field = n / (n - 1.0) / self.half
            self.voxel = float(np.mean(2.0 * self.half / n))
        else:
            self._to_field = 1.0 / self.half
            self.voxel = float(2.0 * self.half.max() / 64.0)  # an analytic field: a nominal 64-voxel box
        self._to_field_t = torch.as_tensor(self._to_field, dtype=torch.float32, device=self.device)
        self._grids: dict[tuple, OccupancyGrid] = {}
        self.last_stats = MarchStats()

    # ------------------------------------------------------------------ field access
    def values_at_world(self, pts: torch.Tensor, reduced_precision: bool = False) -> torch.Tensor:
        """Scalar values (magnitude for 3 channels) at world points [N, 3]."""
        import torch

        p = torch.clamp(pts * self._to_field_t, -1.0, 1.0)
        with torch.no_grad():
            if reduced_precision and self._neural:
                out = self.field.query(p, reduced_precision=True)
            else:
                out = self.field.query(p)
            out = out.to(self.device, torch.float32)
        if out.shape[-1] == 3:
            out = out.norm(dim=-1)
        else:
            out = out[:, 0]
        return torch.nan_to_num(out, nan=self.value_range[0])

    def _query(self, pts, settings: MarchSettings):
        import torch

        n, chunk, reduced = pts.shape[0], settings.query_chunk, settings.reduced_precision
        if n <= chunk:
            return self.values_at_world(pts, reduced) if n else torch.zeros(0, device=self.device)
        out = torch.empty(n, device=self.device)
        for i in range(0, n, chunk):
            out[i : i + chunk] = self.values_at_world(pts[i : i + chunk], reduced)
        return out

    def occupancy(self, settings: MarchSettings) -> OccupancyGrid:
        key = (settings.grid_resolution, settings.grid_margin, settings.grid_dilation)
        if key not in self._grids:
            t0 = time.perf_counter()
            grid = OccupancyGrid(self, settings.grid_resolution, settings.grid_margin, settings.grid_dilation)
            grid.seconds = time.perf_counter() - t0
            self._grids[key] = grid
        return self._grids[key]

    # ------------------------------------------------------------------ rendering
    def render(self, camera: OrbitCamera, tf: TransferFunction, size: tuple[int, int],
               settings: MarchSettings = MarchSettings()) -> np.ndarray:
        """The whole image: [H, W, 4] uint8 (composited over the background, alpha 255)."""
        w, h = size
        rgb = self.render_pixels(camera, tf, size, None, None, settings)
        return _to_uint8(rgb.reshape(h, w, 3))

    def progressive(self, camera: OrbitCamera, tf: TransferFunction, size: tuple[int, int],
                    settings: MarchSettings = MarchSettings(), stride: int = 4) -> Iterator[np.ndarray]:
        """Coarse first, then refined: yields full-size images after 1/stride², 1/4 and all of the pixels.

        Every pixel is rendered once: each pass adds the pixels of the next finer lattice, and the
        pixels not rendered yet show their nearest rendered neighbour.
        """
        w, h = size
        img = np.zeros((h, w, 3), np.float32)
        done = np.zeros((h, w), bool)
        s = max(1, int(stride))
        while True:
            yy, xx = np.mgrid[0:h:s, 0:w:s]
            todo = ~done[yy, xx]
            xs, ys = xx[todo], yy[todo]
            if xs.size:
                img[ys, xs] = self.render_pixels(camera, tf, size, xs, ys, settings)
                done[ys, xs] = True
            if s == 1:
                yield _to_uint8(img)
                return
            # nearest upsample of the lattice rendered so far
            lattice = img[0:h:s, 0:w:s]
            up = np.repeat(np.repeat(lattice, s, axis=0), s, axis=1)[:h, :w]
            yield _to_uint8(up)
            s //= 2

    def render_pixels(self, camera: OrbitCamera, tf: TransferFunction, size: tuple[int, int],
                      xs: np.ndarray | None, ys: np.ndarray | None, settings: MarchSettings) -> np.ndarray:
        """Colours [N, 3] float32 (over the background) of the given pixels (all when xs is None)."""
        import torch

        t_start = time.perf_counter()
        w, h = size
        origins, dirs = camera.rays(w, h, xs, ys)
        dev = self.device
        o = torch.as_tensor(origins, dtype=torch.float32, device=dev)
        d = torch.as_tensor(dirs, dtype=torch.float32, device=dev)
        if settings.box is None:
            tnear, tfar = _slab(o, d, torch.as_tensor(self.half, dtype=torch.float32, device=dev))
        else:  # rays enter and leave the part kept: the cut's face shows the values on it
            lo, hi = (torch.as_tensor(c, dtype=torch.float32, device=dev) for c in world_box(self.half, *settings.box))
            tnear, tfar = _slab_box(o, d, lo, hi)
        bg = torch.as_tensor(settings.background, dtype=torch.float32, device=dev)
        n_rays = o.shape[0]
        out = bg.expand(n_rays, 3).clone()
        stats = MarchStats(rays=n_rays)
        hit = torch.nonzero(tfar > tnear).squeeze(1)
        if hit.numel():
            step = float(2.0 * np.linalg.norm(self.half) / settings.spp)
            if settings.stratified:
                if xs is None or ys is None:
                    yy, xx = np.mgrid[0:h, 0:w]
                    px, py = xx.ravel(), yy.ravel()
                else:
                    px, py = np.asarray(xs), np.asarray(ys)
                jitter = torch.from_numpy(_pixel_jitter(px, py, w, settings.seed)).to(dev)
            else:
                jitter = torch.full((n_rays,), 0.5, device=dev)
            ray = _Rays(o[hit], d[hit], tnear[hit], tfar[hit], tnear[hit] + jitter[hit] * step, step)
            march = {"translucent": self._translucent, "mip": self._mip, "iso": self._iso,
                     "attenuated_mip": self._attenuated_mip}[settings.method]
            out[hit] = self._march_tiles(march, ray, tf, settings, bg, stats)
        stats.seconds = time.perf_counter() - t_start
        self.last_stats = stats
        return out.cpu().numpy()

    def _march_tiles(self, march, ray: _Rays, tf, settings: MarchSettings, bg, stats: MarchStats):
        """Run ``march`` over the rays; on a multi-core CPU, over tiles of rays on single-threaded workers.

        A frame is hundreds of small tensor operations on 16k-sample chunks plus the field's own
        workers (models/multigrid_cpu.py); handing every op to PyTorch's OpenMP threads in between
        left those threads spinning against the field's workers. Tiles of consecutive rays (at
        least eight per worker, taken in turn, so a tile through the data does not hold up the
        frame; at most 4096 rays, so a wavefront's arrays stay in cache) run the whole march on one
        core each: no thread hand-offs inside a tile, and the same samples and image as one pass
        (every ray is marched on its own; tested).
        """
        import torch

        from core.threads import cpu_map, workers

        n = ray.o.shape[0]
        if self.device.type != "cpu" or n < 2 * _MIN_TILE_RAYS:
            return march(ray, tf, settings, bg, stats)
        if settings.skip_empty:
            self.occupancy(settings)  # built once here, not by the first tiles at the same time
        # at most _MAX_TILE_RAYS per tile keeps a wavefront's arrays in cache (also on one core)
        n_tiles = max(-(-n // _MAX_TILE_RAYS), min(8 * workers(), n // _MIN_TILE_RAYS))
        bounds = [n * k // n_tiles for k in range(n_tiles + 1)]

        def tile(k: int):
            part = slice(bounds[k], bounds[k + 1])
            sub = _Rays(ray.o[part], ray.d[part], ray.tnear[part], ray.tfar[part], ray.t0[part], ray.step)
            own = MarchStats()
            return march(sub, tf, settings, bg, own), own

        results = cpu_map(tile, list(range(n_tiles)))
        for _, own in results:
            stats.samples_marched += own.samples_marched
            stats.samples_queried += own.samples_queried
            stats.extra.update(own.extra)
        return torch.cat([colours for colours, _ in results])

def _slab(o, d, half):
    """Ray–box (slab) intersection with the centred box: entry and exit parameters (entry clamped to ≥ 0)."""
    return _slab_box(o, d, -half, half)


def _pixel_jitter(xs: np.ndarray, ys: np.ndarray, width: int, seed: int) -> np.ndarray:
    """A uniform [0, 1) offset per pixel that depends only on (pixel, seed): passes render the same samples."""
    z = (ys.astype(np.uint64) * np.uint64(width) + xs.astype(np.uint64)) + np.uint64(seed) * np.uint64(
        0x9E3779B97F4A7C15)
    with np.errstate(over="ignore"):
        # splitmix64 finaliser
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return ((z >> np.uint64(40)).astype(np.float64) / float(1 << 24)).astype(np.float32)


def _to_uint8(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    out = np.empty((h, w, 4), np.uint8)
    out[..., :3] = np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)
    out[..., 3] = 255
    return out


def render_field(source: Any, camera: OrbitCamera | None = None, tf: TransferFunction | None = None,
                 size: tuple[int, int] = (256, 256), settings: MarchSettings | None = None,
                 device: str | torch.device | None = None,
                 progress: Callable[[np.ndarray, int], None] | None = None) -> np.ndarray:
    """Render a NeuralField or Volume; ``progress(image, pass_index)`` receives the coarse-to-fine passes."""
    r = FieldRenderer(source, device=device)
    camera = camera or OrbitCamera()
    tf = tf or TransferFunction.preset("viridis", r.value_range)
    settings = settings or MarchSettings()
    if progress is None:
        return r.render(camera, tf, size, settings)
    img = None
    for i, img in enumerate(r.progressive(camera, tf, size, settings)):
        progress(img, i)
    return img
