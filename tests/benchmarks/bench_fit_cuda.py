"""Neural-field fits on CUDA: steps replayed from CUDA graphs against the same fit step by step.

Run on a CUDA machine: ``python -m tests.benchmarks.bench_fit_cuda [--size 128] [--iterations 10000]
[--points 131072]``. For each model it times single steps of both kinds (grids moving, grids
frozen) with graphs and without (``VOLSIGHT_CUDA_GRAPHS=0``, the same-run baseline), then runs
both whole fits on the synthetic plume and reports wall time, points per second and the PSNR
over the full grid. Without CUDA it says so and exits.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from models.fit import FitConfig, _Fitter, fit
from tests.benchmarks.bench_fields import load_plume

MODELS = (("apmgsrn", "medium"), ("fvsrn", "small"))


def step_ms(volume, model: str, size: str, points: int, moving: bool, repeats: int = 100) -> float:
    """Mean milliseconds of one fit step of the given kind, after the warm-up (and capture)."""
    cfg = FitConfig.from_any({"model": model, "size": size, "iterations": 10000, "points": points})
    fitter = _Fitter(volume, cfg, 0, torch.device("cuda"))
    if fitter.adaptive:
        fitter.iteration = 3000 if moving else 9000
        fitter.frozen_at = None if moving else 5000
    elif moving:
        return float("nan")
    for _ in range(10):
        fitter.step()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(repeats):
        fitter.step()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) / repeats * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--iterations", type=int, default=10000)
    parser.add_argument("--points", type=int, default=131072)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: this benchmark measures CUDA graphs and has nothing to do here")
        return
    volume = load_plume(args.size)
    print(f"{torch.cuda.get_device_name()}, plume {args.size}^3, {args.iterations} iterations x {args.points} points")
    rows = []
    for model, size in MODELS:
        for graphs in ("1", "0"):
            os.environ["VOLSIGHT_CUDA_GRAPHS"] = graphs
            moving = step_ms(volume, model, size, args.points, True)
            frozen = step_ms(volume, model, size, args.points, False)
            cfg = {"model": model, "size": size, "iterations": args.iterations, "points": args.points}
            torch.cuda.synchronize()
            _, summary = fit(volume, cfg, seed=0, device="cuda")
            rows.append((f"{model} {size}", "graphs" if graphs == "1" else "step by step (baseline)", moving, frozen,
                         summary["seconds"], args.iterations * args.points / summary["seconds"] / 1e6, summary["psnr"]))
    os.environ.pop("VOLSIGHT_CUDA_GRAPHS", None)
    head = ("model", "steps", "ms/step moving", "ms/step frozen", "fit s", "M points/s", "PSNR dB")
    print(" | ".join(head))
    print(" | ".join("---" for _ in head))
    for name, how, moving, frozen, secs, rate, psnr in rows:
        moving_text = f"{moving:.2f}" if moving == moving else "-"  # baselines have no moving grids
        print(f"{name} | {how} | {moving_text} | {frozen:.2f} | {secs:.1f} | {rate:.1f} | {psnr:.2f}")
    for k in range(0, len(rows), 2):
        print(f"{rows[k][0]}: graphs {rows[k + 1][4] / rows[k][4]:.1f}x faster over the whole fit")


if __name__ == "__main__":
    main()
