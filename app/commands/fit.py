"""``volsight fit``: fit a neural field (APMGSRN or a baseline) to a volume and save it."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, TextIO

import numpy as np

HELP = "Fit a neural field to a volume and write it as a .vsf field file (safetensors + JSON header)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("volume", help="volume file (NetCDF, .npy/.npz, raw + sidecar)")
    parser.add_argument("-o", "--output", required=True, help="field file to write (.vsf)")
    parser.add_argument("--model", choices=["apmgsrn", "fvsrn", "hashgrid"], default="apmgsrn")
    parser.add_argument("--size", choices=["small", "medium", "large"], default="medium",
                        help="model size preset (medium APMGSRN = the paper's train.json model)")
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--points", type=int, default=100_000, help="training points per iteration")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variable", default=None, help="variable to read (NetCDF/.npz)")
    from app.commands.compare import add_nan_argument

    add_nan_argument(parser)
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:N or auto (default: auto)")
    parser.add_argument("--checkpoint", default=None, help="write resumable training state here")
    parser.add_argument("--resume", default=None, help="continue from a checkpoint written by --checkpoint")


class ProgressBar:
    """Plain-text progress: one line updated in place on a terminal, occasional lines otherwise."""

    def __init__(self, total: int, stream: TextIO | None = None, width: int = 30, lines: int = 10):
        self.total, self.width = total, width
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every = max(1, total // lines)
        self._last_line = -1

    def update(self, iteration: int, loss: float, psnr: float, seconds: float) -> None:
        """Show the state after ``iteration`` iterations."""
        frac = iteration / self.total if self.total else 1.0
        filled = int(round(frac * self.width))
        text = (f"[{'#' * filled}{'-' * (self.width - filled)}] {100 * frac:5.1f}% it {iteration}/{self.total} "
                f"loss {loss:.3e} PSNR~{psnr:6.2f} dB {seconds:7.1f} s")
        if self.tty:
            self.stream.write("\r" + text)
            if iteration >= self.total:
                self.stream.write("\n")
        elif iteration // self.every != self._last_line or iteration >= self.total:
            self._last_line = iteration // self.every
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End an in-place line."""
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def fit_to_file(volume: Any, output: str, model: str = "apmgsrn", size: str = "medium", iterations: int = 1000,
                points: int = 100_000, seed: int = 0, device: str | None = None, checkpoint: str | None = None,
                resume: str | None = None, stream: TextIO | None = None) -> dict[str, Any]:
    """Fit ``volume``, save the field to ``output`` and print progress and the final PSNR to ``stream``."""
    from models.fit import fit
    from models.registry import largest_compressing_size, parameter_count
    from models.store import compression_words

    out = stream or sys.stdout
    bar = ProgressBar(iterations, stream=stream or sys.stderr)
    config = {"model": model, "size": size, "iterations": iterations, "points": points,
              "log_every": max(1, min(10, iterations // 100 or 1))}
    print(f"fitting {model} ({size}) to {volume.describe()}: {iterations} iterations x {points} points",
          file=out, flush=True)
    values = int(np.prod(volume.shape)) * int(volume.channels)
    planned = parameter_count(model, size, int(volume.channels))
    print(f"{planned:,} parameters for {values:,} values: {compression_words(planned, values, 'the volume')}",
          file=out, flush=True)
    if planned > values:
        smaller = largest_compressing_size(model, values, int(volume.channels))
        hint = f"--size {smaller} compresses it" if smaller else f"no {model} preset compresses a volume this small"
        print(f"note: the field stores more numbers than the volume; {hint}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    field, summary = fit(volume, config, seed=seed, device=device, checkpoint=checkpoint, resume=resume,
                         callback=lambda p: bar.update(p.iteration, p.loss, p.psnr, p.seconds))
    if summary["cancelled"]:
        bar.close()
    field.save(output)
    print(f"final PSNR over the full {'x'.join(map(str, volume.shape))} grid: {summary['psnr']:.2f} dB "
          f"({summary['iterations']} iterations, {time.perf_counter() - t0:.1f} s, "
          f"{field.parameter_count():,} parameters, {compression_words(field.parameter_count(), values)}) -> {output}",
          file=out, flush=True)
    if "cuda_graphs" in summary:
        print(f"CUDA graphs: {summary['cuda_graphs']}", file=out, flush=True)
    return summary


def run(args: argparse.Namespace) -> int:
    from core.io.registry import read_volume

    volume = read_volume(args.volume, variable=args.variable, nan_policy=args.nan)
    fit_to_file(volume, args.output, model=args.model, size=args.size, iterations=args.iterations,
                points=args.points, seed=args.seed, device=args.device, checkpoint=args.checkpoint,
                resume=args.resume)
    return 0
