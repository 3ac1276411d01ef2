"""The in-memory event record shared by the simulation, the readers and the models.

An :class:`Event` holds three column tables of equal-length numpy arrays:

``hits`` (N rows, one per reconstructed hit)
    Required: ``x, y, z`` [cm], ``energy`` [GeV, electromagnetic scale as CMS rechits],
    ``time`` [ns], ``layer`` (1-based), ``cell_id`` (int64, detector-specific, -1 when the
    source has no cell id), ``truth_cluster`` (index into ``clusters``, -1 for noise or
    unknown). Optional columns (see :data:`OPTIONAL_HIT_FIELDS`) may follow.
``clusters`` (K rows, one per truth cluster)
    ``energy`` [GeV, generated energy of the particles in it], ``deposited`` [GeV, sum of
    signal energy in hits], ``type`` (:class:`ClusterType` code), ``pdg`` (leading
    particle), ``px, py, pz`` [GeV], ``n_particles``, ``is_pileup``.
``particles`` (P rows, the generated particles)
    ``pdg, energy, px, py, pz, vx, vy, vz`` and ``cluster`` (truth cluster index, -1 if the
    particle left no hit).

The schema is documented for files in ``docs/data-format.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Mapping

import numpy as np

from caloreco.errors import EmptyEventError, InvalidDataError

#: Required hit columns and their dtypes (the Parquet field names are exactly these).
HIT_FIELDS: dict[str, np.dtype] = {
    "x": np.dtype(np.float32),
    "y": np.dtype(np.float32),
    "z": np.dtype(np.float32),
    "energy": np.dtype(np.float32),
    "time": np.dtype(np.float32),
    "layer": np.dtype(np.int16),
    "cell_id": np.dtype(np.int64),
    "truth_cluster": np.dtype(np.int32),
}

#: Optional hit columns written when present.
OPTIONAL_HIT_FIELDS: dict[str, np.dtype] = {
    "energy_mip": np.dtype(np.float32),  # energy in units of the layer's MIP
    "cell_type": np.dtype(np.int8),  # caloreco.geometry.CellType code
    "truth_fraction": np.dtype(np.float32),  # fraction of the hit's signal from truth_cluster
    "truth_energy": np.dtype(np.float32),  # noise-free signal energy [GeV]
    "truth_cluster2": np.dtype(np.int32),  # second largest contributor (-1 if none)
    "truth_fraction2": np.dtype(np.float32),  # its fraction of the signal
}

CLUSTER_FIELDS: dict[str, np.dtype] = {
    "energy": np.dtype(np.float32),
    "deposited": np.dtype(np.float32),
    "type": np.dtype(np.int8),
    "pdg": np.dtype(np.int32),
    "px": np.dtype(np.float32),
    "py": np.dtype(np.float32),
    "pz": np.dtype(np.float32),
    "n_particles": np.dtype(np.int16),
    "is_pileup": np.dtype(np.bool_),
}

PARTICLE_FIELDS: dict[str, np.dtype] = {
    "pdg": np.dtype(np.int32),
    "energy": np.dtype(np.float32),
    "px": np.dtype(np.float32),
    "py": np.dtype(np.float32),
    "pz": np.dtype(np.float32),
    "vx": np.dtype(np.float32),
    "vy": np.dtype(np.float32),
    "vz": np.dtype(np.float32),
    "cluster": np.dtype(np.int32),
    "is_pileup": np.dtype(np.bool_),
}

_FLOAT_HIT_FIELDS = ("x", "y", "z", "energy", "time")


class ClusterType(IntEnum):
    """Truth-cluster categories used for per-type energy response."""

    EM = 0  # electrons and photons
    HAD = 1  # interacting hadrons
    MIP = 2  # muons and hadrons that did not interact
    MIX = 3  # merged showers of different types


def _table(columns: Mapping[str, np.ndarray], schema: Mapping[str, np.dtype], name: str,
           *, optional: Mapping[str, np.dtype] | None = None, source: str | None = None,
           event: int | None = None) -> dict[str, np.ndarray]:
    """Cast columns to the schema dtypes and check that lengths agree."""
    missing = [k for k in schema if k not in columns]
    if missing:
        raise InvalidDataError(
            f"{name} table is missing column(s) {missing}; it needs {list(schema)}",
            source=source, event=event)
    out: dict[str, np.ndarray] = {}
    n = None
    for key, values in columns.items():
        dtype = schema.get(key) or (optional or {}).get(key)
        arr = np.asarray(values)
        if dtype is not None:
            arr = arr.astype(dtype, copy=False)
        if arr.ndim != 1:
            raise InvalidDataError(
                f"{name} column '{key}' must be one-dimensional, got shape {arr.shape}",
                source=source, event=event)
        if n is None:
            n = len(arr)
        elif len(arr) != n:
            raise InvalidDataError(
                f"{name} column '{key}' has {len(arr)} rows, expected {n} like the others",
                source=source, event=event)
        out[key] = arr
    return out


@dataclass
class Event:
    """One calorimeter event: hits, truth clusters and generated particles."""

    hits: dict[str, np.ndarray]
    clusters: dict[str, np.ndarray] = field(default_factory=lambda: empty_table(CLUSTER_FIELDS))
    particles: dict[str, np.ndarray] = field(default_factory=lambda: empty_table(PARTICLE_FIELDS))
    event_id: int = 0
    detector: str = ""

    @classmethod
    def from_columns(cls, hits: Mapping[str, np.ndarray],
                     clusters: Mapping[str, np.ndarray] | None = None,
                     particles: Mapping[str, np.ndarray] | None = None, *, event_id: int = 0,
                     detector: str = "", source: str | None = None,
                     validate: bool = True) -> "Event":
        """Build an event, casting columns to the schema dtypes.

        With ``validate`` (default) the event is checked by :meth:`validate`.
        """
        ev = cls(
            hits=_table(hits, HIT_FIELDS, "hits", optional=OPTIONAL_HIT_FIELDS,
                        source=source, event=event_id),
            clusters=_table(clusters if clusters is not None else empty_table(CLUSTER_FIELDS),
                            CLUSTER_FIELDS, "clusters", source=source, event=event_id),
            particles=_table(particles if particles is not None else empty_table(PARTICLE_FIELDS),
                             PARTICLE_FIELDS, "particles", source=source, event=event_id),
            event_id=int(event_id),
            detector=detector,
        )
        if validate:
            ev.validate(source=source)
        return ev

    @property
    def n_hits(self) -> int:
        return len(self.hits["energy"])

    @property
    def n_clusters(self) -> int:
        return len(self.clusters["energy"])

    def validate(self, *, source: str | None = None, allow_empty: bool = True) -> None:
        """Check values: finite floats, truth indices in range, non-empty if required.

        Raises:
            InvalidDataError: naming the column, the first bad hit and the event.
            EmptyEventError: if ``allow_empty`` is false and the event has no hits.
        """
        if not allow_empty and self.n_hits == 0:
            raise EmptyEventError("event has no hits", source=source, event=self.event_id)
        for key in _FLOAT_HIT_FIELDS:
            col = self.hits[key]
            bad = ~np.isfinite(col)
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise InvalidDataError(
                    f"hit column '{key}' has {int(bad.sum())} non-finite value(s), first at hit "
                    f"{i} ({col[i]})", source=source, event=self.event_id)
        tc = self.hits["truth_cluster"]
        if len(tc) and (tc.min() < -1 or tc.max() >= self.n_clusters):
            raise InvalidDataError(
                f"hit column 'truth_cluster' must lie in [-1, {self.n_clusters - 1}] "
                f"(the truth-cluster table has {self.n_clusters} rows), got range "
                f"[{tc.min()}, {tc.max()}]", source=source, event=self.event_id)
        for key in ("energy", "deposited"):
            col = self.clusters[key]
            if len(col) and not np.isfinite(col).all():
                raise InvalidDataError(f"cluster column '{key}' has non-finite values",
                                       source=source, event=self.event_id)

    def select_hits(self, mask: np.ndarray) -> "Event":
        """A copy keeping only the hits where ``mask`` is true (truth tables unchanged)."""
        return Event(hits={k: v[mask] for k, v in self.hits.items()},
                     clusters=dict(self.clusters), particles=dict(self.particles),
                     event_id=self.event_id, detector=self.detector)


def empty_table(schema: Mapping[str, np.dtype]) -> dict[str, np.ndarray]:
    """A table with every column of ``schema`` and zero rows."""
    return {k: np.zeros(0, dtype=d) for k, d in schema.items()}
