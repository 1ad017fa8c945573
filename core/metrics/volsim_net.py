"""The VolSiM network (multiscale Siamese 3D CNN) and its two weight formats.

Architecture (Kohl et al., AAAI 2023; layout facts in notes/metrics.md §1.2/§1.5): ``scales``
blocks; block ``s`` works at 1/2^s resolution and has four Conv3d layers, each followed by
ReLU: kernel 5 stride 1, kernel 5 stride 2, kernel 3, kernel 3 (padding keeps sizes), all with
``widths[s]`` output channels. Block 0 sees the (3-channel) input; block ``s > 0`` sees
``AvgPool3d(2^s)(input)`` concatenated (first) with the last output of block ``s-1`` (the skip
input). Every ReLU output is a compared feature map, named ``"s{scale}.l{layer}"``.
The official ``MS_3scales`` checkpoint is ``multiScaleSkip_12_1`` (3 scales, widths 4/8/16); the
paper's final VolSiM is ``multiScaleSkip_16_1`` (4 scales, widths 4/8/16/32).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from core.errors import WeightsError
from core.metrics import blocked_conv
from core.metrics.siamese import FeatureComparison
from core.metrics.weights_io import load_safetensors, load_torch_checkpoint, save_safetensors

FORMAT_NAME = "volsight.volsim"
FORMAT_VERSION = 1
OFFICIAL_KEYS = ("stateDict", "hyperparams", "normAcc", "normM2", "normCount")
_KERNELS = ((5, 1), (5, 2), (3, 1), (3, 1))  # (kernel, stride) of the four convs in every block


@dataclass(frozen=True)
class VolSiMArchitecture:
    """Shape of a VolSiM network: number of scales and the channel width of each."""

    widths: tuple[int, ...] = (4, 8, 16)
    in_channels: int = 3
    skip: bool = True

    @property
    def scales(self) -> int:
        return len(self.widths)

    @property
    def layer_channels(self) -> list[int]:
        return [w for w in self.widths for _ in _KERNELS]

    @property
    def layer_names(self) -> list[str]:
        return [f"s{s}.l{i}" for s in range(self.scales) for i in range(len(_KERNELS))]

    @classmethod
    def with_scales(cls, scales: int, width_factor: float = 1.0, skip: bool = True) -> VolSiMArchitecture:
        """Official layouts: 3 scales = multiScaleSkip_12_1, 4 = multiScaleSkip_16_1, 5 = ..._20_1."""
        if scales < 1:
            raise ValueError("VolSiM needs at least one scale")
        if not int(4 * width_factor) >= 1:
            raise ValueError(f"width {width_factor} leaves the first scale without channels (needs >= 0.25)")
        return cls(widths=tuple(int(4 * 2**s * width_factor) for s in range(scales)), skip=skip)

    @classmethod
    def from_official_name(cls, m_base: str) -> VolSiMArchitecture:
        """Parse an official ``mBase`` such as ``multiScaleSkip_12_1``."""
        m = re.fullmatch(r"multiScale(Skip)?_(\d+)_([0-9.]+)", m_base)
        if not m or int(m.group(2)) % 4:
            raise ValueError(f"unsupported VolSiM base network {m_base!r} (expected multiScale[Skip]_<layers>_<width>)")
        return cls.with_scales(int(m.group(2)) // 4, float(m.group(3)), skip=bool(m.group(1)))

    def min_multiple(self) -> int:
        """Spatial sizes must be multiples of this (pooled skip inputs must match the strided path)."""
        return 2 ** (self.scales - 1)


class MultiScaleEncoder(nn.Module):
    """The Siamese feature extractor: returns every ReLU output, block by block."""

    def __init__(self, arch: VolSiMArchitecture):
        super().__init__()
        self.arch = arch
        self.fused = True  # CPU inference through oneDNN's fused conv + ReLU where available
        blocks = []
        prev = 0
        for s, width in enumerate(arch.widths):
            cin = arch.in_channels + (prev if (arch.skip and s > 0) else 0)
            convs = []
            for k, stride in _KERNELS:
                convs.append(nn.Conv3d(cin, width, k, stride=stride, padding=k // 2))
                cin = width
            blocks.append(nn.ModuleList(convs))
            prev = width
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """All feature maps of ``x`` (see :meth:`iter_layers`)."""
        return list(self.iter_layers(x))

    def iter_layers(self, x: torch.Tensor) -> Iterator[torch.Tensor]:
        """Feature maps of ``x`` ``[N, C, D, H, W]`` one layer at a time; C = ``in_channels``, or 1 for scalar data.

        Consuming them one by one keeps only two layers in memory (what a distance needs).

        A single-channel input stands for that channel repeated ``in_channels`` times (the official
        preprocessing). Instead of repeating it, the weights that see the repeated channels are summed
        (first conv, and the pooled-input part of every skip conv): the same result up to float
        rounding, with a third of the first layer's work.
        """
        folded = x.shape[1] == 1 and self.arch.in_channels != 1
        if not folded and x.shape[1] != self.arch.in_channels:
            raise ValueError(f"expected {self.arch.in_channels} or 1 input channels, got {x.shape[1]}")
        # CPU inference: oneDNN convolution with the ReLU fused, on channels-last 3D activations.
        # Small channel counts make every separate pass over an activation (the ReLU, a layout
        # conversion) cost nearly as much as the convolution; so each layer is one oneDNN call,
        # with the weights packed once per weight version (same values up to float rounding).
        cpu_inference = self.fused and x.device.type == "cpu" and not torch.is_grad_enabled()
        conv_relu = _fused_conv_relu() if cpu_inference else None
        if conv_relu is not None:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        inplace = not torch.is_grad_enabled()
        h = x
        for s, block in enumerate(self.blocks):
            if s > 0:
                pooled = F.avg_pool3d(x, 2**s)
                h = torch.cat((pooled, h), dim=1) if self.arch.skip else pooled
            for i, conv in enumerate(block):
                fold = folded and i == 0
                if conv_relu is not None and s == 0 and i == 0 and blocked_conv.applies(conv, tuple(h.shape[2:])):
                    # the first layer (4 output channels) runs on 2x2x2 blocks: same values, better vectorised
                    w, bias = self._packed_weight(conv, fold, blocked=True)
                    out = conv_relu(blocked_conv.to_blocks(h), w, bias, [1, 1, 1], [1, 1, 1], [1, 1, 1], 1, "relu",
                                    [None], "")
                    h = blocked_conv.from_blocks(out)
                    del out  # the block-layout copy: at 512³ it is as large as the widest activation
                elif conv_relu is not None:
                    w, bias = self._packed_weight(conv, fold)
                    h = conv_relu(h, w, bias, list(conv.padding), list(conv.stride), [1, 1, 1], 1, "relu", [None], "")
                elif fold:
                    w = self._fold(conv.weight)
                    h = F.relu(F.conv3d(h, w, conv.bias, stride=conv.stride, padding=conv.padding), inplace=inplace)
                else:
                    h = F.relu(conv(h), inplace=inplace)
                yield h

    def _fold(self, weight: torch.Tensor) -> torch.Tensor:
        """First-layer weights for a 1-channel input standing for ``in_channels`` repeated copies."""
        k = self.arch.in_channels
        return torch.cat((weight[:, :k].sum(dim=1, keepdim=True), weight[:, k:]), dim=1)

    def _packed_weight(self, conv: nn.Conv3d, fold: bool, blocked: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """The conv's weight (input repetition folded in if asked; on 2x2x2 blocks if asked) in channels-last
        layout, cached per weight version."""
        key = (id(conv), fold, blocked)
        version = (conv.weight._version, conv.weight.data_ptr(), conv.bias._version, conv.bias.data_ptr())
        cache = self.__dict__.setdefault("_packed", {})
        hit = cache.get(key)
        if hit is not None and hit[0] == version:
            return hit[1], hit[2]
        w = self._fold(conv.weight.detach()) if fold else conv.weight.detach()
        bias = conv.bias.detach()
        if blocked:
            w, bias = blocked_conv.block_weights(w, bias)
        w = w.contiguous(memory_format=torch.channels_last_3d)
        cache[key] = (version, w, bias)
        return w, bias


def _fused_conv_relu():
    """oneDNN's fused convolution + pointwise op when this PyTorch build has it (None otherwise)."""
    global _FUSED
    if _FUSED is False:
        try:
            op = torch.ops.mkldnn._convolution_pointwise
            if not torch.backends.mkldnn.is_available():
                raise RuntimeError("oneDNN unavailable")
            t = op(torch.ones(1, 1, 4, 4, 4), torch.ones(1, 1, 3, 3, 3), None, [1, 1, 1], [1, 1, 1], [1, 1, 1], 1,
                   "relu", [None], "")
            _FUSED = op if float(t[0, 0, 1, 1, 1]) == 27.0 else None
        except (AttributeError, RuntimeError):
            _FUSED = None
    return _FUSED


