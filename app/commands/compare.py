"""``volsight compare A B``: distances between two volumes with chosen metrics."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.compare import Comparison
    from core.volume import Volume

HELP = (
    "Distances between two volumes (files: NetCDF, .npy/.npz, raw, or neural fields, baked). "
    "Classical metrics work on raw values; "
    "learned ones (volsim) normalise the pair jointly to [-1, 1] unless --no-normalize. "
    "Prints a table, or JSON with --json, or CSV with --csv. A metric that cannot take the pair (say SSIM on a "
    "slab thinner than its window) is reported with its reason, the others' values still come, and the exit "
    "status is 2."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("a", help="first volume file (or neural-field file, .vsf)")
    parser.add_argument("b", help="second volume file (or neural-field file, .vsf: baked on A's grid)")
    parser.add_argument("--metric", "-m",
                        help="comma-separated metric names (see `volsight metrics`); default: mse,psnr,ssim,ncc,maxerr "
                        "and volsim (volsight's own weights, or --weights PATH)")
    parser.add_argument("--weights", action="append", metavar="[NAME=]PATH",
                        help="weights of the learned metric (official .pth or volsight .safetensors); "
                        "NAME=PATH when several learned metrics are compared")
    norm = parser.add_mutually_exclusive_group()
    norm.add_argument("--normalize", dest="normalize", action="store_true", default=None,
                      help="jointly min-max the pair to [-1, 1] for every metric")
    norm.add_argument("--no-normalize", dest="normalize", action="store_false",
                      help="use raw values for every metric (also the learned ones)")
    parser.add_argument("--resample", type=int, metavar="N", help="resample both volumes to N^3 (trilinear)")
    parser.add_argument("--onto-a", action="store_true",
                        help="when the grids differ, resample B onto A's grid (corner-aligned, as the window does)")
    parser.add_argument("--interpolation", choices=("linear", "cubic", "nearest"),
                        help="interpolation for --resample (default linear; cubic = official VolSiM, slow)")
    parser.add_argument("--region", metavar="Z0:Z1,Y0:Y1,X0:X1",
                        help="compare only this box of A's voxels (stop excluded; an empty bound is the edge, "
                        "e.g. ':,16:48,:'); B is resampled onto A's grid first if the grids differ")
    parser.add_argument("--data-range", type=float,
                        help="data range R of PSNR/SSIM/LCC (default: the pair's joint range)")
    add_slice_arguments(parser)
    add_nan_argument(parser)
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print JSON")
    out.add_argument("--csv", action="store_true", help="print CSV")
    out.add_argument("--per-slice", choices=("z", "y", "x"), metavar="AXIS",
                     help="print CSV of per-slice curves along AXIS (z, y or x) instead: the RMS of A − B and the "
                     "mean of every per-voxel metric map (mse, mae, ssim, lcc; maxerr: the max) over each slice, "
                     "as the window's slice profile")
    parser.add_argument("-o", "--output", help="write the JSON/CSV/table to this file instead of stdout")


def add_nan_argument(parser: argparse.ArgumentParser) -> None:
    """``--nan raise|zero``: what reading does with NaN/Inf values (masked regions, fill values)."""
    parser.add_argument("--nan", choices=("raise", "zero"), default="raise",
                        help="NaN/Inf values in a file (masked regions, fill values): refuse the file (raise, "
                        "default) or replace them by 0 (zero)")


def add_slice_arguments(parser: argparse.ArgumentParser) -> None:
    """``--axis``/``--stride``: how 2D metrics (lsim, watson-*) slice 3D volumes."""
    parser.add_argument("--axis", choices=("0", "1", "2", "z", "y", "x", "all"),
                        help="2D metrics (lsim, watson-*) on volumes: slices perpendicular to this axis, or all three "
                        "(default all, as the window; mean over slices)")
    parser.add_argument("--stride", type=int, help="2D metrics: use every N-th slice (default 1)")


def slice_options(names: list[str], args: argparse.Namespace) -> dict[str, dict]:
    """Per-metric slicing options for the 2D metrics among ``names``."""
    from core.metrics.registry import metric_class

    opts = {k: v for k, v in (("axis", args.axis), ("stride", args.stride)) if v is not None}
    flat = [n for n in names if 2 in metric_class(n).dims and 3 not in metric_class(n).dims]
    if opts and not flat:
        from core.errors import MetricError

        raise MetricError("--axis/--stride apply to 2D metrics (lsim, watson-dct, watson-fft) only")
    return {n: {"axis": "all", **opts} for n in flat}  # no --axis: slices along all three axes, as the window


def parse_weights(items: list[str] | None) -> str | dict[str, str] | None:
    """``--weights PATH`` or ``--weights NAME=PATH`` (repeatable) -> a path or a {name: path} dict."""
    if not items:
        return None
    named = {}
    plain = []
    for item in items:
        name, sep, path = item.partition("=")
        if sep and name and "/" not in name and "." not in name:
            named[name.strip().lower()] = path
        else:
            plain.append(item)
    if plain and named or len(plain) > 1:
        from core.errors import MetricError

        raise MetricError("give either one --weights PATH or NAME=PATH entries")
    return plain[0] if plain else named


def read_pair(path_a: str, path_b: str, nan: str = "raise",
              align: bool = True) -> tuple[Volume, Volume, dict[str, list[int]]]:
    """(A, B, {slot: grid}) of two files, each a volume or a neural field (.vsf, baked).

    With ``align``, a field beside a volume on another grid is baked on that volume's grid, as the
    window does (the third item says which slot and grid); else on its own source grid.
    """
    from app.loading import align_fields, load_item

    a, b = (load_item(p, nan_policy=nan) for p in (path_a, path_b))
    baked = align_fields(a, b) if align else {}
    a, b = baked.get("A", a), baked.get("B", b)
    return a.volume, b.volume, {s: list(it.shape) for s, it in baked.items()}


def check_pair(a: Volume, b: Volume, args: argparse.Namespace) -> None:
    """Refuse, in one line naming both files, a pair that no metric can take as it is (rather than
    every metric saying the same): other grids without --onto-a / --resample / --region, or a
    vector field beside a scalar one."""
    from core.errors import VolsightError

    if a.channels != b.channels:
        raise VolsightError(f"A ({args.a}) has {a.channels} channel(s) and B ({args.b}) {b.channels}: no metric "
                            "compares a vector field with a scalar one")
    if a.shape != b.shape and not args.onto_a and args.resample is None and args.region is None:
        shape_a, shape_b = ("×".join(map(str, v.shape)) for v in (a, b))
        raise VolsightError(f"A ({args.a}, {shape_a}) and B ({args.b}, {shape_b}) are on different grids: add "
                            "--onto-a to compare B resampled onto A's grid (as the window does), or --resample N "
                            "to put both on N³")


def reason(name: str, why: str) -> str:
    """A metric's error text without the metric's name in front (the line names it already)."""
    return why[len(name) + 2:] if why.lower().startswith(f"{name.lower()}: ") else why


def format_table(comparison: Comparison) -> str:
    """Human-readable lines: metric, value, kind, and per-scale shares for multiscale metrics."""
    source = comparison.options.get("b_resampled_from")
    onto = f" (resampled from {tuple(source)})" if source else ""
    baked = comparison.options.get("fields_baked_on") or {}
    onto += "".join(f" ({s}: neural field baked on {'×'.join(map(str, g))})" for s, g in baked.items())
    lines = [f"A: {comparison.a.name} {comparison.a.shape}  B: {comparison.b.name} {comparison.b.shape}{onto}"]
    for name, d in comparison.distances.items():
        on = f", on {d.info['resampled_to']}" if d.info.get("resampled_to") else ""  # a network's nearest grid
        if d.info.get("slice_axes_left_out"):  # a 2D metric on a slab: the planes it could take only
            on += f"; {d.info['slice_axes_left_out']}"
        if d.info.get("at") is not None:  # where the largest difference is
            on += ", at z, y, x = " + ", ".join(map(str, d.info["at"]))
        lines.append(f"{name:>8}  {d.value:.6g}  ({d.kind}{on})")
        if d.contributions:
            parts = ", ".join(f"{k} {v:.3g}" for k, v in d.contributions.items())
            lines.append(f"{'':>8}  shares: {parts}")
    for name, why in comparison.errors.items():
        lines.append(f"{name:>8}  no value: {reason(name, why)}")
    return "\n".join(lines) + "\n"


def csv_notes(comparison: Comparison) -> list[str]:
    """What a CSV cannot hold but a reader must know: B resampled onto A's grid, a network run on its nearest grid."""
    notes = [f"note: {s} is a neural field, baked on {'×'.join(map(str, g))}"
             for s, g in (comparison.options.get("fields_baked_on") or {}).items()]
    source = comparison.options.get("b_resampled_from")
    if source:
        notes.append(f"note: B ({comparison.b.name}) resampled from {tuple(source)} onto A's grid {comparison.a.shape}")
    for name, d in comparison.distances.items():
        if d.info.get("resampled_to"):
            notes.append(f"note: {name} computed on the grid {d.info['resampled_to']}")
        if d.info.get("slice_axes_left_out"):
            notes.append(f"note: {name}: {d.info['slice_axes_left_out']}")
    return notes


