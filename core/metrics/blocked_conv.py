"""A stride-1 5³ convolution with few channels, computed on 2×2×2 blocks (space-to-depth).

oneDNN vectorises a convolution over its output channels; VolSiM's first layer has 4 of them
(and 1 or 3 input channels), so most vector lanes idle. Regrouping every 2×2×2 block of voxels
into channels turns the layer into an exactly equivalent 3³ convolution on the half-size grid
with 8× the input and 8× the output channels: block output ``(co, a, b, c)`` at block ``Z`` sums
block inputs ``(ci, p, q, r)`` at blocks ``Z - 1 .. Z + 1`` with the original tap
``k = 2·d + p − a`` per axis (zero where ``k`` falls outside 0..4). It multiplies 1.7× more
(zero taps) yet runs about 1.5× faster on AVX-512 here (3 input channels); the values equal the
direct convolution up to float rounding (tests compare both).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def applies(conv: torch.nn.Conv3d, spatial: tuple[int, ...]) -> bool:
    """Whether ``conv`` (kernel 5, stride 1, padding 2, no dilation/groups) on ``spatial`` can run on blocks."""
    return (tuple(conv.kernel_size) == (5, 5, 5) and tuple(conv.stride) == (1, 1, 1)
            and tuple(conv.padding) == (2, 2, 2) and tuple(conv.dilation) == (1, 1, 1) and conv.groups == 1
            and all(n % 2 == 0 and n >= 4 for n in spatial))


def block_weights(weight: torch.Tensor, bias: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Block-space kernel ``[8·co, 8·ci, 3, 3, 3]`` (channels-last) and bias of a 5³ kernel ``[co, ci, 5, 5, 5]``."""
    co, ci = weight.shape[:2]
    padded = F.pad(weight, (1, 1, 1, 1, 1, 1))  # tap k lives at k + 1; indices 0 and 6 are zeros
    a = torch.arange(2).view(2, 1, 1)  # output offset in the block
    p = torch.arange(2).view(1, 2, 1)  # input offset in the block
    d = torch.arange(3).view(1, 1, 3)  # block offset + 1
    idx = 2 * d + p - a + 1  # [a, p, d] -> padded tap index
    iz = idx.view(2, 1, 1, 2, 1, 1, 3, 1, 1)
    iy = idx.view(1, 2, 1, 1, 2, 1, 1, 3, 1)
    ix = idx.view(1, 1, 2, 1, 1, 2, 1, 1, 3)
    w = padded[:, :, iz, iy, ix]  # [co, ci, a, b, c, p, q, r, dz, dy, dx]
    w = w.permute(0, 2, 3, 4, 1, 5, 6, 7, 8, 9, 10).reshape(8 * co, 8 * ci, 3, 3, 3)
    return w.contiguous(memory_format=torch.channels_last_3d), None if bias is None else bias.repeat_interleave(8)


def to_blocks(x: torch.Tensor) -> torch.Tensor:
    """``[N, C, D, H, W]`` -> ``[N, 8C, D/2, H/2, W/2]`` (channel order c, p, q, r), channels-last."""
    n, c, d, h, w = x.shape
    blocks = x.reshape(n, c, d // 2, 2, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 7, 2, 4, 6)
    return blocks.reshape(n, 8 * c, d // 2, h // 2, w // 2).contiguous(memory_format=torch.channels_last_3d)


def from_blocks(y: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`to_blocks` for the output: ``[N, 8C, D/2, H/2, W/2]`` -> ``[N, C, D, H, W]``, channels-last."""
    n, c8, d2, h2, w2 = y.shape
    c = c8 // 8
    full = y.reshape(n, c, 2, 2, 2, d2, h2, w2).permute(0, 5, 2, 6, 3, 7, 4, 1).contiguous()
    return full.reshape(n, 2 * d2, 2 * h2, 2 * w2, c).permute(0, 4, 1, 2, 3)
