"""Device selection: CPU or CUDA in one place, and the same distances on either."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.device import select_device
from core.errors import VolsightError
from core.volume import Volume

CUDA = torch.cuda.is_available()


def test_cpu_on_request_and_by_environment(monkeypatch):
    assert select_device("cpu") == torch.device("cpu")
    monkeypatch.setenv("VOLSIGHT_DEVICE", "cpu")
    assert select_device() == torch.device("cpu")
    monkeypatch.setenv("VOLSIGHT_DEVICE", "auto")
    assert select_device() == torch.device("cuda" if CUDA else "cpu")


@pytest.mark.skipif(CUDA, reason="this machine has CUDA")
def test_cuda_requested_without_cuda_is_a_clear_error():
    with pytest.raises(VolsightError, match="'cuda' requested but CUDA is not available"):
        select_device("cuda")


@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_cuda_distances_equal_the_cpu_ones(rng):
    """TF32 is off on CUDA, so a learned distance is the CPU's to float32 rounding (TF32 moved it ~1e-3)."""
    from scipy.ndimage import gaussian_filter

    from core.metrics.registry import get_metric

    torch.backends.cudnn.allow_tf32 = True  # PyTorch's default; selecting CUDA must turn it off
    assert select_device("cuda").type == "cuda"
    assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
    a, b = (Volume.from_array(gaussian_filter(rng.normal(size=(48, 40, 32)), 2).astype(np.float32)) for _ in range(2))
    for name in ("volsim", "learnsim-lcc"):
        on_cpu = get_metric(name, device="cpu").distance(a, b).value
        on_cuda = get_metric(name, device="cuda").distance(a, b).value
        assert on_cuda == pytest.approx(on_cpu, rel=2e-6), name
