"""``volsight metric-train``: generate the simulation sequences (once, cached) and train VolSiM or LearnSim weights."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from core.training.trainer import TrainResult

HELP = (
    "Train volsight's own VolSiM weights on procedurally simulated 3D sequences. The sequences are generated "
    "once into --cache (resumable), then the VolSiM network is calibrated and trained with VolSiM's loss "
    "(correlation + MSE over all 55 frame pairs), augmentation and Adam. Checkpoints go to --output every few "
    "minutes and at each epoch end; --resume continues from them. The best epoch (validation seeds of the "
    "training families) is written as OUTPUT/best.safetensors; --export copies it where you want. "
    "--model learnsim-ssd (or learnsim-lcc) trains LearnSim's small encoder the same way instead, with the "
    "correlation term alone and the same moving average; the VolSiM-only options (scales, width, dropout, nuisance, "
    "calibration, normalisation, init) do not apply to it."
)
MODELS = ("volsim", "learnsim-ssd", "learnsim-lcc")
DEFAULT_LR = {"volsim": 5e-4, "learnsim-ssd": 1e-3, "learnsim-lcc": 1e-3}
DEFAULT_EPOCHS = {"volsim": 20, "learnsim-ssd": 8, "learnsim-lcc": 8}


def default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "volsight" / "metric-data"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", required=True, help="folder for checkpoints, logs and exported weights")
    parser.add_argument("--model", choices=MODELS, default="volsim",
                        help="which network to train (default %(default)s)")
    parser.add_argument("--cache", default=None, help=f"sequence cache folder (default {default_cache()})")
    parser.add_argument("--per-family", type=int, default=60, help="training sequences per family (default 60)")
    parser.add_argument("--validation-per-family", type=int, default=2, help="validation sequences per family")
    parser.add_argument("--train-families", default="advdiff,burgers,smoke,noise",
                        help="comma-separated families to train on (default %(default)s)")
    parser.add_argument("--held-out", default="waves,shapes",
                        help="families never trained on (default %(default)s)")
    parser.add_argument("--size", type=int, default=32, help="working size: sequences are simulated at SIZE^3")
    parser.add_argument("--scales", type=int, default=3, help="VolSiM scales (3 = MS_3scales layout)")
    parser.add_argument("--width", type=float, default=1.0,
                        help="channel-width factor: scale s gets 4*2^s*WIDTH channels (1 = the official widths)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs (default 20 for volsim, 8 for learnsim)")
    parser.add_argument("--lr", type=float, default=None,
                        help="Adam learning rate (default 5e-4 for volsim, 1e-3 for learnsim)")
    parser.add_argument("--dropout", type=float, default=0.1, help="dropout on the per-channel terms")
    parser.add_argument("--linear-targets", action="store_true",
                        help="train on linear parameter offsets instead of VolSiM's non-linear correction")
    parser.add_argument("--no-augment", action="store_true", help="no flips/rotations/channel permutations")
    parser.add_argument("--nuisance", type=float, default=0.3,
                        help="half of the augmented sequences get smooth noise that differs from frame to frame, "
                        "up to this many times the sequence's std, so that the metric ranks by the varied "
                        "parameter rather than by such noise (default %(default)s; 0 = off)")
    parser.add_argument("--noise-twins", action="store_true",
                        help="with --nuisance: half the draws also compare a frame with itself under other noise, "
                        "target 0 (the metric learns to ignore such noise outright, not only in its ranking)")
    parser.add_argument("--nuisance-grids", default="4",
                        help="comma-separated coarsening factors of the nuisance noise, one drawn per sequence: "
                        "1 = voxel-level white noise, 4 = smooth blotches a few voxels wide (default %(default)s)")
    parser.add_argument("--value-warp", type=float, default=0.0, metavar="SHARE",
                        help="this share of the augmented scalar sequences get one random monotone value curve (a "
                        "gamma or a sigmoid contrast) on all frames, so that the metric ranks by the varied "
                        "parameter whatever the values' scale (default %(default)s = off)")
    parser.add_argument("--average", type=float, default=0.999,
                        help="validate and export an exponential moving average of the weights with this decay "
                        "per step (smooths the epoch-to-epoch swings; default %(default)s; 0 = the raw weights)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--calibration-volumes", type=int, default=None,
                        help="volumes for the feature-normalisation pass (whole sequences spread over the "
                        "training set; default: all)")
    parser.add_argument("--normalisation", choices=("flattened", "spatial", "global"), default="flattened",
                        help="feature scales: per location while training and one per layer (the mean std) in "
                        "the exported metric (default); per location throughout, as VolSiM; or one per layer "
                        "from the calibration on")
    parser.add_argument("--max-minutes", type=float, default=None, help="stop cleanly after this wall time")
    parser.add_argument("--checkpoint-minutes", type=float, default=5.0)
    parser.add_argument("--resume", action="store_true", help="continue from OUTPUT/checkpoint.pt")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:N or auto (default auto)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--keep-epochs", action="store_true",
                        help="also write every epoch's weights (OUTPUT/epochNNN.safetensors), to select among later")
    parser.add_argument("--export", default=None, help="also write the best weights to this .safetensors path")
    parser.add_argument("--init", default=None,
                        help="start from these VolSiM weights (e.g. fine-tune weights trained at another --size); "
                        "the feature normalisation is recalibrated on this run's data")


def run(args: argparse.Namespace) -> int:
    import torch

    from core.device import select_device
    from core.errors import VolsightError
    from core.metrics.volsim_net import VolSiMArchitecture
    from core.training.dataset import build_cache, check_warp_share, make_split, write_manifest
    from core.training.trainer import CHECKPOINT, TrainConfig, Trainer

    if args.threads:
        torch.set_num_threads(args.threads)
    device = select_device(args.device)
    cache = Path(args.cache) if args.cache else default_cache()
    out = Path(args.output)
    if (out / CHECKPOINT).exists() and not args.resume:
        raise VolsightError(f"{out / CHECKPOINT} exists; pass --resume to continue it or choose a new --output")
    try:
        split = make_split(args.per_family, validation_per_family=args.validation_per_family,
                           train_families=[f for f in args.train_families.split(",") if f],
                           held_out_families=[f for f in args.held_out.split(",") if f])
        VolSiMArchitecture.with_scales(args.scales, args.width)  # refuse a bad layout before simulating
        check_warp_share(args.value_warp)
    except ValueError as exc:
        raise VolsightError(str(exc)) from exc
    grids = nuisance_grids(args.nuisance_grids)

    def say(msg: str) -> None:
        print(msg, flush=True)

    folder = cache / f"train{args.size}"
    say(f"sequence cache: {folder} ({len(split.train)} training, {len(split.validation)} validation sequences)")
    train_files = build_cache(folder, split.train, args.size, progress=say)
    val_files = build_cache(folder, split.validation, args.size, progress=say)
    write_manifest(folder, split, args.size)
    epochs = args.epochs if args.epochs is not None else DEFAULT_EPOCHS[args.model]
    lr = args.lr if args.lr is not None else DEFAULT_LR[args.model]
    if args.model != "volsim":
        return train_learnsim(args, train_files, val_files, out, device, epochs, lr, say)
    config = TrainConfig(scales=args.scales, width=args.width, size=args.size, epochs=epochs, lr=lr,
                         seed=args.seed, nonlinear_targets=not args.linear_targets, dropout=args.dropout,
                         augment=not args.no_augment, nuisance=args.nuisance, average=args.average,
                         nuisance_grids=grids, noise_twins=args.noise_twins, value_warp=args.value_warp,
                         max_minutes=args.max_minutes,
                         calibration_volumes=args.calibration_volumes, normalisation=args.normalisation,
                         checkpoint_minutes=args.checkpoint_minutes, init=args.init, keep_epochs=args.keep_epochs,
                         extra={"git_commit": git_commit()})
    start(Trainer, config, args, train_files, val_files, out, device, say,
          f"training on {device} with {torch.get_num_threads()} threads: {args.scales} scales at {args.size}^3")
    return 0


def train_learnsim(args: argparse.Namespace, train_files: list[Path], val_files: list[Path], out: Path,
                   device: torch.device, epochs: int, lr: float, say: Callable[[str], None]) -> int:
    """The --model learnsim-ssd / learnsim-lcc branch: LearnSim's encoder trained to rank the sequences."""
    import torch

    from core.training.learnsim_trainer import LearnSimTrainConfig, LearnSimTrainer

    similarity = args.model.split("-", 1)[1]
    config = LearnSimTrainConfig(similarity=similarity, size=args.size, epochs=epochs, lr=lr, seed=args.seed,
                                 augment=not args.no_augment, average=args.average, max_minutes=args.max_minutes,
                                 checkpoint_minutes=args.checkpoint_minutes, keep_epochs=args.keep_epochs,
                                 extra={"git_commit": git_commit()})
    start(LearnSimTrainer, config, args, train_files, val_files, out, device, say,
          f"training {args.model} on {device} with {torch.get_num_threads()} threads at {args.size}^3")
    return 0


