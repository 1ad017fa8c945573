"""``volsight metric-eval``: Spearman rank correlation with the ground truth on generated test sequences."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.training.evaluate import EvaluationTable

HELP = (
    "Evaluate distance metrics on generated 3D test sequences (held-out families and held-out seeds of the "
    "training families): per family, the Spearman rank correlation of the frame-0 distances with the parameter "
    "offset (VolSiM's protocol: per-sequence [0.1, 1] rescaling, pooled per family). Evaluates volsight's VolSiM "
    "weights, MSE, PSNR and SSIM, LSiM on slices (with --lsim-weights) and the official VolSiM checkpoint "
    "(with --official). Prints the table and writes it as CSV (-o)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from app.commands.metric_train import default_cache

    parser.add_argument("-o", "--output", required=True, help="CSV file for the results table")
    parser.add_argument("--weights", default=None,
                        help="volsight VolSiM weights (default: the installed resources/weights/volsim_volsight)")
    parser.add_argument("--learnsim-weights", default=None,
                        help="volsight learned-SSD weights to evaluate as 'learnsim-ssd (volsight)' (default: the "
                        "installed resources/weights/learnsim_ssd_volsight, when there; 'none' leaves them out)")
    parser.add_argument("--learnsim-card", default=None,
                        help="write the card of the learned-SSD weights (JSON: data, training, this evaluation) here")
    parser.add_argument("--official", default=None, help="official VolSiM checkpoint (e.g. MS_3scales.pth)")
    parser.add_argument("--lsim-weights", default=None, help="official LSiM.pth: adds LSiM on slices")
    parser.add_argument("--lsim-stride", type=int, default=16,
                        help="LSiM: every STRIDE-th slice along each axis (default 16: 4 per axis at 64^3)")
    parser.add_argument("--metrics", default="mse,psnr,ssim", help="classical metrics (default %(default)s)")
    parser.add_argument("--cache", default=None, help=f"sequence cache folder (default {default_cache()})")
    parser.add_argument("--size", type=int, default=64, help="grid size of the test sequences (default 64)")
    parser.add_argument("--per-family", type=int, default=10, help="test sequences per family (default 10)")
    parser.add_argument("--families", default="waves,shapes,liquid,advdiff,burgers,smoke,noise",
                        help="families to test (default %(default)s)")
    parser.add_argument("--held-out", default=None,
                        help="families not trained on (default: every tested family that volsight's weights were not "
                        "trained on, from their provenance; waves,shapes when that is not recorded)")
    parser.add_argument("--scope", choices=("sequence", "pair"), default="sequence",
                        help="value normalisation: 'sequence' (default) maps every frame of a sequence with the "
                        "sequence's joint bounds, as volsight's series view and the official VolSiM evaluation; "
                        "'pair' normalises each (frame 0, frame j) pair on its own, as `volsight compare` on two files")
    parser.add_argument("--resampled", action="store_true",
                        help="also evaluate volsight's weights on inputs resampled to their training size")
    parser.add_argument("--bootstrap", type=int, default=0, metavar="N",
                        help="also print how far volsight's weights lead every other metric per family, with a 95%% "
                        "paired bootstrap interval over the test sequences from N draws (e.g. 1000; default off)")
    parser.add_argument("--json", default=None, help="also write the table as JSON here")
    parser.add_argument("--no-distance-cache", action="store_true",
                        help="recompute every distance (default: reuse distances cached under CACHE/testSIZE/distances"
                        " for the same metric, options and weights file)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--card", default=None,
                        help="write the weights card (JSON: data, training, this evaluation) to this path")
    parser.add_argument("--run", default=None, help="training output folder, for the card's history and wall time")


def run(args: argparse.Namespace) -> int:
    import torch

    from app.commands.metric_train import default_cache
    from core.errors import MetricError, VolsightError, WeightsError
    from core.metrics.registry import metric_names
    from core.metrics.volsim import default_weights_path
    from core.training.dataset import TEST_SEED0, build_cache
    from core.training.evaluate import evaluate, registry_metric
    from core.training.simulations import FAMILIES

    if args.threads:
        torch.set_num_threads(args.threads)

    def say(msg: str) -> None:
        print(msg, flush=True)

    families = [f for f in args.families.split(",") if f]
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise VolsightError(f"unknown families {unknown}; choose from {', '.join(FAMILIES)}")
    weights = Path(args.weights) if args.weights else default_weights_path()
    if args.held_out is not None:
        held_out = [f for f in args.held_out.split(",") if f]
    else:
        trained = trained_families_of(weights) if weights.exists() else None
        held_out = [f for f in families if f not in trained] if trained else ["waves", "shapes"]
    say(f"held-out families: {', '.join(held_out)}")
    folder = (Path(args.cache) if args.cache else default_cache()) / f"test{args.size}"
    items = sorted(((f, TEST_SEED0 + s) for f in families for s in range(args.per_family)), key=lambda x: (x[1], x[0]))
    say(f"test sequences: {len(items)} at {args.size}^3 in {folder}")
    files = build_cache(folder, items, args.size, progress=say)

    specs = []
    if weights.exists():
        # as `volsight compare` runs it: at the size of the data (the network is fully convolutional)
        specs.append(registry_metric("volsim (volsight)", "volsim", weights=weights, scope=args.scope))
        work = working_size_of(weights)
        if args.resampled and work and work != args.size:
            specs.append(registry_metric(f"volsim (volsight, resampled to {work}^3)", "volsim", weights=weights,
                                         options={"resample": work}, scope=args.scope,
                                         note=f"inputs resampled (trilinear) to the {work}^3 training size"))
    elif args.weights:
        raise WeightsError(weights, "no such weights file; train weights with volsight metric-train")
    else:
        say(f"no volsight VolSiM weights at {weights}; evaluating the other metrics only")
    learnsim = learnsim_weights(args.learnsim_weights)
    if learnsim is not None:
        specs.append(registry_metric("learnsim-ssd (volsight)", "learnsim-ssd", weights=learnsim, scope=args.scope))
    if args.official:
        specs.append(registry_metric("volsim (official MS_3scales)", "volsim", weights=args.official,
                                     scope=args.scope))
    for name in [m for m in args.metrics.split(",") if m]:
        try:
            specs.append(registry_metric(name, name, scope=args.scope))
        except (MetricError, KeyError) as exc:
            raise VolsightError(f"metric {name!r}: {exc}") from exc
    if args.lsim_weights:
        if "lsim" not in metric_names():
            say("lsim is not available in this build (core.metrics.lsim missing); skipping LSiM")
        else:
            specs.append(registry_metric("lsim (slices)", "lsim", weights=args.lsim_weights,
                                         options={"axis": "all", "stride": args.lsim_stride}, scope=args.scope,
                                         note=f"2D LSiM on every {args.lsim_stride}th slice along z, y and x, mean"))
    if not specs:
        raise VolsightError("nothing to evaluate: no weights and no metrics")
    if args.bootstrap < 0:
        raise VolsightError(f"--bootstrap must be >= 0 draws, got {args.bootstrap}")
    table = evaluate(files, specs, held_out, progress=say,
                     distance_cache=None if args.no_distance_cache else folder / "distances")
    say("")
    say(table.format())
    if args.bootstrap and len(specs) > 1:
        table.bootstrap_differences(specs[0].label, samples=args.bootstrap)
        say("")
        say(table.format_bootstrap())
    elif args.bootstrap:
        say("--bootstrap: only one metric was evaluated, so there is nothing to compare it with")
    table.write_csv(args.output)
    say(f"wrote {args.output}")
    if args.json:
        from core.io.atomic import atomic_path

        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(table.as_dict(), indent=1))
        say(f"wrote {args.json}")
    test = {"test_grid": f"{args.size}^3", "test_sequences_per_family": args.per_family,
            "test_seeds": f"{TEST_SEED0}..{TEST_SEED0 + args.per_family - 1}",
            "command": "volsight metric-eval " + " ".join(sys.argv[2:])}
    if args.card:
        if not weights.exists():
            raise WeightsError(weights, "a card describes volsight weights; none were evaluated")
        write_card(args.card, weights, table, args.run, test, "volsim", say)
    if args.learnsim_card:
        if learnsim is None:
            raise VolsightError("--learnsim-card describes learned-SSD weights; none were evaluated")
        write_card(args.learnsim_card, learnsim, table, args.run, test, "learnsim", say)
    return 0


def write_card(path: str, weights: Path, table: EvaluationTable, run: str | None, test: dict,
               model: str, say: Callable[[str], None]) -> None:
    """Write the JSON card of ``weights`` (``model``: volsim or learnsim) with this evaluation, atomically."""
    from core.io.atomic import atomic_path
    from core.training.card import make_card

    card = make_card(weights, table, run_dir=run, test=test, model=model)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(card, indent=1))
    say(f"wrote {path}")


def learnsim_weights(option: str | None) -> Path | None:
    """The learned-SSD weights --learnsim-weights names (None: the installed ones, if any; 'none': no weights)."""
    from core.errors import WeightsError
    from core.metrics.learnsim import default_weights_path

    if option is not None and option.lower() == "none":
        return None
    path = Path(option) if option else default_weights_path("ssd")
    if option and not path.is_file():
        raise WeightsError(path, "no such learned-SSD weights file; train them with volsight metric-train "
                           "--model learnsim-ssd")
    return path if path.is_file() else None


def _provenance(path: Path) -> dict:
    from core.metrics.weights_io import is_safetensors, load_safetensors

    if not is_safetensors(path):
        return {}
    _, header = load_safetensors(path, "VolSiM", "volsight.volsim")
    return dict(header.get("provenance", {}))


def working_size_of(path: Path) -> int | None:
    """The working size recorded in a volsight weights file's provenance (None for official checkpoints)."""
    size = _provenance(path).get("working_size")
    return int(size) if size else None


def trained_families_of(path: Path) -> list[str] | None:
    """The simulation families a volsight weights file was trained on (None when not recorded)."""
    families = _provenance(path).get("train_families")
    return [str(f) for f in families] if families else None


if __name__ == "__main__":  # pragma: no cover
    from app.cli import main

    sys.exit(main(["metric-eval", *sys.argv[1:]]))
