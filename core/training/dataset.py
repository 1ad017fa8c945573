"""The training/evaluation split, the on-disk sequence cache, and sequence batches for training.

Sequences are generated once into a cache folder as ``<family>_<seed>.npz`` (frames float16
``[F, C, n, n, n]``, the varied parameter and its values, VolSiM's non-linearity coefficient), so
epochs never re-simulate. Building is resumable: files already present are kept.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from core.io.atomic import atomic_path
from core.training.simulations import FAMILIES, FRAMES, generate_sequence
from core.training.simulations.ground_truth import fit_coefficient

TRAIN_FAMILIES = ("advdiff", "burgers", "smoke", "noise")
HELD_OUT_FAMILIES = ("waves", "shapes")
# seed ranges keep training, validation and test draws apart for every family
TRAIN_SEEDS = range(0, 10_000)
VALIDATION_SEED0 = 10_000
TEST_SEED0 = 100_000


@dataclass(frozen=True)
class Split:
    """Which (family, seed) sequences train, validate and test."""

    train: tuple[tuple[str, int], ...]
    validation: tuple[tuple[str, int], ...]
    test: tuple[tuple[str, int], ...]
    train_families: tuple[str, ...] = TRAIN_FAMILIES
    held_out_families: tuple[str, ...] = HELD_OUT_FAMILIES

    def as_dict(self) -> dict:
        return {k: [list(x) for x in v] if isinstance(v, tuple) and v and isinstance(v[0], tuple) else list(v)
                for k, v in asdict(self).items()}


def make_split(per_family: int, *, validation_per_family: int = 2, test_per_family: int = 10,
               train_families: Sequence[str] = TRAIN_FAMILIES,
               held_out_families: Sequence[str] = HELD_OUT_FAMILIES) -> Split:
    """Training seeds 0.. of the training families; validation and test use disjoint seed ranges.

    The test set holds every family: the held-out ones entirely, the training ones with unseen seeds.
    """
    for fam in (*train_families, *held_out_families):
        if fam not in FAMILIES:
            raise ValueError(f"unknown family {fam!r}; one of {', '.join(FAMILIES)}")
    overlap = set(train_families) & set(held_out_families)
    if overlap:
        raise ValueError(f"families {sorted(overlap)} cannot be both trained on and held out")
    train = tuple((f, s) for f in train_families for s in range(per_family))
    validation = tuple((f, VALIDATION_SEED0 + s) for f in train_families for s in range(validation_per_family))
    test = tuple((f, TEST_SEED0 + s) for f in (*held_out_families, *train_families) for s in range(test_per_family))
    return Split(train, validation, test, tuple(train_families), tuple(held_out_families))


def cache_file(folder: Path, family: str, seed: int, size: int) -> Path:
    return Path(folder) / f"{family}_{size}_{seed:06d}.npz"


@dataclass
class CachedSequence:
    """One cached sequence: frames float16 [F, C, n, n, n] and what was varied."""

    family: str
    seed: int
    frames: np.ndarray
    parameter: str
    values: np.ndarray
    coefficient: float
    meta: dict = field(default_factory=dict)


def build_cache(folder: str | Path, items: Iterable[tuple[str, int]], size: int, *,
                progress: Callable[[str], None] | None = None) -> list[Path]:
    """Simulate every (family, seed) not yet in ``folder`` at ``size``^3; returns the files, in order."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    items = list(items)
    paths = []
    t0 = time.perf_counter()
    for k, (family, seed) in enumerate(items):
        path = cache_file(folder, family, seed, size)
        paths.append(path)
        if path.exists():
            continue
        t = time.perf_counter()
        seq = generate_sequence(family, seed, size=size)
        coef = fit_coefficient(seq.frames)
        with atomic_path(path, suffix=".npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, frames=seq.frames.astype(np.float16), values=seq.values,
                         parameter=np.array(seq.parameter), family=np.array(family), seed=np.array(seed),
                         coefficient=np.array(coef))
        if progress:
            progress(f"[{k + 1}/{len(items)}] {family} seed {seed} ({seq.parameter}) {time.perf_counter() - t:.1f}s, "
                     f"total {time.perf_counter() - t0:.0f}s")
    return paths


