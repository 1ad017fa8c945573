"""Speed of the metric engine against a dense float32 matmul measured in the same run.

Run: ``python -m tests.benchmarks.bench_metrics [--weights PATH] [--threads 2] [--full-pairs]``.

Prints one table: sgemm GFLOP/s (2048² float32 matmul), VolSiM pairs/s and the fraction of the
sgemm throughput the full distance reaches (preprocessing, both inputs, comparison; FLOPs are the
official 3-channel network's conv FLOPs, 3.51 GFLOP per 64³ pair), single pair and batch 8; the
straightforward path (float64 numpy normalisation, channels repeated, each input through the
network on its own with autograd on, the literal normalisation formula) for reference and for the
1e-5 agreement check; the 32-volume matrix against 496 independent pair calls; and the peak memory
of one 128³ pair (in fresh processes). Other jobs share the machine: the load average is printed
with the figures, and only ratios within this run are meaningful.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_WEIGHTS = ROOT.parent / "shared" / "weights" / "VOLSIM" / "MS_3scales.pth"


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def timed(fn, repeats: int, warmup: int = 1) -> tuple[float, float]:
    """(best, median) wall seconds of ``fn()``."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times), statistics.median(times)


def sgemm_gflops(repeats: int = 10) -> tuple[float, float]:
    import torch

    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    best, med = timed(lambda: a @ b, repeats, warmup=2)
    flop = 2 * 2048**3
    return flop / best / 1e9, flop / med / 1e9


def conv_flops(arch, size: tuple[int, int, int], in_channels: int) -> float:
    """FLOPs (2 x MACs) of all convolutions of one volume, plus the 1x1 weighting (per pair: x2 + weights)."""
    from core.metrics.volsim_net import _KERNELS, feature_sizes

    sizes = feature_sizes(arch, size)
    macs = 0
    prev = 0
    layer = 0
    for s, width in enumerate(arch.widths):
        cin = in_channels + (prev if (arch.skip and s > 0) else 0)
        for k, _stride in _KERNELS:
            macs += width * cin * k**3 * int(np.prod(sizes[layer]))
            cin = width
            layer += 1
        prev = width
    return 2.0 * macs


def smooth_volumes(n: int, size: int, channels: int, seed: int = 0):
    from scipy.ndimage import gaussian_filter

    from core.volume import Volume

    rng = np.random.default_rng(seed)
    base = gaussian_filter(rng.normal(size=(channels, size, size, size)), (0, 3, 3, 3))
    out = []
    for k in range(n):
        noise = gaussian_filter(rng.normal(size=base.shape), (0, 1.5, 1.5, 1.5))
        out.append(Volume.from_array((base + 0.05 * (k + 1) * noise).astype(np.float32), name=f"v{k}"))
    return out


def straightforward_distance(metric, a, b, normalize: bool = True) -> float:
    """The plain path: float64 joint min-max, channels repeated, each input on its own, autograd on."""
    import torch

    x = np.stack([a.data, b.data]).astype(np.float64)
    if normalize:
        lo, hi = x.min(), x.max()
        x = 2 * (x - lo) / (hi - lo) - 1 if hi > lo else x - lo
    if x.shape[1] == 1:
        x = np.repeat(x, 3, axis=1)
    t = torch.from_numpy(x.astype(np.float32))
    enc, comp = metric.net.encoder, metric.net.comparison
    for p in enc.parameters():
        p.requires_grad_(True)
    try:
        fa = enc(t[:1])
        fb = enc(t[1:])
        terms = comp.terms_reference(fa, fb)
        return float(torch.sqrt(terms.sum()).detach())
    finally:
        for p in enc.parameters():
            p.requires_grad_(False)


