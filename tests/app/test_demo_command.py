"""``volsight demo`` writes the built-in demo pairs as files that read back to the same volumes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def test_demo_command_writes_readable_pairs(tmp_path):
    r = subprocess.run([sys.executable, "-m", "app.cli", "demo", "-o", str(tmp_path), "--size", "16"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    from core.demo import demo_pair
    from core.io import read_volume

    for kind in ("plume", "turbulence"):
        a, b = demo_pair(kind, n=16)
        np.testing.assert_allclose(read_volume(tmp_path / f"{kind}.nc").data, a.data, rtol=1e-6)
        np.testing.assert_allclose(read_volume(tmp_path / f"{kind}-perturbed.nc").data, b.data, rtol=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plume-perturbed.nc", "plume.nc",
                                                           "turbulence-perturbed.nc", "turbulence.nc"]


def test_demo_command_refuses_an_unwritable_format(tmp_path):
    r = subprocess.run([sys.executable, "-m", "app.cli", "demo", "-o", str(tmp_path), "--format", "vtk"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "invalid choice" in r.stderr
