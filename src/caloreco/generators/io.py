"""Generator truth files: one Parquet file per event shard, one row per event.

Format choice: Parquet (awkward, zstd) rather than HepMC3. The shards already are Parquet
with the same one-row-per-event layout, so a data set stays one format read with one
library; columns load vectorised (a ttbar record of ~2000 particles per event is one slice,
not 2000 Python objects as with pyhepmc), and the Pythia record columns (status, mothers,
daughters, momenta, vertices) carry everything HepMC3 would, so a HepMC3 file can be
written from them later if an external tool needs one.

Row layout::

    event_id: int64
    vertex_z: var * float64           # interaction vertices [cm], hard scatter first
    record:   var * {RECORD_FIELDS}   # hard-scatter Pythia record
    stable:   var * {STABLE_FIELDS}   # stable particles of all interactions

Files live in the ``generator/`` sub-directory of a data set, named like their event
shard (``generator/events-00000.parquet``), so readers of ``*.parquet`` shards never see them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

import awkward as ak
import numpy as np

from caloreco.errors import InputFileError
from caloreco.generators.event import STABLE_FIELDS, GeneratedEvent
from caloreco.generators.pythia import RECORD_FIELDS
from caloreco.utils.atomic import atomic_path

GENERATOR_DIR = "generator"


def generator_path(shard: str | Path) -> Path:
    """The generator file that belongs to an event shard."""
    shard = Path(shard)
    return shard.parent / GENERATOR_DIR / shard.name


def _jagged(tables: Sequence[dict[str, np.ndarray]], schema: dict[str, np.dtype]) -> ak.Array:
    counts = np.array([len(t["pdg"]) for t in tables], dtype=np.int64)
    cols = {k: ak.unflatten(np.concatenate([t[k] for t in tables]).astype(d, copy=False), counts)
            for k, d in schema.items()}
    return ak.zip(cols, depth_limit=2)


def write_generator_file(events: Sequence[tuple[int, GeneratedEvent]], path: str | Path) -> Path:
    """Write ``(event_id, GeneratedEvent)`` pairs to one Parquet file atomically."""
    path = Path(path)
    gens = [g for _, g in events]
    counts = np.array([len(g.vertex_z) for g in gens], dtype=np.int64)
    array = ak.zip({
        "event_id": np.array([i for i, _ in events], dtype=np.int64),
        "vertex_z": ak.unflatten(np.concatenate([g.vertex_z for g in gens]).astype(np.float64), counts),
        "record": _jagged([g.record for g in gens], RECORD_FIELDS),
        "stable": _jagged([g.stable for g in gens], STABLE_FIELDS),
    }, depth_limit=1)
    with atomic_path(path) as tmp:
        ak.to_parquet(array, tmp, compression="zstd")
    return path


def iter_generator_file(path: str | Path) -> Iterator[tuple[int, GeneratedEvent]]:
    """``(event_id, GeneratedEvent)`` of a generator file, in file order."""
    from caloreco.data.parquet import open_parquet

    path = Path(path)
    array = open_parquet(path, "generator file")
    missing = [f for f in ("event_id", "vertex_z", "record", "stable") if f not in array.fields]
    if missing:
        raise InputFileError(path, f"generator file lacks field(s) {missing}; found {sorted(array.fields)}")
    flat = {}
    for table, schema in (("record", RECORD_FIELDS), ("stable", STABLE_FIELDS)):
        sub = array[table]
        lost = [k for k in schema if k not in sub.fields]
        if lost:
            raise InputFileError(path, f"'{table}' lacks column(s) {lost}")
        offsets = np.concatenate([[0], np.cumsum(ak.to_numpy(ak.num(sub, axis=1)))])
        flat[table] = (offsets, {k: ak.to_numpy(ak.flatten(sub[k], axis=1)) for k in schema})
    vz = ak.to_list(array["vertex_z"])
    for i, eid in enumerate(ak.to_numpy(array["event_id"])):
        tabs = {}
        for table, (offsets, cols) in flat.items():
            a, b = offsets[i], offsets[i + 1]
            tabs[table] = {k: v[a:b] for k, v in cols.items()}
        yield int(eid), GeneratedEvent(record=tabs["record"], stable=tabs["stable"],
                                       vertex_z=np.asarray(vz[i], dtype=np.float64))
