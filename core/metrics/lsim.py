"""LSiM: the learned 2D similarity metric of Kohl, Um and Thuerey (ICML 2020), on images, slices and renders.

Network (notes/metrics.md §2.2): a Siamese 5-layer CNN (ReLU after every conv, no
normalisation layers) on 3-channel 224² inputs::

    conv1 3->32 k12 s4 p2 (55²) | maxpool 4/2, conv2 32->96 k5 p2 (26²) | maxpool 4/2,
    conv3 96->192 k3 p1 (12²) | conv4 192->128 k3 p1 | conv5 128->128 k3 p1

Every ReLU output is compared: features are normalised with stored spatial mean/std maps,
squared differences weighted per channel (non-negative weights), averaged spatially and summed
over layers; the distance is the square root (``core.metrics.siamese``). So
``d(x, y) = ||W^½ (φ(x) − φ(y))||₂`` for one fixed embedding φ of the *preprocessed* inputs:
a pseudo-metric (non-negative, symmetric, d(x, x) = 0, triangle inequality).

Preprocessing of a pair (exactly the official ``computeDistance(a, b)`` defaults): one channel
repeated to three; nearest-neighbour resize to 224×224 with the index mapping of
``scipy.ndimage.zoom(order=0)`` (non-square inputs are stretched); then a joint per-channel
min-max of the two inputs to [0, 255] (a constant channel becomes 0, as in the official code).
The official call normalises a whole batch jointly, so a pair's distance depends on its batch
mates (measured up to 12 %); here every pair — and every slice pair of a volume — is normalised
on its own, so batched and single results are identical. ``normalize=False`` skips the min-max
step (inputs are then taken as already on the 0-255 scale): with it the triangle inequality holds
across different pairs, which a pair-dependent normalisation cannot promise.

On volumes the metric runs on slices (``core.metrics.slicing``: ``axis=0|1|2|'all'``,
``stride``; mean over all slice pairs); ``distance_2d`` takes 2D images or renders. Feature maps
of a volume pair come from the middle slice of the first chosen axis (its own forward pass).

Weights: the official ``LSiM.pth`` (MIT-licensed, github.com/tum-pbs/LSIM ``Models/LSiM.pth``) is
not shipped; point ``weights=`` (CLI ``--weights``) or ``$VOLSIGHT_LSIM_WEIGHTS`` at it, or at a
file saved by :meth:`LSiMNetwork.save` (safetensors + JSON header).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from core.errors import MetricError, WeightsError
from core.metrics.base import Distance, Metric, ScaleFeatures, shares
from core.metrics.registry import register
from core.metrics.siamese import FeatureComparison, distance_from_terms
from core.metrics.slicing import (
    RESAMPLE_OPTIONS,
    SLICE_OPTIONS,
    image_array,
    middle_slice,
    pair_data,
    parse_axes,
    slice_options,
    sliced_distance,
)
from core.metrics.weights_io import is_safetensors, load_safetensors, load_torch_checkpoint, save_safetensors
from core.volume import Volume

WEIGHTS_ENV = "VOLSIGHT_LSIM_WEIGHTS"
FORMAT_NAME = "volsight-lsim"
FORMAT_VERSION = 1
NATIVE_SIZE = 224
LAYER_NAMES = ("conv1", "conv2", "conv3", "conv4", "conv5")
CHANNELS = (32, 96, 192, 128, 128)
NATIVE_FEATURE_SIZES = (55, 26, 12, 12, 12)
_OPTIONS = frozenset({"normalize", "size"})
MIN_SIZE = 64  # below this the conv/pool chain runs out of pixels; such inputs must be resized

# official state-dict key prefix -> our backbone module
_OFFICIAL_CONVS = {
    "basenet.slice1.0": "conv1",
    "basenet.slice2.1": "conv2",
    "basenet.slice3.1": "conv3",
    "basenet.slice4.0": "conv4",
    "basenet.slice5.0": "conv5",
}
_CONV_SHAPES = {
    "conv1": (32, 3, 12, 12),
    "conv2": (96, 32, 5, 5),
    "conv3": (192, 96, 3, 3),
    "conv4": (128, 192, 3, 3),
    "conv5": (128, 128, 3, 3),
}
NO_WEIGHTS_MESSAGE = (
    "no LSiM weights are installed (volsight does not ship them). Download the official LSiM.pth "
    "(MIT license) from https://github.com/tum-pbs/LSIM (Models/LSiM.pth) and pass it with "
    f"weights=PATH / --weights PATH, or set {WEIGHTS_ENV}=PATH"
)


class LSiMBackbone(nn.Module):
    """The five conv layers of LSiM; ``forward`` returns the five ReLU feature maps."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 12, stride=4, padding=2)
        self.conv2 = nn.Conv2d(32, 96, 5, stride=1, padding=2)
        self.conv3 = nn.Conv2d(96, 192, 3, stride=1, padding=1)
        self.conv4 = nn.Conv2d(192, 128, 3, stride=1, padding=1)
        self.conv5 = nn.Conv2d(128, 128, 3, stride=1, padding=1)
        self.pool = nn.MaxPool2d(4, stride=2)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        relu = torch.relu
        f1 = relu(self.conv1(x))
        f2 = relu(self.conv2(self.pool(f1)))
        f3 = relu(self.conv3(self.pool(f2)))
        f4 = relu(self.conv4(f3))
        f5 = relu(self.conv5(f4))
        return [f1, f2, f3, f4, f5]


