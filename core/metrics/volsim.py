"""VolSiM: the learned multiscale similarity metric for 3D simulation data (Kohl et al., AAAI 2023).

``d(a, b) = sqrt( sum_l mean_spatial( sum_c w_lc (F_hat_l(a) - F_hat_l(b))_c^2 ) )`` over the
ReLU outputs ``F_l`` of a multiscale Siamese 3D CNN (:mod:`core.metrics.volsim_net`), with stored
feature normalisation and non-negative learned weights (:mod:`core.metrics.siamese`).

Preprocessing (:mod:`core.metrics.preprocess`): joint min-max of the **pair** to [-1, 1]
(``normalize=True``, default; a constant pair maps to 0), optional resampling
(``resample=N`` or ``(D, H, W)``; trilinear by default, ``interpolation="cubic"`` for the
official scipy cubic spline), 1 -> 3 channel repetition. Each pair is normalised on its own,
also in :meth:`VolSiM.distance_batch`: a pair gets its single-call result inside a batch. The
official batched ``computeDistance`` normalises the whole batch jointly (the reference groups
``*_batched_norm``); volsight reproduces the single-call (``*_individual_norm``) values.

Properties: with ``normalize=False`` VolSiM is a pseudo-metric (non-negative, symmetric,
``d(x, x) = 0``, triangle inequality; ``d = 0`` possible for ``x != y``) since it is a weighted
L2 distance between fixed embeddings. With the default pair normalisation the embedding depends
on the pair, so the triangle inequality is not guaranteed (symmetry and ``d(x, x) = 0`` still hold).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from core.errors import MetricError, WeightsError
from core.io.memory import available_memory
from core.metrics.base import Distance, Metric, require_feature_memory, shares
from core.metrics.preprocess import Preprocessing, prepare_batch, prepare_volume, working_size
from core.metrics.registry import register
from core.threads import cpu_map, workers
from core.volume import Volume

if TYPE_CHECKING:
    import torch

DEFAULT_WEIGHTS = Path(__file__).resolve().parents[2] / "resources" / "weights" / "volsim_volsight.safetensors"
WEIGHTS_ENV = "VOLSIGHT_VOLSIM_WEIGHTS"


def default_weights_path() -> Path:
    """Where volsight's own VolSiM weights are looked for (``$VOLSIGHT_VOLSIM_WEIGHTS`` overrides)."""
    env = os.environ.get(WEIGHTS_ENV)
    return Path(env) if env else DEFAULT_WEIGHTS


