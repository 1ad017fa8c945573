"""The paper's CPU rendering path, re-expressed for a same-run baseline of bench_render.py.

``PaperStyleField`` evaluates the weights of a fitted volsight APMGSRN the way APMGSRN's reference
model does (notes/amgsrn.md G1, C1): each grid's 3x4 global-to-local transform applied with a
batched matmul, one 3D ``F.grid_sample`` per call (trilinear, ``align_corners=True``, zeros
padding), features concatenated grid-major, then ``nn.Linear`` (no bias) + ReLU layers.

``render_paper_style`` is the reference renderer with nerfacc's CUDA-only parts in plain PyTorch
(notes G8/G9): rays clipped to the box, uniform samples at step = box diagonal / spp, every sample
evaluated (no occupancy grid, no early termination), the pixels split into stride × stride passes
so that each pass is one batch of at most ``batch`` samples (the CLI's 2^23), front-to-back
compositing. Sample offsets and the transfer-function convention are volsight's (the per-pixel
jitter of renderer/raymarch.py, the 1024-entry LUT with step-corrected opacity, linear lookup), so
the baseline's image is volsight's naive image and any difference is the renderer's, not the
sampling's.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from renderer.camera import OrbitCamera, box_half_extents
from renderer.raymarch import LUT_SIZE, _pixel_jitter
from renderer.transfer import TransferFunction, corrected_opacity


class PaperStyleField(nn.Module):
    """The reference APMGSRN forward (3D grid_sample + nn.Linear decoder) for a volsight APMGSRN's weights."""

    def __init__(self, field) -> None:
        super().__init__()
        with torch.no_grad():
            self.feature_grids = nn.Parameter(field.feature_grids.detach().clone(), requires_grad=False)
            self.transformation_matrices = nn.Parameter(field.transformation_matrices.detach().clone(),
                                                        requires_grad=False)
            layers = []
            weights = field.decoder_layers()
            for i, w in enumerate(weights):
                lin = nn.Linear(w.shape[1], w.shape[0], bias=False)
                lin.weight.copy_(w.detach())
                layers.append(lin)
                if i < len(weights) - 1:
                    layers.append(nn.ReLU())
            self.decoder = nn.Sequential(*layers).requires_grad_(False)
        self.value_range = field.value_range
        self.source_shape = field.source_shape
        self.channels = field.channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised prediction [N, C] at points [N, 3] (x, y, z in [-1, 1])."""
        g = self.feature_grids.shape[0]
        homog = torch.cat([x, torch.ones_like(x[:, :1])], dim=1)
        local = torch.bmm(self.transformation_matrices, homog.t().unsqueeze(0).expand(g, -1, -1)).transpose(1, 2)
        local = local[..., :3].reshape(g, 1, 1, -1, 3)
        feats = F.grid_sample(self.feature_grids, local, mode="bilinear", padding_mode="zeros", align_corners=True)
        feats = feats.flatten(0, 1).flatten(1).t()  # [N, G * F], grid-major
        return self.decoder(feats)

    def query(self, points: torch.Tensor) -> torch.Tensor:
        """Values in the data range (what the paper's renderer feeds its transfer function)."""
        lo, hi = self.value_range
        with torch.no_grad():
            return self.forward(points) * (hi - lo) + lo


def render_paper_style(field, camera: OrbitCamera, tf: TransferFunction, size: tuple[int, int], spp: int = 256,
                       batch: int = 2**23, seed: int = 0,
                       background=(0.0, 0.0, 0.0)) -> tuple[np.ndarray, dict]:
    """[H, W, 4] uint8 image and stats (seconds, samples, passes) of the reference-style renderer."""
    t_start = time.perf_counter()
    w, h = size
    shape = tuple(field.source_shape)
    half = torch.as_tensor(box_half_extents(shape), dtype=torch.float32)
    n_vox = torch.tensor([shape[2], shape[1], shape[0]], dtype=torch.float32)
    to_field = n_vox / (n_vox - 1.0) / half  # world -> [-1, 1] with -1/+1 at the voxel centres
    voxel = float((2.0 * half / n_vox).mean())
    step = float(2.0 * half.norm() / spp)
    lut = torch.from_numpy(tf.lut(LUT_SIZE).astype(np.float32))
    lut[:, 3] = torch.as_tensor(corrected_opacity(lut[:, 3].numpy(), step / voxel), dtype=torch.float32)
    lo, hi = tf.value_range
    bg = torch.as_tensor(background, dtype=torch.float32)
    out = np.zeros((h, w, 3), np.float32)
    stride = int(math.sqrt(w * h * spp / batch)) + 1
    samples = 0
    for oy in range(stride):
        for ox in range(stride):
            yy, xx = np.mgrid[oy:h:stride, ox:w:stride]
            px, py = xx.ravel(), yy.ravel()
            o_np, d_np = camera.rays(w, h, px, py)
            o = torch.as_tensor(o_np, dtype=torch.float32)
            d = torch.as_tensor(d_np, dtype=torch.float32)
            inv = 1.0 / torch.where(d.abs() < 1e-12, torch.full_like(d, 1e-12), d)
            t1, t2 = (-half - o) * inv, (half - o) * inv
            tnear = torch.minimum(t1, t2).max(1).values.clamp(min=0.0)
            tfar = torch.maximum(t1, t2).min(1).values
            t0 = tnear + torch.from_numpy(_pixel_jitter(px, py, w, seed)) * step
            n_max = int(torch.clamp(torch.ceil((tfar - t0) / step), min=0).max()) if o.shape[0] else 0
            colour = bg.expand(o.shape[0], 3).clone()
            if n_max > 0:
                ts = t0[:, None] + torch.arange(n_max, dtype=torch.float32)[None] * step  # [R, S]
                valid = ts < tfar[:, None]
                rows, cols = torch.nonzero(valid, as_tuple=True)
                pts = o[rows] + ts[rows, cols, None] * d[rows]
                vals = field.query(torch.clamp(pts * to_field, -1.0, 1.0))[:, 0]  # the whole pass: one batch
                samples += int(rows.numel())
                x = ((vals - lo) / (hi - lo)).clamp(0.0, 1.0) * (LUT_SIZE - 1)
                i0 = x.floor().long().clamp(max=LUT_SIZE - 2)
                f = (x - i0.float())[:, None]
                rgba = lut[i0] * (1.0 - f) + lut[i0 + 1] * f
                alpha = torch.zeros(valid.shape)
                alpha[rows, cols] = rgba[:, 3]
                rgb = torch.zeros(*valid.shape, 3)
                rgb[rows, cols] = rgba[:, :3]
                # transmittance in log space, below 1e-30 set to 0: a cumprod along the ray sinks into
                # float32 denormals behind opaque parts, on which every multiply runs 10-100x slower
                log_t = torch.cumsum(torch.log1p(-alpha), dim=1)
                through = torch.exp(log_t.clamp(min=-69.0)).masked_fill_(log_t < -69.0, 0.0)
                before = torch.cat([torch.ones_like(through[:, :1]), through[:, :-1]], dim=1)
                colour = (before * alpha)[..., None].mul(rgb).sum(1) + through[:, -1:] * bg
            out[py, px] = colour.numpy()
    img = np.empty((h, w, 4), np.uint8)
    img[..., :3] = np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)
    img[..., 3] = 255
    return img, dict(seconds=time.perf_counter() - t_start, samples=samples, passes=stride * stride)
