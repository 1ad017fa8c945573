"""Seconds per VolSiM training step (one 11-frame sequence, 55 pairs, forward + backward) by size and scales.

Run: ``python -m tests.benchmarks.bench_metric_train``. Prints a table; the baseline is the
3-scale network at 32^3 measured in the same run (ratios are what counts on a shared machine).
"""

from __future__ import annotations

import os
import time

import torch

from core.metrics.volsim_net import VolSiMArchitecture, new_weights
from core.training.objective import all_pairs, sequence_distances, volsim_loss
from core.training.simulations.ground_truth import linear_distances


def step_seconds(scales: int, size: int, repeats: int = 3) -> float:
    weights = new_weights(VolSiMArchitecture.with_scales(scales), norm_size=size, seed=0)
    params = list(weights.encoder.parameters()) + list(weights.comparison.parameters())
    opt = torch.optim.Adam(params, lr=1e-4)
    frames = torch.rand(11, 3, size, size, size) * 2 - 1
    pairs = all_pairs(11)
    gt = torch.as_tensor(linear_distances(11)[pairs[0].numpy(), pairs[1].numpy()], dtype=torch.float32)
    times = []
    for _ in range(repeats + 1):
        t = time.perf_counter()
        loss, _ = volsim_loss(sequence_distances(weights, frames, pairs, 0.1, training=True), gt)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    return sorted(times[1:])[len(times[1:]) // 2]


def main() -> None:
    torch.set_num_threads(2)
    print(f"load average {os.getloadavg()}")
    rows = [(3, 32), (4, 32), (3, 48), (3, 64)]
    base = None
    print(f"{'scales':>6} {'size':>5} {'s/step':>8} {'x base':>7} {'steps/h':>8}")
    for scales, size in rows:
        s = step_seconds(scales, size)
        base = base or s
        print(f"{scales:>6} {size:>5} {s:8.3f} {s / base:7.2f} {3600 / s:8.0f}", flush=True)
    print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
