"""Training volsight's own VolSiM weights on the cached simulation sequences.

One step = one augmented sequence (batch 1, as VolSiM): its 11 frames go through the network
once, the distances of all 55 frame pairs are compared with the (optionally non-linearly
corrected) ground truth by :func:`core.training.objective.volsim_loss`, and Adam updates the
encoder and the non-negative channel weights. Before the first step a calibration pass installs
the feature-normalisation maps. With ``average > 0`` an exponential moving average of the
trainable parameters is kept beside them (decay ``min(average, (1 + t) / (10 + t))`` at step
``t``: it spans roughly the last tenth of a short run, at most ~1/(1 - average) steps); that
average is the metric that is validated and exported, which smooths the large epoch-to-epoch
swings of single-sequence Adam steps (the raw weights train on unchanged). Checkpoints
(``checkpoint.pt`` in the output folder: model, average, optimiser, epoch order and
random-generator state) are written every few minutes and at every epoch end; ``resume=True``
continues bit-for-bit from the last one. The best epoch by validation
Spearman (validation seeds of the *training* families only; held-out families are never looked
at) is exported as ``best.safetensors``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.io.atomic import atomic_path
from core.metrics.volsim_net import VolSiMArchitecture, VolSiMWeights, new_weights
from core.training.dataset import SequenceStore, check_warp_share
from core.training.objective import all_pairs, calibrate, finite_or_raise, sequence_distances, volsim_loss
from core.training.simulations.ground_truth import linear_distances, target_distances

CHECKPOINT = "checkpoint.pt"
BEST = "best.safetensors"
LAST = "last.safetensors"
HISTORY = "history.json"


@dataclass
class TrainConfig:
    """Everything that determines a training run (stored in checkpoints and the weights card)."""

    scales: int = 3
    width: float = 1.0  # channel-width factor: scale s has int(4 * 2**s * width) channels
    size: int = 32
    epochs: int = 20
    lr: float = 2e-4
    seed: int = 0
    mse_factor: float = 1.0
    corr_factor: float = 0.7
    nonlinear_targets: bool = True
    dropout: float = 0.1
    augment: bool = True
    average: float = 0.0  # > 0: validate/export an exponential moving average of the parameters (decay per step)
    nuisance: float = 0.0  # > 0: half the augmented draws get per-frame smooth noise up to this x the sequence std
    nuisance_grids: tuple[int, ...] = (4,)  # the noise's grid is 1/g of the volume's, g drawn from these
    # with nuisance: half the draws add a "noise twin" (a frame again under other noise) whose target is 0
    noise_twins: bool = False
    value_warp: float = 0.0  # > 0: this share of the augmented draws get a random monotone value transfer
    calibration_volumes: int | None = None  # None: every frame of every training sequence; else ~this many
    # feature scales: per location while training, one per layer (mean std) in the exported metric ("flattened");
    # per location throughout ("spatial", VolSiM); one per layer from the calibration on ("global")
    normalisation: str = "flattened"
    max_minutes: float | None = None
    checkpoint_minutes: float = 5.0
    init: str | None = None  # start from these VolSiM weights (network and channel weights; normalisation recalibrated)
    log_every: int = 20
    keep_epochs: bool = False  # also export every epoch's weights as epochNNN.safetensors
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainResult:
    epochs_done: int
    steps: int
    best_epoch: int
    best_validation: float
    wall_seconds: float
    stopped_early: bool
    history: list[dict[str, Any]]


class SequenceTrainer:
    """The loop shared by volsight's metric trainers: epochs of single-sequence steps over cached sequences.

    A subclass builds its model and optimiser and supplies :meth:`step`, :meth:`validate`,
    :meth:`export` and its part of the checkpoint (:meth:`model_state` / :meth:`load_model_state`);
    the epoch order, logging, time limit, best-epoch export, history and bit-exact checkpoint /
    resume are here. ``config`` needs ``size``, ``epochs``, ``seed``, ``max_minutes``,
    ``checkpoint_minutes``, ``log_every``, ``keep_epochs`` and ``extra``.
    """

    # config fields that may change between a checkpoint and its resumption
    RESUMABLE_CHANGES = ("epochs", "max_minutes", "keep_epochs", "extra")

    def __init__(self, config: Any, train_files: Sequence[str | os.PathLike],
                 validation_files: Sequence[str | os.PathLike], output: str | os.PathLike,
                 device: torch.device | None = None, log: Callable[[str], None] | None = None):
        self.config = config
        self.output = Path(output)
        self.output.mkdir(parents=True, exist_ok=True)
        self.log = log or (lambda msg: None)
        self.device = device or torch.device("cpu")
        self.train = SequenceStore(train_files)
        self.validation = SequenceStore(validation_files) if validation_files else None
        sizes = {s.frames.shape[-1] for s in self.train.sequences}
        if sizes != {config.size}:
            raise ValueError(f"training sequences have size(s) {sorted(sizes)}, the config says {config.size}")
        torch.manual_seed(config.seed)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.pairs = all_pairs(self.train.sequences[0].frames.shape[0])
        self.epoch = 0
        self.position = 0  # index into the current epoch's order
        self.order: torch.Tensor | None = None
        self.steps = 0
        self.history: list[dict[str, Any]] = []
        self.best = (-1, -float("inf"))
        self.elapsed = 0.0

    # ------------------------------------------------------------------ what a model supplies
    def prepare(self) -> bool:
        """Anything to do once before the first step; True when it did something (a checkpoint follows)."""
        return False

    def step(self, index: int) -> dict[str, float]:
        raise NotImplementedError

    def validate(self) -> float:
        raise NotImplementedError

    def export(self, path: str | os.PathLike) -> None:
        raise NotImplementedError

    def model_state(self) -> dict[str, Any]:
        raise NotImplementedError

    def load_model_state(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    def _parameters(self) -> list[torch.Tensor]:
        """The trainable parameters, in the order of :attr:`averaged`."""
        raise NotImplementedError

    def _start_average(self) -> None:
        """Keep an exponential moving average of :meth:`_parameters` when ``config.average > 0``."""
        average = float(getattr(self.config, "average", 0.0))
        if not 0.0 <= average < 1.0:
            raise ValueError(f"average must be in [0, 1), got {average}")
        self.averaged: list[torch.Tensor] | None = (
            [p.detach().clone() for p in self._parameters()] if average else None)

    @torch.no_grad()
    def _update_average(self) -> None:
        """One step of the moving average; its decay ramps up over the first steps (so early weights fade)."""
        if self.averaged is None:
            return
        decay = min(self.config.average, (1.0 + self.steps) / (10.0 + self.steps))
        for avg, p in zip(self.averaged, self._parameters(), strict=True):
            avg.lerp_(p.detach(), 1.0 - decay)

    # ------------------------------------------------------------------ the loop
    def run(self, progress: Callable[[dict[str, Any]], None] | None = None) -> TrainResult:
        """Train until ``epochs`` are done or ``max_minutes`` have passed (then stop at a clean checkpoint)."""
        cfg = self.config
        start = time.perf_counter() - self.elapsed
        if self.prepare():
            self.save_checkpoint()
        last_ckpt = time.perf_counter()
        stopped = False
        running: dict[str, float] = {}
        while self.epoch < cfg.epochs and not stopped:
            if self.order is None:
                self.order = torch.randperm(len(self.train), generator=self.generator)
                self.position = 0
            while self.position < len(self.order):
                parts = self.step(int(self.order[self.position]))
                self.position += 1
                for k, v in parts.items():
                    running[k] = running.get(k, 0.0) + v
                running["n"] = running.get("n", 0.0) + 1
                if self.steps % cfg.log_every == 0:
                    n = running.pop("n")
                    means = {k: v / n for k, v in running.items()}
                    running = {}
                    self.elapsed = time.perf_counter() - start
                    self.log(f"epoch {self.epoch + 1}/{cfg.epochs} step {self.position}/{len(self.order)} "
                             f"(total {self.steps}) loss {means['loss']:.4f} mse {means['mse']:.4f} "
                             f"pearson {means['pearson']:.3f} | {self.elapsed / 60:.1f} min")
                    if progress is not None:
                        progress({"epoch": self.epoch, "step": self.steps, **means})
                over_time = cfg.max_minutes is not None and time.perf_counter() - start > cfg.max_minutes * 60
                if over_time:
                    stopped = True
                    break
                if time.perf_counter() - last_ckpt > cfg.checkpoint_minutes * 60:
                    self.elapsed = time.perf_counter() - start
                    self.save_checkpoint()
                    last_ckpt = time.perf_counter()
            if self.position >= len(self.order):
                self.epoch += 1
                self.order = None
                val = self.validate()
                self.elapsed = time.perf_counter() - start
                entry = {"epoch": self.epoch, "steps": self.steps, "validation_spearman": val,
                         "minutes": self.elapsed / 60}
                self.history.append(entry)
                self.log(f"epoch {self.epoch} done: validation Spearman {val:.4f} ({self.elapsed / 60:.1f} min)")
                if val > self.best[1]:
                    self.best = (self.epoch, val)
                    self.export(self.output / BEST)
                if cfg.keep_epochs:
                    self.export(self.output / f"epoch{self.epoch:03d}.safetensors")
                self.save_checkpoint()
                last_ckpt = time.perf_counter()
        self.elapsed = time.perf_counter() - start
        self.save_checkpoint()
        self.export(self.output / LAST)
        if self.best[0] < 0:  # stopped before the first epoch ended: the last state is all there is
            self.export(self.output / BEST)
        with atomic_path(self.output / HISTORY) as tmp:
            tmp.write_text(json.dumps(self.history, indent=1))
        return TrainResult(self.epoch, self.steps, self.best[0], self.best[1], self.elapsed, stopped, self.history)

    def provenance(self) -> dict[str, Any]:
        """What the exported weights record of their run (header provenance, and the weights card's source)."""
        families = sorted({s.family for s in self.train.sequences})
        return {
            "source": self.source(),
            "working_size": self.config.size,
            "train_families": families,
            "train_sequences": len(self.train),
            "epochs": self.epoch,
            "steps": self.steps,
            "seed": self.config.seed,
            "wall_minutes": round(self.elapsed / 60, 2),
            "device": str(self.device),
            "threads": torch.get_num_threads(),
            "config": {k: v for k, v in asdict(self.config).items() if k != "extra"},
            **self.config.extra,
        }

    def source(self) -> str:
        return "volsight metric-train"

    # ------------------------------------------------------------------ checkpoints
    def _config_text(self) -> str:
        return json.dumps({k: v for k, v in asdict(self.config).items() if k not in self.RESUMABLE_CHANGES})

    def save_checkpoint(self) -> None:
        state = {
            **self.model_state(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "epoch": self.epoch,
            "position": self.position,
            "order": self.order if self.order is not None else torch.empty(0, dtype=torch.long),
            "steps": self.steps,
            "best_epoch": self.best[0],
            "best_value": self.best[1],
            "elapsed": self.elapsed,
            "history": json.dumps(self.history),
            "config": self._config_text(),
        }
        with atomic_path(self.output / CHECKPOINT, suffix=".pt") as tmp:
            torch.save(state, tmp)

    def load_checkpoint(self) -> bool:
        """Resume from ``checkpoint.pt`` in the output folder if there is one; True if resumed."""
        path = self.output / CHECKPOINT
        if not path.exists():
            return False
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state["config"] != self._config_text():
            raise ValueError(f"{path}: checkpoint was made with another configuration; use a new output folder")
        self.load_model_state(state)
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])
        self.order = state["order"] if state["order"].numel() else None
        self.steps = int(state["steps"])
        self.best = (int(state["best_epoch"]), float(state["best_value"]))
        self.elapsed = float(state["elapsed"])
        self.history = json.loads(state["history"])
        return True


