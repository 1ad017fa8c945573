"""``volsight render``: render a volume or neural field to PNG (offline, no display needed)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HELP = (
    "Render a volume file or a neural-field file to PNG with the torch ray-marcher (no display or GL needed). "
    "With --turntable N, render N frames around the vertical axis (PNG sequence in -o's folder, and a GIF "
    "when -o ends in .gif)."
)

METHODS = ("translucent", "mip", "iso", "attenuated_mip")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="volume (.nc, .npy, .npz, raw, ...) or neural-field file")
    parser.add_argument("-o", "--output", required=True,
                        help="output .png (one frame), or a folder / .gif with --turntable")
    parser.add_argument("--variable", help="variable to read from a multi-variable file")
    from app.commands.compare import add_nan_argument

    add_nan_argument(parser)
    parser.add_argument("--azi", type=float, default=30.0, help="camera azimuth in degrees (default 30)")
    parser.add_argument("--polar", type=float, default=60.0, help="camera polar angle from +z in degrees (default 60)")
    parser.add_argument("--dist", type=float, default=5.0, help="camera distance (the longest box side is 2)")
    parser.add_argument("--fov", type=float, default=45.0, help="field of view in degrees; 0 = orthographic")
    parser.add_argument("--camera", help="camera JSON file (as written by the GUI); overrides --azi/--polar/...")
    parser.add_argument("--size", type=int, nargs=2, metavar=("W", "H"), default=(512, 512), help="image size")
    parser.add_argument("--spp", type=int, default=256, help="samples per ray across the box diagonal (default 256)")
    parser.add_argument("--method", choices=METHODS, default="translucent")
    parser.add_argument("--colormap", default="viridis", help="colormap preset name or ParaView JSON file")
    parser.add_argument("--range", type=float, nargs=2, metavar=("LO", "HI"),
                        help="value range of the transfer function (default: the data range)")
    parser.add_argument("--threshold", type=float, help="isosurface threshold (data units; default mid-range)")
    parser.add_argument("--background", type=float, nargs=3, metavar=("R", "G", "B"), default=(0.0, 0.0, 0.0))
    parser.add_argument("--turntable", type=int, metavar="N", help="render N frames around the volume")
    parser.add_argument("--fps", type=float, default=12.0, help="turntable GIF frame rate")
    parser.add_argument("--device", help="cpu, cuda, cuda:N or auto (default: VOLSIGHT_DEVICE or auto)")
    parser.add_argument("--cut", metavar="AXIS:INDEX[:above]",
                        help="cut the volume open at a slice, as the window's Ctrl+K: e.g. z:20 keeps z <= 20, "
                             "x:10:above keeps x >= 10; the open face shows that slice")
    parser.add_argument("--region", metavar="Z0:Z1,Y0:Y1,X0:X1",
                        help="draw only this box of voxels (stop excluded), as the window's Show only the region")
    parser.add_argument("--no-skip", action="store_true", help="disable early termination and empty-space skipping")


def _transfer_function(args, renderer):
    from renderer.transfer import TransferFunction

    value_range = tuple(args.range) if args.range else renderer.value_range
    cmap = args.colormap
    if cmap.lower().endswith(".json") or Path(cmap).is_file():
        return TransferFunction.from_paraview_json(cmap, value_range)
    return TransferFunction.preset(cmap, value_range)


def _camera(args):
    from core.errors import VolsightError
    from renderer.camera import OrbitCamera

    if args.camera:
        try:
            return OrbitCamera.from_json(Path(args.camera).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise VolsightError(f"{args.camera}: not a camera JSON file ({exc})") from exc
    try:
        return OrbitCamera(azimuth=args.azi, polar=args.polar, distance=args.dist, fov=args.fov)
    except ValueError as exc:
        raise VolsightError(str(exc)) from exc


def parse_cut(spec: str, shape: tuple[int, int, int] | None) -> tuple[tuple[float, float, float],
                                                                        tuple[float, float, float]]:
    """The box a ``--cut AXIS:INDEX[:above|below]`` keeps (renderer.overlays.cut_box) on a grid of ``shape``."""
    from core.errors import VolsightError
    from renderer.overlays import cut_box

    parts = spec.strip().lower().split(":")
    if len(parts) not in (2, 3) or parts[0] not in ("z", "y", "x") or (len(parts) == 3 and
                                                                          parts[2] not in ("above", "below")):
        raise VolsightError(f"--cut {spec!r}: expected AXIS:INDEX or AXIS:INDEX:above|below, AXIS one of z, y, x "
                            "(e.g. z:20)")
    axis = "zyx".index(parts[0])
    try:
        index = int(parts[1])
    except ValueError:
        raise VolsightError(f"--cut {spec!r}: the index must be a whole number, got {parts[1]!r}") from None
    n = int(shape[axis]) if shape else 64
    if not 0 <= index < n:
        raise VolsightError(f"--cut {spec!r}: {parts[0]} runs from 0 to {n - 1}")
    return cut_box(axis, (index + 0.5) / n, parts[2] if len(parts) == 3 else "below")


def run(args: argparse.Namespace) -> int:
    from core.device import select_device
    from core.errors import VolsightError
    from renderer.offline import load_source, render_offline, save_png, turntable
    from renderer.raymarch import FieldRenderer

    source = load_source(args.file, args.variable, nan_policy=args.nan)
    device = select_device(args.device)
    renderer = FieldRenderer(source, device=device)
    tf = _transfer_function(args, renderer)
    camera = _camera(args)
    options = dict(method=args.method, spp=args.spp, threshold=args.threshold, background=tuple(args.background))
    if args.no_skip:
        options.update(early_termination=None, skip_empty=False)
    if args.cut or args.region:
        from renderer.overlays import intersect_boxes

        shape = renderer.shape or (64, 64, 64)  # an analytic field: its nominal 64-voxel box
        region = None
        if args.region:
            from core.region import parse_region, region_fractions

            region = region_fractions(parse_region(args.region, shape), shape)
        options["box"] = intersect_boxes(region, parse_cut(args.cut, shape) if args.cut else None)
    size = tuple(args.size)
    out = Path(args.output)
    t0 = time.perf_counter()
    if args.turntable:
        if args.turntable < 1:
            raise VolsightError(f"--turntable needs at least 1 frame, got {args.turntable}")
        gif = out if out.suffix.lower() == ".gif" else None
        folder = out.with_suffix("") if gif is not None else out
        images = turntable(source, camera, tf, args.turntable, size, out_dir=folder, gif=gif, fps=args.fps,
                           device=device, on_frame=lambda i, _: print(f"frame {i + 1}/{args.turntable}",
                                                                      file=sys.stderr), **options)
        where = f"{folder}/frame_0000.png … frame_{len(images) - 1:04d}.png" + (f" and {gif}" if gif else "")
        print(f"wrote {len(images)} frames: {where} ({time.perf_counter() - t0:.1f} s)")
        return 0
    if out.suffix.lower() != ".png":
        raise VolsightError(f"{out}: the output of a single frame must be a .png file")
    img = render_offline(source, camera, tf, size, renderer=renderer, **options)
    save_png(img, out)
    st = renderer.last_stats
    print(f"wrote {out} ({size[0]}×{size[1]}, {args.method}, {time.perf_counter() - t0:.2f} s, "
          f"{st.samples_queried} field samples)")
    return 0
