"""The interactive GL volume view: a vispy SceneCanvas inside a Qt widget.

This is the only renderer module that imports Qt or vispy. It draws with vispy's Volume visual
(float ``r32f`` texture, fixed clim = the transfer function's value range) through a camera that
applies ``OrbitCamera``'s own view/projection matrices, so the GL image and the torch ray-marcher
see the same projection (see renderer/camera.py for the conventions).

* Methods: ``translucent`` (colour and opacity from the TransferFunction: the vispy colormap
  carries the TF's opacity, corrected for the ray step so the result does not depend on the step),
  ``mip``, ``iso`` (``set_threshold``, data units) and ``attenuated_mip``. 3-channel volumes are
  shown as their magnitude.
* Volumes beyond GL_MAX_3D_TEXTURE_SIZE (probed at the first draw) or the texture budget are
  block-mean downsampled; a notice label over the view says so.
* Adaptive resolution: while the camera is dragged or wheeled, a half-resolution copy of the
  volume is drawn with a longer step (about 2.5× fewer samples per ray); the full-resolution
  visual comes back on release (or 200 ms after the last wheel step).
* Mouse: left drag orbits, right drag (or wheel) zooms, middle drag or shift+left drag pans.
* ``set_slice_plane`` / ``set_region_box`` outline the slice panel's plane and the region of interest
  (renderer.overlays); ``set_cut`` hides the part of the volume beyond such a plane (a GL clipping
  plane; the torch ray-marcher takes the same cut as ``MarchSettings.box``).
* Threads: call every method on the GUI thread. Long work (reading, baking a field with
  ``renderer.fields.bake_field``) belongs in a worker; hand the resulting Volume to ``set_volume``.
* Linking: ``a.link_camera(b)`` keeps both cameras equal (both directions) and shares the
  interaction state, so the partner also draws the fast preview during a drag. The app may
  instead connect ``camera_changed`` to the other view's ``camera`` setter itself.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget
from vispy import app as vispy_app
from vispy import scene
from vispy.color import Colormap
from vispy.scene.cameras.base_camera import BaseCamera
from vispy.visuals.transforms import MatrixTransform, STTransform

from core.errors import VolsightError
from core.volume import Volume
from renderer.camera import OrbitCamera, box_half_extents
from renderer.gl_caps import DEFAULT_TEXTURE_BUDGET_BYTES, GL_MAX_3D_TEXTURE_SIZE, GLCaps, TextureFit, fit_to_texture
from renderer.overlays import box_edges, box_planes, crosshair, cut_box, cut_plane, slice_outline
from renderer.transfer import TransferFunction, corrected_opacity

if TYPE_CHECKING:
    from PySide6.QtCore import QSize
    from PySide6.QtGui import QKeyEvent, QResizeEvent
    from vispy.scene.events import SceneMouseEvent
    from vispy.util.event import Event

    from renderer.fields import RenderableField

METHODS = ("translucent", "mip", "iso", "attenuated_mip")
IDLE_STEP = 0.8  # vispy's default relative step (in voxels)
INTERACTIVE_STEP = 1.0  # on the half-resolution copy: 2 full-resolution voxels
COARSE_FACTOR = 2
COARSE_MIN_SIDE = 24  # below this the volume is cheap enough: keep it, only lengthen the step
WHEEL_SETTLE_MS = 200
DEFAULT_ATTENUATION = 0.05  # per voxel of normalised value (napari's default)
# outlines over the volume: the slice panel's plane, and the region of interest
OVERLAY_COLORS = {"plane": (1.0, 1.0, 1.0, 0.7), "region": (1.0, 0.72, 0.25, 0.9), "marker": (1.0, 0.2, 0.6, 1.0)}

_CAPS_CACHE: dict[str, GLCaps] = {}


def _ensure_backend() -> None:
    vispy_app.use_app("pyside6")


class _OrbitSceneCamera(BaseCamera):
    """A vispy camera whose transform is exactly OrbitCamera's view and projection matrices."""

    def __init__(self, owner: VolumeView):
        super().__init__(interactive=True)
        self._owner = owner
        self.orbit = OrbitCamera()
        self.scene_radius = math.sqrt(3.0)
        self._view_tr = MatrixTransform()
        self._proj_tr = MatrixTransform()

    def set_orbit(self, orbit: OrbitCamera) -> None:
        self.orbit = orbit
        self.view_changed()

    def _update_transform(self, event=None) -> None:
        vb = self._viewbox
        if vb is None:
            return
        w, h = vb.size
        if w <= 0 or h <= 0:
            return
        # vispy maps row vectors (x @ M), OrbitCamera gives column-vector matrices: transpose
        self._view_tr.matrix = self.orbit.view_matrix().T
        self._proj_tr.matrix = self.orbit.projection_matrix(int(w), int(h), self.scene_radius).T
        self._viewbox_tr.set_mapping([[-1, 1], [1, -1]], [[0, 0], vb.size])
        full = self._transform_cache.get([self._viewbox_tr, self._proj_tr, self._view_tr])
        self._transform_cache.roll()
        self._set_scene_transform(full)

    def viewbox_mouse_event(self, event: SceneMouseEvent) -> None:
        self._owner._on_mouse(event)

    def viewbox_resize_event(self, event: Event) -> None:
        # the projection depends on the view's aspect ratio (vispy's BaseCamera ignores resizes)
        self.view_changed()


