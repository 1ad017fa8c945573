"""napari's 3D rendering of a volume, timed like bench_render times volsight's view (child process).

Run by ``bench_render`` with a Python that has napari (its own interpreter when napari imports
there, else ``--napari-python``), so napari stays a benchmark-only dependency:
``python tests/benchmarks/napari_side.py VOLUME.npy --sizes 512x512 --methods mip,translucent``.
Prints one JSON object: time to first frame after ``add_image`` (view on screen), and per method
and canvas size the median ms per frame (rotate 3°, repaint, process events, glFinish — the same
cycle as bench_render's ``_frame``) and the fraction of lit pixels. Needs only numpy and napari.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("volume", help=".npy file, float32 [D, H, W] in [0, 1]")
    ap.add_argument("--sizes", default="512x512")
    ap.add_argument("--methods", default="mip,translucent")
    ap.add_argument("--frames", type=int, default=7)
    args = ap.parse_args()

    import napari
    from napari.utils import Colormap
    from qtpy.QtWidgets import QApplication
    from vispy.gloo import gl

    data = np.load(args.volume)
    viewer = napari.Viewer(ndisplay=3, show=True)
    qt_viewer = viewer.window._qt_viewer
    for dock in (qt_viewer.dockLayerList, qt_viewer.dockLayerControls):
        dock.hide()
    canvas = qt_viewer.canvas
    app = QApplication.instance()

    def frame() -> float:
        t0 = time.perf_counter()
        canvas.native.repaint()
        app.processEvents()
        gl.glFinish()
        return time.perf_counter() - t0

    w0, h0 = (int(v) for v in args.sizes.split(",")[0].split("x"))
    canvas.native.setFixedSize(w0, h0)
    for _ in range(5):
        app.processEvents()
    frame()
    t0 = time.perf_counter()
    layer = viewer.add_image(data, rendering="mip", colormap="viridis", contrast_limits=(0.0, 1.0))
    frame()
    first = time.perf_counter() - t0

    viridis = layer.colormap.colors
    ramp = np.array(viridis, dtype=np.float32)
    ramp[:, 3] = np.linspace(0.0, 0.6, len(ramp))  # a translucent ramp 0 -> 0.6, as bench_render uses
    rows = []
    for method in args.methods.split(","):
        layer.rendering = method
        layer.colormap = Colormap(ramp, name="viridis_ramp") if method == "translucent" else "viridis"
        if method == "iso":
            layer.iso_threshold = 0.5
        for size in args.sizes.split(","):
            w, h = (int(v) for v in size.split("x"))
            canvas.native.setFixedSize(w, h)
            for _ in range(3):
                app.processEvents()
            viewer.camera.angles = (0.0, 0.0, 90.0)
            frame()
            warm = frame()
            times = []
            for _ in range(2 if warm > 1.5 else args.frames):
                a = viewer.camera.angles
                viewer.camera.angles = (a[0], a[1] + 3.0, a[2])
                times.append(frame())
            shot = viewer.screenshot(canvas_only=True, flash=False)
            lit = float((shot[..., :3].astype(int).max(-1) > 8).mean())
            rows.append(dict(method=method, size=size, ms=statistics.median(times) * 1000, lit=lit))
    print(json.dumps({"napari": napari.__version__, "first_frame_s": first, "rows": rows}), flush=True)
    sys.stdout.flush()
    os._exit(0)  # napari's teardown at exit is slow and noisy; everything is printed


if __name__ == "__main__":
    main()
