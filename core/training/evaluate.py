"""Evaluating distance metrics on generated test sequences: Spearman rank correlation with the ground truth.

Protocol (VolSiM/LSiM's evaluation): for every test sequence, the distances of frame 0 to
frames 1..10 are computed and rescaled per sequence to [0.1, 1] (min-max); all sequences of a
family are pooled and the Spearman rank correlation with the linear ground truth j/10 is taken.
Similarities (PSNR, SSIM: larger = closer) are negated first. ``"held-out mean"`` averages the
families never seen in training; ``"all"`` pools every test sequence. Each metric is the
registry's, with its own preprocessing, so the numbers describe what a user gets.

Scope of the value normalisation (``scope``): by default a sequence is one set, as volsight's
series and matrices compute it and as the official VolSiM evaluation does (its inference
transform min-maxes the whole 11-frame sample): every frame is mapped with the sequence's
joint bounds, and PSNR/SSIM use the sequence's value range. With ``scope="pair"`` each pair is
normalised on its own, as ``volsight compare`` does for two files; then a frame whose noise
reaches a new extreme gets its own scale, which shuffles the ranks of nearly equal distances
(measured on the shapes family: MSE falls from 0.959 to 0.872 when each pair is min-maxed).
"""

from __future__ import annotations

import csv
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.io.atomic import atomic_path
from core.training.dataset import CachedSequence, load_cached

SequenceDistances = Callable[[np.ndarray], np.ndarray]  # frames [F, C, n, n, n] -> distances [F-1] of frame 0


def rescale_rows(rows: np.ndarray, lo: float = 0.1, hi: float = 1.0) -> np.ndarray:
    """Min-max every row to [lo, hi] (a constant row lands on the middle)."""
    rows = np.asarray(rows, dtype=np.float64)
    mn = rows.min(axis=1, keepdims=True)
    mx = rows.max(axis=1, keepdims=True)
    span = np.where(mx > mn, mx - mn, 1.0)
    out = lo + (hi - lo) * (rows - mn) / span
    return np.where(mx > mn, out, 0.5 * (lo + hi))


def offsets(count: int) -> np.ndarray:
    """Ground truth of ``count`` frame-0 distances: the normalised parameter offsets 1/count .. 1."""
    return np.arange(1, count + 1, dtype=np.float64) / count


def pooled_spearman(rows: np.ndarray, truth: np.ndarray) -> float:
    """Spearman of per-sequence-rescaled distances [S, F-1] against the ground truth [F-1], pooled over S."""
    from scipy.stats import spearmanr

    rows = np.asarray(rows, dtype=np.float64)
    if rows.size == 0 or not np.isfinite(rows).all():
        return float("nan")
    # rounding keeps values that are equal up to float noise tied, as they should be
    scaled = np.round(rescale_rows(rows), 10)
    gt = np.broadcast_to(np.asarray(truth, dtype=np.float64), scaled.shape)
    return float(spearmanr(scaled.ravel(), gt.ravel()).statistic)


def mean_sequence_spearman(rows: np.ndarray, truth: np.ndarray) -> float:
    """Mean over sequences of the per-sequence Spearman (10 points each)."""
    from scipy.stats import spearmanr

    vals = []
    for r in np.asarray(rows, dtype=np.float64):
        if np.ptp(r) == 0 or not np.isfinite(r).all():
            vals.append(0.0)
        else:
            vals.append(float(spearmanr(r, truth).statistic))
    return float(np.mean(vals)) if vals else float("nan")


@dataclass
class MetricSpec:
    """A metric to evaluate: a label and how it turns a sequence into frame-0 distances.

    ``key`` identifies the metric's exact configuration (name, options, weights file contents);
    with a distance cache, distances already computed under that key are reused.
    """

    label: str
    distances: SequenceDistances
    note: str = ""
    key: str | None = None
    scope: str = "sequence"  # value normalisation per "sequence" or per "pair" (see the module docstring)


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of a file (identifies weights in cache keys)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _config_key(name: str, options: dict[str, Any], kwargs: dict[str, Any], scope: str) -> str:
    import hashlib
    import json

    described = {k: (f"sha256:{file_digest(v)}" if k == "weights" and v is not None else str(v))
                 for k, v in kwargs.items() if k != "device"}
    record = {"metric": name, "options": {k: str(v) for k, v in options.items()}, "kwargs": described}
    if scope != "pair":  # keys of the pair scope stay as they were, so their caches stay valid
        record["scope"] = scope
    text = json.dumps(record, sort_keys=True)
    return f"{name}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