class VolumeView(QWidget):
    """One interactive volume view (GL ray-marching through vispy)."""

    camera_changed = Signal(object)  # OrbitCamera
    interaction_changed = Signal(bool)  # True while the fast preview is drawn

    def __init__(
        self,
        parent: QWidget | None = None,
        *,
        bgcolor: str | tuple = "black",
        max_texture_bytes: int = DEFAULT_TEXTURE_BUDGET_BYTES,
        adaptive: bool = True,
    ):
        super().__init__(parent)
        _ensure_backend()
        self._budget = int(max_texture_bytes)
        self._adaptive = adaptive
        self._bgcolor = bgcolor
        self._canvas = scene.SceneCanvas(keys=None, show=False, bgcolor=bgcolor, parent=self)
        self._canvas.events.draw.connect(self._on_draw, position="first")
        self._view = self._canvas.central_widget.add_view()
        self._scene_camera = _OrbitSceneCamera(self)
        self._view.camera = self._scene_camera
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._canvas.native)
        self._notice = QLabel(self)
        self._notice.setObjectName("volumeViewNotice")
        self._notice.setStyleSheet("QLabel { background: rgba(40, 40, 40, 200); color: #ffd27f; padding: 3px; }")
        self._notice.setWordWrap(True)
        self._notice.hide()
        self._notice_text = ""

        self._source: Volume | None = None
        self._display: Volume | None = None
        self._fit: TextureFit | None = None
        self._extra_notice = ""
        self._tf = TransferFunction.preset("viridis")
        self._tf_auto = True
        self._method = "translucent"
        self._threshold: float | None = None
        self._attenuation = DEFAULT_ATTENUATION
        self._visual = None
        self._coarse = None  # the half-resolution visual for interaction (built lazily)
        self._coarse_step_factor = COARSE_FACTOR
        self._coarse_stale = True
        self._interacting = False
        self._links: list[VolumeView] = []
        self._overlays: dict[str, tuple] = {}  # "plane": (axis, fraction), "region": (lo, hi) fractions
        self._overlay_lines: dict[str, object] = {}  # their vispy Line visuals
        self._cut: tuple[int, float, str] | None = None  # (array axis, fraction, "below" | "above")
        self._clip_box: tuple[tuple[float, ...], tuple[float, ...]] | None = None  # (lo, hi) fractions: all shown
        self._drag: tuple | None = None
        self._caps = _CAPS_CACHE.get("caps", GLCaps())
        self._wheel_timer = QTimer(self)
        self._wheel_timer.setSingleShot(True)
        self._wheel_timer.setInterval(WHEEL_SETTLE_MS)
        self._wheel_timer.timeout.connect(lambda: self._set_interacting(False))
        self.setMinimumSize(64, 64)
        # Build the visual now with a placeholder parked far outside the view: its shader is
        # compiled by the first (empty) paint, so loading a volume later costs an upload only.
        self._visual = self._make_visual(np.zeros((2, 2, 2), np.float32))
        self._visual.transform = STTransform(translate=(1e6, 1e6, 1e6))

    # ------------------------------------------------------------------ public API
    @property
    def canvas(self) -> scene.SceneCanvas:
        """The vispy SceneCanvas (for benchmarks and tests)."""
        return self._canvas

    @property
    def camera(self) -> OrbitCamera:
        return self._scene_camera.orbit

    @camera.setter
    def camera(self, cam: OrbitCamera | dict) -> None:
        if isinstance(cam, dict):
            cam = OrbitCamera.from_dict(cam)
        if not isinstance(cam, OrbitCamera):
            raise TypeError(f"camera must be an OrbitCamera, got {type(cam).__name__}")
        if cam == self._scene_camera.orbit:
            return
        self._scene_camera.set_orbit(cam)
        self._canvas.update()
        self.camera_changed.emit(cam)

    @property
    def volume(self) -> Volume | None:
        """The volume as given to ``set_volume`` (not downsampled)."""
        return self._source

    @property
    def displayed_volume(self) -> Volume | None:
        """The scalar volume in the texture (magnitude, downsampled to fit)."""
        return self._display

    @property
    def transfer_function(self) -> TransferFunction:
        return self._tf

    @property
    def method(self) -> str:
        return self._method

    @property
    def threshold(self) -> float:
        if self._threshold is not None:
            return self._threshold
        lo, hi = self._tf.value_range
        return 0.5 * (lo + hi)

    @property
    def notice(self) -> str:
        """The text of the overlay ('' when hidden)."""
        return self._notice_text

    @property
    def interacting(self) -> bool:
        return self._interacting

    @property
    def gl_caps(self) -> GLCaps:
        return self._caps

    def set_volume(self, volume: Volume | None, notice: str = "") -> None:
        """Show ``volume`` (None clears the view); ``notice`` adds a line to the overlay (e.g. 'baked field').

        Until ``set_transfer_function`` is called, the default transfer function follows each volume's
        value range; afterwards the given function (and its range) is kept across volumes.
        """
        self._source = volume
        self._extra_notice = notice
        if volume is None:
            self._display = None
            self._fit = None
            for v in (self._visual, self._coarse):
                if v is not None:
                    v.visible = False
            self._update_overlays()
            self._update_notice()
            self._canvas.update()
            return
        if not isinstance(volume, Volume):
            raise VolsightError(f"VolumeView.set_volume expects a Volume or None, got {type(volume).__name__}")
        scalar = volume.scalar()
        fit = fit_to_texture(scalar.shape, self._caps, self._budget)
        display = scalar.downsample(fit.factor) if fit.downsampled else scalar
        self._fit = fit
        self._display = display
        if self._tf_auto:
            self._tf = self._tf.evolve(value_range=scalar.value_range())
        data = np.ascontiguousarray(display.data[0])
        if self._visual is None:
            self._visual = self._make_visual(data)
        else:
            self._visual.set_data(data, clim=self._tf.value_range)
        self._place(self._visual, display.shape, display.spacing)
        self._apply_cut()  # the cut's plane follows the new box
        self._scene_camera.scene_radius = float(np.linalg.norm(box_half_extents(display.shape, display.spacing)))
        self._scene_camera.view_changed()
        if self._coarse is not None:
            self._coarse.visible = False
        self._coarse_stale = True
        self._apply_quality()
        self._update_overlays()
        self._update_notice()
        self._canvas.update()

    def set_field(self, field: RenderableField, shape: tuple[int, int, int] | None = None) -> Volume:
        """Bake a NeuralField onto a grid and show it (synchronously; the app bakes in a worker instead)."""
        from renderer.fields import bake_field

        vol = bake_field(field, shape)
        self.set_volume(vol, notice=f"Neural field baked at {'×'.join(map(str, vol.shape))} for display")
        return vol

    def set_transfer_function(self, tf: TransferFunction) -> None:
        """Use ``tf`` (its colormap, opacity and value range as given)."""
        if not isinstance(tf, TransferFunction):
            raise TypeError(f"expected a TransferFunction, got {type(tf).__name__}")
        self._tf = tf
        self._tf_auto = False
        for v in (self._visual, self._coarse):
            if v is not None:
                v.clim = tf.value_range
        self._apply_colormaps()
        self._canvas.update()

    def set_method(self, name: str) -> None:
        """One of 'translucent', 'mip', 'iso', 'attenuated_mip'."""
        if name not in METHODS:
            raise VolsightError(f"unknown rendering method {name!r}; choose one of {', '.join(METHODS)}")
        self._method = name
        for v in (self._visual, self._coarse):
            if v is not None:
                v.method = name
        self._apply_colormaps()
        self._canvas.update()

    def set_threshold(self, value: float | None) -> None:
        """Isosurface threshold in data units (None: middle of the transfer function's range)."""
        self._threshold = None if value is None else float(value)
        for v in (self._visual, self._coarse):
            if v is not None:
                v.threshold = self.threshold
        self._canvas.update()

    def set_attenuation(self, value: float) -> None:
        """Attenuation per voxel of normalised value for 'attenuated_mip'."""
        self._attenuation = float(value)
        for v in (self._visual, self._coarse):
            if v is not None:
                v.attenuation = self._attenuation
        self._canvas.update()

    def set_adaptive(self, enabled: bool) -> None:
        """Turn the reduced-resolution preview during interaction on or off."""
        self._adaptive = bool(enabled)
        if not enabled:
            self._set_interacting(False)

    def link_camera(self, other: VolumeView) -> None:
        """Keep this view's camera and ``other``'s equal (both ways); the partner takes this camera now."""
        if other is self or other in self._links:
            return
        self._links.append(other)
        other._links.append(self)
        self.camera_changed.connect(other._on_linked_camera)
        other.camera_changed.connect(self._on_linked_camera)
        other.camera = self.camera

    def unlink_camera(self, other: VolumeView) -> None:
        if other not in self._links:
            return
        self._links.remove(other)
        other._links.remove(self)
        self.camera_changed.disconnect(other._on_linked_camera)
        other.camera_changed.disconnect(self._on_linked_camera)

    def set_slice_plane(self, axis: int | None, fraction: float = 0.5) -> None:
        """Outline the plane perpendicular to array ``axis`` at ``fraction`` of the box (None hides it)."""
        self._set_overlay("plane", None if axis is None else (int(axis), float(fraction)))

    def set_region_box(self, lo: tuple[float, float, float] | None, hi: tuple[float, float, float] | None = None
                       ) -> None:
        """Outline the box from fractions ``lo`` to ``hi`` of the volume along (z, y, x) (None hides it)."""
        box = None if lo is None or hi is None else (tuple(float(v) for v in lo), tuple(float(v) for v in hi))
        self._set_overlay("region", box)

    def set_cut(self, axis: int | None, fraction: float = 0.5, keep: str = "below") -> None:
        """Hide the part of the volume beyond the plane perpendicular to array ``axis`` at ``fraction`` of
        the box, keeping the lower (``"below"``) or higher (``"above"``) indices; None shows it whole.

        At a slice's voxel centres the face left open shows that slice's values, drawn with the
        transfer function. Moving the cut only changes the clipping plane's uniforms (no shader relink).
        """
        cut = None if axis is None else (int(axis), float(fraction), str(keep))
        if cut is not None:
            cut_box(*cut)  # refuses a bad axis or side before anything changes
        if cut == self._cut:
            return  # (the slice panel says so for every move of its slider, cut or not): no redraw
        self._cut = cut
        self._apply_cut()
        self._update_notice()
        self._canvas.update()

    @property
    def cut(self) -> tuple[int, float, str] | None:
        """(array axis, fraction, side kept) of the cut, or None."""
        return self._cut

    def set_clip_box(self, lo: tuple[float, float, float] | None, hi: tuple[float, float, float] | None = None
                     ) -> None:
        """Show only the box from fractions ``lo`` to ``hi`` of the volume along (z, y, x) (a region of
        interest; six clipping planes, together with any cut); None shows everything."""
        box = None if lo is None or hi is None else (tuple(float(v) for v in lo), tuple(float(v) for v in hi))
        if box == self._clip_box:
            return
        self._clip_box = box
        self._apply_cut()
        self._update_notice()
        self._canvas.update()

    @property
    def clip_box(self) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
        """(lo, hi) fractions (z, y, x) of the part shown, or None (all of it)."""
        return self._clip_box

    def _apply_cut(self) -> None:
        planes = None
        if self._display is not None and (self._cut is not None or self._clip_box is not None):
            half = box_half_extents(self._display.shape, self._display.spacing)
            parts = ([box_planes(half, *self._clip_box)] if self._clip_box is not None else []) + (
                [cut_plane(half, *self._cut)] if self._cut is not None else [])
            planes = np.concatenate(parts)
        for v in (self._visual, self._coarse):
            if v is not None:
                self._set_clipping(v, planes)

    @staticmethod
    def _set_clipping(visual, planes: np.ndarray | None) -> None:
        """Give ``visual`` these clipping planes (scene coordinates). vispy's setter builds a new shader
        function, which relinks the program (about 0.2 s on software GL); when only the planes' place
        changes, their uniforms are rewritten instead, as a dragged slice slider needs."""
        planes = np.empty((0, 2, 3)) if planes is None else np.asarray(planes, dtype=np.float64)
        current = getattr(visual, "_clipping_planes", None)
        func = getattr(visual, "_clip_func", None)
        if func is not None and current is not None and len(current) == len(planes) and len(planes):
            for i, (pos, normal) in enumerate(planes):
                func[f"clipping_plane_pos{i}"] = tuple(float(c) for c in pos)
                func[f"clipping_plane_norm{i}"] = tuple(float(c) for c in normal)
            visual._clipping_planes = planes
            visual.update()
        elif len(planes) or len(current if current is not None else ()):
            visual.clipping_planes = planes

    def set_marker(self, point: tuple[float, float, float] | None) -> None:
        """Mark a point at fractions (z, y, x) of the box (voxel ``i`` of ``n``: ``(i + 0.5) / n``) with a
        crosshair drawn over the volume (a located value, such as the largest difference); None removes it."""
        self._set_overlay("marker", None if point is None else tuple(float(v) for v in point))

    @property
    def marker(self) -> tuple[float, ...] | None:
        """(z, y, x) fractions of the marked point, or None."""
        return self._overlays.get("marker")

    @property
    def slice_plane(self) -> tuple[int, float] | None:
        """(array axis, fraction) of the outlined slice plane, or None."""
        return self._overlays.get("plane")

    @property
    def region_box(self) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
        """(lo, hi) fractions (z, y, x) of the outlined region, or None."""
        return self._overlays.get("region")

    def _set_overlay(self, name: str, spec: tuple | None) -> None:
        if spec is None:
            self._overlays.pop(name, None)
        else:
            self._overlays[name] = spec
        self._update_overlays()

    def _update_overlays(self) -> None:
        """Draw the outlines (renderer.overlays) over the volume, without depth test, so they stay visible
        inside and behind the data; they follow the volume's box when it changes."""
        for name, line in self._overlay_lines.items():
            line.visible = name in self._overlays and self._display is not None
        if self._display is not None:
            half = box_half_extents(self._display.shape, self._display.spacing)
            for name, spec in self._overlays.items():
                pts = (slice_outline(half, *spec) if name == "plane" else crosshair(half, spec) if name == "marker"
                       else box_edges(half, *spec)).astype(np.float32)
                line = self._overlay_lines.get(name)
                if line is None:
                    line = scene.visuals.Line(pts, color=OVERLAY_COLORS[name], width=2.0 if name == "marker" else 1.0,
                                              method="gl",
                                              connect="strip" if name == "plane" else "segments",
                                              parent=self._view.scene)
                    line.order = 10  # after the volume
                    line.set_gl_state("translucent", depth_test=False)
                    self._overlay_lines[name] = line
                else:
                    line.set_data(pts)
                line.visible = True
        self._canvas.update()

    def grab_image(self) -> np.ndarray:
        """Render the current view at full quality: [H, W, 4] uint8 (row 0 at the top)."""
        was = self._interacting
        if was:
            self._set_interacting(False, propagate=False)
        img = self._canvas.render(alpha=True)
        if was:
            self._set_interacting(True, propagate=False)
        return np.asarray(img)

    def begin_interaction(self) -> None:
        """Switch to the fast preview (as a drag does); ``end_interaction`` restores full quality."""
        self._set_interacting(True)

    def end_interaction(self) -> None:
        self._set_interacting(False)

    # ------------------------------------------------------------------ visuals
    def _make_visual(self, data: np.ndarray):
        v = scene.visuals.Volume(
            data, parent=self._view.scene, method=self._method, clim=self._tf.value_range,
            texture_format="r32f", relative_step_size=IDLE_STEP, threshold=self.threshold,
            attenuation=self._attenuation, cmap=self._vispy_cmap(IDLE_STEP),
        )
        return v

    @classmethod
    def _place(cls, visual, shape: tuple[int, int, int], spacing) -> None:
        """Fit ``visual`` to the world box of a volume, reusing its STTransform when it has one.

        A new transform object changes the visual's shader code, and relinking it costs about 0.2 s
        on software GL without a warm shader cache; updating scale and translation is only uniforms.
        """
        box = cls._box_transform(shape, spacing)
        tr = visual.transform
        if isinstance(tr, STTransform):
            tr.scale = box.scale
            tr.translate = box.translate
        else:
            visual.transform = box

    @staticmethod
    def _box_transform(shape: tuple[int, int, int], spacing) -> STTransform:
        half = box_half_extents(shape, spacing)
        n = np.array([shape[2], shape[1], shape[0]], dtype=np.float64)
        scale = 2.0 * half / n
        # local voxel centre i sits at i; the box edges at -0.5 and n - 0.5
        return STTransform(scale=tuple(scale), translate=tuple(-half + half / n))

    def _vispy_cmap(self, step_in_voxels: float) -> Colormap:
        lut = self._tf.lut(256).astype(np.float64)
        if self._method == "translucent":
            lut[:, 3] = corrected_opacity(lut[:, 3], step_in_voxels)
        else:
            lut[:, 3] = 1.0
        return Colormap(lut)

    @staticmethod
    def _set_cmap(visual, cmap: Colormap) -> None:
        """Give ``visual`` a new colormap, rewriting its LUT texture in place when it has one.

        vispy's ``cmap`` setter replaces the colormap shader function, which relinks the program on
        the next draw (a few hundred ms on software GL); a transfer-function editor changes the map
        continuously, so only the texture data is replaced when the shader code stays the same.
        """
        try:
            tex = visual.shared_program["texture2D_LUT"]
        except KeyError:
            tex = None
        old = getattr(visual, "_cmap", None)
        same_code = old is not None and getattr(old, "glsl_map", None) == cmap.glsl_map
        if tex is not None and same_code and tex.shape[:2] == cmap.texture_map_data.shape[:2]:
            tex.set_data(cmap.texture_map_data)
            visual._cmap = cmap
            visual.update()
        else:
            visual.cmap = cmap

    def _apply_colormaps(self) -> None:
        if self._visual is not None:
            self._set_cmap(self._visual, self._vispy_cmap(IDLE_STEP))
        if self._coarse is not None and not self._coarse_stale:
            self._set_cmap(self._coarse, self._vispy_cmap(self._coarse.relative_step_size * self._coarse_step_factor))

    def _build_coarse(self) -> None:
        disp = self._display
        if disp is None:
            return
        if min(disp.shape) >= COARSE_MIN_SIDE:
            coarse = disp.downsample(COARSE_FACTOR)
            factor, step = COARSE_FACTOR, INTERACTIVE_STEP
        else:
            coarse, factor, step = disp, 1, 2.0 * INTERACTIVE_STEP
        data = np.ascontiguousarray(coarse.data[0])
        if self._coarse is None:
            self._coarse = scene.visuals.Volume(
                data, parent=self._view.scene, method=self._method, clim=self._tf.value_range,
                texture_format="r32f", relative_step_size=step, threshold=self.threshold,
                attenuation=self._attenuation, cmap=self._vispy_cmap(step * factor),
            )
        else:
            self._coarse.set_data(data, clim=self._tf.value_range)
            self._coarse.relative_step_size = step
        self._coarse_step_factor = factor
        # attenuated MIP accumulates per step in texture voxels: keep its meaning at the coarse scale
        self._coarse.attenuation = self._attenuation * factor
        self._coarse.threshold = self.threshold
        self._place(self._coarse, coarse.shape, coarse.spacing)
        self._apply_cut()
        self._coarse_stale = False
        self._apply_colormaps()

    def _apply_quality(self) -> None:
        if self._visual is None or self._display is None:
            return
        preview = self._interacting and self._adaptive
        if preview and self._coarse_stale:
            self._build_coarse()
        self._visual.visible = not preview
        if self._coarse is not None:
            self._coarse.visible = preview

    def _set_interacting(self, flag: bool, propagate: bool = True) -> None:
        flag = bool(flag) and self._adaptive
        if flag == self._interacting:
            return
        self._interacting = flag
        self._apply_quality()
        self._canvas.update()
        self.interaction_changed.emit(flag)
        if propagate:
            for other in self._links:
                other._set_interacting(flag, propagate=False)

    # ------------------------------------------------------------------ events
    def _on_linked_camera(self, cam: OrbitCamera) -> None:
        self.camera = cam

    def _on_draw(self, event) -> None:
        if not self._caps.probed:
            self._probe_caps()

    def _probe_caps(self) -> None:
        from vispy.gloo import gl

        try:
            size = int(gl.glGetParameter(GL_MAX_3D_TEXTURE_SIZE))
            caps = GLCaps(size, str(gl.glGetParameter(gl.GL_RENDERER)), str(gl.glGetParameter(gl.GL_VERSION)), True)
        except Exception:  # noqa: BLE001 - a driver that cannot answer keeps the assumed limits
            caps = GLCaps(probed=True)
        _CAPS_CACHE["caps"] = caps
        old = self._caps
        self._caps = caps
        if self._source is not None and caps.max_3d_texture_size < old.max_3d_texture_size:
            # the volume was fitted against an optimistic limit: redo it after this frame
            QTimer.singleShot(0, lambda: self.set_volume(self._source, self._extra_notice))

    def _cut_notice(self) -> str:
        if self._source is None:
            return ""
        lines = ["showing the region of interest only"] if self._clip_box is not None else []
        if self._cut is not None:
            axis, fraction, keep = self._cut
            n = self._source.shape[axis]
            index = min(n - 1, max(0, int(round(fraction * n - 0.5))))
            lines.append(f"cut: showing {'zyx'[axis]} {'≤' if keep == 'below' else '≥'} {index}")
        return "\n".join(lines)

    def _update_notice(self) -> None:
        lines = [s for s in ((self._fit.notice() if self._fit else ""), self._extra_notice, self._cut_notice()) if s]
        self._notice_text = "\n".join(lines)
        self._notice.setText(self._notice_text)
        self._notice.setVisible(bool(lines))
        if lines:
            self._fit_notice()
            self._notice.move(6, 6)
            self._notice.raise_()

    def _fit_notice(self) -> None:
        """Size the notice to its longest line, wrapping only what the view is too narrow for (a word-wrapped
        label left to itself picks a narrow box and breaks even a short line)."""
        room = max(60, self.width() - 12)
        margins = self._notice.contentsMargins()
        natural = max(self._notice.fontMetrics().horizontalAdvance(line) for line in self._notice_text.split("\n"))
        width = min(room, natural + margins.left() + margins.right() + 8)  # + the style sheet's padding
        self._notice.setMaximumWidth(room)
        self._notice.resize(width, self._notice.heightForWidth(width))

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override
        # vispy's GL widget reports its current size (800×600 at first) as its hint, which makes
        # enclosing layouts and restored window geometries grow; a view is happy anywhere from 64 px
        from PySide6.QtCore import QSize

        return QSize(320, 320)

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        if self._notice_text:
            self._fit_notice()

    def _on_mouse(self, event) -> None:
        kind = event.type
        if kind == "mouse_wheel":
            dy = float(event.delta[1])
            self._set_interacting(True)
            self._wheel_timer.start()
            self.camera = self.camera.zoomed(0.9**dy)
            event.handled = True
            return
        if kind == "mouse_press":
            self._drag = (np.asarray(event.pos[:2], dtype=float), self.camera, event.button,
                          "Shift" in [getattr(m, "name", str(m)) for m in (event.modifiers or ())])
            self._set_interacting(True)
            event.handled = True
        elif kind == "mouse_move" and self._drag is not None:
            start, cam0, button, shift = self._drag
            d = np.asarray(event.pos[:2], dtype=float) - start
            size = max(1.0, float(min(self._canvas.size)))
            if button == 1 and not shift:
                # a drag across the smaller side turns the view by 180 degrees
                self.camera = cam0.orbited(-d[0] / size * 180.0, -d[1] / size * 180.0)
            elif button == 3 or (button == 1 and shift):
                self.camera = cam0.panned(-2.0 * d[0] / size, 2.0 * d[1] / size)
            elif button == 2:
                self.camera = cam0.zoomed(math.exp(d[1] / size * 2.0))
            event.handled = True
        elif kind == "mouse_release":
            self._drag = None
            self._set_interacting(False)
            event.handled = True

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 - Qt override
        if event.key() == Qt.Key.Key_R:
            self.camera = OrbitCamera()
        else:
            super().keyPressEvent(event)

