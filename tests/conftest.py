"""Shared test set-up: small seeded data, paths to ../shared, quiet threading."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
ARTIFACTS = ROOT / "test-artifacts"

# Qt/vispy: real xcb (pytest-xvfb provides the display); never the offscreen platform.
os.environ.setdefault("QT_QPA_PLATFORM", "xcb")
os.environ.setdefault("VOLSIGHT_SETTINGS_ORG", "volsight-tests")


def pytest_configure(config: pytest.Config) -> None:
    try:
        import torch

        torch.set_num_threads(min(2, os.cpu_count() or 1))
    except ImportError:  # pragma: no cover - torch is a dependency
        pass


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"{SHARED} is missing: the compatibility tests read the reference files there")
    return SHARED


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