SCOPES = ("sequence", "pair")


def registry_metric(label: str, name: str, *, options: dict[str, Any] | None = None,
                    note: str = "", scope: str = "sequence", **kwargs: Any) -> MetricSpec:
    """A metric from the registry (``get_metric(name, **kwargs)``), called with ``options``.

    ``scope="sequence"``: the frames are one set, as volsight's series computes them
    (:func:`core.metrics.matrix.distance_to_reference`): a metric that normalises its inputs maps
    every frame with the sequence's joint bounds, PSNR and SSIM use the sequence's value range.
    This is the official VolSiM evaluation (whole-sequence min-max) and how volsight trains.
    ``scope="pair"``: each pair (frame 0, frame j) on its own, as ``volsight compare`` on two files.
    """
    from core.metrics.matrix import distance_to_reference
    from core.metrics.registry import get_metric
    from core.volume import Volume

    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, not {scope!r}")
    metric = get_metric(name, **kwargs)
    opts = dict(options or {})
    sign = -1.0 if metric.kind == "similarity" else 1.0

    def run(frames: np.ndarray) -> np.ndarray:
        vols = [Volume.from_array(f, name=f"frame{k}") for k, f in enumerate(frames)]
        if scope == "sequence":
            values = distance_to_reference(vols, metric, 0, **opts)[1:]
        else:
            values = [d.value for d in metric.distance_batch([(vols[0], v) for v in vols[1:]], **opts)]
        out = np.asarray(values, dtype=np.float64) * sign
        # a similarity of +inf (identical frames) is the smallest possible distance
        return np.where(np.isfinite(out), out, np.where(out > 0, np.finfo(np.float64).max / 1e3, -1e300))

    return MetricSpec(label, run, note, key=_config_key(name, opts, kwargs, scope), scope=scope)


