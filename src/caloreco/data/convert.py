"""Convert external event files (CMS HGCAL ntuple, EDM4hep) into caloreco Parquet shards.

The output directory has the layout :mod:`caloreco.simulation.production` writes: shards
``events-00000.parquet``, ``events-00001.parquet``, ... (:func:`~caloreco.data.parquet.write_events`,
atomic) and a ``manifest.json`` written last, so a directory with a manifest is complete.
The source is read ``events_per_shard`` entries at a time, so memory holds one shard.
Events without hits are kept (a model or :class:`~caloreco.data.dataset.EventDataset`
sees them with N = 0), so ``event_id`` stays the entry number of the source file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Sequence

import caloreco
from caloreco.data.cmssw_ntuple import read_cmssw_ntuple
from caloreco.data.edm4hep import read_edm4hep
from caloreco.data.event import Event
from caloreco.data.parquet import write_events
from caloreco.errors import ConfigError, InvalidDataError
from caloreco.utils.atomic import atomic_write_text

#: Source formats :func:`convert_file` reads.
FORMATS = ("cmssw-ntuple", "edm4hep")

#: Name of the manifest in the output directory (as in ``caloreco.simulation.production``).
MANIFEST = "manifest.json"

_SHARD = "events-{:05d}.parquet"


def _reader(fmt: str, collections: Sequence[str] | None
            ) -> Callable[[Path, int, int], list[Event]]:
    """A function reading entries [start, stop) of a file in format ``fmt``."""
    if fmt == "edm4hep":
        return lambda p, a, b: read_edm4hep(p, collections=collections, entry_start=a,
                                            entry_stop=b)
    if collections is not None:
        raise ConfigError(f"collections applies to the format 'edm4hep' only, got "
                          f"{list(collections)} with format '{fmt}'")
    return lambda p, a, b: read_cmssw_ntuple(p, entry_start=a, entry_stop=b)


def convert_file(path: str | Path, fmt: str, out_dir: str | Path, *,
                 collections: Sequence[str] | None = None,
                 events_per_shard: int = 1000) -> dict[str, Any]:
    """Convert one source file into Parquet shards plus ``manifest.json`` in ``out_dir``.

    Args:
        path: the source file.
        fmt: its format, one of :data:`FORMATS`.
        out_dir: output directory (created); it must not already hold shards or a manifest.
        collections: EDM4hep CalorimeterHit collections to read (default all; ``edm4hep``
            only).
        events_per_shard: events per Parquet shard (>= 1).

    Returns:
        The manifest: ``caloreco_version``, ``source`` (file name), ``format``,
        ``collections``, ``n_events``, ``n_hits`` and ``shards``, a list of
        ``{"file", "first_event", "n_events", "n_hits"}``.

    Raises:
        ConfigError: unknown ``fmt``, ``events_per_shard`` < 1, ``collections`` with a
            format other than ``edm4hep``, or ``out_dir`` already holds a data set.
        InputFileError: the source cannot be read (see the readers).
        InvalidDataError: bad values in the source, or a source without entries.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"fmt must be one of {list(FORMATS)}, got '{fmt}'")
    if isinstance(events_per_shard, bool) or not isinstance(events_per_shard, int) \
            or events_per_shard < 1:
        raise ConfigError(f"events_per_shard must be an integer >= 1, got {events_per_shard!r}")
    read = _reader(fmt, collections)
    path, out = Path(path), Path(out_dir)
    existing = sorted(p.name for p in out.glob("events-*.parquet")) if out.is_dir() else []
    if existing or (out / MANIFEST).exists():
        raise ConfigError(f"out_dir already holds a data set ({(existing or [MANIFEST])[0]} "
                          f"...); choose a new directory or delete it\n  out_dir: {out}")
    shards: list[dict[str, Any]] = []
    start = 0
    while True:
        events = read(path, start, start + events_per_shard)
        if not events:
            break
        name = _SHARD.format(len(shards))
        write_events(events, out / name)
        shards.append({"file": name, "first_event": start, "n_events": len(events),
                       "n_hits": int(sum(e.n_hits for e in events))})
        start += len(events)
        if len(events) < events_per_shard:
            break
    if not shards:
        raise InvalidDataError("the source has no entries; nothing to convert", source=str(path))
    manifest = {
        "caloreco_version": caloreco.__version__,
        "source": path.name,
        "format": fmt,
        "collections": list(collections) if collections is not None else None,
        "n_events": start,
        "n_hits": sum(s["n_hits"] for s in shards),
        "shards": shards,
    }
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest
