"""Clusters of any clustering method as massless four-vectors.

Every method gives per-hit cluster ids (``-1``: noise/unclustered;
:class:`caloreco.evaluation.methods.Method`). A cluster's energy is the sum of its hits'
energies (EM scale, no hadronic calibration), its position the energy-weighted centroid
``x_k = sum_i E_i x_i / sum_i E_i``; its four-momentum is massless, along the line from the
beam spot to the centroid:

    p_k = E_k (x_k - b) / |x_k - b|,   E = |p|.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

BEAM_SPOT = (0.0, 0.0, 0.0)  # cm; the simulated luminous region is centred at the origin


@dataclass
class Clusters:
    """Clusters of one event. Shapes: K clusters; energies in GeV, positions in cm."""

    energy: np.ndarray
    x: np.ndarray
    y: np.ndarray
    z: np.ndarray

    def __len__(self) -> int:
        return len(self.energy)

    def four_momenta(self, beam_spot: tuple[float, float, float] = BEAM_SPOT) -> np.ndarray:
        """(K, 4) massless ``(px, py, pz, E)`` from the beam spot to each centroid."""
        d = np.stack([self.x - beam_spot[0], self.y - beam_spot[1], self.z - beam_spot[2]], axis=1)
        d = d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
        return np.column_stack([self.energy[:, None] * d, self.energy])

    def eta_phi(self, beam_spot: tuple[float, float, float] = BEAM_SPOT) -> tuple[np.ndarray, np.ndarray]:
        p = self.four_momenta(beam_spot)
        pt = np.hypot(p[:, 0], p[:, 1])
        return np.arcsinh(p[:, 2] / np.maximum(pt, 1e-12)), np.arctan2(p[:, 1], p[:, 0])


def clusters_from_labels(hits: Mapping[str, np.ndarray], labels: np.ndarray) -> tuple[Clusters, np.ndarray]:
    """Clusters of per-hit ``labels`` and, per hit, the row of its cluster (-1: none).

    Shapes: N hits -> K clusters (one per distinct label >= 0, in increasing label order).
    """
    labels = np.asarray(labels, np.int64)
    keep = labels >= 0
    ids, inv = np.unique(labels[keep], return_inverse=True)
    row = np.full(len(labels), -1, np.int64)
    row[keep] = inv
    k = len(ids)
    e = np.asarray(hits["energy"], np.float64)[keep]
    energy = np.bincount(inv, weights=e, minlength=k)
    norm = np.maximum(energy, 1e-12)
    pos = [np.bincount(inv, weights=e * np.asarray(hits[c], np.float64)[keep], minlength=k) / norm
           for c in ("x", "y", "z")]
    return Clusters(energy, *pos), row