class LSiMNetwork(nn.Module):
    """Backbone + feature comparison (normalisation maps and channel weights) of LSiM."""

    def __init__(self, comparison: FeatureComparison, backbone: LSiMBackbone | None = None) -> None:
        super().__init__()
        self.backbone = backbone or LSiMBackbone()
        self.comparison = comparison

    # ------------------------------------------------------------------ construction / files
    @classmethod
    def from_file(cls, path: str | os.PathLike) -> LSiMNetwork:
        """Load the official ``LSiM.pth`` or a volsight LSiM safetensors file."""
        if is_safetensors(path):
            return cls._from_safetensors(path)
        return cls._from_official(path)

    @classmethod
    def _from_official(cls, path: str | os.PathLike) -> LSiMNetwork:
        data = load_torch_checkpoint(path, ("stateDict", "normAcc", "normM2", "normCount"), "LSiM")
        state = data["stateDict"]
        if not isinstance(state, Mapping):
            raise WeightsError(path, "not an LSiM checkpoint: 'stateDict' is not a dict of tensors")
        if "hyperparams" in data or any(str(k).startswith("avg") for k in state):
            raise WeightsError(path, "this is a VolSiM (3D) checkpoint, not LSiM; use it with the volsim metric")
        expected = {f"{p}.{s}" for p in _OFFICIAL_CONVS for s in ("weight", "bias")} | {
            f"lin{i}.1.weight" for i in range(5)
        }
        missing = sorted(expected - set(state))
        extra = sorted(set(state) - expected)
        if missing or extra:
            raise WeightsError(
                path,
                "not an LSiM checkpoint: "
                + (f"missing {', '.join(missing[:6])}" if missing else "")
                + ("; " if missing and extra else "")
                + (f"unexpected {', '.join(extra[:6])}" if extra else ""),
            )
        conv_state = {}
        for prefix, name in _OFFICIAL_CONVS.items():
            conv_state[f"{name}.weight"] = state[f"{prefix}.weight"]
            conv_state[f"{name}.bias"] = state[f"{prefix}.bias"]
        weights = [state[f"lin{i}.1.weight"] for i in range(5)]
        stats = _check_stats(path, data["normAcc"], data["normM2"], data["normCount"])
        return cls._assemble(path, conv_state, weights, *stats)

    @classmethod
    def _from_safetensors(cls, path: str | os.PathLike) -> LSiMNetwork:
        tensors, header = load_safetensors(path, "LSiM", FORMAT_NAME)
        if int(header.get("version", 0)) > FORMAT_VERSION:
            raise WeightsError(path, f"format version {header.get('version')} is newer than this volsight reads")
        try:
            conv_state = {f"{n}.{s}": tensors[f"backbone.{n}.{s}"] for n in _CONV_SHAPES for s in ("weight", "bias")}
            weights = [tensors[f"weights.{i}"] for i in range(5)]
            means = [tensors[f"norm_mean.{i}"] for i in range(5)]
            m2s = [tensors[f"norm_m2.{i}"] for i in range(5)]
            counts = [float(c) for c in header["norm_counts"]]
        except KeyError as exc:
            raise WeightsError(path, f"incomplete LSiM weights file: missing {exc}") from exc
        stats = _check_stats(path, means, m2s, counts)
        return cls._assemble(path, conv_state, weights, *stats)

    @classmethod
    def _assemble(cls, path, conv_state, weights, means, m2s, counts) -> LSiMNetwork:
        for name, shape in _CONV_SHAPES.items():
            w, b = conv_state[f"{name}.weight"], conv_state[f"{name}.bias"]
            if tuple(w.shape) != shape or tuple(b.shape) != (shape[0],):
                raise WeightsError(
                    path, f"not an LSiM checkpoint: {name} has weight {tuple(w.shape)}, expected {shape}"
                )
        flat_weights = []
        for i, (w, c) in enumerate(zip(weights, CHANNELS, strict=True)):
            w = torch.as_tensor(w, dtype=torch.float32).reshape(-1)
            if w.numel() != c:
                raise WeightsError(path, f"not an LSiM checkpoint: layer {i + 1} has {w.numel()} weights, expected {c}")
            flat_weights.append(w)
        comparison = FeatureComparison(CHANNELS, means, m2s, counts, weights=flat_weights, names=LAYER_NAMES)
        net = cls(comparison)
        net.backbone.load_state_dict({k: torch.as_tensor(v, dtype=torch.float32) for k, v in conv_state.items()})
        net.source = str(path)
        return net.eval()

    def save(self, path: str | os.PathLike, provenance: str | None = None) -> None:
        """Write these weights in volsight's format (safetensors + JSON header), atomically."""
        tensors: dict[str, torch.Tensor] = {f"backbone.{k}": v for k, v in self.backbone.state_dict().items()}
        for i in range(5):
            tensors[f"weights.{i}"] = self.comparison.weights[i].detach()
            tensors[f"norm_mean.{i}"] = self.comparison.mean_map(i)
            tensors[f"norm_m2.{i}"] = self.comparison.m2_map(i)
        header = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "architecture": "LSiM_Base (5 conv layers, 224x224 native)",
            "layers": list(LAYER_NAMES),
            "norm_counts": [float(c) for c in self.comparison.counts],
            "provenance": provenance or getattr(self, "source", "unknown"),
        }
        save_safetensors(path, tensors, header)

    # ------------------------------------------------------------------ evaluation
    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The five feature maps of a preprocessed batch ``[N, 3, H, W]``."""
        return self.backbone(x)

    def pair_terms(
        self, a: torch.Tensor, b: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """Per-layer terms ``[N, 5]`` of preprocessed pairs, plus both feature lists (one forward pass)."""
        n = a.shape[0]
        feats = self.backbone(torch.cat([a, b], dim=0))
        fa = [f[:n] for f in feats]
        fb = [f[n:] for f in feats]
        return self.comparison.terms(fa, fb), fa, fb


def _check_stats(path, means, m2s, counts) -> tuple[list[torch.Tensor], list[torch.Tensor], list[float]]:
    if not (isinstance(means, Sequence) and isinstance(m2s, Sequence) and isinstance(counts, Sequence)):
        raise WeightsError(path, "not an LSiM checkpoint: normAcc/normM2/normCount must be lists")
    if not (len(means) == len(m2s) == len(counts) == 5):
        raise WeightsError(
            path, f"not an LSiM checkpoint: {len(means)} normalisation maps, expected 5 (one per layer)"
        )
    out_m, out_m2, out_c = [], [], []
    for i, (m, m2, c) in enumerate(zip(means, m2s, counts, strict=True)):
        m = torch.as_tensor(m, dtype=torch.float32)
        m2 = torch.as_tensor(m2, dtype=torch.float32)
        if m.ndim != 2 or m.shape != m2.shape:
            raise WeightsError(
                path, f"not an LSiM checkpoint: normalisation map {i} has shape {tuple(m.shape)} (expected 2D maps)"
            )
        c = float(torch.as_tensor(c))
        if not c > 1:
            raise WeightsError(path, f"invalid normalisation count {c} for layer {i + 1}")
        out_m.append(m)
        out_m2.append(m2)
        out_c.append(c)
    return out_m, out_m2, out_c


@lru_cache(maxsize=64)
def zoom_nearest_indices(n_in: int, n_out: int) -> np.ndarray:
    """Source indices ``scipy.ndimage.zoom(order=0)`` picks along one axis resized ``n_in -> n_out``.

    Derived from scipy itself (zooming an index ramp), so the mapping is scipy's exactly;
    nearest-neighbour zoom is separable, so one ramp per axis reproduces the 2D resize.
    """
    from scipy.ndimage import zoom

    ramp = np.arange(n_in, dtype=np.float64)
    idx = zoom(ramp, n_out / n_in, order=0, mode="nearest")
    if idx.shape[0] != n_out:  # scipy rounds the output length; ours is fixed
        raise MetricError(f"nearest resize {n_in} -> {n_out}: scipy gives {idx.shape[0]} samples")
    return np.rint(idx).astype(np.int64)


def _float_tensor(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.float()
    arr = np.asarray(x, dtype=np.float32)
    # torch cannot wrap read-only arrays (Volume data is read-only): copy those
    return torch.from_numpy(arr if arr.flags.writeable and arr.flags.c_contiguous else arr.copy(order="C"))


def prepare_images(
    a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor, size: int | None = NATIVE_SIZE, normalize: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Official LSiM preprocessing of pairs ``[N, C, H, W]`` -> float32 ``[N, 3, S, S]`` each.

    Order as ``computeDistance``: repeat 1 -> 3 channels, nearest resize to ``size`` (None keeps
    the size), then each pair's joint per-channel min-max to [0, 255] (constant channel -> 0).
    """
    ta, tb = _float_tensor(a), _float_tensor(b)
    if ta.shape != tb.shape or ta.ndim != 4:
        raise MetricError(f"lsim: expected two image batches [N, C, H, W] of one shape, got {tuple(ta.shape)} "
                          f"and {tuple(tb.shape)}")
    if ta.shape[1] not in (1, 3):
        raise MetricError(f"lsim: accepts 1 or 3 channels, got {ta.shape[1]}")
    # a gray image is repeated to 3 identical channels; resizing and per-channel normalisation act on
    # each channel alike, so they run on the single channel and the repetition comes last (same values)
    h, w = ta.shape[2:]
    if size is not None and (h, w) != (size, size):
        rows = torch.from_numpy(zoom_nearest_indices(h, size))
        cols = torch.from_numpy(zoom_nearest_indices(w, size))
        ta, tb = ta[:, :, rows[:, None], cols[None, :]], tb[:, :, rows[:, None], cols[None, :]]
    elif min(h, w) < MIN_SIZE:
        raise MetricError(f"lsim: images of {h}x{w} are too small for the network without resizing (min {MIN_SIZE})")
    if normalize:
        lo = torch.minimum(ta.amin(dim=(2, 3)), tb.amin(dim=(2, 3)))[:, :, None, None]
        hi = torch.maximum(ta.amax(dim=(2, 3)), tb.amax(dim=(2, 3)))[:, :, None, None]
        span = hi - lo
        constant = span == 0
        if bool(constant.any()):
            # the official code maps a constant channel to x - lo = 0
            span = torch.where(constant, torch.full_like(span, float("inf")), span)
        # the official float32 formula 255 * ((x - lo) / (hi - lo))
        ta = 255.0 * ((ta - lo) / span)
        tb = 255.0 * ((tb - lo) / span)
    if ta.shape[1] == 1:
        ta, tb = ta.expand(-1, 3, -1, -1), tb.expand(-1, 3, -1, -1)
    return ta.contiguous(), tb.contiguous()


