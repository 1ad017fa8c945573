"""Watson-DCT and Watson-FFT perceptual distances (Czolbe et al., NeurIPS 2020), deterministic.

Both follow Watson's (1993) model on non-overlapping 8×8 blocks of a gray image in [0, 1]:

- coefficients ``c0`` of the reference (``a``, the *target* that drives masking) and ``c1`` of the
  compared image (``b``): orthonormal block DCT-II ``A X Aᵀ`` (DCT variant) or the block real FFT
  divided by 64, of which the amplitudes are compared (FFT variant, 8×5 coefficients);
- thresholds ``t`` (8×8 / 8×5); luminance masking ``t_l = t · ((c0_DC + ε) / (mean_DC + ε))^α``;
  contrast masking ``s = smoothmax(t_l, (|c0| + ε)^w · t_l^(1−w))`` (softmax-weighted average);
- pooling ``D = (Σ (|c0 − c1| / s + ε)^β + ε)^(1/β)`` over all blocks and frequencies, per image;
- FFT only: plus a phase term ``Σ w_phase · acos(cos(φ0 − φ1)(1 − 1e-7))`` (the four real-valued
  bins have no phase and weight 0).

RGB (and 3-component vector data): converted to YCbCr (BT.601 matrix, +0.5 on Cb/Cr), one model
per channel, combined as ``Σ_k softmax(w̃)_k D_k``. ε = 1e-10 throughout.

Differences from the published code, on purpose: (1) deterministic — no random-shift wrapper
(``deterministic=True`` of the original); (2) ``mean_DC`` is the mean over the blocks of *each
image*, not of the whole batch (the original couples a batch through it: measured 0.06–0.8 %
changes and a rank swap), so batched and single results agree; (3) inputs are the pair's joint
min-max to [0, 1] (over all channels; ``normalize=False`` keeps values as they are, which must
then be in [0, 1]), and H, W are centre-cropped to multiples of 8 (``fit='pad'`` pads the
bottom/right edge by replication instead).

Defaults (``preset="czolbe2020"``): the Watson 1993 / Ahumada–Peterson 8×8 luminance threshold
table for the DCT (published values), uniform thresholds for the FFT (the original's start
value), and the trained scalars reported for the gray models (DCT α 0.2314, w 0.4303, β 0.9651;
FFT α −0.135, w 0.2057, β 0.6145, phase weights e⁻²) with the trained RGB channel weights (DCT
Y/Cb/Cr 0.174/0.384/0.442, FFT 0.351/0.301/0.348). The trained threshold tables are not
available here; ``weights=`` loads the original files (``gray_watson_dct_trial0.pth`` etc.,
plain state dicts) when the user has them. ``preset="watson1993"`` uses Watson's own α 0.649,
w 0.7, β 4 (FFT: the original start values α 0.1, w 0.2, β 1).

Properties: not a metric. Masking depends on the reference, so ``d(a, b) != d(b, a)``;
``d(x, x)`` is a small positive number (the ε floors; FFT larger through the clamped acos); no
triangle inequality. Values grow with image size (sums over blocks). On volumes the metric runs
on slices (``axis=0|1|2|'all'``, mean over slices), or on renders via ``distance_2d``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.errors import MetricError, WeightsError
from core.metrics.base import Distance, Metric
from core.metrics.preprocess import minmax_affine
from core.metrics.registry import register
from core.metrics.slicing import (
    RESAMPLE_OPTIONS,
    SLICE_OPTIONS,
    axes_with_room,
    image_array,
    pair_data,
    parse_axes,
    slice_options,
    sliced_distance,
)
from core.metrics.weights_io import load_torch_checkpoint
from core.volume import Volume

EPS = 1e-10
BLOCK = 8
_OPTIONS = frozenset({"normalize"})
Transform = Literal["dct", "fft"]

# Watson (1993) "DCT quantization matrices visually optimized for individual images", luminance
# thresholds of the 8x8 DCT basis functions (Ahumada & Peterson model), row = vertical frequency.
WATSON_DCT_THRESHOLDS = (
    (1.40, 1.01, 1.16, 1.66, 2.40, 3.43, 4.79, 6.56),
    (1.01, 1.45, 1.32, 1.52, 2.00, 2.71, 3.67, 4.93),
    (1.16, 1.32, 2.24, 2.59, 2.98, 3.64, 4.60, 5.88),
    (1.66, 1.52, 2.59, 3.77, 4.55, 5.30, 6.28, 7.60),
    (2.40, 2.00, 2.98, 4.55, 6.15, 7.46, 8.71, 10.17),
    (3.43, 2.71, 3.64, 5.30, 7.46, 9.62, 11.58, 13.51),
    (4.79, 3.67, 4.60, 6.28, 8.71, 11.58, 14.50, 17.29),
    (6.56, 4.93, 5.88, 7.60, 10.17, 13.51, 17.29, 21.15),
)
# scalar parameters per preset and transform: alpha (luminance masking), w (contrast masking), beta (pooling)
PRESETS: dict[str, dict[str, dict[str, float]]] = {
    "czolbe2020": {
        "dct": {"alpha": 0.2314, "w": 0.4303, "beta": 0.9651},
        "fft": {"alpha": -0.135, "w": 0.2057, "beta": 0.6145},
    },
    "watson1993": {
        "dct": {"alpha": 0.649, "w": 0.7, "beta": 4.0},
        "fft": {"alpha": 0.1, "w": 0.2, "beta": 1.0},
    },
}
RGB_CHANNEL_WEIGHTS = {"dct": (0.174, 0.384, 0.442), "fft": (0.351, 0.301, 0.348)}
YCBCR_MATRIX = ((0.299, 0.587, 0.114), (-0.1687, -0.3313, 0.5), (0.5, -0.4187, -0.0813))
YCBCR_BIAS = (0.0, 0.5, 0.5)
GRAY_FROM_RGB = (0.3, 0.59, 0.11)  # the gray conversion the gray models were trained with
PHASE_WEIGHT_LOG = -2.0
CHANNEL_NAMES = ("Y", "Cb", "Cr")


def dct_matrix(n: int = BLOCK) -> torch.Tensor:
    """Orthonormal DCT-II matrix ``A`` (rows are basis functions), so block coefficients are ``A X Aᵀ``."""
    k = np.arange(n)[:, None]
    x = np.arange(n)[None, :]
    a = np.sqrt(2.0 / n) * np.cos(np.pi * (2 * x + 1) * k / (2 * n))
    a[0] /= np.sqrt(2.0)
    return torch.from_numpy(a.astype(np.float32))


def to_blocks(x: torch.Tensor, block: int = BLOCK) -> torch.Tensor:
    """``[N, 1, H, W]`` (H, W multiples of ``block``) -> ``[N, K, block, block]``, blocks row-major."""
    n, c, h, w = x.shape
    if c != 1:
        raise MetricError(f"watson: block transform expects one channel, got {c}")
    x = x.reshape(n, h // block, block, w // block, block).permute(0, 1, 3, 2, 4)
    return x.reshape(n, (h // block) * (w // block), block, block)


def smoothmax(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Softmax-weighted average of ``a`` and ``b`` (a smooth maximum)."""
    weights = torch.softmax(torch.stack([a, b], dim=-1), dim=-1)
    return a * weights[..., 0] + b * weights[..., 1]