class Trainer(SequenceTrainer):
    """Train VolSiM weights on cached sequences; see the module docstring."""

    def __init__(self, config: TrainConfig, train_files: Sequence[str | os.PathLike],
                 validation_files: Sequence[str | os.PathLike], output: str | os.PathLike,
                 device: torch.device | None = None, log: Callable[[str], None] | None = None):
        super().__init__(config, train_files, validation_files, output, device, log)
        check_warp_share(config.value_warp)
        self.arch = VolSiMArchitecture.with_scales(config.scales, config.width)
        if config.size % self.arch.min_multiple() or config.size < 2 * self.arch.min_multiple():
            raise ValueError(f"size {config.size} does not fit a {config.scales}-scale network")
        self.weights: VolSiMWeights = new_weights(self.arch, norm_size=config.size, seed=config.seed)
        if config.init:
            self._start_from(config.init)
        self.weights.encoder.to(self.device)
        self.weights.comparison.to(self.device)
        self.optimizer = torch.optim.Adam(self._parameters(), lr=config.lr)
        self._start_average()
        self.calibrated = False

    def _start_from(self, path: str) -> None:
        """Copy the convolutions and channel weights of existing weights (fine-tuning, e.g. at another size)."""
        from core.metrics.volsim_net import load_volsim_weights

        start = load_volsim_weights(path)
        if start.arch != self.arch:
            raise ValueError(f"{path}: a {start.arch.scales}-scale network {start.arch.widths}, but the config "
                             f"asks for {self.arch.scales} scales {self.arch.widths}")
        self.weights.encoder.load_state_dict(start.encoder.state_dict())
        with torch.no_grad():
            for mine, theirs in zip(self.weights.comparison.weights, start.comparison.weights, strict=True):
                mine.copy_(theirs)

    # ------------------------------------------------------------------ targets
    def _targets(self, index: int) -> torch.Tensor:
        seq = self.train.sequences[index]
        coef = seq.coefficient if self.config.nonlinear_targets else None
        full = target_distances(seq.frames.shape[0], coef)
        i, j = self.pairs
        return torch.as_tensor(full[i.numpy(), j.numpy()], dtype=torch.float32, device=self.device)

    # ------------------------------------------------------------------ phases
    def calibrate(self) -> None:
        """Install the feature-normalisation maps from the (un-augmented) training frames."""
        limit = self.config.calibration_volumes
        n_seq = len(self.train)
        frames_per = self.train.sequences[0].frames.shape[0]
        # a limited pass takes whole sequences spread evenly over the (family-ordered) store
        wanted = n_seq if limit is None else max(2, min(n_seq, -(-limit // frames_per)))
        chosen = sorted({int(round(k)) for k in np.linspace(0, n_seq - 1, wanted)})

        def batches():
            for k in chosen:
                yield self.train.frames(k)

        t = time.perf_counter()
        count = calibrate(self.weights, batches(), self.device, normalisation=self.config.normalisation)
        self.calibrated = True
        self.log(f"calibration: {count} volumes in {time.perf_counter() - t:.0f}s")

    def step(self, index: int) -> dict[str, float]:
        """One optimisation step on training sequence ``index``."""
        self.weights.encoder.train()
        cfg = self.config
        generator = self.generator if cfg.augment else None
        pairs, targets = self.pairs, self._targets(index)
        if (cfg.noise_twins and generator is not None and cfg.nuisance > 0.0
                and torch.rand((), generator=generator) < 0.5):
            frames, k = self.train.frames_with_twin(index, generator, cfg.nuisance, tuple(cfg.nuisance_grids),
                                                    warp=cfg.value_warp)
            twin = frames.shape[0] - 1
            pairs = (torch.cat([pairs[0], torch.tensor([k])]), torch.cat([pairs[1], torch.tensor([twin])]))
            targets = torch.cat([targets, targets.new_zeros(1)])
            frames = frames.to(self.device)
        else:
            frames = self.train.frames(index, generator, cfg.nuisance, tuple(cfg.nuisance_grids),
                                       warp=cfg.value_warp).to(self.device)
        pred = sequence_distances(self.weights, frames, pairs, cfg.dropout, training=True)
        loss, parts = volsim_loss(pred, targets, cfg.mse_factor, cfg.corr_factor)
        finite_or_raise(loss, "training loss")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        with torch.no_grad():  # non-negative channel weights, kept able to recover from 0 (as VolSiM)
            for w in self.weights.comparison.weights:
                w.clamp_(min=0.0)
        self.steps += 1
        self._update_average()
        return parts

    def _parameters(self) -> list[torch.Tensor]:
        return list(self.weights.encoder.parameters()) + list(self.weights.comparison.parameters())

    @torch.no_grad()
    def validate(self) -> float:
        """Pooled Spearman (frame 0 vs the others, per-sequence [0.1, 1] rescaling) on the validation seeds."""
        from core.training.evaluate import pooled_spearman

        if self.validation is None or len(self.validation) == 0:
            return float("nan")
        self.weights.encoder.eval()
        metric = self.metric_weights()
        n = self.validation.sequences[0].frames.shape[0]
        ref = (torch.zeros(n - 1, dtype=torch.long), torch.arange(1, n))
        rows = []
        for k in range(len(self.validation)):
            frames = self.validation.frames(k).to(self.device)
            rows.append(sequence_distances(metric, frames, ref).cpu().numpy())
        return pooled_spearman(np.stack(rows), linear_distances(n)[0, 1:])

    # ------------------------------------------------------------------ persistence
    def metric_weights(self) -> VolSiMWeights:
        """The metric as validated and exported: the trained (or averaged) weights, flattened if so configured.

        ``normalisation="flattened"`` keeps the calibration's per-location maps for training and
        gives the finished metric one scale per layer, the maps' mean std
        (:meth:`~core.metrics.siamese.FeatureComparison.flatten_statistics`). With ``average > 0``
        the parameters are the moving average's. Otherwise the encoder is shared with training.
        """
        flatten = self.config.normalisation == "flattened"
        if not flatten and self.averaged is None:
            return self.weights
        import copy

        encoder = self.weights.encoder
        comparison = copy.deepcopy(self.weights.comparison)
        if self.averaged is not None:
            encoder = copy.deepcopy(encoder)
            targets = list(encoder.parameters()) + list(comparison.parameters())
            with torch.no_grad():
                for mine, avg in zip(targets, self.averaged, strict=True):
                    mine.copy_(avg)
            comparison.clear_cache()
        if flatten:
            comparison.flatten_statistics()
        return VolSiMWeights(self.weights.arch, encoder, comparison, self.weights.provenance)

    def export(self, path: str | os.PathLike) -> None:
        """Write the current metric (see :meth:`metric_weights`) in volsight's safetensors format."""
        self.metric_weights().save(path, provenance=self.provenance())

    def prepare(self) -> bool:
        if self.calibrated:
            return False
        self.calibrate()
        return True

    def model_state(self) -> dict[str, Any]:
        return {
            "encoder": self.weights.encoder.state_dict(),
            "comparison": self.weights.comparison.state_dict(),
            "counts": list(self.weights.comparison.counts),
            "optimizer": self.optimizer.state_dict(),
            "averaged": self.averaged if self.averaged is not None else [],
            "calibrated": self.calibrated,
        }

    def load_model_state(self, state: dict[str, Any]) -> None:
        self.weights.encoder.load_state_dict(state["encoder"])
        self.weights.comparison.load_state_dict(state["comparison"])
        self.weights.comparison.counts = [float(c) for c in state["counts"]]
        self.weights.comparison.clear_cache()
        self.optimizer.load_state_dict(state["optimizer"])
        if self.averaged is not None:
            self.averaged = [t.to(self.device) for t in state["averaged"]]
        self.calibrated = bool(state["calibrated"])
