"""Per-hit truth and truth clusters.

Every spot remembers its particle, so each cell knows how much energy each particle left in
it. Particles whose showers cannot be told apart are merged into one truth cluster (as in
the GravNet/object-condensation HGCAL data set): two particles merge when the energy they
share cell by cell, sum_c min(E_pc, E_qc), exceeds ``merge_shared_fraction`` of the smaller
particle's deposit, or when their axes enter the first layer closer than
``merge_distance_cm``. A hit's truth cluster is its largest contributor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from caloreco.data.event import ClusterType
from caloreco.errors import ConfigError


@dataclass(frozen=True)
class TruthParams:
    merge_shared_fraction: float = 0.3  # shared-energy fraction above which showers merge
    merge_distance_cm: float = 0.0  # merge particles entering closer than this (0: off)


#: ``merge_shared_fraction`` that never merges: shared energy never exceeds the smaller
#: deposit, so with a fraction > 1 every particle is its own truth cluster.
NO_MERGE = 2.0
#: Truth definitions selectable at simulation time: ``merged`` particle showers (default) or
#: ``particle``, one truth cluster per particle (a hit's truth is its dominant particle).
TRUTH_DEFINITIONS = ("merged", "particle")


def truth_params(definition: str, merge_shared_fraction: float = 0.3) -> TruthParams:
    """:class:`TruthParams` of a truth definition (:data:`TRUTH_DEFINITIONS`)."""
    if definition not in TRUTH_DEFINITIONS:
        raise ConfigError(f"unknown truth definition '{definition}'; choose one of {list(TRUTH_DEFINITIONS)}")
    return TruthParams(merge_shared_fraction=NO_MERGE if definition == "particle" else merge_shared_fraction)


@dataclass
class CellContributions:
    """Energy of each (cell, contributor) pair; ``row`` sorted, within a row energy descending."""

    row: np.ndarray
    who: np.ndarray
    energy: np.ndarray

    @classmethod
    def aggregate(cls, row: np.ndarray, who: np.ndarray, energy: np.ndarray, n_who: int) -> "CellContributions":
        key = row.astype(np.int64) * n_who + who
        uniq, inv = np.unique(key, return_inverse=True)
        e = np.bincount(inv, weights=energy, minlength=len(uniq))
        r, w = uniq // n_who, uniq % n_who
        order = np.lexsort((-e, r))
        return cls(r[order], w[order], e[order])

    def cell_totals(self) -> tuple[np.ndarray, np.ndarray]:
        """Unique rows and their summed energy."""
        rows, start = np.unique(self.row, return_index=True)
        return rows, np.add.reduceat(self.energy, start) if len(start) else np.zeros(0)


def merge_particles(contrib: CellContributions, n_particles: int, impact: np.ndarray,
                    params: TruthParams) -> np.ndarray:
    """Connected-component label of each particle under the merge rule."""
    total = np.bincount(contrib.who, weights=contrib.energy, minlength=n_particles)
    src, dst, shared = [], [], []
    n = len(contrib.row)
    d = 1
    while d < n:
        same = contrib.row[d:] == contrib.row[:-d]
        if not same.any():
            break
        i = np.flatnonzero(same)
        src.append(contrib.who[i])
        dst.append(contrib.who[i + d])
        shared.append(np.minimum(contrib.energy[i], contrib.energy[i + d]))
        d += 1
    edges_a: list[np.ndarray] = []
    edges_b: list[np.ndarray] = []
    if src:
        s, t, e = np.concatenate(src), np.concatenate(dst), np.concatenate(shared)
        m = coo_matrix((e, (s, t)), shape=(n_particles, n_particles)).tocsr()
        m = (m + m.T).tocoo()
        smaller = np.minimum(total[m.row], total[m.col])
        ok = m.data > params.merge_shared_fraction * np.maximum(smaller, 1e-12)
        edges_a.append(m.row[ok])
        edges_b.append(m.col[ok])
    if params.merge_distance_cm > 0 and n_particles > 1:
        dist = np.linalg.norm(impact[:, None, :2] - impact[None, :, :2], axis=-1)
        a, b = np.nonzero((dist < params.merge_distance_cm) & np.isfinite(dist))
        edges_a.append(a)
        edges_b.append(b)
    if not edges_a:
        return np.arange(n_particles)
    a, b = np.concatenate(edges_a), np.concatenate(edges_b)
    graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(n_particles, n_particles))
    return connected_components(graph, directed=False)[1]


def cluster_type(categories: list[ClusterType]) -> ClusterType:
    """EM/HAD/MIP when all merged particles share a category, MIX otherwise."""
    return categories[0] if len(set(categories)) == 1 else ClusterType.MIX


def top_contributors(contrib: CellContributions, rows: np.ndarray) -> tuple[np.ndarray, ...]:
    """For each of ``rows``: (top, fraction, second, fraction2); -1/0 where absent."""
    cell_rows, first = np.unique(contrib.row, return_index=True)
    totals = np.add.reduceat(contrib.energy, first) if len(first) else np.zeros(0)
    counts = np.diff(np.append(first, len(contrib.row)))
    pos = np.searchsorted(cell_rows, rows)
    pos_c = np.minimum(pos, max(len(cell_rows) - 1, 0))
    has = (len(cell_rows) > 0) & (cell_rows[pos_c] == rows) if len(cell_rows) else np.zeros(len(rows), bool)
    top = np.full(len(rows), -1, np.int64)
    frac = np.zeros(len(rows))
    second = np.full(len(rows), -1, np.int64)
    frac2 = np.zeros(len(rows))
    if has.any():
        f = first[pos_c[has]]
        tot = np.maximum(totals[pos_c[has]], 1e-30)
        top[has] = contrib.who[f]
        frac[has] = contrib.energy[f] / tot
        two = counts[pos_c[has]] > 1
        idx = np.flatnonzero(has)[two]
        second[idx] = contrib.who[f[two] + 1]
        frac2[idx] = contrib.energy[f[two] + 1] / tot[two]
    return top, frac, second, frac2