class BlockDCT(nn.Module):
    """8×8 block DCT-II with the matrix stored as buffer ``A`` (state-dict key ``dct.A``)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("A", dct_matrix())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        blocks = to_blocks(x)
        return self.A @ blocks @ self.A.T


class WatsonChannel(nn.Module):
    """Watson distance of one gray channel; parameter names follow the original state dicts."""

    def __init__(self, transform: Transform = "dct", preset: str = "czolbe2020", trainable: bool = False) -> None:
        super().__init__()
        if transform not in ("dct", "fft"):
            raise MetricError(f"watson: transform must be 'dct' or 'fft', got {transform!r}")
        if preset not in PRESETS:
            raise MetricError(f"watson: unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
        self.transform = transform
        p = PRESETS[preset][transform]
        self.register_buffer("blocksize", torch.tensor(BLOCK, dtype=torch.int64))
        if transform == "dct":
            self.dct = BlockDCT()
            t = torch.log(torch.tensor(WATSON_DCT_THRESHOLDS, dtype=torch.float32))
        else:
            t = torch.zeros(BLOCK, BLOCK // 2 + 1)
        self.t_tild = nn.Parameter(t)
        self.alpha = nn.Parameter(torch.tensor(float(p["alpha"])))
        self.w_tild = nn.Parameter(torch.tensor(math.log(p["w"] / (1.0 - p["w"]))))  # logit of w
        self.beta = nn.Parameter(torch.tensor(float(p["beta"])))
        if transform == "fft":
            self.w_phase_tild = nn.Parameter(torch.full((BLOCK, BLOCK // 2 + 1), PHASE_WEIGHT_LOG))
        self.requires_grad_(trainable)

    @property
    def thresholds(self) -> torch.Tensor:
        return torch.exp(self.t_tild)

    @property
    def w(self) -> torch.Tensor:
        return torch.sigmoid(self.w_tild)

    def phase_weights(self) -> torch.Tensor:
        """``exp(w_phase_tild)`` with the four real-valued FFT bins (no phase) set to 0."""
        wp = torch.exp(self.w_phase_tild).clone()
        last = BLOCK // 2
        for i, j in ((0, 0), (0, last), (last, 0), (last, last)):
            wp[i, j] = 0.0
        return wp

    def _masked_distance(self, c0: torch.Tensor, c1: torch.Tensor) -> torch.Tensor:
        n, k, h, w = c0.shape
        dc = c0[:, :, 0, 0]
        mean_dc = dc.mean(dim=1, keepdim=True)  # per image: no coupling between batch members
        t_l = self.thresholds.view(1, 1, h, w) * (((dc + EPS) / (mean_dc + EPS)) ** self.alpha).view(n, k, 1, 1)
        s = smoothmax(t_l, (c0.abs() + EPS) ** self.w * t_l ** (1 - self.w))
        pooled = (((c0 - c1) / s).abs() + EPS) ** self.beta + EPS
        return pooled.sum(dim=(1, 2, 3)) ** (1 / self.beta)

    def forward(self, image: torch.Tensor, reference: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(amplitude/DCT term, phase term) per image ``[N]`` of ``image`` against ``reference`` ``[N,1,H,W]``."""
        if self.transform == "dct":
            c0, c1 = self.dct(reference), self.dct(image)
            return self._masked_distance(c0, c1), torch.zeros(c0.shape[0], dtype=c0.dtype, device=c0.device)
        f0 = torch.view_as_real(torch.fft.rfft2(to_blocks(reference)) / BLOCK**2)
        f1 = torch.view_as_real(torch.fft.rfft2(to_blocks(image)) / BLOCK**2)
        amp0 = torch.linalg.vector_norm(f0 + EPS, dim=-1)
        amp1 = torch.linalg.vector_norm(f1 + EPS, dim=-1)
        amplitude = self._masked_distance(amp0, amp1)
        ph0 = torch.atan2(f0[..., 1], f0[..., 0] + EPS)
        ph1 = torch.atan2(f1[..., 1], f1[..., 0] + EPS)
        # the factor keeps acos away from +-1 (as the original: finite gradients)
        phase = torch.acos(torch.cos(ph0 - ph1) * (1 - EPS * 1e3)) * self.phase_weights()
        return amplitude, phase.sum(dim=(1, 2, 3))


