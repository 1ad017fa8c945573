"""The compiled CPU sampler of APMGSRN's grids (models/multigrid_cpu.py) against the reference path."""

import threading

import numpy as np
import pytest
import torch

from models import multigrid_cpu
from models.apmgsrn import APMGSRN
from models.trilinear import sample_grids_reference

pytestmark = pytest.mark.skipif(not multigrid_cpu.available(), reason="numba is not installed")


def _random_setup(channels: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    grids = torch.randn(5, channels, 6, 7, 9, generator=gen)
    mats = torch.eye(4).repeat(5, 1, 1)
    mats[:, :3, :3] *= 1.0 + torch.rand(5, 1, 1, generator=gen)  # grids smaller than the domain
    mats[:, :3, :] += 0.2 * torch.randn(5, 3, 4, generator=gen)  # rotated, sheared, moved
    return grids, mats


@pytest.mark.parametrize("channels", [1, 2, 3])
def test_sampler_equals_three_d_grid_sample_inside_outside_and_at_the_edges(channels):
    grids, mats = _random_setup(channels)
    gen = torch.Generator().manual_seed(1)
    pts = torch.rand(20000, 3, generator=gen) * 2.4 - 1.2  # many points outside some of the grids
    # points exactly on grid box faces and corners of the first grid, where padding blends in
    inv = torch.linalg.inv(mats[0])
    faces = torch.tensor([[1.0, 0.3, -0.2, 1.0], [-1.0, -1.0, -1.0, 1.0], [0.5, 1.0 + 1e-4, 0.0, 1.0]])
    pts = torch.cat([pts, (faces @ inv.t())[:, :3]])
    local = torch.einsum("gij,nj->gin", mats[:, :3, :3], pts) + mats[:, :3, 3:]
    expected = sample_grids_reference(grids, local).reshape(-1, pts.shape[0])
    got = multigrid_cpu.MultiGridSampler(grids, mats)(pts)
    assert got.shape == expected.shape
    inside = (local.abs() < 1).all(dim=1).float().mean()
    assert 0.1 < inside < 0.8  # the test really covers both cases
    np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=2e-5)
    # coherent points (sorted along x, as along rays): whole blocks of points miss some grids and
    # are skipped by the block's bounding-box test; the result must not change
    order = pts[:, 0].argsort()
    sorted_got = multigrid_cpu.MultiGridSampler(grids, mats)(pts[order])
    np.testing.assert_allclose(sorted_got.numpy(), expected[:, order].numpy(), atol=2e-5)


def test_non_finite_points_read_nothing():
    grids, mats = _random_setup(2)
    pts = torch.tensor([[float("nan"), 0.0, 0.0], [0.0, float("inf"), 0.0], [-float("inf"), 0, 0], [1e30, 0, 0],
                        [0.0, 0.0, 0.0]])
    got = multigrid_cpu.MultiGridSampler(grids, mats)(pts)
    assert torch.all(got[:, :4] == 0)
    assert torch.all(torch.isfinite(got))
    assert got[:, 4].abs().sum() > 0


def test_concurrent_callers_get_their_own_results():
    grids, mats = _random_setup(2, seed=3)
    sampler = multigrid_cpu.MultiGridSampler(grids, mats)
    inputs = [torch.rand(30000, 3, generator=torch.Generator().manual_seed(k)) * 2 - 1 for k in range(4)]
    expected = [sampler(p) for p in inputs]
    results: dict[int, torch.Tensor] = {}

    def work(k: int) -> None:
        for _ in range(3):
            results[k] = sampler(inputs[k])

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(4):
        assert torch.equal(results[k], expected[k])


def test_apmgsrn_inference_paths_agree_and_follow_parameter_changes():
    field = APMGSRN({"n_grids": 4, "n_features": 2, "grid_shape": [8, 8, 8], "width": 16}, channels=1,
                    value_range=(0.0, 1.0), source_shape=(8, 8, 8), name="t").eval()
    gen = torch.Generator().manual_seed(4)
    with torch.no_grad():
        field.feature_grids.normal_(generator=gen)
        field.transformation_matrices[:, :3, :3] *= 1.3
    pts = torch.rand(9000, 3, generator=gen) * 2 - 1
    with_grad = field.forward(pts).detach()  # the PyTorch path
    with torch.no_grad():
        fast = field._forward_in_parts(pts, reduced=False)  # the compiled sampler, float32 decoder
        reduced = field.forward_reduced(pts)
        torch.testing.assert_close(fast, with_grad, atol=1e-4, rtol=1e-4)
        span = float(with_grad.max() - with_grad.min())
        assert float((reduced - with_grad).abs().max()) < 2e-2 * span  # bfloat16 decoder: ~5e-3 of the span
        # moving a grid must reach the cached sampler
        field.transformation_matrices[0, :3, 3] += 0.3
        moved = field._forward_in_parts(pts, reduced=False)
    assert not torch.allclose(moved, fast)
    torch.testing.assert_close(moved, field.forward(pts).detach(), atol=1e-4, rtol=1e-4)