def start(trainer_class: type, config: object, args: argparse.Namespace, train_files: list[Path],
          val_files: list[Path], out: Path, device: torch.device, say: Callable[[str], None], banner: str) -> None:
    """Build the trainer (a bad configuration is a one-line error), resume if asked, train and report."""
    from core.errors import VolsightError

    try:
        trainer = trainer_class(config, train_files, val_files, out, device=device, log=say)
    except ValueError as exc:
        raise VolsightError(str(exc)) from exc
    if args.resume and trainer.load_checkpoint():
        say(f"resumed at epoch {trainer.epoch}, step {trainer.steps}")
    say(banner)
    finish(args, trainer.run(), out, say)


def finish(args: argparse.Namespace, result: TrainResult, out: Path, say: Callable[[str], None]) -> None:
    """Report a finished run and copy its best weights to --export."""
    from core.training.trainer import BEST

    say(f"done: {result.epochs_done} epochs, {result.steps} steps, {result.wall_seconds / 60:.1f} min; best epoch "
        f"{result.best_epoch} (validation Spearman {result.best_validation:.4f}) -> {out / BEST}")
    if args.export:
        import shutil

        Path(args.export).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out / BEST, args.export)
        say(f"exported {args.export}")


def nuisance_grids(text: str) -> tuple[int, ...]:
    """Parse --nuisance-grids ("1,2,4") into coarsening factors, each a whole number >= 1."""
    from core.errors import VolsightError

    try:
        factors = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        factors = ()
    if not factors or min(factors) < 1:
        raise VolsightError(f"--nuisance-grids wants comma-separated whole numbers >= 1, got {text!r}")
    return factors


def git_commit() -> str | None:
    """The commit of the running code (None outside a git checkout)."""
    import subprocess

    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).resolve().parents[2])
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


if __name__ == "__main__":  # pragma: no cover
    from app.cli import main

    sys.exit(main(["metric-train", *sys.argv[1:]]))
