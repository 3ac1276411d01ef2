"""caloreco's own event files: awkward arrays in Parquet shards, one row per event.

Row layout (see ``docs/data-format.md``)::

    event_id: int64
    detector: string
    hits:      var * {x, y, z, energy, time, layer, cell_id, truth_cluster, [optional...]}
    clusters:  var * {energy, deposited, type, pdg, px, py, pz, n_particles, is_pileup}
    particles: var * {pdg, energy, px, py, pz, vx, vy, vz, cluster, is_pileup}

Conversion between events and columns is vectorised: all events' hits are concatenated
and split with offsets (``ak.unflatten``), never looped hit by hit.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Iterator, Sequence

import awkward as ak
import numpy as np

from caloreco.data.event import (
    CLUSTER_FIELDS,
    HIT_FIELDS,
    OPTIONAL_HIT_FIELDS,
    PARTICLE_FIELDS,
    Event,
)
from caloreco.errors import InputFileError, InvalidDataError
from caloreco.utils.atomic import atomic_path

TABLES = ("hits", "clusters", "particles")


def _jagged(events: Sequence[Event], table: str, keys: Sequence[str]) -> ak.Array:
    counts = np.array([len(next(iter(getattr(e, table).values()))) if getattr(e, table) else 0 for e in events],
                      dtype=np.int64)
    cols = {}
    for k in keys:
        flat = np.concatenate([getattr(e, table)[k] for e in events]) if events else np.zeros(0)
        cols[k] = ak.unflatten(flat, counts)
    return ak.zip(cols, depth_limit=2) if cols else ak.Array([[]] * len(events))


def events_to_awkward(events: Sequence[Event]) -> ak.Array:
    """Pack events into one awkward array (one record per event)."""
    if not events:
        raise InvalidDataError("no events to write")
    hit_keys = list(HIT_FIELDS) + [k for k in OPTIONAL_HIT_FIELDS if all(k in e.hits for e in events)]
    dropped = sorted({k for e in events for k in e.hits if k not in hit_keys})
    if dropped:
        warnings.warn(f"optional hit column(s) {dropped} are not present in every event and are not written",
                      stacklevel=2)
    return ak.zip({
        "event_id": np.array([e.event_id for e in events], dtype=np.int64),
        "detector": ak.Array([e.detector for e in events]),
        "hits": _jagged(events, "hits", hit_keys),
        "clusters": _jagged(events, "clusters", list(CLUSTER_FIELDS)),
        "particles": _jagged(events, "particles", list(PARTICLE_FIELDS)),
    }, depth_limit=1)


def write_events(events: Sequence[Event], path: str | Path) -> Path:
    """Write events to one Parquet shard atomically (temp file, then rename)."""
    array = events_to_awkward(events)
    path = Path(path)
    with atomic_path(path) as tmp:
        ak.to_parquet(array, tmp, compression="zstd")
    return path


def open_parquet(path: Path, what: str) -> ak.Array:
    """The awkward array of a Parquet file; a missing or unreadable file is an
    :class:`InputFileError` naming ``what`` it should have been (e.g. "event file")."""
    if not path.exists():
        raise InputFileError(path, f"{what} does not exist")
    try:
        return ak.from_parquet(path)
    except Exception as exc:  # pyarrow raises several types for foreign or truncated files
        raise InputFileError(path, f"not a readable Parquet {what} ({type(exc).__name__}: {exc})") from None


def _open(path: Path) -> ak.Array:
    array = open_parquet(path, "event file")
    fields = set(array.fields)
    missing = [f for f in ("event_id", *TABLES) if f not in fields]
    if missing:
        raise InputFileError(path, f"event file lacks field(s) {missing}; found {sorted(fields)}")
    for table, schema in (("hits", HIT_FIELDS), ("clusters", CLUSTER_FIELDS), ("particles", PARTICLE_FIELDS)):
        have = set(array[table].fields)
        lost = [k for k in schema if k not in have]
        if lost:
            raise InputFileError(path, f"'{table}' lacks column(s) {lost}; found {sorted(have)}")
    return array


def count_events(path: str | Path) -> int:
    """Number of events in a shard (reads only the Parquet metadata)."""
    import pyarrow.parquet as pq

    path = Path(path)
    try:
        return pq.ParquetFile(path).metadata.num_rows
    except FileNotFoundError:
        raise InputFileError(path, "event file does not exist") from None
    except Exception as exc:
        raise InputFileError(path, f"not a readable Parquet event file ({exc})") from None


def _to_numpy(column: ak.Array) -> np.ndarray:
    return ak.to_numpy(ak.flatten(column, axis=None)) if column.ndim > 1 else ak.to_numpy(column)


def iter_events(path: str | Path, *, validate: bool = True) -> Iterator[Event]:
    """Events of a shard, in file order; values are checked (NaN, truth indices)."""
    path = Path(path)
    array = _open(path)
    tables = {}
    for table in TABLES:
        sub = array[table]
        counts = ak.to_numpy(ak.num(sub, axis=1))
        offsets = np.concatenate([[0], np.cumsum(counts)])
        flat = {k: ak.to_numpy(ak.flatten(sub[k], axis=1)) for k in sub.fields}
        tables[table] = (offsets, flat)
    ids = ak.to_numpy(array["event_id"])
    detectors = ak.to_list(array["detector"]) if "detector" in array.fields else [""] * len(ids)
    for i in range(len(ids)):
        cols = {}
        for table, (offsets, flat) in tables.items():
            a, b = offsets[i], offsets[i + 1]
            cols[table] = {k: v[a:b] for k, v in flat.items()}
        yield Event.from_columns(cols["hits"], cols["clusters"], cols["particles"], event_id=int(ids[i]),
                                 detector=detectors[i] or "", source=str(path), validate=validate)


def read_events(path: str | Path, *, validate: bool = True) -> list[Event]:
    """All events of a shard."""
    return list(iter_events(path, validate=validate))