def emit(text: str, output: str | None) -> None:
    """Print, or write atomically to ``output``."""
    if output:
        from core.io.atomic import write_bytes_atomic

        write_bytes_atomic(output, text.encode("utf-8"))
    else:
        sys.stdout.write(text)


def run(args: argparse.Namespace) -> int:
    from core.compare import compare, default_metrics

    if args.metric is None:
        names = default_metrics()
        if args.weights and "volsim" not in names:  # --weights PATH alone: VolSiM with those weights
            names.append("volsim")
    else:
        names = [n.strip().lower() for n in args.metric.split(",") if n.strip()]
    per = slice_options(names, args)
    if args.data_range is not None:
        for n in names:
            if n in ("psnr", "ssim", "lcc"):
                per.setdefault(n, {})["data_range"] = args.data_range
    if args.per_slice and args.resample is not None:
        from core.errors import VolsightError

        raise VolsightError("--per-slice gives curves over the pair's own grid: use --onto-a, not --resample")
    a, b, baked = read_pair(args.a, args.b, args.nan, align=args.resample is None)
    check_pair(a, b, args)
    b_grid = None
    if args.onto_a and b.shape != a.shape and args.resample is None:
        from core.region import onto_grid

        b_grid = b.shape
        b = onto_grid(b, a.shape, args.interpolation or "linear")
    result = compare(a, b, names, weights=parse_weights(args.weights), metric_options=per,
                     normalize=args.normalize, resample=args.resample, interpolation=args.interpolation,
                     region=args.region, on_error="report")
    for name, why in result.errors.items():  # the others' values still come; the exit status says one failed
        print(f"volsight compare: {name}: {reason(name, why)}", file=sys.stderr)
    if b_grid is not None:  # said in every output form
        result.options["b_resampled_from"] = b_grid
    if baked:  # a neural field evaluated on the other volume's grid
        result.options["fields_baked_on"] = baked
    if args.per_slice:
        from core.compare import per_slice_table

        for line in csv_notes(result):
            print(line, file=sys.stderr)
        emit(per_slice_table(result, "zyx".index(args.per_slice)), args.output)
    elif args.json:
        emit(result.to_json() + "\n", args.output)
    elif args.csv:
        for line in csv_notes(result):  # on stderr, so the CSV itself stays one table
            print(line, file=sys.stderr)
        emit(result.to_csv(), args.output)
    else:
        emit(format_table(result), args.output)
    return 2 if result.errors else 0
