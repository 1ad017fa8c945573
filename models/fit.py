"""Fitting a neural field to a volume: the training loop, its schedule, checkpoints and progress.

Every iteration draws ``points`` positions in [-1, 1]^3 and takes the volume's trilinear samples there
(normalised to [0, 1] with the data range) as targets; the loss is the per-point squared error summed
over channels, averaged. Positions are *stratified* by default: one jittered point per cell of a
raster of about ``points`` cells, with the cell assignment rolled by a random offset each iteration,
so each point is uniformly distributed and the batch covers the domain evenly; the raster order also
keeps the grids' memory accesses local (a large CPU speed-up). ``sampling="uniform"`` draws i.i.d.
points instead.

APMGSRN schedule (after the paper's ``train_step_APMGSRN``, notes G3): Adam (lr, betas (0.9, 0.99),
eps 1e-15) on grids and decoder; the transforms get their own Adam at ``grid_lr_factor * lr``, halved
linearly over the first 5 fitting steps, and move only by the grid-fitting loss while
``grid_fit_start * iterations <= i < grid_fit_end * iterations`` (paper: 500 and 8000 of 10,000,
i.e. 5 % and 80 %) and until the early-stop rule fires: from 25 % of the run on, every ``window``
iterations (default 10 % of the run; paper: 1000) the mean grid loss of the last window is compared
with the window before, and after two consecutive relative improvements below 1e-4 the grids freeze
for good. The grid loss is
computed on ``density_points`` evenly spread points of the batch, not all of them (it only steers
the transforms). Once the grids are frozen the learning rate decays exponentially to
``final_lr_factor * lr`` at the last iteration (the paper's ReduceLROnPlateau, with patience 500,
never fires in short runs; the decay buys a few dB there). Baselines use the paper's vanilla step:
Adam on everything with the rate multiplied by 0.33 at 2/5, 3/5 and 4/5 of the run.

Determinism: for a seed (and the same thread count) a CPU fit is bit-identical, and resuming from a
checkpoint gives exactly the uninterrupted result. On CUDA, ``grid_sample``'s backward adds with
atomics, so runs agree only to float rounding, and the training points come from a CUDA generator
(another stream than the CPU's); a checkpoint resumes on the kind of device (and decoder backend)
that wrote it, and says so when asked to resume on another.

Speed on CUDA: the step is captured once per kind (grids moving or not) as a CUDA graph and replayed
(:class:`_CudaGraphSteps`); the step's device work (:meth:`_Fitter.compute`) therefore never reads
back to the host, and host-side bookkeeping (schedule, stop rule, logging) stays in
:meth:`_Fitter.step`.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import torch

from core.errors import VolsightError, VolumeError
from models.trilinear import fold_grids, folded_coordinates, sample_folded


@dataclass
class FitConfig:
    """Everything that decides a fit (besides the volume and the seed)."""

    model: str = "apmgsrn"
    size: str = "medium"
    model_options: dict[str, Any] = field(default_factory=dict)
    iterations: int = 1000
    points: int = 100_000
    lr: float = 0.01
    sampling: str = "stratified"  # stratified | uniform
    grid_fit_start: float = 0.05
    grid_fit_end: float = 0.8
    grid_lr_factor: float = 0.05
    density_points: int = 16_384
    early_stop_window: int = 0  # 0: 10 % of the iterations
    final_lr_factor: float = 0.1
    log_every: int = 10
    checkpoint_every: int = 0  # 0: only when cancelled or finished
    evaluate: bool = True  # PSNR over the full grid at the end
    chunk: int = 32_768  # points per forward/backward pass on the CPU (gradients accumulate over chunks)

    @classmethod
    def from_any(cls, config: FitConfig | dict[str, Any] | None) -> FitConfig:
        """Accept a FitConfig, a dict of its fields, or None (defaults)."""
        if config is None:
            return cls()
        if isinstance(config, cls):
            return config
        known = {f.name for f in fields(cls)}
        unknown = set(config) - known
        if unknown:
            raise VolsightError(f"unknown fit options {sorted(unknown)}; known are {sorted(known)}")
        return cls(**dict(config))

    def validate(self) -> None:
        """Raise VolsightError on values that cannot work."""
        if self.iterations < 1:
            raise VolsightError(f"iterations must be at least 1, got {self.iterations}")
        if self.points < 8:
            raise VolsightError(f"points per iteration must be at least 8, got {self.points}")
        if self.sampling not in ("stratified", "uniform"):
            raise VolsightError(f"sampling must be 'stratified' or 'uniform', got {self.sampling!r}")
        if not 0.0 <= self.grid_fit_start <= self.grid_fit_end <= 1.0:
            raise VolsightError("need 0 <= grid_fit_start <= grid_fit_end <= 1")


@dataclass
class FitProgress:
    """One progress report: ``iteration`` iterations of ``iterations`` are done."""

    iteration: int
    iterations: int
    loss: float  # batch MSE in normalised units
    psnr: float  # batch PSNR estimate (dB, normalised range 1)
    seconds: float
    grids_moving: bool


Callback = Callable[[FitProgress], "bool | None"]


def psnr_from_mse(mse: float, value_range: float = 1.0) -> float:
    """PSNR in dB for a given MSE and data range."""
    if mse <= 0:
        return math.inf
    return 20.0 * math.log10(max(value_range, 1e-30)) - 10.0 * math.log10(mse)


def field_psnr(field: Any, volume: Any, chunk: int = 1 << 18) -> float:
    """PSNR (dB) of the field over the volume's full grid, with the volume's data range."""
    baked = field.bake(volume.shape, chunk=chunk).data.astype(np.float64)
    ref = np.asarray(volume.data, dtype=np.float64)
    lo, hi = float(ref.min()), float(ref.max())
    return psnr_from_mse(float(np.mean((baked - ref) ** 2)), hi - lo)


class PointSampler:
    """Training positions ``[N, 3]`` (x, y, z) drawn on the generator's device.

    On the fitting device, so a CUDA fit does not wait for the CPU to draw and copy 2^17 points
    every step (measured on an H100 with the medium APMGSRN: 8.9 ms per step with the points drawn
    on the CPU, of which the GPU was busy for 1.3 ms). A CPU fit draws the same stream as before.
    """

    def __init__(self, n: int, mode: str, generator: torch.Generator):
        self.n, self.mode, self.gen = n, mode, generator
        self.device = generator.device
        self.cells_per_axis = max(1, int(math.floor(n ** (1.0 / 3.0) + 1e-9)))
        c = self.cells_per_axis
        # the monotone cell of every point
        self._base = (torch.arange(n, dtype=torch.int64, device=self.device) * (c**3)) // n

    def draw(self) -> torch.Tensor:
        """The next batch (float32, on the generator's device)."""
        if self.mode == "uniform":
            return torch.rand(self.n, 3, generator=self.gen, device=self.device) * 2.0 - 1.0
        c = self.cells_per_axis
        shift = torch.randint(0, c**3, (1,), generator=self.gen, device=self.device)  # a tensor: no device sync
        cell = (self._base + shift) % (c**3)
        jitter = torch.rand(self.n, 3, generator=self.gen, device=self.device)
        xyz = torch.stack([cell % c, (cell // c) % c, cell // (c * c)], dim=1).to(torch.float32)
        return (xyz + jitter).mul_(2.0 / c).sub_(1.0)


def _fused(device: torch.device) -> dict[str, bool]:
    """Adam's fused kernel where this torch has it for the device (one pass over the parameters)."""
    try:
        probe = torch.nn.Parameter(torch.zeros(1, device=device))
        torch.optim.Adam([probe], fused=True).step()
    except (RuntimeError, TypeError, ValueError):
        return {}
    return {"fused": True}


def _set_lr(opt: torch.optim.Optimizer, value: float) -> None:
    """Set every group's learning rate; a rate held in a device tensor (read by a CUDA graph) is
    refilled in place, and only when it changes."""
    for group in opt.param_groups:
        lr = group["lr"]
        if not torch.is_tensor(lr):
            group["lr"] = value
        elif group.get("_lr_now") != value:
            lr.fill_(value)
            group["_lr_now"] = value


class _CudaGraphSteps:
    """The fit step on CUDA, replayed from CUDA graphs.

    One iteration launches about 190 small kernels; issued one by one from Python, an APMGSRN medium
    step at 2^17 points took 5.9 ms on an H100 while the grids move and 2.7 ms after, replayed from
    a graph 1.38 and 1.05 ms (``tests/benchmarks/bench_fit_cuda.py``). Each mode of the step (grids
    moving or not) runs eagerly ``WARMUP`` times (on a side stream, as capture asks: it settles
    lazily made state such as the optimisers' moments and cuBLAS workspaces), is then captured once
    and replayed for every later iteration of that mode. Inputs change in place between replays: the
    batch is copied into the graph's own buffer and the learning rates are device tensors refilled
    when they change. If a capture fails (an operation that cannot be captured, say a decoder
    library's), the fit carries on eagerly and the summary says why. ``VOLSIGHT_CUDA_GRAPHS=0``
    turns graphs off.
    """

    WARMUP = 3
    ENV = "VOLSIGHT_CUDA_GRAPHS"

    @classmethod
    def wanted(cls, device: torch.device) -> bool:
        return device.type == "cuda" and os.environ.get(cls.ENV, "1").strip().lower() not in ("0", "false", "no", "off")

    def __init__(self, fitter: _Fitter):
        self.fitter = fitter
        self.graphs: dict[bool, tuple[Any, torch.Tensor, torch.Tensor, torch.Tensor | None]] = {}
        self.eager_runs = {False: 0, True: 0}
        self.failed: str | None = None
        self.replays = 0
        self.captured = 0
        self.side = torch.cuda.Stream(device=fitter.device)
        self.hold_rates()

    def hold_rates(self) -> None:
        """Both optimisers' learning rates as device tensors (again after a checkpoint's plain numbers were
        loaded)."""
        opts = (self.fitter.opt, self.fitter.grid_opt)
        for group in (g for opt in opts if opt is not None for g in opt.param_groups):
            if not torch.is_tensor(group["lr"]):
                device = group["params"][0].device
                group["lr"] = torch.tensor(float(group["lr"]), dtype=torch.float32, device=device)
                group["_lr_now"] = None

    def release(self) -> None:
        """Drop the graphs and their memory pools; later steps capture afresh."""
        self.reset()
        torch.cuda.empty_cache()

    def reset(self) -> None:
        """Forget the graphs (the tensors they were captured on have been replaced)."""
        self.graphs.clear()
        self.eager_runs = {False: 0, True: 0}

    def run(self, pts: torch.Tensor, moving: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        entry = self.graphs.get(moving)
        if entry is None and self.failed is None and self.eager_runs[moving] >= self.WARMUP:
            entry = self._capture(pts, moving)
        if entry is None:
            self.eager_runs[moving] += 1
            main = torch.cuda.current_stream(self.fitter.device)
            self.side.wait_stream(main)
            with torch.cuda.stream(self.side):
                out = self.fitter.compute(pts, moving)
            main.wait_stream(self.side)
            return out
        graph, static_pts, loss, grid_loss = entry
        static_pts.copy_(pts)
        graph.replay()
        self.replays += 1
        # the outputs are the graph's own buffers, overwritten by the next replay
        return loss.clone(), (grid_loss.detach().clone() if grid_loss is not None else None)

    def _capture(self, pts: torch.Tensor, moving: bool) -> tuple[Any, torch.Tensor, torch.Tensor,
                                                                   torch.Tensor | None] | None:
        static_pts = pts.clone()
        graph = torch.cuda.CUDAGraph()
        torch.cuda.synchronize(self.fitter.device)
        try:
            # thread_local: the window may render a field on another thread meanwhile, and its calls
            # must neither fail nor break this capture
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                loss, grid_loss = self.fitter.compute(static_pts, moving)
        except Exception as exc:  # noqa: BLE001 - any capture failure: carry on without graphs
            self.failed = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            self.graphs.clear()
            torch.cuda.synchronize(self.fitter.device)
            return None
        entry = (graph, static_pts, loss, grid_loss)
        self.graphs[moving] = entry
        self.captured += 1
        return entry

    def describe(self) -> str:
        """How the steps ran, for the fit's summary."""
        if self.failed is not None:
            return f"off after a failed capture ({self.failed}); {self.replays} steps replayed"
        return f"{self.replays} of the steps replayed from {self.captured} graph(s)"


def _lr_factor_vanilla(it: int, iterations: int) -> float:
    milestones = [int(iterations * f) for f in (0.4, 0.6, 0.8)]
    return 0.33 ** sum(it >= m for m in milestones)


def _flatten_optimizer(prefix: str, opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, dict[str, Any]] = {}
    for idx, st in sd["state"].items():
        for name, value in st.items():
            if torch.is_tensor(value):
                tensors[f"{prefix}.state.{idx}.{name}"] = value.detach().cpu().clone()
            else:
                plain.setdefault(str(idx), {})[name] = value
    groups = [{k: (float(v) if torch.is_tensor(v) else v) for k, v in g.items() if k != "_lr_now"}
              for g in sd["param_groups"]]  # plain numbers: a graphed fit holds its rates in tensors
    return tensors, {"param_groups": groups, "plain_state": plain}


def _restore_optimizer(prefix: str, opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                       meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    head = f"{prefix}.state."
    for key, value in tensors.items():
        if key.startswith(head):
            idx, name = key[len(head):].split(".", 1)
            state.setdefault(int(idx), {})[name] = value
    for idx, st in meta.get("plain_state", {}).items():
        state.setdefault(int(idx), {}).update(st)
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


class _Fitter:
    """State of one fit; split out of :func:`fit` so checkpoints can capture and restore it."""

    def __init__(self, volume: Any, cfg: FitConfig, seed: int, device: torch.device):
        from models.cpu_memory import keep_freed_memory
        from models.registry import MODEL_CLASSES, model_config

        keep_freed_memory()  # the steps reuse multi-megabyte buffers: no page faults for them each step

        if volume.nan_count():
            raise VolumeError(f"{volume.name}: {volume.nan_count()} NaN/Inf values; a field can only be fitted to "
                              "finite data (read it with nan_policy='zero')")
        self.cfg, self.seed, self.device, self.volume = cfg, seed, device, volume
        lo, hi = volume.value_range()
        self.lo, self.hi = lo, hi
        scale = (hi - lo) if hi > lo else 1.0
        data = (torch.from_numpy(np.array(volume.data, dtype=np.float32)) - lo) / scale  # [C, D, H, W]
        self.target_image = fold_grids(data[None].to(device))
        self.shape = volume.shape
        mcfg = model_config(cfg.model, cfg.size, **{"init_seed": seed, **cfg.model_options})
        self.field = MODEL_CLASSES[cfg.model](mcfg, channels=volume.channels, value_range=(lo, hi),
                                              source_shape=volume.shape, name=volume.name, spacing=volume.spacing)
        self.field.source_path = volume.source
        self.field.place(device)
        self.field.train()
        self.adaptive = hasattr(self.field, "grid_fitting_loss")
        betas = (0.9, 0.99)
        params = self.field.reconstruction_parameters() if self.adaptive else list(self.field.parameters())
        graphed = _CudaGraphSteps.wanted(device)
        # a graph replays the optimisers' kernels: their step counts and rates must live on the device
        capturable = {"capturable": True} if graphed else {}
        self.opt = torch.optim.Adam(params, lr=cfg.lr, betas=betas, eps=1e-15, **_fused(device), **capturable)
        self.grid_opt = (torch.optim.Adam(self.field.transform_parameters(), lr=cfg.grid_lr_factor * cfg.lr,
                                          betas=betas, eps=1e-15, **capturable) if self.adaptive else None)
        self.graphs = _CudaGraphSteps(self) if graphed else None
        self.gen = torch.Generator(device=device).manual_seed(seed)
        self.sampler = PointSampler(cfg.points, cfg.sampling, self.gen)
        self.iteration = 0
        self.grid_steps = 0
        self.frozen_at: int | None = None if self.adaptive else 0
        self.early_stopped = False
        self.stall_count = 0
        self.grid_losses: list[float | torch.Tensor] = []  # tensors until the stop rule reads them
        self.history: list[tuple[int, float]] = []  # (iteration, batch loss) every log_every iterations
        self.seconds = 0.0
        self.last_loss = math.nan
        window = cfg.early_stop_window or max(1, cfg.iterations // 10)
        self.window = window
        self.fit_start = int(round(cfg.grid_fit_start * cfg.iterations))
        self.fit_end = int(round(cfg.grid_fit_end * cfg.iterations))

    # -- schedule -------------------------------------------------------------------------------------
    def grids_moving(self, it: int) -> bool:
        return self.adaptive and self.frozen_at is None and self.fit_start <= it < self.fit_end

    def lr_factor(self, it: int) -> float:
        cfg = self.cfg
        if not self.adaptive:
            return _lr_factor_vanilla(it, cfg.iterations)
        frozen = self.frozen_at if self.frozen_at is not None else self.fit_end
        if it < frozen or cfg.iterations - frozen <= 1:
            return 1.0
        t = (it - frozen) / (cfg.iterations - 1 - frozen)
        return cfg.final_lr_factor ** t

    def _early_stop_check(self, it: int) -> None:
        w = self.window
        if it < self.cfg.iterations // 4:  # as in the paper (from iteration 2500 of 10,000)
            return
        if len(self.grid_losses) < 2 * w or (len(self.grid_losses) % w) != 0:
            return
        tail = self.grid_losses[-2 * w:]
        if any(isinstance(x, torch.Tensor) for x in tail):  # one read from the device per look
            tail = torch.stack([torch.as_tensor(x, dtype=torch.float32, device=self.device) for x in tail])
            self.grid_losses[-2 * w:] = tail = tail.double().cpu().tolist()
        recent = float(np.mean(tail[-w:]))
        before = float(np.mean(tail[:w]))
        improved = (before - recent) / max(abs(before), 1e-30)
        self.stall_count = self.stall_count + 1 if improved < 1e-4 else 0
        if self.stall_count >= 2:
            self.frozen_at = it + 1
            self.early_stopped = True

    def graphs_done(self) -> None:
        """Let the CUDA graphs' memory go (their report stays for the summary)."""
        if self.graphs is not None:
            self.graphs.release()

    # -- one iteration --------------------------------------------------------------------------------
    def step(self) -> torch.Tensor:
        """One iteration; returns the batch loss (a tensor: reading it waits for the device)."""
        cfg, it = self.cfg, self.iteration
        moving = self.grids_moving(it)
        _set_lr(self.opt, cfg.lr * self.lr_factor(it))
        if moving:
            _set_lr(self.grid_opt, cfg.grid_lr_factor * cfg.lr * (1.0 - 0.5 * min(self.grid_steps, 5) / 5))
        pts = self.sampler.draw()
        if self.graphs is not None:
            loss, grid_loss = self.graphs.run(pts, moving)
        else:
            loss, grid_loss = self.compute(pts, moving)
        if moving:
            self.grid_steps += 1
            self.grid_losses.append(grid_loss.detach())  # a tensor: read only when the stop rule looks
            self._early_stop_check(it)
        elif self.adaptive and self.frozen_at is None and it >= self.fit_end:
            self.frozen_at = self.fit_end
        self.iteration = it + 1
        return loss

    def compute(self, pts: torch.Tensor, moving: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The device work of one iteration on the batch ``pts``: the reconstruction step, and the grid
        step when ``moving``; returns (batch loss, grid loss or None). No reads back to the host, so that
        on CUDA it can be captured as a graph (:class:`_CudaGraphSteps`)."""
        cfg = self.cfg
        with torch.no_grad():
            coords, fz = folded_coordinates(pts.t().unsqueeze(0), self.shape)
            target = sample_folded(self.target_image, coords, fz)[0]  # [C, N]
        self.opt.zero_grad(set_to_none=True)
        n = pts.shape[0]
        # on the CPU, chunks keep the per-point intermediates in cache (the sum of the chunk losses is
        # the batch loss, so the gradient is the same up to float rounding)
        chunk = n if self.device.type != "cpu" or cfg.chunk <= 0 else cfg.chunk
        # equal chunks, about ``chunk`` points each: a short remainder chunk would cost a full pass over
        # the grids' gradient (grid_sample zero-fills it) for a few points
        chunk = -(-n // max(1, round(n / chunk)))
        per_point = torch.empty(n, 1, dtype=torch.float32, device=self.device)
        # fold the grids once per step; chunks accumulate into the folded copy's gradient
        shared = chunk < n and hasattr(self.field, "folded_grids")
        if shared:
            folded = fold_grids(self.field.feature_grids)
            self.field.folded_grids = folded.detach().requires_grad_()
        try:
            for start in range(0, n, chunk):
                stop = min(n, start + chunk)
                pred = self.field(pts[start:stop])  # [n, C]
                err = (pred - target[:, start:stop].t()).square()
                part = err if err.shape[1] == 1 else err.sum(dim=1, keepdim=True)
                (part.sum() / n).backward()
                per_point[start:stop] = part.detach()
            if shared:
                folded.backward(self.field.folded_grids.grad)
        finally:
            if shared:
                self.field.folded_grids = None
        loss = per_point.mean()
        self.opt.step()
        if not moving:
            return loss, None
        stride = max(1, cfg.points // max(1, cfg.density_points))
        sub = pts[::stride][: cfg.density_points]
        sub_err = per_point.detach()[::stride][: cfg.density_points, 0]
        grid_loss = self.field.grid_fitting_loss(sub, sub_err)
        self.grid_opt.zero_grad(set_to_none=True)
        grid_loss.backward()
        self.grid_opt.step()
        return loss, grid_loss

    # -- checkpoints ----------------------------------------------------------------------------------
    def checkpoint_header(self) -> dict[str, Any]:
        return {
            "kind": "checkpoint",
            "fit_config": asdict(self.cfg),
            "seed": self.seed,
            "iteration": self.iteration,
            "grid_steps": self.grid_steps,
            "frozen_at": self.frozen_at,
            "early_stopped": self.early_stopped,
            "stall_count": self.stall_count,
            "seconds": self.seconds,
            "device": self.device.type,
            "last_loss": self.last_loss,
            "volume": {"name": self.volume.name, "shape": list(self.shape), "range": [self.lo, self.hi]},
        }

    def save_checkpoint(self, path: str | os.PathLike) -> None:
        from models.store import write_tensor_file

        tensors = {f"model.{k}": v for k, v in self.field.state_tensors().items()}
        opt_t, opt_meta = _flatten_optimizer("opt", self.opt)
        tensors.update(opt_t)
        header = self.checkpoint_header()
        header["opt"] = opt_meta
        if self.grid_opt is not None:
            g_t, g_meta = _flatten_optimizer("grid_opt", self.grid_opt)
            tensors.update(g_t)
            header["grid_opt"] = g_meta
        tensors["rng"] = self.gen.get_state()
        tensors["grid_losses"] = torch.tensor([float(x) for x in self.grid_losses], dtype=torch.float64)
        tensors["history"] = torch.tensor(self.history_rows(), dtype=torch.float64).reshape(-1, 2)
        write_tensor_file(path, tensors, header)

    def history_rows(self) -> list[list[float]]:
        """The logged (iteration, batch loss) pairs as numbers."""
        return [[float(it), loss] for it, loss in self.history]

    def restore(self, header: dict[str, Any], tensors: dict[str, torch.Tensor], path: Any) -> None:
        from core.errors import FieldFileError

        vol = header.get("volume", {})
        if list(vol.get("shape", [])) != list(self.shape) or [float(x) for x in vol.get("range", [])] != [
                self.lo, self.hi]:
            raise FieldFileError(path, f"checkpoint was made for volume {vol.get('name')!r} of shape "
                                       f"{vol.get('shape')} and range {vol.get('range')}, not this one")
        if header.get("fit_config") != asdict(self.cfg) or header.get("seed") != self.seed:
            raise FieldFileError(path, "checkpoint was made with other fit options or another seed; "
                                       "resume with the same options")
        written_on = header.get("device", "cpu")
        if written_on != self.device.type:  # the random stream (and atomics) are the device's own
            raise FieldFileError(path, f"checkpoint was written by a fit on {written_on}, and resumes on {written_on} "
                                       f"only (this fit runs on {self.device.type}; --device {written_on})")
        model = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
        self.field.load_state_tensors(model)
        self.field.place(self.device)
        _restore_optimizer("opt", self.opt, tensors, header["opt"])
        if self.grid_opt is not None:
            _restore_optimizer("grid_opt", self.grid_opt, tensors, header["grid_opt"])
        if self.graphs is not None:
            self.graphs.hold_rates()
            self.graphs.reset()
        self.gen.set_state(tensors["rng"])
        self.grid_losses = [float(x) for x in tensors["grid_losses"].tolist()]
        rows = tensors["history"].tolist() if "history" in tensors else []  # older checkpoints have none
        self.history = [(int(it), float(loss)) for it, loss in rows]
        self.iteration = int(header["iteration"])
        self.grid_steps = int(header["grid_steps"])
        self.frozen_at = header["frozen_at"]
        self.early_stopped = bool(header["early_stopped"])
        self.stall_count = int(header["stall_count"])
        self.seconds = float(header["seconds"])
        self.last_loss = float(header["last_loss"])


HISTORY_POINTS = 400  # at most this many (iteration, loss) pairs go into a field file's summary


def thin_history(rows: list[list[float]], points: int = HISTORY_POINTS) -> list[list[float]]:
    """At most ``points`` evenly spread rows of a fit's (iteration, batch loss) log, the last one always kept,
    as [iteration, loss] pairs of plain numbers (JSON: a field file's summary)."""
    if len(rows) <= points:
        return [[int(it), float(loss)] for it, loss in rows]
    keep = np.unique(np.linspace(0, len(rows) - 1, points).round().astype(int))
    return [[int(rows[i][0]), float(rows[i][1])] for i in keep]


def fit(volume: Any, config: FitConfig | dict[str, Any] | None = None, callback: Callback | None = None,
        cancel: threading.Event | None = None, checkpoint: str | os.PathLike | None = None,
        resume: str | os.PathLike | None = None, seed: int = 0,
        device: str | torch.device | None = None) -> tuple[Any, dict[str, Any]]:
    """Fit a neural field to ``volume``; returns ``(field, summary)``.

    ``callback(progress)`` is called every ``log_every`` iterations and at the end; returning False
    cancels, as does setting ``cancel``. With ``checkpoint`` the state is written there every
    ``checkpoint_every`` iterations and when the fit stops; ``resume`` continues from such a file
    and gives exactly the result of an uninterrupted run with the same options and seed.
    """
    from core.device import select_device

    cfg = FitConfig.from_any(config)
    cfg.validate()
    dev = device if isinstance(device, torch.device) else select_device(device)
    fitter = _Fitter(volume, cfg, int(seed), dev)
    if resume is not None:
        from models.store import read_tensor_file

        header, tensors = read_tensor_file(resume, expect_kind="checkpoint")
        fitter.restore(header, tensors, resume)
    cancelled = False
    t0 = time.perf_counter()
    base_seconds = fitter.seconds
    loss_t = None
    while fitter.iteration < cfg.iterations:
        if cancel is not None and cancel.is_set():
            cancelled = True
            break
        loss_t = fitter.step()
        it = fitter.iteration
        fitter.seconds = base_seconds + time.perf_counter() - t0
        if it % max(1, cfg.log_every) == 0 or it == cfg.iterations:
            fitter.last_loss = float(loss_t.detach())
            fitter.history.append((it, fitter.last_loss))
            if callback is not None:
                progress = FitProgress(it, cfg.iterations, fitter.last_loss, psnr_from_mse(fitter.last_loss),
                                       fitter.seconds, fitter.grids_moving(it))
                if callback(progress) is False:
                    cancelled = True
                    break
        if checkpoint is not None and cfg.checkpoint_every and it % cfg.checkpoint_every == 0 \
                and it < cfg.iterations:
            fitter.save_checkpoint(checkpoint)
    if loss_t is not None:
        fitter.last_loss = float(loss_t.detach())
    if checkpoint is not None:
        fitter.save_checkpoint(checkpoint)
    field_ = fitter.field
    field_.zero_grad(set_to_none=True)  # the last step's gradients (on CUDA, memory of the graphs' pools)
    fitter.graphs_done()
    field_.eval()
    summary: dict[str, Any] = {
        "model": cfg.model, "size": cfg.size, "iterations": fitter.iteration, "iterations_planned": cfg.iterations,
        "points_per_iteration": cfg.points, "seed": int(seed), "seconds": round(fitter.seconds, 3),
        "parameters": field_.parameter_count(), "batch_mse": fitter.last_loss,
        "batch_psnr": psnr_from_mse(fitter.last_loss), "cancelled": cancelled, "device": str(dev),
        "history": thin_history(fitter.history_rows()),
    }
    if fitter.graphs is not None:
        summary["cuda_graphs"] = fitter.graphs.describe()
    if fitter.adaptive:
        summary.update({"grid_fit_start": fitter.fit_start, "grids_frozen_at": fitter.frozen_at,
                        "grids_early_stopped": fitter.early_stopped, "grid_fit_steps": fitter.grid_steps})
    if cfg.evaluate:
        summary["psnr"] = field_psnr(field_, volume)
    field_.summary = summary
    return field_, summary