def peak_memory_128(weights: str, threads: int) -> dict:
    """Peak RSS of a fresh process computing one 128³ pair (and its rise over the state before the call)."""
    code = f"""
import json, numpy as np, torch
torch.set_num_threads({threads})
from core.metrics.volsim import VolSiM
from core.volume import Volume
def status(key):
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(key + ':'):
                return int(line.split()[1]) / 1024
def rss():
    return status('VmRSS')
m = VolSiM(weights={weights!r})
rng = np.random.default_rng(0)
a = Volume.from_array(rng.normal(size=(1, 128, 128, 128)).astype(np.float32))
b = Volume.from_array(rng.normal(size=(1, 128, 128, 128)).astype(np.float32))
before = rss()
d = m.distance(a, b)
peak = status('VmHWM')  # not ru_maxrss: that can include the parent's pages from before exec
print(json.dumps({{"before_mib": before, "peak_mib": peak, "value": d.value}}))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default=str(DEFAULT_WEIGHTS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--full-pairs", action="store_true", help="time all 496 pair calls (default: 62 and scale)")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from core.metrics.matrix import distance_matrix
    from core.metrics.volsim import VolSiM

    print(f"# bench_metrics  torch {torch.__version__}  threads {args.threads}  load at start: {load()}")
    metric = VolSiM(weights=args.weights)
    arch = metric.net.arch
    nominal = 2 * conv_flops(arch, (64, 64, 64), 3)  # the official network: 3 input channels, two volumes
    executed_1ch = 2 * conv_flops(arch, (64, 64, 64), 1)
    rows: list[tuple[str, str, str, str]] = []

    g_best, g_med = sgemm_gflops()
    rows.append(("sgemm 2048^2 float32", f"{g_best:.1f} GFLOP/s", f"median {g_med:.1f}", ""))

    last_sgemm = [g_best]

    def add(name: str, seconds_best: float, seconds_med: float, pairs: int, flop_per_pair: float) -> float:
        # the sgemm reference brackets each row (before and after it), so a change of load hits both
        after = sgemm_gflops(5)[0]
        ref = 0.5 * (last_sgemm[0] + after)
        last_sgemm[0] = after
        rate = pairs * flop_per_pair / seconds_best / 1e9
        median = f"{rate:.1f} GFLOP/s (median {pairs / seconds_med:.2f} pairs/s)"
        rows.append((name, f"{pairs / seconds_best:.2f} pairs/s", median,
                     f"{rate / ref:.0%} of sgemm ({ref:.0f} around it)"))
        return rate / ref

    pairs1 = list(zip(smooth_volumes(8, 64, 1, 1), smooth_volumes(8, 64, 1, 2), strict=True))
    pairs3 = list(zip(smooth_volumes(8, 64, 3, 3), smooth_volumes(8, 64, 3, 4), strict=True))
    a, b = pairs1[0]
    fast = metric.distance(a, b).value
    plain = straightforward_distance(metric, a, b)
    a3, b3 = pairs3[0]
    fast3, plain3 = metric.distance(a3, b3).value, straightforward_distance(metric, a3, b3)
    batch = [d.value for d in metric.distance_batch(pairs1)]
    singles = [metric.distance(x, y).value for x, y in pairs1]
    agree = max(abs(fast - plain) / plain, abs(fast3 - plain3) / plain3,
                max(abs(p - q) / q for p, q in zip(batch, singles, strict=True)))

    s = timed(lambda: straightforward_distance(metric, a, b), max(3, args.repeats // 2))
    add("straightforward, 64^3 1ch, single", *s, 1, nominal)
    frac_single = add("volsim distance 64^3 1ch, single", *timed(lambda: metric.distance(a, b), args.repeats), 1,
                      nominal)
    frac_batch = add("volsim distance_batch 64^3 1ch, batch 8",
                     *timed(lambda: metric.distance_batch(pairs1), max(3, args.repeats // 2)), 8, nominal)
    add("volsim distance 64^3 3ch, single", *timed(lambda: metric.distance(a3, b3), args.repeats), 1, nominal)
    add("volsim distance_batch 64^3 3ch, batch 8",
        *timed(lambda: metric.distance_batch(pairs3), max(3, args.repeats // 2)), 8, nominal)
    metric.net.encoder.fused = False  # the plain PyTorch path (separate conv and ReLU, NCDHW), for the record
    add("  same, plain conv3d + relu path, 1ch single", *timed(lambda: metric.distance(a, b), args.repeats), 1,
        nominal)
    metric.pairs_per_pass = 8
    add("  same, plain path, 1ch batch 8 in one pass",
        *timed(lambda: metric.distance_batch(pairs1), max(3, args.repeats // 2)), 8, nominal)
    metric.net.encoder.fused = True
    metric.pairs_per_pass = 0
    rows.append(("(1ch executes fewer FLOPs: folded repetition)", f"{executed_1ch / 1e9:.2f} of {nominal / 1e9:.2f}",
                 "GFLOP per 64^3 pair", ""))

    # matrix: 32 volumes vs 496 independent pair calls
    vols = smooth_volumes(32, 64, 1, 5)
    all_pairs = [(i, j) for i in range(32) for j in range(i + 1, 32)]
    sample = all_pairs if args.full_pairs else all_pairs[:: len(all_pairs) // 62][:62]
    halves = (sample[0::2], sample[1::2])
    # interleaved (matrix, half of the pairs, matrix, other half): a change of machine load hits both
    matrix_times, pair_rates = [], []
    for half in halves:
        t = time.perf_counter()
        mat = distance_matrix(vols, metric)
        matrix_times.append(time.perf_counter() - t)
        t = time.perf_counter()
        for i, j in half:
            metric.distance(vols[i], vols[j])
        pair_rates.append((time.perf_counter() - t) / len(half))
    t_matrix = min(matrix_times)
    t_pairs = min(pair_rates) * len(all_pairs)
    scaled = "" if args.full_pairs else f" (timed {len(sample)}, scaled)"
    rows.append(("matrix 32 x 64^3 (set-normalised)", f"{t_matrix:.2f} s", f"496 pair calls {t_pairs:.1f} s{scaled}",
                 f"speed-up {t_pairs / t_matrix:.1f}x"))
    raw = distance_matrix(vols[:8], metric, normalize=False)
    ref = np.array([[metric.distance(x, y, normalize=False).value for y in vols[:8]] for x in vols[:8]])
    mat_agree = float(np.max(np.abs(raw - ref)) / np.max(ref))
    del mat

    mems = sorted((peak_memory_128(args.weights, args.threads) for _ in range(3)), key=lambda m: m["peak_mib"])
    mem = mems[-1]  # the worst of three fresh processes (thread timing moves the peak a little)
    rows.append(("one 128^3 pair, fresh process (worst of 3)", f"peak RSS {mem['peak_mib']:.0f} MiB",
                 f"{mem['peak_mib'] - mem['before_mib']:.0f} MiB above the {mem['before_mib']:.0f} MiB before the call",
                 f"best {mems[0]['peak_mib']:.0f}; official: 970 MiB"))

    width = [max(len(r[k]) for r in rows) for k in range(4)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, width, strict=True)))
    print(f"agreement fast vs straightforward / batch vs single: max rel diff {agree:.2e} (target <= 1e-5)")
    print(f"agreement matrix (normalize=False) vs pair calls: max rel diff {mat_agree:.2e}")
    print(f"targets: single {frac_single:.0%} and batch-8 {frac_batch:.0%} of sgemm (>= 30%); "
          f"matrix speed-up {t_pairs / t_matrix:.1f}x (>= 15x)")
    print(f"# load at end: {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
