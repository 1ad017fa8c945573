"""``volsight bake``: sample a neural field on a regular grid and write it as a volume."""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

HELP = "Sample a neural field (.vsf) on a D x H x W grid and write the result as a volume file."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("field", help="field file written by 'volsight fit'")
    parser.add_argument("-o", "--output", required=True, help="volume file to write (.nc, .npy, .npz, ...)")
    parser.add_argument("--shape", type=int, nargs=3, metavar=("D", "H", "W"), default=None,
                        help="grid size (default: the shape of the volume the field was fitted to)")
    parser.add_argument("--chunk", type=int, default=1 << 18, help="points evaluated at once (bounds memory)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:N or auto (default: auto)")


def bake_to_file(field: Any, output: str, shape: tuple[int, int, int] | None = None, chunk: int = 1 << 18,
                 stream: TextIO | None = None) -> Any:
    """Bake ``field`` and write it to ``output``; returns the Volume."""
    from core.io.registry import write_volume

    volume = field.bake(shape, chunk=chunk)
    write_volume(volume, output)
    print(f"baked {field.describe()} to {'x'.join(map(str, volume.shape))} -> {output}",
          file=stream or sys.stdout)
    return volume


def run(args: argparse.Namespace) -> int:
    from core.device import select_device
    from models.store import load_field

    field = load_field(args.field, device=select_device(args.device))
    bake_to_file(field, args.output, tuple(args.shape) if args.shape else None, chunk=args.chunk)
    return 0
