"""Speed and peak memory of the metrics built on local windows: SSIM, LCC and LearnSim's learned SSD.

Run: ``python -m tests.benchmarks.bench_local_metrics [--sizes 64 128 256] [--repeats 3]``.

Every row runs in a fresh process on the same seeded pair (a smooth random volume and a noisy
copy, float32): best wall time of ``--repeats`` calls after one warm-up, and the process's peak
resident memory minus what it held before the first call (``ru_maxrss``; the pair itself is
loaded first). The baseline is ``skimage.metrics.structural_similarity`` with the settings
volsight's SSIM reproduces (Gaussian window sigma 1.5, population covariances, the pair's range),
on float64 input as volsight computes; the last column is volsight's agreement with it.
``learnsim-ssd`` (slab by slab, each input on its own worker) has its own baseline: the same
network's whole-volume pass on both inputs at once (``LearnSimNetwork.forward``), with the
agreement of the two values; both use a network whose weights were moved off the identity
initialisation (the shipped trained weights run the same network). ``learnsim-identity`` is the
untrained metric (``weights="identity"``), which skips the network (it maps the inputs to
themselves). Other jobs share the machine: the load average is printed, and only ratios within
one run mean much.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np


def pair(n: int) -> tuple[np.ndarray, np.ndarray]:
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(0)
    a = gaussian_filter(rng.random((n, n, n), dtype=np.float32), 2.0)
    b = (a + 0.02 * rng.standard_normal((n, n, n), dtype=np.float32)).astype(np.float32)
    return a, b


def trained_like():
    """learnsim-ssd with every weight nudged off the identity initialisation (the network runs)."""
    import torch

    from core.metrics.learnsim import LearnSimNetwork, LearnSimSSD

    net = LearnSimNetwork("ssd", seed=0)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=gen))
    return LearnSimSSD(network=net)


def peak_kib() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def measure(what: str, n: int, repeats: int) -> dict:
    """One row, in this process: best seconds, extra peak memory, value."""
    a, b = pair(n)
    if what == "skimage-ssim":
        from skimage.metrics import structural_similarity

        x, y = a.astype(np.float64), b.astype(np.float64)
        r = float(max(x.max(), y.max()) - min(x.min(), y.min()))

        def call() -> float:
            return float(structural_similarity(x, y, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                               data_range=r))
    elif what == "learnsim-whole":
        import torch

        from core.metrics.registry import get_metric
        from core.volume import Volume

        metric = trained_like()
        ta, tb = metric.prepare(Volume.from_array(a), Volume.from_array(b))

        def call() -> float:
            with torch.no_grad():
                return float(metric.reduce(metric.network(ta, tb)[0])[0])
    else:
        from core.metrics.registry import get_metric
        from core.volume import Volume

        metric = (trained_like() if what == "learnsim-ssd"
                  else get_metric("learnsim-ssd", weights="identity") if what == "learnsim-identity"
                  else get_metric(what))
        va, vb = Volume.from_array(a), Volume.from_array(b)

        def call() -> float:
            return metric.distance(va, vb).value
    before = peak_kib()
    value = call()
    grown = peak_kib() - before
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - t)
    return {"seconds": best, "peak_mib": grown / 1024, "value": value}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--one", nargs=2, metavar=("WHAT", "N"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(measure(args.one[0], int(args.one[1]), args.repeats)))
        return 0
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; threads: torch default")
    print(f"{'size':>5} {'metric':<18} {'best s':>8} {'peak MiB':>9} {'vs base':>10} {'|Δ| vs base':>13}")
    print("(base: skimage-ssim for ssim and lcc, learnsim-whole for learnsim-ssd)")
    for n in args.sizes:
        rows = {}
        for what in ("skimage-ssim", "ssim", "lcc", "learnsim-whole", "learnsim-ssd", "learnsim-identity"):
            out = subprocess.run([sys.executable, "-m", "tests.benchmarks.bench_local_metrics", "--one", what,
                                  str(n), "--repeats", str(args.repeats)], capture_output=True, text=True, check=True)
            rows[what] = json.loads(out.stdout.strip().splitlines()[-1])
        for what, r in rows.items():
            base = rows["learnsim-whole" if what.startswith("learnsim") else "skimage-ssim"]
            speed = base["seconds"] / r["seconds"]
            diff = abs(r["value"] - base["value"]) if what in ("ssim", "learnsim-ssd") else float("nan")
            print(f"{n:>5} {what:<18} {r['seconds']:>8.3f} {r['peak_mib']:>9.0f} {speed:>9.2f}x {diff:>13.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
