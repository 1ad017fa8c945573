"""What a slot holds, and how a dropped or opened file becomes one: plain functions, no Qt.

A file is either a volume (any format behind ``core.io``'s reader registry) or a neural-field
file (``models.store``). A field is baked on a grid so the metrics and the GL view can use it;
the field itself is kept for ray-marching and for saving.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from dataclasses import field as dc_field
from pathlib import Path
from typing import Any

from core.volume import Volume

ProgressFn = Callable[[float | None, str], None]

# a baked field larger than this per axis would make the metrics and the GL upload slow
MAX_BAKE_SIZE = 256


@dataclass(frozen=True)
class LoadedItem:
    """The content of slot A or B: a volume (possibly baked from a field) and where it came from."""

    volume: Volume
    path: str | None = None
    kind: str = "volume"  # "volume", "field" or "demo"
    variable: str | None = None
    index: int | None = None
    variables: tuple[str, ...] = ()
    frames: int = 1
    neural_field: Any = None  # a models.field.NeuralField for kind == "field"
    info: dict[str, Any] = dc_field(default_factory=dict)
    nan_policy: str = "raise"  # what reading did with NaN/Inf values: "raise" (there were none) or "zero"

    @property
    def name(self) -> str:
        return self.volume.name

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.volume.shape

    def shape_text(self) -> str:
        d, h, w = self.shape
        ch = "" if self.volume.channels == 1 else f" ×{self.volume.channels} ch"
        return f"{d}×{h}×{w}{ch}"

    def summary(self) -> str:
        """One line for the slot header: name, shape and, where it applies, variable and time step."""
        parts = [self.name, self.shape_text()]
        if self.kind == "field":
            parts.append("neural field (baked)")
        if self.volume.channels > 1:
            parts.append("shown as magnitude")  # views, slices and legend draw |v|; metrics take every channel
        if self.variable and len(self.variables) > 1:
            parts.append(f"variable {self.variable}")
        if self.frames > 1:
            parts.append(f"step {(self.index or 0) + 1}/{self.frames}")
        replaced = self.volume.metadata.get("nonfinite_replaced")
        if replaced:
            parts.append(f"{replaced:,} NaN/Inf shown as 0")
        return " · ".join(parts)

    def to_json(self) -> dict[str, Any]:
        """How to load this item again (for session files)."""
        out = {"path": self.path, "kind": self.kind, "variable": self.variable, "index": self.index,
               "name": self.name}
        if self.nan_policy != "raise":
            out["nan_policy"] = self.nan_policy
        return out


def _field_store():
    """models.store when the neural-field package is installed, else None."""
    import importlib

    try:
        store = importlib.import_module("models.store")
    except ModuleNotFoundError as exc:
        if exc.name not in ("models.store", "models"):
            raise
        return None
    return store


def is_field_file(path: str | os.PathLike) -> bool:
    """True when ``path`` is a neural-field file that models.store can load."""
    store = _field_store()
    if store is None or not Path(path).is_file():
        return False
    try:
        return bool(store.is_field_file(path))
    except Exception:  # noqa: BLE001 - sniffing must never fail; reading gives the real error
        return False


def bake_shape(shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """The grid a field is baked on: its source shape, scaled down to MAX_BAKE_SIZE per axis."""
    m = max(shape)
    if m <= MAX_BAKE_SIZE:
        return tuple(int(s) for s in shape)  # type: ignore[return-value]
    f = MAX_BAKE_SIZE / m
    return tuple(max(2, round(s * f)) for s in shape)  # type: ignore[return-value]


def item_from_field(neural_field: Any, path: str | None = None, progress: ProgressFn | None = None,
                    shape: tuple[int, int, int] | None = None) -> LoadedItem:
    """Bake a NeuralField on its source grid (or ``shape``) and wrap it as a slot item."""
    shape = bake_shape(tuple(shape or neural_field.source_shape))
    if progress:
        progress(None, f"baking field {neural_field.name} on {shape[0]}×{shape[1]}×{shape[2]}")
    vol = neural_field.bake(shape=shape)
    # what it compresses and with which model ("plume-apmgsrn"), so a volume and the field fitted
    # to it (the common pair) do not carry the same name
    name = f"{neural_field.name or (Path(path).stem if path else 'field')}-{neural_field.kind}"
    if vol.name != name:
        vol = vol.evolve(name=name)
    return LoadedItem(volume=vol, path=path, kind="field", neural_field=neural_field,
                      info={"source_shape": list(neural_field.source_shape)})


def _natural_key(name: str) -> list:
    """Sort key putting t2 before t10 (digit runs compare as numbers)."""
    import re

    return [(0, int(part), "") if part.isdigit() else (1, 0, part.lower()) for part in re.split(r"(\d+)", name)]


def expand_folders(paths: Sequence[str | os.PathLike]) -> list[str]:
    """``paths`` with every folder replaced by the volume and neural-field files in it (not in sub-folders), in
    natural order (``t2`` before ``t10``): a folder of time steps opens as a series. A raw file's JSON sidecar
    is not listed beside its data file. ReaderError for a folder that holds none."""
    from core.errors import ReaderError
    from core.io.registry import known_extensions

    suffixes = tuple(known_extensions()) + (".vsf",)
    out: list[str] = []
    for p in paths:
        folder = Path(p)
        if not folder.is_dir():
            out.append(os.fspath(p))
            continue
        names = [f for f in folder.iterdir() if f.is_file() and f.name.lower().endswith(suffixes)
                 and not f.name.startswith(".")]
        present = {f.name.lower() for f in names}
        names = [f for f in names if not (f.name.lower().endswith(".json")
                                          and f.name.lower()[: -len(".json")] in present)]
        if not names:
            raise ReaderError(folder, f"the folder holds no volume or neural-field files ({', '.join(suffixes)})")
        out.extend(os.fspath(f) for f in sorted(names, key=lambda f: _natural_key(f.name)))
    return out


def distinct_labels(items: Sequence[LoadedItem]) -> list[str]:
    """Labels for a matrix's rows and columns: each member's name, or, where names repeat (two fields of
    one volume are both "plume-apmgsrn"), its file name; a label still repeated gets " (2)", " (3)", ..."""
    from collections import Counter

    names = [it.name for it in items]
    counts = Counter(names)
    labels = [Path(it.path).name if counts[n] > 1 and it.path else n for it, n in zip(items, names, strict=True)]
    seen: Counter[str] = Counter()
    out = []
    repeated = Counter(labels)
    for label in labels:
        seen[label] += 1
        out.append(label if repeated[label] == 1 or seen[label] == 1 else f"{label} ({seen[label]})")
    return out


def file_stem(text: str) -> str:
    """``text`` (a volume's or field's name, "plume:density-apmgsrn") as a file-name stem: runs of
    characters file systems or shells dislike become "_"."""
    import re

    return re.sub(r"[^\w.-]+", "_", text).strip("_") or "volume"


def align_fields(a: LoadedItem | None, b: LoadedItem | None,
                 progress: ProgressFn | None = None) -> dict[str, LoadedItem]:
    """A field compared with a volume on another grid, baked on that volume's grid instead.

    A field is continuous: evaluated at the other volume's voxels it is compared exactly (no
    trilinear resampling of a bake on its own grid), and the difference view and slices have a
    per-voxel difference to show. B's field goes onto A's grid; A's field onto B's when B is a
    volume. Grids larger than :data:`MAX_BAKE_SIZE` per axis are left to resampling. Returns the
    re-baked items by slot (empty when nothing needs it).
    """
    if a is None or b is None or a.shape == b.shape:
        return {}
    if b.kind == "field" and max(a.shape) <= MAX_BAKE_SIZE:
        return {"B": item_from_field(b.neural_field, b.path, progress, shape=a.shape)}
    if a.kind == "field" and b.kind != "field" and max(b.shape) <= MAX_BAKE_SIZE:
        return {"A": item_from_field(a.neural_field, a.path, progress, shape=b.shape)}
    return {}


def onto_first_grid(items: list[LoadedItem], progress: ProgressFn | None = None) -> list[LoadedItem]:
    """A set (a series, a matrix): its fields on another grid than the first member's baked on that grid.

    As :func:`align_fields` for a pair: the other members are resampled onto the first's grid when
    compared, and a field can be evaluated there instead (up to :data:`MAX_BAKE_SIZE` per axis).
    """
    if not items:
        return []
    grid = items[0].shape
    if max(grid) > MAX_BAKE_SIZE:
        return list(items)
    return [item_from_field(it.neural_field, it.path, progress, shape=grid)
            if it.kind == "field" and it.shape != grid else it for it in items]


def load_item(path: str | os.PathLike, variable: str | None = None, index: int | None = None,
              progress: ProgressFn | None = None, nan_policy: str = "raise") -> LoadedItem:
    """Read a volume file or a neural-field file into a slot item; raises core.errors on bad files.

    ``nan_policy``: ``"raise"`` refuses NaN/Inf values (:class:`core.errors.NonFiniteDataError`),
    ``"zero"`` replaces them by 0 (the user agreed to, e.g. for a masked region).
    """
    p = Path(path)
    # a .vsf file that is not a readable field gets the field reader's own error, not "unknown type"
    store = _field_store()
    if is_field_file(p) or (store is not None and p.suffix.lower() == store.FIELD_SUFFIX):
        if progress:
            progress(None, f"loading field {p.name}")
        nf = store.load_field(p)
        return item_from_field(nf, str(p), progress)
    from core.io import registry

    if progress:
        progress(None, f"reading {p.name}")
    info = registry.file_info(p, stats=False)  # names and frames only: the read below is the one pass over the data
    var_infos = info.volume_variables()
    names = tuple(v.name for v in var_infos)
    chosen = variable if variable is not None else (names[0] if names else None)
    frames = next((v.frames for v in var_infos if v.name == chosen), 1)
    if frames > 1 and index is None:
        index = 0
    vol = registry.read_volume(p, variable=chosen, index=index, nan_policy=nan_policy)
    return LoadedItem(volume=vol, path=str(p), kind="volume", variable=chosen, index=index,
                      variables=names, frames=max(1, int(frames)), nan_policy=nan_policy)


def demo_items(kind: str = "plume", n: int = 64) -> tuple[LoadedItem, LoadedItem]:
    """The built-in demo pair as slot items."""
    from core.demo import demo_pair

    a, b = demo_pair(kind, n=n)  # type: ignore[arg-type]
    return LoadedItem(volume=a, kind="demo", info={"demo": kind, "n": n}), LoadedItem(
        volume=b, kind="demo", info={"demo": kind, "n": n, "perturbed": True})
