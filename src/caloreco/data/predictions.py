"""Clustering outputs in Parquet: one row per input event, in input event and hit order.

Row layout::

    event_id: int64
    hits:     var * {cluster_id: int64 (-1 = noise), beta: float32
                     [, energy_factor: float32] [, signal: float32]}
    clusters: var * {cluster_id: int64, energy: float32 [GeV], x, y, z: float32 [cm]
                     (energy-weighted), n_hits: int64 [, energy_corrected: float32 [GeV]]}

The bracketed fields are written for models with an energy head (the factor per hit, and
the cluster energy corrected by the factor of its condensation point) and for models with a
signal head (the probability that the hit belongs to a shower, not to noise).

``hits`` of row ``i`` align one to one with the hits of event ``i`` of the input shard.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import awkward as ak
import numpy as np

from caloreco.data.event import Event
from caloreco.errors import InputFileError, InvalidDataError
from caloreco.utils.atomic import atomic_path

CLUSTER_COLUMNS = ("cluster_id", "energy", "x", "y", "z", "n_hits")


def cluster_table(event: Event, cluster_id: np.ndarray, beta: np.ndarray | None = None,
                  energy_factor: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per predicted cluster of one event: energy sum, energy-weighted position, hit count,
    and the corrected energy with ``energy_factor``
    (:func:`caloreco.clustering.condensation.cluster_summary`, in file dtypes)."""
    from caloreco.clustering.condensation import cluster_summary

    h = event.hits
    t = cluster_summary(cluster_id, h["energy"], h["x"], h["y"], h["z"],
                        beta=None if energy_factor is None else beta, energy_factor=energy_factor)
    out = {"cluster_id": t["cluster"].astype(np.int64), "n_hits": t["n_hits"].astype(np.int64)}
    for c in ("energy", "x", "y", "z", "energy_corrected"):
        if c in t:
            out[c] = t[c].astype(np.float32)
    return out


def write_predictions(path: str | Path, events: Sequence[Event], cluster_ids: Sequence[np.ndarray],
                      betas: Sequence[np.ndarray],
                      energy_factors: Sequence[np.ndarray] | None = None,
                      signals: Sequence[np.ndarray] | None = None) -> Path:
    """Write one row per event atomically (see the module docstring); ``energy_factors``
    (one array per event) from a model with an energy head, ``signals`` from a model with
    a signal head."""
    if not (len(events) == len(cluster_ids) == len(betas)):
        raise InvalidDataError(f"{len(events)} events but {len(cluster_ids)} cluster-id arrays "
                               f"and {len(betas)} beta arrays")
    factors = list(energy_factors) if energy_factors is not None else [None] * len(events)
    if len(factors) != len(events):
        raise InvalidDataError(f"{len(events)} events but {len(factors)} energy-factor arrays")
    if signals is not None:
        signals = list(signals)
        if len(signals) != len(events):
            raise InvalidDataError(f"{len(events)} events but {len(signals)} signal arrays")
        for ev, sig in zip(events, signals):
            if len(sig) != ev.n_hits:
                raise InvalidDataError(f"prediction of event {ev.event_id} has {len(sig)} "
                                       f"signal probabilities for {ev.n_hits} hits")
    for ev, cid, b, f in zip(events, cluster_ids, betas, factors):
        if len(cid) != ev.n_hits or len(b) != ev.n_hits or (f is not None and len(f) != ev.n_hits):
            raise InvalidDataError(f"prediction of event {ev.event_id} has {len(cid)} cluster ids, "
                                   f"{len(b)} betas and {'no' if f is None else len(f)} energy "
                                   f"factors for {ev.n_hits} hits")
    counts = np.array([ev.n_hits for ev in events], np.int64)
    tables = [cluster_table(ev, np.asarray(cid), np.asarray(b), f)
              for ev, cid, b, f in zip(events, cluster_ids, betas, factors)]
    ccounts = np.array([len(t["cluster_id"]) for t in tables], np.int64)
    with_energy = energy_factors is not None

    def flat(parts: Sequence[np.ndarray], dtype: type) -> np.ndarray:
        return np.concatenate([np.asarray(p, dtype) for p in parts]) if parts else np.zeros(0, dtype)

    hit_fields = {"cluster_id": ak.unflatten(flat(cluster_ids, np.int64), counts),
                  "beta": ak.unflatten(flat(betas, np.float32), counts)}
    columns = CLUSTER_COLUMNS
    if with_energy:
        hit_fields["energy_factor"] = ak.unflatten(flat(factors, np.float32), counts)
        columns = CLUSTER_COLUMNS + ("energy_corrected",)
    if signals is not None:
        hit_fields["signal"] = ak.unflatten(flat(signals, np.float32), counts)
    arr = ak.zip({
        "event_id": np.array([ev.event_id for ev in events], np.int64),
        "hits": ak.zip(hit_fields, depth_limit=2),
        "clusters": ak.zip({c: ak.unflatten(flat([t[c] for t in tables],
                                                 np.int64 if c in ("cluster_id", "n_hits") else np.float32),
                                            ccounts) for c in columns}, depth_limit=2),
    }, depth_limit=1)
    path = Path(path)
    with atomic_path(path) as tmp:
        ak.to_parquet(arr, tmp)
    return path


def read_predictions(path: str | Path) -> list[dict[str, object]]:
    """Rows of a predictions file as dicts of numpy arrays (``event_id``, ``cluster_id``,
    ``beta``, ``clusters``, and ``energy_factor``, ``signal`` when written)."""
    path = Path(path)
    if not path.exists():
        raise InputFileError(path, "predictions file does not exist")
    try:
        arr = ak.from_parquet(path)
        rows = []
        for i in range(len(arr)):
            r = arr[i]
            row = {"event_id": int(r["event_id"]),
                   "cluster_id": ak.to_numpy(r["hits"]["cluster_id"]),
                   "beta": ak.to_numpy(r["hits"]["beta"]),
                   "clusters": {c: ak.to_numpy(r["clusters"][c]) for c in CLUSTER_COLUMNS
                                + (("energy_corrected",) if "energy_corrected"
                                   in r["clusters"].fields else ())}}
            for extra in ("energy_factor", "signal"):
                if extra in r["hits"].fields:
                    row[extra] = ak.to_numpy(r["hits"][extra])
            rows.append(row)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputFileError(path, f"not a caloreco predictions file ({exc})") from None
    return rows
