"""``volsight matrix FILES...``: the distance matrix of one metric over several volumes."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

HELP = (
    "Distance matrix of one metric over several volumes (learned metrics: one forward pass per volume, "
    "the set normalised jointly). Prints CSV, or writes it with -o."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", help="volume files (two or more), or folders of them (their "
                        "volume and field files, in natural order: t2 before t10)")
    parser.add_argument("--metric", "-m", default="mse", help="metric name (see `volsight metrics`)")
    parser.add_argument("--weights", metavar="PATH", help="weights of a learned metric")
    norm = parser.add_mutually_exclusive_group()
    norm.add_argument("--normalize", dest="normalize", action="store_true", default=None,
                      help="min-max the whole set jointly to [-1, 1] first")
    norm.add_argument("--no-normalize", dest="normalize", action="store_false", help="use raw values")
    parser.add_argument("--resample", type=int, metavar="N", help="resample every volume to N^3 (trilinear)")
    parser.add_argument("--region", metavar="Z0:Z1,Y0:Y1,X0:X1",
                        help="only this box of every volume's voxels (stop excluded; empty bounds are the "
                        "edges); volumes on other grids are first resampled onto the first volume's grid")
    from app.commands.compare import add_nan_argument, add_slice_arguments

    add_slice_arguments(parser)
    add_nan_argument(parser)
    parser.add_argument("-o", "--output", help="CSV file to write (atomically)")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")


def matrix_csv(names: list[str], matrix: np.ndarray) -> str:
    """CSV text: a header row of names, then one row per volume."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["", *names])
    for name, row in zip(names, matrix, strict=True):
        w.writerow([name, *(repr(float(x)) for x in row)])
    return buf.getvalue()


def run(args: argparse.Namespace) -> int:
    from app.commands.compare import emit
    from app.loading import distinct_labels, expand_folders, load_item, onto_first_grid
    from core.errors import MetricError
    from core.metrics.matrix import distance_matrix

    files = expand_folders(args.files)  # a folder stands for its volume files, in natural order
    if len(files) < 2:
        raise MetricError("a matrix needs at least two files")
    items = [load_item(f, nan_policy=args.nan) for f in files]
    # neural fields (.vsf) are baked on the first member's grid, as in the window's series
    volumes = [it.volume for it in (onto_first_grid(items) if args.resample is None else items)]
    if len({v.shape for v in volumes}) > 1 and args.resample is None:  # as the window's series does
        from core.region import onto_grid

        if not args.quiet:
            print(f"the volumes' grids differ: comparing on the grid of {volumes[0].name} "
                  f"{'×'.join(map(str, volumes[0].shape))}", file=sys.stderr, flush=True)
        volumes = [onto_grid(v, volumes[0].shape) for v in volumes]
    if args.region:
        from core.region import crop_all

        volumes = crop_all(volumes, args.region)
    from app.commands.compare import slice_options

    name = args.metric.strip().lower()
    options = {k: v for k, v in (("normalize", args.normalize), ("resample", args.resample)) if v is not None}
    options.update(slice_options([name], args).get(name, {}))

    tty = sys.stderr.isatty()

    def progress(done: int, total: int) -> None:
        # a terminal gets one line updated in place; a log gets a line per tenth of the work
        if args.quiet:
            return
        if tty:
            print(f"\r{done}/{total}", end="" if done < total else "\n", file=sys.stderr, flush=True)
        elif done == total or done % max(1, total // 10) == 0:
            print(f"{done}/{total}", file=sys.stderr, flush=True)

    from core.compare import build_metrics, nearest_grid

    metric = build_metrics([name], {name: args.weights} if args.weights else None)[name]
    # one grid by now (resampled onto the first's above, unless --resample asks for another)
    fitted = nearest_grid(metric, volumes[0].shape) if "resample" not in options else None
    if fitted is not None:  # a network that takes only some grids (VolSiM): the nearest one, said
        options["resample"] = fitted
        if not args.quiet:
            print(f"{name}: the volumes' grid {volumes[0].shape} does not fit the network; comparing on "
                  f"{'×'.join(map(str, fitted))}, the nearest grid it takes", file=sys.stderr, flush=True)
    m = distance_matrix(volumes, metric, progress=progress, **options)
    # names, or file names where names repeat, with what a region crop added to the name ("[0:20,...]")
    labels = [label + (v.name[len(it.name):] if v.name.startswith(it.name) else "")
              for label, it, v in zip(distinct_labels(items), items, volumes, strict=True)]
    emit(matrix_csv(labels, m), args.output)
    return 0