_FUSED: Any = False  # not probed yet


@dataclass
class VolSiMWeights:
    """Everything a VolSiM metric needs: architecture, network, comparison, and where it came from."""

    arch: VolSiMArchitecture
    encoder: MultiScaleEncoder
    comparison: FeatureComparison
    provenance: dict[str, Any] = field(default_factory=dict)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Flat tensor dict of volsight's own format."""
        out: dict[str, torch.Tensor] = {}
        for s, block in enumerate(self.encoder.blocks):
            for i, conv in enumerate(block):
                out[f"encoder.s{s}.c{i}.weight"] = conv.weight.detach()
                out[f"encoder.s{s}.c{i}.bias"] = conv.bias.detach()
        for i in range(len(self.comparison)):
            out[f"norm.mean.{i}"] = self.comparison.mean_map(i)
            out[f"norm.m2.{i}"] = self.comparison.m2_map(i)
            out[f"compare.weight.{i}"] = self.comparison.weights[i].detach()
        return out

    def save(self, path: str | os.PathLike, provenance: Mapping[str, Any] | None = None) -> None:
        """Write volsight's own format (safetensors + JSON header), atomically."""
        header = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "architecture": {"widths": list(self.arch.widths), "in_channels": self.arch.in_channels,
                             "skip": self.arch.skip, "scales": self.arch.scales,
                             "layer_names": self.arch.layer_names},
            "normalisation": {"counts": list(self.comparison.counts), "eps": self.comparison.eps,
                              "formula": "(F - mean) / (sqrt(M2 / (count - 1)) + eps) / (sqrt(C) - 1)"},
            "provenance": dict(provenance if provenance is not None else self.provenance),
        }
        save_safetensors(path, self.state_tensors(), header)


