"""Speed and peak memory of the windowed classical metrics (SSIM, LCC) against scikit-image's SSIM.

Run: ``python -m tests.benchmarks.bench_classical [--sizes 64 128 256] [--repeats 3]``.

Every row runs in a fresh process on the same seeded pair (a smooth random volume and a noisy
copy, float32): best wall time of ``--repeats`` calls after one warm-up, and the process's peak
resident memory minus what it held before the first call (``ru_maxrss``; the pair itself is
loaded first). The baseline is ``skimage.metrics.structural_similarity`` with the settings
volsight's SSIM reproduces (Gaussian window sigma 1.5, population covariances, the pair's range),
on float64 input as volsight computes; the last column is volsight's agreement with it. Other
jobs share the machine: the load average is printed, and only ratios within one run mean much.
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
    else:
        from core.metrics.registry import get_metric
        from core.volume import Volume

        metric = get_metric(what)
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
    print(f"{'size':>5} {'metric':<13} {'best s':>8} {'peak MiB':>9} {'vs skimage':>11} {'|Δ| vs skimage':>15}")
    for n in args.sizes:
        rows = {}
        for what in ("skimage-ssim", "ssim", "lcc"):
            out = subprocess.run([sys.executable, "-m", "tests.benchmarks.bench_classical", "--one", what, str(n),
                                  "--repeats", str(args.repeats)], capture_output=True, text=True, check=True)
            rows[what] = json.loads(out.stdout.strip().splitlines()[-1])
        base = rows["skimage-ssim"]
        for what, r in rows.items():
            speed = base["seconds"] / r["seconds"]
            diff = abs(r["value"] - base["value"]) if what == "ssim" else float("nan")
            print(f"{n:>5} {what:<13} {r['seconds']:>8.3f} {r['peak_mib']:>9.0f} {speed:>10.2f}x {diff:>15.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
