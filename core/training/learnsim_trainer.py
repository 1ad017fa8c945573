"""Training volsight's own LearnSim weights (learned SSD / LCC) on the cached simulation sequences.

LearnSim learns its similarity inside image registration; volsight instead teaches the same
small encoder (:class:`core.metrics.learnsim.LearnSimNetwork`) to rank the frames of its
simulated sequences, as the VolSiM weights are taught (:mod:`core.training.trainer`), so the
learned SSD becomes a distance that follows the varied parameter rather than the voxel values.

One step = one augmented sequence: its 11 frames are reduced to scalars (vector volumes: the
magnitude, as the metric compares them), min-maxed jointly to [0, 1] as the metric treats a set,
encoded once, and the learned SSD (or 1 − learned LCC) of all 55 frame pairs is compared with the
frame offsets by :func:`core.training.objective.volsim_loss`. The correlation term alone is the
default (``mse_factor=0``): a learned SSD has no natural scale to match the offsets with, and
with the MSE term the network mostly learns to scale its output (measured on 80 training
sequences: held-out mean Spearman 0.883 with it, 0.897 without). Training starts from the exact
identity (the learned SSD equals plain SSD), so step 0 is MSE's ranking. With ``average > 0``
the validated and exported network is an exponential moving average of the weights (as the
VolSiM trainer's), which the shipped recipe needs: the raw weights swing from step to step
(held-out mean 0.880 without the average, 0.907 and 0.918 with it, for two seeds). Validation
(the training families' validation seeds, frame 0 against the others, pooled Spearman) picks
the best epoch, which is exported as ``best.safetensors`` in volsight's LearnSim format with the
run's provenance in its header.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from core.metrics.learnsim import LearnSimNetwork, Similarity, plain_map
from core.training.dataset import augment
from core.training.objective import finite_or_raise, volsim_loss
from core.training.trainer import SequenceTrainer


@dataclass
class LearnSimTrainConfig:
    """Everything that determines a LearnSim training run (stored in checkpoints and the weights' header)."""

    similarity: Similarity = "ssd"
    size: int = 32
    epochs: int = 8
    lr: float = 1e-3
    seed: int = 0
    mse_factor: float = 0.0
    corr_factor: float = 0.7
    augment: bool = True
    average: float = 0.0  # > 0: validate/export an exponential moving average of the weights (decay per step)
    max_minutes: float | None = None
    checkpoint_minutes: float = 5.0
    log_every: int = 20
    keep_epochs: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def scalar_unit(frames: torch.Tensor) -> torch.Tensor:
    """Frames ``[F, C, ...]`` as ``[F, 1, ...]`` scalars (magnitude of 3 channels) min-maxed jointly to [0, 1]."""
    if frames.shape[1] == 3:
        frames = torch.linalg.vector_norm(frames, dim=1, keepdim=True)
    elif frames.shape[1] != 1:
        raise ValueError(f"LearnSim trains on 1- or 3-channel frames, not {frames.shape[1]}")
    lo, hi = frames.min(), frames.max()
    if not hi > lo:
        return torch.zeros_like(frames)
    return ((frames - lo) / (hi - lo)).clamp_(0.0, 1.0)


def pair_distances(net: LearnSimNetwork, frames: torch.Tensor,
                   pairs: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Distances of the frame pairs ``(i, j)``: sqrt of the learned SSD, or 1 − the learned LCC."""
    z = net.aggregate(net.encode(frames))
    i, j = pairs
    value = plain_map(z[i], z[j], net.similarity).mean(dim=tuple(range(1, z.ndim)))
    return torch.sqrt(value + 1e-12) if net.similarity == "ssd" else 1.0 - value


class LearnSimTrainer(SequenceTrainer):
    """Train a LearnSim encoder to rank simulated sequences; see the module docstring."""

    def __init__(self, config: LearnSimTrainConfig, train_files: Sequence[str | os.PathLike],
                 validation_files: Sequence[str | os.PathLike], output: str | os.PathLike,
                 device: torch.device | None = None, log: Callable[[str], None] | None = None):
        super().__init__(config, train_files, validation_files, output, device, log)
        self.network = LearnSimNetwork(config.similarity, seed=config.seed).to(self.device)
        self.optimizer = torch.optim.Adam(self.network.parameters(), lr=config.lr)
        self._start_average()
        i, j = self.pairs
        self.targets = ((j - i).abs().float() / (self.train.sequences[0].frames.shape[0] - 1)).to(self.device)

    def frames(self, store: Any, index: int, generator: torch.Generator | None) -> torch.Tensor:
        t = torch.from_numpy(store.sequences[index].frames.astype(np.float32))
        if generator is not None:
            t = augment(t, generator)
        return scalar_unit(t).to(self.device)

    def step(self, index: int) -> dict[str, float]:
        self.network.train()
        frames = self.frames(self.train, index, self.generator if self.config.augment else None)
        pred = pair_distances(self.network, frames, self.pairs)
        loss, parts = volsim_loss(pred, self.targets, self.config.mse_factor, self.config.corr_factor)
        finite_or_raise(loss, "training loss")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.steps += 1
        self._update_average()
        return parts

    def _parameters(self) -> list[torch.Tensor]:
        return list(self.network.parameters())

    def metric_network(self) -> LearnSimNetwork:
        """The network as validated and exported: the trained one, or its moving average (``average > 0``)."""
        if self.averaged is None:
            return self.network
        import copy

        net = copy.deepcopy(self.network)
        with torch.no_grad():
            for mine, avg in zip(net.parameters(), self.averaged, strict=True):
                mine.copy_(avg)
        return net

    @torch.no_grad()
    def validate(self) -> float:
        """Pooled Spearman of frame 0 against the others on the validation seeds (per-sequence rescaling)."""
        from core.training.evaluate import offsets, pooled_spearman

        if self.validation is None or len(self.validation) == 0:
            return float("nan")
        net = self.metric_network().eval()
        n = self.validation.sequences[0].frames.shape[0]
        ref = (torch.zeros(n - 1, dtype=torch.long), torch.arange(1, n))
        rows = [pair_distances(net, self.frames(self.validation, k, None), ref).cpu().numpy()
                for k in range(len(self.validation))]
        return pooled_spearman(np.stack(rows), offsets(n - 1))

    def source(self) -> str:
        return "volsight metric-train --model learnsim-" + self.config.similarity

    def export(self, path: str | os.PathLike) -> None:
        self.metric_network().save(path, provenance=self.provenance())

    def model_state(self) -> dict[str, Any]:
        return {"network": self.network.state_dict(), "optimizer": self.optimizer.state_dict(),
                "averaged": self.averaged if self.averaged is not None else []}

    def load_model_state(self, state: dict[str, Any]) -> None:
        self.network.load_state_dict(state["network"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.averaged is not None:
            self.averaged = [t.to(self.device) for t in state["averaged"]]
