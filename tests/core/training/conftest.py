"""Small cached sequences shared by the training tests (16^3, generated once per session)."""

from __future__ import annotations

import pytest
import torch

from core.training.dataset import build_cache


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory):
    """Two training sequences and one validation sequence at 16^3: (train_files, validation_files)."""
    folder = tmp_path_factory.mktemp("metric-cache")
    train = build_cache(folder, [("noise", 0), ("burgers", 0)], 16)
    val = build_cache(folder, [("noise", 10_000)], 16)
    return train, val


@pytest.fixture
def one_thread():
    # CPU conv3d backward reduces over threads in a varying order: runs are bit-identical with one thread
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
