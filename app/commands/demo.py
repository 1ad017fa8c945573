"""``volsight demo``: write the built-in demo pairs to files (to try the CLI, or to drop on the window)."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "write the built-in demo volumes (reference and perturbed copy) to files"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", default=".", help="folder to write into (default: the current one)")
    parser.add_argument("--kind", default="all", choices=("plume", "turbulence", "all"), help="which demo pair")
    parser.add_argument("--size", type=int, default=64, help="grid size per axis (default 64)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--format", default="nc", choices=("nc", "npz"), help="file format (default nc)")


def write_demo(folder: Path, kind: str, size: int, seed: int, fmt: str) -> list[Path]:
    """Write ``<kind>.<fmt>`` and ``<kind>-perturbed.<fmt>`` into ``folder``."""
    from core.demo import DEMO_KINDS, demo_pair
    from core.io import registry

    kinds = DEMO_KINDS if kind == "all" else (kind,)
    out = []
    for k in kinds:
        a, b = demo_pair(k, n=size, seed=seed)  # type: ignore[arg-type]
        for vol, stem in ((a, k), (b, f"{k}-perturbed")):
            out.append(registry.write_volume(vol, folder / f"{stem}.{fmt}"))
    return out


def run(args: argparse.Namespace) -> int:
    folder = Path(args.output)
    folder.mkdir(parents=True, exist_ok=True)
    for p in write_demo(folder, args.kind, args.size, args.seed, args.format):
        print(p)
    return 0