def default_weights_path() -> str | None:
    """The LSiM weights named by ``$VOLSIGHT_LSIM_WEIGHTS``, if set."""
    value = os.environ.get(WEIGHTS_ENV, "").strip()
    return value or None


@register
class LSiM(Metric):
    """LSiM (Kohl et al. 2020): learned 2D metric; on volumes slice-wise (axis=0|1|2|'all'), or on renders."""

    name = "lsim"
    label = "LSiM"
    kind = "distance"
    dims = (2,)
    channels = (1, 3)
    learned = True
    symmetric = True
    is_metric = True
    has_voxel_map = False
    input_range = (0.0, 255.0)
    input_per_channel = True
    normalizes_by_default = True
    preprocessing = (
        "per image/slice pair: 1 channel repeated to 3; nearest resize to 224x224 (scipy zoom order 0 mapping); "
        "joint per-channel min-max of the pair to [0, 255]; volumes: slices along axis 0|1|2|all, mean over slices"
    )

    @classmethod
    def describe(cls) -> dict[str, Any]:
        d = super().describe()
        path = default_weights_path()
        d["weights"] = path or f"none shipped; ${WEIGHTS_ENV} names a file"
        d["weights_installed"] = bool(path) and os.path.isfile(path)
        return d

    def __init__(
        self,
        weights: str | os.PathLike | None = None,
        *,
        device: str | None = None,
        size: int | None = NATIVE_SIZE,
        batch_size: int = 16,
        network: LSiMNetwork | None = None,
    ) -> None:
        from core.device import select_device

        if network is None:
            path = weights if weights is not None else default_weights_path()
            if path is None:
                raise WeightsError(None, NO_WEIGHTS_MESSAGE)
            network = LSiMNetwork.from_file(Path(path))
        self.device = select_device(device)
        self.network = network.to(self.device).eval()
        self.size = size
        self.batch_size = int(batch_size)

    # ------------------------------------------------------------------ core evaluation
    @torch.no_grad()
    def _evaluate(
        self, a: np.ndarray, b: np.ndarray, *, normalize: bool, size: int | None, features: bool = False
    ) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray], dict[str, ScaleFeatures] | None]:
        """Distances of image pairs ``[N, C, H, W]``: (values, contributions, terms, features of pair 0)."""
        ta, tb = prepare_images(a, b, size, normalize)
        terms, fa, fb = self.network.pair_terms(ta.to(self.device), tb.to(self.device))
        values = distance_from_terms(terms)
        terms_np = terms.double().cpu().numpy()
        values_np = values.double().cpu().numpy()
        total = terms_np.sum(axis=1)
        ratio = np.divide(values_np, total, out=np.zeros_like(total), where=total > 0)
        term_map = {name: terms_np[:, i] for i, name in enumerate(LAYER_NAMES)}
        contrib_map = {name: terms_np[:, i] * ratio for i, name in enumerate(LAYER_NAMES)}
        feats = self.network.comparison.feature_maps(fa, fb, index=0) if features else None
        return values_np, contrib_map, term_map, feats

    def _options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        normalize = options.get("normalize")
        return {"normalize": True if normalize is None else bool(normalize), "size": options.get("size", self.size)}

    def distance_2d(self, img_a: Any, img_b: Any, *, features: bool = False, **options: Any) -> Distance:
        """LSiM of two 2D images (``[H, W]``, ``[C, H, W]`` or renders ``[H, W, 3|4]``)."""
        slice_options(self.name, {k: v for k, v in options.items() if k not in SLICE_OPTIONS | RESAMPLE_OPTIONS},
                      _OPTIONS)
        ia, ib = image_array(img_a, "image A"), image_array(img_b, "image B")
        if ia.shape != ib.shape:
            raise MetricError(f"lsim: image shapes differ ({ia.shape} vs {ib.shape})")
        opts = self._options(options)
        values, contribs, terms, feats = self._evaluate(ia[None], ib[None], features=features, **opts)
        value = float(values[0])
        return Distance(
            metric=self.name,
            value=value,
            contributions=shares(value, {k: float(v[0]) for k, v in terms.items()}),
            terms={k: float(v[0]) for k, v in terms.items()},
            features=feats,
            kind="distance",
            info={"input": "2d", "size": opts["size"] or ia.shape[1], "normalize": opts["normalize"]},
        )

    def distance(self, a: Volume, b: Volume, *, features: bool = False, **options: Any) -> Distance:
        """Slice-wise LSiM of two volumes: ``axis`` (0|1|2|'all', required) and ``stride`` (default 1)."""
        axis, stride = slice_options(self.name, options, _OPTIONS)
        axes = parse_axes(axis, self.name)
        data_a, data_b = pair_data(self, a, b, options)
        opts = self._options(options)

        def evaluate(sa: np.ndarray, sb: np.ndarray):
            values, contribs, terms, _ = self._evaluate(sa, sb, **opts)
            return values, contribs, terms

        result = sliced_distance(evaluate, data_a, data_b, axes, stride, self.batch_size, self.name)
        feats = None
        if features:
            # the GUI shows one slice: the middle one of the first chosen axis
            ma, mb = middle_slice(data_a, axes[0]), middle_slice(data_b, axes[0])
            feats = self._evaluate(ma[None], mb[None], features=True, **opts)[3]
        info = result.info(stride)
        info.update({"size": opts["size"], "normalize": opts["normalize"]})
        if features:
            info["feature_slice"] = f"middle slice perpendicular to axis {axes[0]}"
        return Distance(
            metric=self.name,
            value=result.value,
            contributions=result.contributions,
            terms=result.terms,
            features=feats,
            kind="distance",
            info=info,
        )

    def distance_images_batch(self, imgs_a: np.ndarray, imgs_b: np.ndarray, **options: Any) -> np.ndarray:
        """Distances of image pairs ``[N, C, H, W]`` in one batch (each pair normalised on its own)."""
        opts = self._options(options)
        out = []
        for start in range(0, len(imgs_a), self.batch_size):
            out.append(self._evaluate(imgs_a[start : start + self.batch_size], imgs_b[start : start + self.batch_size],
                                      **opts)[0])
        return np.concatenate(out) if out else np.zeros(0)