class ColorTransform(nn.Module):
    """RGB -> YCbCr per pixel (buffers ``transform`` [3,3] and ``bias`` [3], as in the original files)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("transform", torch.tensor(YCBCR_MATRIX, dtype=torch.float32))
        self.register_buffer("bias", torch.tensor(YCBCR_BIAS, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("kc,nchw->nkhw", self.transform, x) + self.bias.view(1, 3, 1, 1)


class WatsonModel(nn.Module):
    """Gray (one :class:`WatsonChannel`) or colour (YCbCr, three channels + softmax weights) Watson model."""

    def __init__(
        self, transform: Transform = "dct", color: bool = False, preset: str = "czolbe2020", trainable: bool = False
    ) -> None:
        super().__init__()
        self.transform = transform
        self.color = bool(color)
        if self.color:
            self.to_YCbCr = ColorTransform()  # noqa: N815 - the original state-dict name
            self.ly = WatsonChannel(transform, preset)
            self.lcb = WatsonChannel(transform, preset)
            self.lcr = WatsonChannel(transform, preset)
            self.w_tild = nn.Parameter(torch.log(torch.tensor(RGB_CHANNEL_WEIGHTS[transform])))
        else:
            self.gray = WatsonChannel(transform, preset)
        self.requires_grad_(trainable)

    def channel_weights(self) -> torch.Tensor:
        return torch.softmax(self.w_tild, dim=0)

    def forward(self, image: torch.Tensor, reference: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Distances ``[N]`` and weighted per-part terms (summing to them) for ``[N, C, H, W]`` in [0, 1]."""
        if not self.color:
            if image.shape[1] == 3:
                g = torch.tensor(GRAY_FROM_RGB, dtype=image.dtype, device=image.device).view(1, 3, 1, 1)
                image, reference = (image * g).sum(1, keepdim=True), (reference * g).sum(1, keepdim=True)
            amp, phase = self.gray(image, reference)
            parts = {"amplitude": amp, "phase": phase} if self.transform == "fft" else {"dct": amp}
            return amp + phase, parts
        if image.shape[1] == 1:
            image, reference = image.expand(-1, 3, -1, -1), reference.expand(-1, 3, -1, -1)
        yi, yr = self.to_YCbCr(image), self.to_YCbCr(reference)
        weights = self.channel_weights()
        parts: dict[str, torch.Tensor] = {}
        total = torch.zeros(image.shape[0], dtype=image.dtype, device=image.device)
        for k, (name, model) in enumerate(zip(CHANNEL_NAMES, (self.ly, self.lcb, self.lcr), strict=True)):
            amp, phase = model(yi[:, k : k + 1], yr[:, k : k + 1])
            parts[name] = weights[k] * (amp + phase)
            total = total + parts[name]
        return total, parts

    # ------------------------------------------------------------------ original weight files
    def load_original(self, state: Mapping[str, Any], path: str | os.PathLike | None = None) -> None:
        """Load an original ``{gray,rgb}_watson_{dct,fft}_trial0.pth`` state dict (layout: notes §3.4)."""
        if self.color:
            own = dict(state)
        else:
            own = {f"gray.{k}": v for k, v in state.items()}
        expected = self.state_dict()
        missing = sorted(set(expected) - set(own))
        extra = sorted(set(own) - set(expected))
        if missing or extra:
            raise WeightsError(
                path,
                f"not a {'colour' if self.color else 'gray'} Watson-{self.transform.upper()} state dict: "
                + (f"missing {', '.join(k.removeprefix('gray.') for k in missing[:6])}" if missing else "")
                + ("; " if missing and extra else "")
                + (f"unexpected {', '.join(k.removeprefix('gray.') for k in extra[:6])}" if extra else ""),
            )
        for key, ref in expected.items():
            value = own[key]
            if not isinstance(value, torch.Tensor) or tuple(value.shape) != tuple(ref.shape):
                shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                raise WeightsError(path, f"Watson weights: {key.removeprefix('gray.')} has shape {shape}, "
                                         f"expected {tuple(ref.shape)}")
            if key.endswith("blocksize") and int(value) != BLOCK:
                raise WeightsError(path, f"Watson weights: block size {int(value)}, only {BLOCK} is supported")
            if key.endswith("dct.A"):
                a = value.double()
                if not torch.allclose(a @ a.T, torch.eye(BLOCK, dtype=torch.float64), atol=1e-4):
                    raise WeightsError(path, "Watson weights: dct.A is not an orthonormal 8x8 transform")
        self.load_state_dict({k: torch.as_tensor(v).to(expected[k].dtype) for k, v in own.items()})


