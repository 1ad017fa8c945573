"""The folded 2D trilinear sampler equals 3D grid_sample (zeros outside, align_corners) in value and gradient."""

from __future__ import annotations

import torch

from models.trilinear import sample_grids, sample_grids_reference


def test_matches_grid_sample_inside_and_outside():
    gen = torch.Generator().manual_seed(0)
    grids = torch.randn(3, 2, 5, 7, 9, generator=gen)
    local = torch.rand(3, 3, 4000, generator=gen) * 3.0 - 1.5  # a third of the points outside
    local[:, :, :8] = torch.tensor([-1.0, 1.0, 1.0, -1.0, 1.0, 0.999, -1.001, 1.2])  # edges exactly
    ours = sample_grids(grids, local)
    ref = sample_grids_reference(grids, local)
    assert ours.shape == (3, 2, 4000)
    assert torch.allclose(ours, ref, atol=2e-5), (ours - ref).abs().max()
    far = torch.full((3, 3, 10), 5.0)
    assert sample_grids(grids, far).abs().max() == 0


def test_gradient_matches_grid_sample():
    gen = torch.Generator().manual_seed(1)
    base = torch.randn(2, 3, 6, 4, 5, generator=gen)
    local = torch.rand(2, 3, 500, generator=gen) * 2.2 - 1.1
    weights = torch.randn(2, 3, 500, generator=gen)
    a = base.clone().requires_grad_()
    (sample_grids(a, local) * weights).sum().backward()
    b = base.clone().requires_grad_()
    (sample_grids_reference(b, local) * weights).sum().backward()
    assert torch.allclose(a.grad, b.grad, atol=1e-4)


def test_affine_coordinates_match_explicit_transform():
    from models.trilinear import fold_grids, folded_coordinates_affine, sample_folded

    gen = torch.Generator().manual_seed(2)
    grids = torch.randn(4, 2, 6, 5, 7, generator=gen)
    m = torch.eye(4)[:3].repeat(4, 1, 1) + torch.randn(4, 3, 4, generator=gen) * 0.2
    pts = torch.rand(3000, 3, generator=gen) * 2.4 - 1.2
    local = torch.einsum("gij,nj->gin", m, torch.cat([pts, torch.ones(3000, 1)], 1))
    coords, fz = folded_coordinates_affine(m, pts, (6, 5, 7))
    ours = sample_folded(fold_grids(grids), coords, fz)
    assert torch.allclose(ours, sample_grids_reference(grids, local), atol=5e-5)