@dataclass
class EvaluationTable:
    """Spearman per (metric, family); families in order, metrics in order."""

    families: list[str]
    held_out: list[str]
    metrics: list[str]
    pooled: dict[str, dict[str, float]] = field(default_factory=dict)  # metric -> family/"all" -> value
    per_sequence: dict[str, dict[str, float]] = field(default_factory=dict)
    sequences: dict[str, int] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    scope: str = "sequence"
    # metric -> family -> frame-0 distances [sequences, F-1], sequences in the same order for every metric
    distances: dict[str, dict[str, np.ndarray]] = field(default_factory=dict, repr=False)
    bootstrap: dict[str, Any] = field(default_factory=dict)  # filled by :meth:`bootstrap_differences`

    def columns(self) -> list[str]:
        return [*self.families, "held-out mean", "all"]

    def rows(self) -> list[list[Any]]:
        out = []
        for m in self.metrics:
            out.append([m, *[self.pooled[m].get(c, float("nan")) for c in self.columns()]])
        return out

    def bootstrap_differences(self, reference: str, samples: int = 1000, seed: int = 0,
                              level: float = 0.95) -> dict[str, dict[str, tuple[float, float, float]]]:
        """How far ``reference`` leads every other metric, with a paired bootstrap interval over sequences.

        Per family, the test sequences are drawn with replacement ``samples`` times; every metric is
        scored on the same draw (the comparison is paired, so what the sequences have in common
        cancels). Returns metric -> family (and ``"held-out mean"``) -> (difference on the full
        set, lower, upper bound of the central ``level`` interval), difference = reference's pooled
        Spearman minus the metric's: positive where the reference ranks better. Also kept in
        :attr:`bootstrap` for the CSV and JSON outputs.
        """
        if reference not in self.distances:
            raise ValueError(f"no distances of {reference!r} in this table (metrics: {', '.join(self.distances)})")
        if samples < 1:
            raise ValueError(f"bootstrap samples must be >= 1, got {samples}")
        first = next(iter(self.distances[reference].values()))
        truth = offsets(first.shape[1])
        rng = np.random.default_rng(seed)
        others = [m for m in self.metrics if m != reference and m in self.distances]
        draws: dict[str, dict[str, np.ndarray]] = {m: {} for m in others}
        for fam in self.families:
            count = self.distances[reference][fam].shape[0]
            picks = rng.integers(0, count, size=(samples, count))
            ref = np.array([pooled_spearman(self.distances[reference][fam][i], truth) for i in picks])
            for m in others:
                draws[m][fam] = ref - np.array([pooled_spearman(self.distances[m][fam][i], truth) for i in picks])
        tail = 100.0 * (1.0 - level) / 2.0
        out: dict[str, dict[str, tuple[float, float, float]]] = {}
        for m in others:
            cols = dict(draws[m])
            if self.held_out:
                cols["held-out mean"] = np.mean([draws[m][f] for f in self.held_out], axis=0)
            out[m] = {}
            for c, values in cols.items():
                lo, hi = np.percentile(values, [tail, 100.0 - tail])
                out[m][c] = (self.pooled[reference][c] - self.pooled[m][c], float(lo), float(hi))
        self.bootstrap = {"reference": reference, "samples": samples, "level": level, "seed": seed,
                          "differences": out}
        return out

    def format_bootstrap(self) -> str:
        """The bootstrap differences as text (empty before :meth:`bootstrap_differences`)."""
        if not self.bootstrap:
            return ""
        ref, diffs = self.bootstrap["reference"], self.bootstrap["differences"]
        cols = [*self.families, *(["held-out mean"] if self.held_out else [])]
        heads = [f"{c}{'*' if c in self.held_out else ''}" for c in cols]
        width = max(len(m) for m in [*diffs, "metric"]) + 2
        lines = [f"{ref} minus each metric (pooled Spearman; {100 * self.bootstrap['level']:.0f}% paired bootstrap "
                 f"interval over sequences, {self.bootstrap['samples']} draws; > 0: {ref} ranks better)",
                 "metric".ljust(width) + "".join(h.rjust(26) for h in heads)]
        for m, row in diffs.items():
            cells = [f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]" for d, lo, hi in (row[c] for c in cols)]
            lines.append(m.ljust(width) + "".join(cell.rjust(26) for cell in cells))
        return "\n".join(lines)

    def format(self) -> str:
        """A plain-text table (Spearman, pooled protocol)."""
        cols = self.columns()
        heads = [f"{c}{'*' if c in self.held_out else ''}" for c in cols]
        width = max(len(m) for m in self.metrics) + 2
        lines = ["metric".ljust(width) + "".join(h.rjust(14) for h in heads)]
        for row in self.rows():
            lines.append(row[0].ljust(width) + "".join(f"{v:14.4f}" for v in row[1:]))
        counts = ", ".join(f"{f} {self.sequences.get(f, 0)}" for f in self.families)
        lines.append(f"(* held-out family; sequences per family: {counts}; Spearman of frame-0 distances, "
                     f"per-sequence [0.1, 1] rescaling, pooled per family; value normalisation per {self.scope})")
        for m, note in self.notes.items():
            if note:
                lines.append(f"{m}: {note}")
        return "\n".join(lines)

    def write_csv(self, path: str | os.PathLike) -> None:
        """CSV: one row per metric and protocol (pooled, mean per sequence), one column per family."""
        with atomic_path(path, suffix=".csv") as tmp:
            with open(tmp, "w", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(["metric", "protocol", *self.columns(), "seconds", "note"])
                for m in self.metrics:
                    for proto, table in (("pooled", self.pooled), ("mean_per_sequence", self.per_sequence)):
                        vals = [table[m].get(c, float("nan")) for c in self.columns()]
                        w.writerow([m, proto, *[f"{v:.4f}" for v in vals], f"{self.seconds.get(m, 0):.1f}",
                                    self.notes.get(m, "")])
                if self.bootstrap:
                    ref, level = self.bootstrap["reference"], self.bootstrap["level"]
                    for m, row in self.bootstrap["differences"].items():
                        for k, label in enumerate(("difference", "low", "high")):
                            proto = f"{ref} minus metric: {label}" + ("" if k == 0 else f" ({100 * level:.0f}%)")
                            w.writerow([m, proto, *[f"{row[c][k]:.4f}" if c in row else "" for c in self.columns()],
                                        "", f"paired bootstrap over sequences, {self.bootstrap['samples']} draws"])

    def as_dict(self) -> dict[str, Any]:
        def clean(v: float) -> float | None:
            return None if not math.isfinite(v) else round(float(v), 4)

        return {
            "protocol": "Spearman of frame-0 distances vs j/10, per-sequence [0.1,1] rescaling, pooled per family",
            "normalisation_scope": self.scope,
            "held_out_families": self.held_out,
            "sequences": self.sequences,
            "spearman": {m: {c: clean(v) for c, v in self.pooled[m].items()} for m in self.metrics},
            "mean_per_sequence_spearman": {m: {c: clean(v) for c, v in self.per_sequence[m].items()}
                                           for m in self.metrics},
            "notes": {m: n for m, n in self.notes.items() if n},
            **({"bootstrap": {**{k: v for k, v in self.bootstrap.items() if k != "differences"},
                              "differences": {m: {c: [clean(v) for v in cell] for c, cell in row.items()}
                                              for m, row in self.bootstrap["differences"].items()}}}
               if self.bootstrap else {}),
        }


def _load_distances(path: Path | None) -> dict[str, list[float]]:
    import json

    if path is None or not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # a damaged cache entry is recomputed, never trusted


def _save_distances(path: Path | None, data: dict[str, list[float]]) -> None:
    import json

    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data))


