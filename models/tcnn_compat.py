"""Optional tinycudann (tiny-cuda-nn) support and weight conversion between its flat layout and PyTorch.

tinycudann is never required. When it imports and the field lives on CUDA, the decoder runs as a
``tcnn.Network`` (FullyFusedMLP, ReLU, no output activation) and the hash grid's encoding as a
``tcnn.Encoding`` (HashGrid). Files always store the PyTorch layout (``decoder.weights.i`` =
``[out, in]``, ``encoding.table`` = ``[entries, F]``), so a field trained with tinycudann loads on a CPU-only
machine and vice versa: conversion happens when a decoder is saved or loaded.

Flat layout (``tcnn.Network.params``, as read by APMGSRN's ``convert_tcnn_to_pytorch``): the layer
matrices one after another, each row-major ``[out_padded, in_padded]`` (the same orientation as
``nn.Linear.weight``) where ``in`` of the first layer and ``out`` of the last are padded up to a
multiple of 16 and hidden widths are used as they are:

    [W x pad16(n_in)] [W x W] * (n_hidden - 1) [pad16(n_out) x W]

Padded input columns multiply inputs volsight itself pads with zeros (so they are dropped when
converting to PyTorch and written as zeros the other way); padded output rows are never read.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import torch
from torch import nn

from models.mlp import MLPDecoder

TCNN_ALIGNMENT = 16


def pad16(n: int) -> int:
    """Round up to tinycudann's alignment of 16."""
    return (n + TCNN_ALIGNMENT - 1) // TCNN_ALIGNMENT * TCNN_ALIGNMENT


@cache
def _import_tcnn() -> Any | None:
    try:
        import tinycudann  # type: ignore[import-not-found]
    except Exception:  # noqa: BLE001 - any failure (missing, no CUDA build, ABI mismatch) means "not available"
        return None
    return tinycudann


def tcnn_available() -> bool:
    """Whether tinycudann imports and CUDA is present."""
    return torch.cuda.is_available() and _import_tcnn() is not None


def layer_shapes(n_input: int, width: int, n_hidden: int, n_output: int, padded: bool) -> list[tuple[int, int]]:
    """``(out, in)`` of each decoder layer, padded as tinycudann stores them or not."""
    n_in = pad16(n_input) if padded else n_input
    n_out = pad16(n_output) if padded else n_output
    return [(width, n_in)] + [(width, width)] * (n_hidden - 1) + [(n_out, width)]


def pytorch_to_tcnn(layers: list[torch.Tensor], n_input: int, n_output: int) -> torch.Tensor:
    """PyTorch weights ``[out, in]`` -> the flat tinycudann parameter vector (float32)."""
    width, n_hidden = layers[0].shape[0], len(layers) - 1
    shapes = layer_shapes(n_input, width, n_hidden, n_output, padded=True)
    blocks = []
    for w, (rows, cols) in zip(layers, shapes):
        block = torch.zeros(rows, cols, dtype=torch.float32, device=w.device)
        block[: w.shape[0], : w.shape[1]] = w.detach().float()
        blocks.append(block.reshape(-1))
    return torch.cat(blocks)


def tcnn_to_pytorch(flat: torch.Tensor, n_input: int, width: int, n_hidden: int,
                    n_output: int) -> list[torch.Tensor]:
    """The flat tinycudann parameter vector -> PyTorch weights ``[out, in]`` (padding dropped)."""
    shapes = layer_shapes(n_input, width, n_hidden, n_output, padded=True)
    expected = sum(r * c for r, c in shapes)
    flat = flat.detach().float().reshape(-1)
    if flat.numel() != expected:
        from core.errors import VolsightError

        raise VolsightError(f"tinycudann decoder has {flat.numel()} parameters, expected {expected} for "
                            f"{n_input} inputs, {n_hidden} hidden layers of {width} and {n_output} outputs")
    out, offset = [], 0
    true_shapes = layer_shapes(n_input, width, n_hidden, n_output, padded=False)
    for (rows, cols), (tr, tc) in zip(shapes, true_shapes):
        block = flat[offset: offset + rows * cols].reshape(rows, cols)
        out.append(block[:tr, :tc].clone())
        offset += rows * cols
    return out