def new_weights(arch: VolSiMArchitecture, norm_size: int = 64, seed: int | None = None) -> VolSiMWeights:
    """Untrained weights (PyTorch default init, unit normalisation maps) — for training and tests."""
    if seed is not None:
        torch.manual_seed(seed)
    encoder = MultiScaleEncoder(arch).eval()
    sizes = feature_sizes(arch, (norm_size,) * 3)
    comparison = FeatureComparison(
        arch.layer_channels,
        [torch.zeros(s) for s in sizes],
        [torch.ones(s) for s in sizes],
        [2] * len(sizes),
        names=arch.layer_names,
    )
    return VolSiMWeights(arch, encoder, comparison, {"source": "untrained"})


def feature_sizes(arch: VolSiMArchitecture, size: Sequence[int]) -> list[tuple[int, ...]]:
    """Spatial size of every compared feature map for an input of spatial ``size``."""
    out = []
    for s in range(arch.scales):
        base = tuple(n // 2**s for n in size)
        half = tuple((n + 1) // 2 for n in base)
        out += [base, half, half, half]
    return out


def _official_to_weights(data: Mapping[str, Any], path: str | os.PathLike) -> VolSiMWeights:
    hp = data["hyperparams"]
    if not isinstance(hp, Mapping):
        raise WeightsError(path, "hyperparams is not a dict; not a VolSiM checkpoint")
    try:
        arch = VolSiMArchitecture.from_official_name(str(hp.get("mBase", "")))
    except ValueError as exc:
        raise WeightsError(path, f"{exc}; only the multiscale VolSiM networks are supported") from exc
    if hp.get("mNormMode", "normMeanLayerGlobal") != "normMeanLayerGlobal":
        raise WeightsError(path, f"feature normalisation {hp.get('mNormMode')!r} is not supported")
    if hp.get("mFeatDist", "L2Sqrt") != "L2Sqrt":
        raise WeightsError(path, f"feature distance {hp.get('mFeatDist')!r} is not supported (L2Sqrt)")
    sd = data["stateDict"]
    encoder = MultiScaleEncoder(arch)
    n_layers = len(arch.layer_channels)
    try:
        mapped = {}
        for k in range(n_layers):
            s, i = divmod(k, len(_KERNELS))
            mapped[f"blocks.{s}.{i}.weight"] = sd[f"basenet.slice{k}.0.weight"]
            mapped[f"blocks.{s}.{i}.bias"] = sd[f"basenet.slice{k}.0.bias"]
        encoder.load_state_dict(mapped)
        weights = []
        for k in range(n_layers):
            key = next((f"avg{k}.{j}.weight" for j in (1, 0) if f"avg{k}.{j}.weight" in sd), None)
            if key is None:
                raise KeyError(f"avg{k}.*.weight")
            weights.append(torch.as_tensor(sd[key]).reshape(-1).float())
        means = [torch.as_tensor(m).float() for m in data["normAcc"]]
        m2s = [torch.as_tensor(m).float() for m in data["normM2"]]
        counts = [float(c) for c in data["normCount"]]
    except (KeyError, RuntimeError, TypeError) as exc:
        raise WeightsError(path, f"checkpoint does not match the {arch.scales}-scale VolSiM layout ({exc})") from exc
    if len(means) != n_layers or any(m.ndim != 3 for m in means) or any(c < 2 for c in counts):
        raise WeightsError(path, "normalisation statistics missing or not 3D maps (was normalisation calibrated?)")
    for k in hp.get("mIgnoreLayers", []) or []:
        weights[int(k)] = torch.zeros_like(weights[int(k)])  # an ignored layer contributes nothing
    comparison = FeatureComparison(arch.layer_channels, means, m2s, counts, weights, names=arch.layer_names)
    prov = {"source": "official VolSiM checkpoint", "file": os.fspath(path), "mBase": hp.get("mBase")}
    return VolSiMWeights(arch, encoder.eval(), comparison, prov)


def _own_to_weights(tensors: Mapping[str, torch.Tensor], header: Mapping[str, Any], path: str | os.PathLike):
    try:
        a = header["architecture"]
        arch = VolSiMArchitecture(widths=tuple(int(w) for w in a["widths"]), in_channels=int(a.get("in_channels", 3)),
                                  skip=bool(a.get("skip", True)))
        encoder = MultiScaleEncoder(arch)
        encoder.load_state_dict({
            f"blocks.{s}.{i}.{p}": tensors[f"encoder.s{s}.c{i}.{p}"]
            for s in range(arch.scales) for i in range(len(_KERNELS)) for p in ("weight", "bias")
        })
        n = len(arch.layer_channels)
        norm = header["normalisation"]
        comparison = FeatureComparison(
            arch.layer_channels,
            [tensors[f"norm.mean.{i}"] for i in range(n)],
            [tensors[f"norm.m2.{i}"] for i in range(n)],
            norm["counts"],
            [tensors[f"compare.weight.{i}"] for i in range(n)],
            names=arch.layer_names,
            eps=float(norm.get("eps", 1e-10)),
        )
    except (KeyError, RuntimeError, TypeError, ValueError) as exc:
        raise WeightsError(path, f"volsight VolSiM file is incomplete or inconsistent ({exc})") from exc
    prov = dict(header.get("provenance", {}))
    prov.setdefault("file", os.fspath(path))
    return VolSiMWeights(arch, encoder.eval(), comparison, prov)


def load_volsim_weights(path: str | os.PathLike) -> VolSiMWeights:
    """Load VolSiM weights from an official checkpoint (``.pth``) or volsight's own ``.safetensors``."""
    from core.metrics.weights_io import is_safetensors

    if is_safetensors(path):
        tensors, header = load_safetensors(path, "VolSiM", FORMAT_NAME)
        if int(header.get("version", 0)) > FORMAT_VERSION:
            raise WeightsError(path, f"format version {header.get('version')} is newer than this volsight reads")
        return _own_to_weights(tensors, header, path)
    data = load_torch_checkpoint(path, OFFICIAL_KEYS, "VolSiM")
    return _official_to_weights(data, path)


def architecture_summary(arch: VolSiMArchitecture) -> dict[str, Any]:
    """Architecture facts for ``Distance.info`` and ``volsight metrics``."""
    d = asdict(arch)
    d["scales"] = arch.scales
    d["layers"] = len(arch.layer_channels)
    d["parameters_per_layer_weights"] = sum(arch.layer_channels)
    d["min_multiple"] = arch.min_multiple()
    return d