def evaluate(sequences: Sequence[CachedSequence | str | os.PathLike], metrics: Sequence[MetricSpec],
             held_out: Sequence[str], progress: Callable[[str], None] | None = None,
             distance_cache: str | os.PathLike | None = None) -> EvaluationTable:
    """Spearman of every metric on every family of ``sequences`` (cache files or loaded sequences).

    With ``distance_cache`` (a folder), each metric's frame-0 distances are stored per sequence
    under the metric's configuration key and reused by later runs.
    """
    seqs = [s if isinstance(s, CachedSequence) else load_cached(s) for s in sequences]
    if not seqs:
        raise ValueError("no test sequences to evaluate on")
    families = sorted({s.family for s in seqs}, key=lambda f: (f not in held_out, f))
    truth = offsets(seqs[0].frames.shape[0] - 1)
    table = EvaluationTable(families, [f for f in held_out if f in families], [m.label for m in metrics])
    table.sequences = {f: sum(s.family == f for s in seqs) for f in families}
    scopes = {m.scope for m in metrics}
    table.scope = scopes.pop() if len(scopes) == 1 else "metric (mixed)"
    for spec in metrics:
        t = time.perf_counter()
        rows: dict[str, list[np.ndarray]] = {f: [] for f in families}
        store = Path(distance_cache) / f"{spec.key}.json" if distance_cache is not None and spec.key else None
        known = _load_distances(store)
        for k, s in enumerate(seqs):
            name = f"{s.family}_{s.seed}_{s.frames.shape[-1]}"
            if name not in known:
                known[name] = [float(v) for v in spec.distances(s.frames.astype(np.float32))]
                if (k + 1) % 5 == 0:
                    _save_distances(store, known)
            rows[s.family].append(np.asarray(known[name], dtype=np.float64))
            if progress is not None and (k + 1) % 10 == 0:
                progress(f"{spec.label}: {k + 1}/{len(seqs)} sequences")
        _save_distances(store, known)
        stacked = {f: np.stack(rows[f]) for f in families}  # [sequences, F-1] per family
        everything = np.concatenate(list(stacked.values()))
        pooled = {f: pooled_spearman(d, truth) for f, d in stacked.items()}
        per_seq = {f: mean_sequence_spearman(d, truth) for f, d in stacked.items()}
        for part in (pooled, per_seq):
            held = [part[f] for f in table.held_out]
            part["held-out mean"] = float(np.mean(held)) if held else float("nan")
        pooled["all"] = pooled_spearman(everything, truth)
        per_seq["all"] = mean_sequence_spearman(everything, truth)
        table.pooled[spec.label] = pooled
        table.per_sequence[spec.label] = per_seq
        table.distances[spec.label] = stacked
        table.notes[spec.label] = spec.note
        table.seconds[spec.label] = time.perf_counter() - t
        if progress is not None:
            progress(f"{spec.label}: held-out mean {pooled['held-out mean']:.4f}, all {pooled['all']:.4f} "
                     f"({table.seconds[spec.label]:.0f}s)")
    return table


def cached_test_files(folder: str | os.PathLike) -> list[Path]:
    """The cached test sequences in ``folder`` (sorted)."""
    return sorted(Path(folder).glob("*.npz"))