class TcnnDecoder(nn.Module):
    """The decoder as a tinycudann FullyFusedMLP; saves and loads the PyTorch layout."""

    def __init__(self, n_input: int, width: int, n_hidden: int, n_output: int, generator: torch.Generator | None):
        super().__init__()
        tcnn = _import_tcnn()
        self.n_input, self.width, self.n_hidden, self.n_output = n_input, width, n_hidden, n_output
        otype = "FullyFusedMLP" if width in (16, 32, 64, 128) else "CutlassMLP"
        self.net = tcnn.Network(pad16(n_input), n_output, {
            "otype": otype, "activation": "ReLU", "output_activation": "None",
            "n_neurons": width, "n_hidden_layers": n_hidden,
        })
        init = MLPDecoder(n_input, width, n_hidden, n_output, generator).layers()
        with torch.no_grad():
            self.net.params.copy_(pytorch_to_tcnn(init, n_input, n_output).to(self.net.params))

    def forward_planar(self, features_t: torch.Tensor) -> torch.Tensor:
        """``[n_input, N]`` -> ``[N, n_output]`` (float32)."""
        x = features_t.t()
        if x.shape[1] != pad16(self.n_input):
            x = torch.nn.functional.pad(x, (0, pad16(self.n_input) - x.shape[1]))  # zero padding
        return self.net(x.contiguous()).float()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``[N, n_input]`` -> ``[N, n_output]``."""
        return self.forward_planar(features.t())

    def layers(self) -> list[torch.Tensor]:
        """Weights in PyTorch layout ``[out, in]``."""
        return tcnn_to_pytorch(self.net.params, self.n_input, self.width, self.n_hidden, self.n_output)

    def state_dict(self, *args: Any, destination: Any = None, prefix: str = "", keep_vars: bool = False) -> Any:
        """The PyTorch layout ``weights.i`` (``[out, in]``) instead of the flat ``net.params``."""
        from collections import OrderedDict

        out = OrderedDict() if destination is None else destination
        for i, w in enumerate(self.layers()):
            out[f"{prefix}weights.{i}"] = w
        return out

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        # turn the PyTorch layout into the flat vector the child tcnn module then loads as usual
        keys = [f"{prefix}weights.{i}" for i in range(self.n_hidden + 1)]
        if all(k in state_dict for k in keys):
            layers = [state_dict.pop(k) for k in keys]
            flat = pytorch_to_tcnn(layers, self.n_input, self.n_output)
            state_dict[f"{prefix}net.params"] = flat.to(self.net.params)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)


class TcnnHashEncoding(nn.Module):
    """The hash encoding as ``tcnn.Encoding(HashGrid)``; saves and loads the PyTorch ``table`` layout.

    volsight's :class:`models.baselines.HashGridEncoding` follows tiny-cuda-nn's grid indexing and its
    level-major, feature-fastest parameter order, so the table is the flat params reshaped.
    """

    def __init__(self, source: nn.Module):
        super().__init__()
        tcnn = _import_tcnn()
        self.n_levels, self.n_features = source.n_levels, source.n_features
        self.table_shape = tuple(source.table.shape)
        self.net = tcnn.Encoding(3, {
            "otype": "HashGrid", "n_levels": source.n_levels, "n_features_per_level": source.n_features,
            "log2_hashmap_size": source.log2_table_size, "base_resolution": source.base_resolution,
            "per_level_scale": source.per_level_scale,
        })
        if self.net.params.numel() != source.table.numel():
            from core.errors import VolsightError

            raise VolsightError(f"tinycudann hash grid has {self.net.params.numel()} parameters, volsight's "
                                f"{source.table.numel()}: the layouts differ, use_tcnn=False")
        with torch.no_grad():
            self.net.params.copy_(source.table.detach().reshape(-1).to(self.net.params))

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        """Level-major features ``[L * F, N]`` (float32)."""
        return self.net(((points + 1.0) * 0.5).contiguous()).float().t()

    def state_dict(self, *args: Any, destination: Any = None, prefix: str = "", keep_vars: bool = False) -> Any:
        """The PyTorch layout ``table [entries, F]`` instead of the flat ``net.params``."""
        from collections import OrderedDict

        out = OrderedDict() if destination is None else destination
        out[f"{prefix}table"] = self.net.params.detach().float().reshape(self.table_shape).clone()
        return out

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        key = f"{prefix}table"
        if key in state_dict:
            state_dict[f"{prefix}net.params"] = state_dict.pop(key).reshape(-1).to(self.net.params)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)


def make_decoder(n_input: int, width: int, n_hidden: int, n_output: int, generator: torch.Generator | None,
                 use_tcnn: bool = True, device: torch.device | str | None = None) -> nn.Module:
    """A TcnnDecoder when asked for, on CUDA and importable; the PyTorch MLPDecoder otherwise."""
    if use_tcnn and device is not None and torch.device(device).type == "cuda" and tcnn_available():
        return TcnnDecoder(n_input, width, n_hidden, n_output, generator).to(device)
    return MLPDecoder(n_input, width, n_hidden, n_output, generator)