def load_original_weights(path: str | os.PathLike, transform: Transform) -> WatsonModel:
    """Build a :class:`WatsonModel` from an original Watson weight file (gray or RGB, safe load)."""
    state = load_torch_checkpoint(path, (), f"Watson-{transform.upper()}")
    if "t_tild" in state:
        color = False
        t = state["t_tild"]
    elif "ly.t_tild" in state:
        color = True
        t = state["ly.t_tild"]
    else:
        keys = ", ".join(map(str, list(state)[:8]))
        raise WeightsError(path, f"not a Watson weights file (no t_tild / ly.t_tild; keys: {keys})")
    if isinstance(t, torch.Tensor) and t.ndim == 2:
        kind = {(BLOCK, BLOCK): "dct", (BLOCK, BLOCK // 2 + 1): "fft"}.get(tuple(t.shape))
        if kind is not None and kind != transform:
            raise WeightsError(path, f"this is a Watson-{kind.upper()} weights file, not Watson-{transform.upper()}")
    model = WatsonModel(transform, color=color)
    model.load_original(state, path)
    return model.eval()


def prepare_pairs(
    a: torch.Tensor, b: torch.Tensor, normalize: bool = True, fit: str = "crop"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each pair's joint min-max to [0, 1]; H, W centre-cropped (or edge-padded) to multiples of 8."""
    if fit not in ("crop", "pad"):
        raise MetricError(f"watson: fit must be 'crop' or 'pad', got {fit!r}")
    h, w = a.shape[2:]
    if min(h, w) < BLOCK:
        raise MetricError(f"watson: images of {h}x{w} are smaller than one {BLOCK}x{BLOCK} block")
    if normalize:
        lo = torch.minimum(a.amin(dim=(1, 2, 3)), b.amin(dim=(1, 2, 3)))
        hi = torch.maximum(a.amax(dim=(1, 2, 3)), b.amax(dim=(1, 2, 3)))
        scale, shift = minmax_affine(lo, hi, (0.0, 1.0))
        a = a * scale.view(-1, 1, 1, 1) + shift.view(-1, 1, 1, 1)
        b = b * scale.view(-1, 1, 1, 1) + shift.view(-1, 1, 1, 1)
    if h % BLOCK or w % BLOCK:
        if fit == "crop":
            nh, nw = h - h % BLOCK, w - w % BLOCK
            top, left = (h - nh) // 2, (w - nw) // 2
            a, b = a[:, :, top : top + nh, left : left + nw], b[:, :, top : top + nh, left : left + nw]
        else:
            pad = (0, (-w) % BLOCK, 0, (-h) % BLOCK)
            a, b = F.pad(a, pad, mode="replicate"), F.pad(b, pad, mode="replicate")
    return a.contiguous(), b.contiguous()


class _WatsonMetric(Metric):
    """Shared implementation of the two Watson metrics."""

    transform: Transform = "dct"
    dims = (2,)
    channels = (1, 3)
    kind = "distance"
    learned = False
    symmetric = False
    is_metric = False
    has_voxel_map = False
    input_range = (0.0, 1.0)
    normalizes_by_default = True
    preprocessing = (
        "per image/slice pair: joint min-max to [0, 1]; H, W centre-cropped to multiples of 8; "
        "3 channels -> YCbCr; volumes: slices along axis 0|1|2|all, mean over slices; a is the reference"
    )

    def __init__(
        self,
        weights: str | os.PathLike | None = None,
        *,
        preset: str = "czolbe2020",
        fit: str = "crop",
        color: str = "auto",
        device: str | None = None,
        batch_size: int = 32,
    ) -> None:
        from core.device import select_device

        if color not in ("auto", "gray", "rgb"):
            raise MetricError(f"{self.name}: color must be 'auto', 'gray' or 'rgb', got {color!r}")
        self.device = select_device(device)
        self.fit = fit
        self.color = color
        self.batch_size = int(batch_size)
        self.weights_path = None if weights is None else str(weights)
        if weights is not None:
            loaded = load_original_weights(weights, self.transform)
            self.models = {"rgb" if loaded.color else "gray": loaded.to(self.device)}
        else:
            self.models = {
                "gray": WatsonModel(self.transform, color=False, preset=preset).to(self.device).eval(),
                "rgb": WatsonModel(self.transform, color=True, preset=preset).to(self.device).eval(),
            }
        self.preset = preset if weights is None else "file"

    def _model_for(self, channels: int) -> WatsonModel:
        want = self.color if self.color != "auto" else ("rgb" if channels == 3 else "gray")
        return self.models.get(want) or next(iter(self.models.values()))

    @torch.no_grad()
    def _evaluate(self, a: np.ndarray, b: np.ndarray, normalize: bool = True):
        ta = torch.from_numpy(np.array(a, dtype=np.float32, order="C")).to(self.device)
        tb = torch.from_numpy(np.array(b, dtype=np.float32, order="C")).to(self.device)
        ta, tb = prepare_pairs(ta, tb, normalize, self.fit)
        model = self._model_for(ta.shape[1])
        values, parts = model(tb, ta)  # b is compared against the reference a
        values_np = values.double().cpu().numpy()
        parts_np = {k: v.double().cpu().numpy() for k, v in parts.items()}
        return values_np, parts_np, parts_np

    @staticmethod
    def _normalize_option(options: Mapping[str, Any]) -> bool:
        value = options.get("normalize")
        return True if value is None else bool(value)

    def distance_2d(self, img_a: Any, img_b: Any, *, features: bool = False, **options: Any) -> Distance:
        """Watson distance of image ``img_b`` against the reference ``img_a`` (2D arrays or renders)."""
        slice_options(self.name, {k: v for k, v in options.items() if k not in SLICE_OPTIONS | RESAMPLE_OPTIONS},
                      _OPTIONS)
        ia, ib = image_array(img_a, "image A"), image_array(img_b, "image B")
        if ia.shape != ib.shape:
            raise MetricError(f"{self.name}: image shapes differ ({ia.shape} vs {ib.shape})")
        values, contribs, terms = self._evaluate(ia[None], ib[None], self._normalize_option(options))
        value = float(values[0])
        return Distance(
            metric=self.name,
            value=value,
            contributions={k: float(v[0]) for k, v in contribs.items()},
            terms={k: float(v[0]) for k, v in terms.items()},
            kind="distance",
            info={"input": "2d", "model": "rgb" if self._model_for(ia.shape[0]).color else "gray",
                  "preset": self.preset, "reference": "a"},
        )

    def distance(self, a: Volume, b: Volume, *, features: bool = False, **options: Any) -> Distance:
        """Slice-wise Watson distance of ``b`` against reference ``a``: ``axis`` (required), ``stride``."""
        axis, stride = slice_options(self.name, options, _OPTIONS)
        axes = parse_axes(axis, self.name)
        data_a, data_b = pair_data(self, a, b, options)
        axes, left_out = axes_with_room(axis, axes, data_a.shape[1:], BLOCK, self.name)
        normalize = self._normalize_option(options)
        result = sliced_distance(
            lambda sa, sb: self._evaluate(sa, sb, normalize), data_a, data_b, axes, stride, self.batch_size, self.name
        )
        info = result.info(stride)
        if left_out:
            info["slice_axes_left_out"] = left_out
        info.update({"model": "rgb" if self._model_for(a.channels).color else "gray", "preset": self.preset,
                     "reference": "a"})
        return Distance(
            metric=self.name,
            value=result.value,
            contributions=result.contributions,
            terms=result.terms,
            kind="distance",
            info=info,
        )


@register
class WatsonDCT(_WatsonMetric):
    """Watson-DCT (Czolbe et al. 2020): block-DCT perceptual distance, asymmetric; 2D, slices or renders."""

    name = "watson-dct"
    label = "Watson-DCT"
    transform = "dct"


@register
class WatsonFFT(_WatsonMetric):
    """Watson-FFT (Czolbe et al. 2020): block-FFT amplitude + phase distance, asymmetric; 2D, slices or renders."""

    name = "watson-fft"
    label = "Watson-FFT"
    transform = "fft"