def load_cached(path: str | Path) -> CachedSequence:
    """Read one cache file (plain arrays only, no pickle)."""
    with np.load(path, allow_pickle=False) as z:
        return CachedSequence(str(z["family"]), int(z["seed"]), z["frames"], str(z["parameter"]),
                              z["values"].astype(np.float64), float(z["coefficient"]))


def write_manifest(folder: str | Path, split: Split, size: int, extra: dict | None = None) -> None:
    """Record the split and grid size next to the cache (JSON)."""
    data = {"size": size, "frames": FRAMES, "split": split.as_dict(), **(extra or {})}
    with atomic_path(Path(folder) / "manifest.json") as tmp:
        tmp.write_text(json.dumps(data, indent=1))


# ---------------------------------------------------------------- training-time transforms

def normalize_sequence(frames: torch.Tensor) -> torch.Tensor:
    """Min-max the whole sequence [F, C, ...] jointly to [-1, 1] and repeat a scalar channel to 3 (as VolSiM)."""
    lo, hi = frames.min(), frames.max()
    out = 2.0 * (frames - lo) / (hi - lo) - 1.0 if hi > lo else torch.zeros_like(frames)
    if out.shape[1] == 1:
        out = out.expand(-1, 3, -1, -1, -1)
    return out.contiguous()