@register
class VolSiM(Metric):
    """VolSiM learned 3D distance (multiscale Siamese CNN); needs weights (--weights PATH or installed)."""

    name: ClassVar[str] = "volsim"
    label: ClassVar[str] = "VolSiM"
    kind = "distance"
    dims = (3,)
    channels = (1, 3)
    learned = True
    symmetric = True
    is_metric = False  # pseudo-metric only with normalize=False (see module docstring)
    has_voxel_map = False
    input_range = (-1.0, 1.0)
    normalizes_by_default = True
    preprocessing: ClassVar[str] = (
        Preprocessing().describe() + " (folded into the first convolutions: same result, less work); "
        "optional resampling (trilinear, or cubic spline)"
    )

    def __init__(self, weights: str | os.PathLike | None = None, device: str | None = None):
        from core.device import select_device
        from core.metrics.volsim_net import load_volsim_weights

        path = Path(weights) if weights is not None else default_weights_path()
        if weights is None and not path.exists():
            raise WeightsError(
                path,
                f"no VolSiM weights are installed (volsight's own weights file is missing, or ${WEIGHTS_ENV} "
                "names a file that does not exist); point at a checkpoint with --weights PATH (CLI) or "
                "weights=PATH, e.g. the official MS_3scales.pth",
            )
        self.weights_path = path
        self.device = select_device(device)
        self.net = load_volsim_weights(path)
        self.net.encoder.to(self.device).eval()
        self.net.comparison.to(self.device).eval()
        for p in list(self.net.encoder.parameters()) + list(self.net.comparison.parameters()):
            p.requires_grad_(False)
        # 1-channel data is not repeated here: the encoder folds the repetition into its weights
        self.preprocess = Preprocessing(channels=None)
        self.layer_names = self.net.arch.layer_names
        self.pairs_per_pass = 0  # pairs per forward pass in distance_batch; 0: 1 on the CPU, all on a GPU

    # -- preparation
    def _options(self, options: dict[str, Any]) -> Preprocessing:
        unknown = set(options) - {"normalize", "resample", "interpolation"}
        if unknown:
            raise MetricError(f"volsim: unknown option(s) {', '.join(sorted(unknown))}")
        prep = self.preprocess.with_options(**options)
        if prep.resample is not None:
            prep = replace(prep, resample=working_size(prep.resample, 3))
        return prep

    def fitting_size(self, shape: Sequence[int]) -> tuple[int, int, int] | None:
        """The nearest grid the network takes (each axis a multiple of its stride product, at least two of
        them), or None when ``shape`` already fits: what to resample to instead of refusing the pair."""
        m = self.net.arch.min_multiple()
        if all(n % m == 0 and n >= 2 * m for n in shape):
            return None
        return tuple(max(2 * m, int(round(n / m)) * m) for n in shape)  # type: ignore[return-value]

    def _check(self, a: Volume, b: Volume, prep: Preprocessing) -> None:
        if prep.resample is None:
            self.check_pair(a, b)
        elif a.channels != b.channels or a.channels not in self.channels:
            raise MetricError(f"volsim: needs 1 or 3 channels on both inputs, got {a.channels} and {b.channels}")
        size = prep.resample or a.shape
        m = self.net.arch.min_multiple()
        if any(n % m or n < 2 * m for n in size):
            raise MetricError(
                f"volsim: spatial size {tuple(size)} does not fit the {self.net.arch.scales}-scale network "
                f"(every axis a multiple of {m} and >= {2 * m}; stable range 32-128); use resample=64 "
                f"(--resample 64 on the command line) or resample={self.fitting_size(size)}, the nearest grid it takes"
            )

    # -- the network
    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """All compared feature maps for a prepared batch ``[N, 1 or 3, D, H, W]`` (no autograd)."""
        import torch

        with torch.inference_mode():
            return self.net.encoder(x.to(self.device))

    def distance(self, a: Volume, b: Volume, *, features: bool = False, **options: Any) -> Distance:
        """VolSiM distance of one pair (one forward pass over both inputs as a batch of 2)."""
        return self.distance_batch([(a, b)], features=features, **options)[0]

    def distance_batch(self, pairs: Sequence[tuple[Volume, Volume]], *, features: bool = False,
                       **options: Any) -> list[Distance]:
        """Distances of several same-shaped pairs (batched forward passes); each equals its single-pair result."""
        if not pairs:
            return []
        prep = self._options(options)
        for a, b in pairs:
            self._check(a, b, prep)
        if len({(a.shape, a.channels, b.shape) for a, b in pairs}) > 1:  # one batch needs one shape
            return [self.distance(a, b, features=features, **options) for a, b in pairs]
        # On the CPU one pair per pass keeps a layer's activations in cache (a batch of 8 pairs at 64³
        # is 64 MB per layer and runs slower per pair); on a GPU the whole batch goes at once.
        step = self.pairs_per_pass or (len(pairs) if self.device.type != "cpu" else 1)
        out: list[Distance] = []
        for start in range(0, len(pairs), step):
            out += self._batch_pass(pairs[start : start + step], prep, features)
        return out

    def _batch_pass(self, pairs: Sequence[tuple[Volume, Volume]], prep: Preprocessing,
                    features: bool) -> list[Distance]:
        import torch

        n = len(pairs)
        size = tuple(prep.resample) if prep.resample else tuple(pairs[0][0].shape)
        input_bytes = self.feature_bytes(size)
        if features and self.device.type == "cpu":  # all maps of both inputs, kept, plus their differences
            require_feature_memory(self.name, size, 3 * 2 * n * input_bytes)
        x = prepare_batch([(a.data, b.data) for a, b in pairs], prep).to(self.device)
        comparison = self.net.comparison
        # one worker per input keeps every feature map of its input until both are compared; past a
        # quarter of the free memory the layer-by-layer pass below (two layers alive) is used instead
        parallel = 2 * n * input_bytes <= available_memory() // 4
        with torch.inference_mode():
            if self.device.type == "cpu" and workers() > 1 and (parallel or features):
                # every input on its own single-threaded worker (core/threads.py), then compare
                per_input = cpu_map(self.net.encoder, [x[i : i + 1] for i in range(2 * n)])
                feats = [torch.cat(layer) if n > 1 else layer for layer in zip(*per_input, strict=True)]
                del per_input
                fa = [f[:n] if n > 1 else f[0] for f in feats]
                fb = [f[n:] if n > 1 else f[1] for f in feats]
                del feats
                terms_t = comparison.terms(fa, fb)
                maps = [comparison.feature_maps(fa, fb, i) for i in range(n)] if features else [None] * n
                del fa, fb
            elif features:
                feats = self.net.encoder(x)
                fa, fb = [f[:n] for f in feats], [f[n:] for f in feats]
                terms_t = comparison.terms(fa, fb)
                maps = [comparison.feature_maps(fa, fb, i) for i in range(n)]
                del feats, fa, fb
            else:  # layer by layer: no feature map outlives the next layer
                cols = [comparison.layer_term(i, f[:n], f[n:]) for i, f in enumerate(self.net.encoder.iter_layers(x))]
                terms_t = torch.stack(cols, dim=-1)
                maps = [None] * n
            terms = terms_t.double().cpu().numpy()
        size = tuple(x.shape[2:])
        return [self._result(terms[i], maps[i], prep, size) for i in range(n)]

    def feature_bytes(self, size: Sequence[int]) -> int:
        """Bytes of all feature maps of one input of spatial ``size`` (float32)."""
        from core.metrics.volsim_net import feature_sizes

        sizes = feature_sizes(self.net.arch, tuple(int(n) for n in size))
        return 4 * sum(c * int(np.prod(s)) for c, s in zip(self.net.arch.layer_channels, sizes, strict=True))

    def _result(self, terms: np.ndarray, maps, prep: Preprocessing, size: tuple[int, ...]) -> Distance:
        value = float(np.sqrt(max(terms.sum(), 0.0)))
        named = {name: float(t) for name, t in zip(self.layer_names, terms, strict=True)}
        return Distance(
            metric=self.name,
            value=value,
            contributions=shares(value, named),
            terms=named,
            features=maps,
            kind="distance",
            info={
                "weights": os.fspath(self.weights_path),
                "scales": self.net.arch.scales,
                "normalize": prep.normalize,
                "working_size": "x".join(map(str, size)),
                "interpolation": prep.interpolation if prep.resample else "none",
            },
        )

    # -- cached embeddings for matrices and series
    def embed(self, volumes: Sequence[Volume], *, normalize: bool = True, resample: Any = None,
              interpolation: str = "linear", bounds: tuple[float, float] | None = None, dtype: Any = None,
              batch_size: int = 2, progress: Callable[[int, int], None] | None = None,
              cancelled: Callable[[], bool] | None = None) -> list[Any]:
        """Embeddings of all volumes, one forward pass each: per layer a tensor ``[N, C, *S]``.

        An embedding is the feature map scaled by the normalisation (its mean cancels in every
        difference). With ``normalize=True`` every volume is mapped with one affine map from the
        min/max of the **whole set** (or ``bounds``), so each embedding serves every pair: a matrix
        entry then equals ``distance(a, b, normalize=False)`` on the set-normalised volumes, not the
        pair-normalised ``distance(a, b)``. With ``normalize=False`` entries equal the pair results.
        ``dtype=torch.float16`` halves the cache (distances then differ by ~1e-4 relative or less).
        """
        import torch

        prep = self._options({"normalize": normalize, "resample": resample, "interpolation": interpolation})
        dtype = dtype or torch.float32
        shapes = {v.shape for v in volumes}
        if len(shapes) > 1 and prep.resample is None:
            raise MetricError(f"volsim: volumes have different shapes {sorted(shapes)}; pass resample=N")
        if prep.normalize and bounds is None:
            bounds = set_bounds(volumes)
        parallel = self.device.type == "cpu" and workers() > 1
        group_size = max(batch_size, workers()) if parallel else batch_size
        comparison, encoder = self.net.comparison, self.net.encoder
        out: list[Any] = []

        def store(layer: int, index: int, f: Any) -> None:
            if len(out) <= layer:
                out.append(torch.empty((len(volumes), *f.shape[1:]), dtype=dtype, device=f.device))
            out[layer][index : index + f.shape[0]] = f

        def encode_one(t: Any) -> list[Any]:  # on a worker: one volume, scaled, in plain NCDHW layout
            return [comparison.scaled(i, f.contiguous()) for i, f in enumerate(encoder.iter_layers(t[None]))]

        done = 0
        for start in range(0, len(volumes), group_size):
            if cancelled is not None and cancelled():
                from core.metrics.matrix import Cancelled

                raise Cancelled("volsim: embedding cancelled")
            group = volumes[start : start + group_size]
            for v in group:
                self._check(v, v, prep)
            items = [prepare_volume(v.data, prep, bounds=bounds) for v in group]
            with torch.inference_mode():
                if parallel:  # one volume per single-threaded worker (core/threads.py)
                    for k, feats in enumerate(cpu_map(encode_one, items)):
                        for layer, f in enumerate(feats):
                            store(layer, start + k, f)
                else:  # the group as one batch, layer by layer into the cache
                    if len({t.shape[0] for t in items}) > 1:
                        items = [t.expand(3, *t.shape[1:]) for t in items]
                    x = torch.stack(items).to(self.device)
                    for layer, f in enumerate(encoder.iter_layers(x)):
                        store(layer, start, comparison.scaled(layer, f))
            done += len(group)
            if progress is not None:
                progress(done, len(volumes))
        return out

    def embedding_values(self, shape: Sequence[int]) -> int:
        """Number of cached values per volume of spatial ``shape`` (for memory planning)."""
        from core.metrics.volsim_net import feature_sizes

        sizes = feature_sizes(self.net.arch, tuple(shape))
        return int(sum(c * np.prod(s) for c, s in zip(self.net.arch.layer_channels, sizes, strict=True)))

    def compare_embeddings(self, emb_a: Sequence[Any], emb_b: Sequence[Any]) -> np.ndarray:
        """Distances ``[M]`` between embeddings (layers ``[1 or M, C, *S]`` each; see :meth:`embed`)."""
        import torch

        with torch.inference_mode():
            terms = self.net.comparison.compare_embeddings(emb_a, emb_b)
        return torch.sqrt(terms.double().sum(dim=-1).clamp(min=0)).cpu().numpy()

    def pairwise_distances(self, rows: Sequence[Any], cols: Sequence[Any] | None = None,
                           cancelled: Callable[[], bool] | None = None) -> np.ndarray:
        """``[R, K]`` distances between cached embeddings (Gram products per layer, float64)."""
        import torch

        with torch.inference_mode():
            terms = self.net.comparison.pairwise_terms(rows, cols, cancelled=cancelled)
        d = torch.sqrt(terms.sum(dim=-1)).cpu().numpy()
        if cols is None:
            np.fill_diagonal(d, 0.0)
        return d

    @classmethod
    def describe(cls) -> dict[str, Any]:
        d = super().describe()
        d["properties"] = "pseudo-metric with normalize=False; with pair normalisation: symmetric, d(x,x)=0"
        d["weights"] = os.fspath(default_weights_path())
        d["weights_installed"] = default_weights_path().exists()
        return d


def set_bounds(volumes: Sequence[Volume], per_channel: bool = False) -> tuple[Any, Any]:
    """Joint (min, max) of the finite values over a set of volumes (floats; per channel: float64 arrays ``[C]``)."""
    if per_channel:
        ranges = np.array([[v.channel(c).value_range() for c in range(v.channels)] for v in volumes])  # [N, C, 2]
        return ranges[..., 0].min(axis=0), ranges[..., 1].max(axis=0)
    ranges = [v.value_range() for v in volumes]
    return min(r[0] for r in ranges), max(r[1] for r in ranges)
