"""Offline rendering to images: one frame, or a turntable (PNG sequence and/or GIF).

Offline frames of volumes *and* fields go through the torch ray-marcher (renderer/raymarch.py):
it needs no display or GL context, so ``volsight render`` works on a headless server, and it uses
the same camera and transfer-function conventions as the GL view (the tests check that the two
agree). Volumes are sampled trilinearly (``VolumeField``), like the GL texture.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core.errors import VolsightError, WriterError
from renderer.camera import OrbitCamera
from renderer.raymarch import FieldRenderer, MarchSettings
from renderer.transfer import TransferFunction

if TYPE_CHECKING:
    import torch


def load_source(path: str | os.PathLike, variable: str | None = None, nan_policy: str = "raise") -> Any:
    """A Volume (through core.io; ``nan_policy`` as there) or, for a neural-field file, the NeuralField."""
    p = Path(path)
    if not p.exists():
        raise VolsightError(f"{p}: no such file")
    try:
        from models import store  # the fields room; absent until it lands
    except ImportError:
        store = None
    # a .vsf file that is not a readable field gets the field reader's own error, not "unknown type"
    if store is not None and (p.suffix.lower() == store.FIELD_SUFFIX or store.is_field_file(p)):
        return store.load_field(p)
    from core.io.registry import read_volume

    return read_volume(p, variable=variable, nan_policy=nan_policy)


def default_transfer_function(renderer: FieldRenderer, colormap: str = "viridis",
                              value_range: tuple[float, float] | None = None) -> TransferFunction:
    return TransferFunction.preset(colormap, value_range or renderer.value_range)


def render_offline(
    source: Any,
    camera: OrbitCamera | None = None,
    tf: TransferFunction | None = None,
    size: tuple[int, int] = (512, 512),
    method: str = "translucent",
    spp: int = 256,
    *,
    threshold: float | None = None,
    background: tuple[float, float, float] = (0.0, 0.0, 0.0),
    device: str | torch.device | None = None,
    renderer: FieldRenderer | None = None,
    progress: Callable[[np.ndarray, int], None] | None = None,
    **settings: Any,
) -> np.ndarray:
    """Render a Volume or NeuralField: [H, W, 4] uint8, row 0 at the top."""
    r = renderer or FieldRenderer(source, device=device)
    camera = camera or OrbitCamera()
    tf = tf or default_transfer_function(r)
    st = MarchSettings(method=method, spp=int(spp), threshold=threshold, background=tuple(background), **settings)
    w, h = (int(v) for v in size)
    if w < 1 or h < 1:
        raise VolsightError(f"image size must be positive, got {w}×{h}")
    if progress is None:
        return r.render(camera, tf, (w, h), st)
    img = None
    for i, img in enumerate(r.progressive(camera, tf, (w, h), st)):
        progress(img, i)
    return img


def save_png(image: np.ndarray, path: str | os.PathLike) -> Path:
    """Write an [H, W, 3|4] uint8 image as PNG, atomically."""
    from PIL import Image

    from core.io.atomic import atomic_path

    target = Path(path)
    try:
        with atomic_path(target, suffix=".png") as tmp:
            Image.fromarray(np.ascontiguousarray(image)).save(tmp, format="PNG")
    except OSError as exc:
        raise WriterError(target, f"cannot write PNG ({exc.strerror or exc})") from exc
    return target


def turntable(
    source: Any,
    camera: OrbitCamera | None = None,
    tf: TransferFunction | None = None,
    frames: int = 36,
    size: tuple[int, int] = (256, 256),
    *,
    out_dir: str | os.PathLike | None = None,
    gif: str | os.PathLike | None = None,
    fps: float = 12.0,
    on_frame: Callable[[int, np.ndarray], None] | None = None,
    **render_options: Any,
) -> list[np.ndarray]:
    """Render ``frames`` views a full turn of azimuth apart; write frame_0000.png… and/or an animated GIF."""
    if frames < 1:
        raise VolsightError(f"a turntable needs at least one frame, got {frames}")
    camera = camera or OrbitCamera()
    r = FieldRenderer(source, device=render_options.pop("device", None))
    images = []
    for i in range(frames):
        cam = camera.evolve(azimuth=camera.azimuth + 360.0 * i / frames)
        img = render_offline(source, cam, tf, size, renderer=r, **render_options)
        images.append(img)
        if out_dir is not None:
            save_png(img, Path(out_dir) / f"frame_{i:04d}.png")
        if on_frame is not None:
            on_frame(i, img)
    if gif is not None:
        save_gif(images, gif, fps)
    return images


def save_gif(images: list[np.ndarray], path: str | os.PathLike, fps: float = 12.0) -> Path:
    """An animated GIF (Pillow), looping forever, written atomically."""
    from PIL import Image

    from core.io.atomic import atomic_path

    target = Path(path)
    pil = [Image.fromarray(np.ascontiguousarray(im[..., :3])) for im in images]
    try:
        with atomic_path(target, suffix=".gif") as tmp:
            pil[0].save(tmp, format="GIF", save_all=True, append_images=pil[1:], duration=int(1000 / fps), loop=0)
    except OSError as exc:
        raise WriterError(target, f"cannot write GIF ({exc.strerror or exc})") from exc
    return target