def augment(frames: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Same random flips (3 axes), 90-degree rotations (3 planes) and channel permutation for all frames."""
    for dim in (2, 3, 4):
        if torch.rand((), generator=generator) < 0.5:
            frames = frames.flip(dim)
    for plane in ((2, 3), (2, 4), (3, 4)):
        k = int(torch.randint(0, 4, (), generator=generator))
        if k:
            frames = torch.rot90(frames, k, dims=plane)
    if frames.shape[1] > 1:
        frames = frames[:, torch.randperm(frames.shape[1], generator=generator)]
    return frames.contiguous()


def _repeated_scalar(frames: torch.Tensor) -> bool:
    """Whether [F, C, ...] holds one scalar (a single channel, or copies of one: the 3-channel form)."""
    return frames.shape[1] == 1 or bool((frames == frames[:, :1]).all())


def nuisance_noise(frames: torch.Tensor, generator: torch.Generator, strength: float,
                   grids: Sequence[int] = (4,)) -> torch.Tensor:
    """Add smooth noise that differs between the frames of a normalised sequence [F, C, n, n, n].

    A nuisance the ground truth ignores, as measurement noise or small-scale turbulence that differs
    between otherwise comparable volumes: every frame (the reference included) gets its own field,
    white noise on a grid ``1/g`` of the size, trilinearly upsampled, normalised to unit std, times
    ``U(0, 1) * strength`` times the sequence's std. ``g`` is drawn per sequence from ``grids``, so
    the noise's correlation length varies between sequences: 1 is voxel-level white noise, 4 smooth
    blotches a few voxels wide. Channels that are copies of one scalar (the 3-channel form of scalar
    data) share the field; distinct channels get their own. The result is clamped to the sequence's
    [-1, 1] range.
    """
    if strength <= 0.0:
        return frames
    f, c = frames.shape[:2]
    spatial = tuple(frames.shape[2:])
    scalar = c > 1 and _repeated_scalar(frames)
    if not grids or any(int(g) < 1 for g in grids):
        raise ValueError(f"nuisance grids must be factors >= 1, got {tuple(grids)}")
    # one choice draws nothing, so a single factor gives the same stream as before the choice existed
    factor = int(grids[int(torch.randint(len(grids), (), generator=generator))] if len(grids) > 1 else grids[0])
    coarse = tuple(max(2, s // factor) for s in spatial)
    white = torch.randn((f, 1 if scalar else c, *coarse), generator=generator, dtype=torch.float32)
    noise = white if coarse == spatial else torch.nn.functional.interpolate(
        white, size=spatial, mode="trilinear", align_corners=False)
    dims = (-3, -2, -1)
    noise = (noise - noise.mean(dim=dims, keepdim=True)) / noise.std(dim=dims, keepdim=True).clamp(min=1e-12)
    amplitude = strength * float(torch.rand((), generator=generator)) * float(frames.std())
    return (frames + amplitude * noise.to(frames.dtype)).clamp(-1.0, 1.0).contiguous()


def value_warp(frames: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Remap the values of a normalised scalar sequence [F, C, ...] in [-1, 1] by one random monotone transfer.

    The varied parameter (and so the ground truth) does not depend on how a quantity is scaled:
    a scientist's volume may come as a density or its logarithm, clipped or gamma-corrected. Every
    frame gets the same curve, fixing -1 and 1: half the draws a gamma ``u**g`` (``u = (x + 1) / 2``,
    ``g`` log-uniform in [1/3, 3]), the others a sigmoid contrast of slope 3-12 centred in
    [0.25, 0.75], rescaled to keep the end points. Vector data is returned unchanged (a per-component
    curve would bend its directions), after the same draws.
    """
    pick = float(torch.rand((), generator=generator))
    a, b = (float(v) for v in torch.rand(2, generator=generator))
    if not _repeated_scalar(frames):
        return frames
    u = (frames + 1.0) * 0.5
    if pick < 0.5:
        gamma = 3.0 ** (2.0 * a - 1.0)
        out = u.clamp(min=0.0).pow(gamma)
    else:
        slope, centre = 3.0 + 9.0 * a, 0.25 + 0.5 * b
        lo = torch.sigmoid(torch.tensor(-slope * centre))
        hi = torch.sigmoid(torch.tensor(slope * (1.0 - centre)))
        out = (torch.sigmoid(slope * (u - centre)) - lo) / (hi - lo)
    return (2.0 * out - 1.0).clamp(-1.0, 1.0).contiguous()


def check_warp_share(share: float) -> None:
    """Raise ValueError unless ``share`` is a valid share of value-warped draws (0 to 1)."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"value warp is the share of sequences given a value curve, 0 to 1, not {share}")


def _maybe_warp(t: torch.Tensor, generator: torch.Generator, warp: float) -> torch.Tensor:
    # no draw at all when off, so the other augmentations keep their random stream
    if warp > 0.0 and torch.rand((), generator=generator) < warp:
        return value_warp(t, generator)
    return t


class SequenceStore:
    """All cached training sequences held in memory (float16), with their targets' coefficients."""

    def __init__(self, paths: Sequence[str | Path]):
        if not paths:
            raise ValueError("no cached sequences to train on")
        self.sequences = [load_cached(p) for p in paths]

    def __len__(self) -> int:
        return len(self.sequences)

    def _augmented(self, index: int, generator: torch.Generator, warp: float) -> torch.Tensor:
        """Sequence ``index`` augmented, normalised to [-1, 1] and, in that share of the draws, value-warped."""
        t = torch.from_numpy(self.sequences[index].frames.astype(np.float32))
        return _maybe_warp(normalize_sequence(augment(t, generator)), generator, warp)

    def frames(self, index: int, generator: torch.Generator | None = None, nuisance: float = 0.0,
               nuisance_grids: Sequence[int] = (4,), warp: float = 0.0) -> torch.Tensor:
        """Frames of sequence ``index`` as float32 [F, 3, n, n, n] in [-1, 1], augmented when a generator is given.

        With a generator and ``warp > 0``, that share of the draws get a :func:`value_warp`; with
        ``nuisance > 0``, half of the draws then get :func:`nuisance_noise` of up to that strength,
        on one of ``nuisance_grids``.
        """
        if generator is None:
            return normalize_sequence(torch.from_numpy(self.sequences[index].frames.astype(np.float32)))
        t = self._augmented(index, generator, warp)
        if nuisance > 0.0 and torch.rand((), generator=generator) < 0.5:
            t = nuisance_noise(t, generator, nuisance, nuisance_grids)
        return t

    def frames_with_twin(self, index: int, generator: torch.Generator, nuisance: float,
                         nuisance_grids: Sequence[int] = (4,), warp: float = 0.0) -> tuple[torch.Tensor, int]:
        """Augmented frames [F + 1, 3, n, n, n] with nuisance noise on every frame, the last a copy of frame
        ``k`` (returned) under its own noise field: a pair whose content is equal, whose noise is not
        (value-warped first, as :meth:`frames`, in that share of the draws)."""
        t = self._augmented(index, generator, warp)
        k = int(torch.randint(0, t.shape[0], (), generator=generator))
        both = torch.cat([t, t[k : k + 1]])
        return nuisance_noise(both, generator, nuisance, nuisance_grids), k
