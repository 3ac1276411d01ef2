"""Hit encoding of the HCAL-like barrel: eta-phi towers read out in depths.

The HGCAL :class:`~caloreco.models.encoding.HitEncoding` voxelises in x, y (0.7 cm) and
layer; the barrel's cells are projective eta-phi towers of 0.087 x 0.087 on cylinders of
different radii (:mod:`caloreco.geometry.hcal`), so the natural grid is (ieta, iphi, depth).
Same interface (``features``, ``points``, ``n_features``, ``to_dict``), so the networks,
the trainer, :class:`~caloreco.clustering.model_clustering.ModelClusterer` and serving
read it unchanged; it is stored in checkpoints as ``{"kind": "hcal", ...}``
(:func:`caloreco.models.encoding.encoding_from_dict`).

Features (F = 7), each of order one; eta and phi of a hit are those of the direction from
the origin to its position (the tower centre for simulated hits):

==========  =========================================================================
energy      ``log(E / 0.1 GeV) / 3``, E the hit energy [GeV] floored at 1 keV (0 at the
            lowest HB zero-suppression threshold, 0.1 GeV in depth 1; 1.5 at 9 GeV)
eta         ``eta / 1.305`` (HB acceptance: 15 towers of 0.087)
cos, sin    ``cos(phi)``, ``sin(phi)``: continuous across phi = 0 / 2 pi
depth       ``(layer - 1) / 3`` (the 4 Run-3 HB depths -> 0..1)
time        ``(t - r / c)`` [ns], clipped to [-5, 5]: time after a prompt photon's arrival
occupancy   1 for every hit: the sparse convolutions have no bias, so the stem counts
            occupied neighbours through it (the one-hot cell type of the HGCAL encoding
            plays this role there; every barrel cell has the same type)
==========  =========================================================================

Voxel positions: ``((eta - eta_origin) / voxel_eta, ((phi - phi_origin) mod 2 pi) /
voxel_phi, (layer - 1/2) / depths_per_voxel)``. With the defaults (``voxel_eta`` = 0.087,
``voxel_phi`` = 2 pi / 72, ``eta_origin`` = -1.305, ``phi_origin`` = 0) every tower centre
sits in the middle of a voxel of its own, the voxel indices are (ieta + 15 or ieta + 14,
iphi - 1, depth - 1) and neighbouring towers are neighbouring voxels. ``voxel_phi`` is the
exact tower pitch 2 pi / 72 = 0.08727, not 0.087: with 0.087 the 72 towers would span 72.2
voxels and one pair of adjacent towers would land two voxels apart.

Phi periodicity: the voxel grid is cut at ``phi_origin`` and the sparse convolutions do not
wrap, so towers on either side of the cut (iphi 72 and 1 with the defaults) are not voxel
neighbours; 1 of the 72 tower boundaries in phi. The point features (cos, sin) are
continuous across it, and the point branch and the clustering space see both sides. Not
fixed by moving the cut per event (into the largest empty phi gap): the server encodes the
hits of several events of a request together, and every consumer must see the same points
for the same hits. Duplicating hits across the cut would break the one-point-per-hit
interface.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping

import numpy as np

from caloreco.errors import ConfigError, InvalidDataError
from caloreco.models.encoding import C_CM_PER_NS, REQUIRED_COLUMNS, project_positions

#: Scales of the features: HB acceptance |eta| < 15 x 0.087, 4 Run-3 depths.
ETA_SCALE = 1.305
#: HB inner radius [cm] (CMS HCAL TDR; caloreco.geometry.hcal): the reference cylinder of
#: HcalEncoding.projected_positions.
INNER_RADIUS_CM = 177.7
N_DEPTHS = 4


@dataclass(frozen=True)
class HcalEncoding:
    """How barrel HCAL hits become model inputs (see the module docstring).

    Args:
        voxel_eta: voxel size in eta (default 0.087, one HB tower).
        voxel_phi: voxel size in phi [rad] (default 2 pi / 72, one HB tower exactly).
        eta_origin: lower eta edge of the voxel grid (default -1.305, the HB edge); hits
            below it are rejected.
        phi_origin: phi of the grid's cut [rad] (default 0, between iphi 72 and 1).
        depths_per_voxel: longitudinal voxel size in depths (default 1).
        kind: the encoding's registry name, always ``"hcal"`` (stored in checkpoints).
    """

    voxel_eta: float = 0.087
    voxel_phi: float = 2.0 * math.pi / 72
    eta_origin: float = -1.305
    phi_origin: float = 0.0
    depths_per_voxel: float = 1.0
    kind: str = "hcal"

    def __post_init__(self) -> None:
        if self.kind != "hcal":
            raise ConfigError(f"HcalEncoding has kind 'hcal', got kind='{self.kind}'")
        if not (self.voxel_eta > 0 and self.voxel_phi > 0 and self.depths_per_voxel > 0):
            raise ConfigError(f"voxel sizes must be > 0, got voxel_eta={self.voxel_eta}, "
                              f"voxel_phi={self.voxel_phi}, depths_per_voxel={self.depths_per_voxel}")
        if not all(math.isfinite(v) for v in (self.eta_origin, self.phi_origin)):
            raise ConfigError(f"eta_origin and phi_origin must be finite, got {self.eta_origin}, "
                              f"{self.phi_origin}")

    @property
    def n_features(self) -> int:
        return 7

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def _check(self, hits: Mapping[str, np.ndarray]) -> None:
        missing = [c for c in REQUIRED_COLUMNS if c not in hits]
        if missing:
            raise InvalidDataError(f"hits lack column(s) {missing} needed by the HCAL hit encoding")
        for c in ("energy", "x", "y", "z", "time"):
            if not np.isfinite(hits[c]).all():
                i = int(np.flatnonzero(~np.isfinite(hits[c]))[0])
                raise InvalidDataError(f"hit column '{c}' is not finite at hit {i} ({hits[c][i]})")
        rho = np.hypot(hits["x"], hits["y"])
        if len(rho) and not (rho > 0).all():
            i = int(np.flatnonzero(~(rho > 0))[0])
            raise InvalidDataError(f"hit {i} lies on the beam axis (x = y = 0): no eta, phi")

    @staticmethod
    def _eta_phi(hits: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        x, y, z = (np.asarray(hits[c], np.float64) for c in ("x", "y", "z"))
        return np.arcsinh(z / np.hypot(x, y)), np.arctan2(y, x)

    def features(self, hits: Mapping[str, np.ndarray]) -> np.ndarray:
        """float32 ``[N, 7]`` input features (see the module docstring)."""
        self._check(hits)
        eta, phi = self._eta_phi(hits)
        x, y, z = (np.asarray(hits[c], np.float64) for c in ("x", "y", "z"))
        r = np.sqrt(x * x + y * y + z * z)
        out = np.empty((len(eta), self.n_features), np.float32)
        out[:, 0] = np.log(np.maximum(np.asarray(hits["energy"], np.float64), 1e-6) / 0.1) / 3.0
        out[:, 1] = eta / ETA_SCALE
        out[:, 2] = np.cos(phi)
        out[:, 3] = np.sin(phi)
        out[:, 4] = (np.asarray(hits["layer"], np.float64) - 1.0) / (N_DEPTHS - 1)
        out[:, 5] = np.clip(np.asarray(hits["time"], np.float64) - r / C_CM_PER_NS, -5.0, 5.0)
        out[:, 6] = 1.0  # occupancy
        return out

    def points(self, hits: Mapping[str, np.ndarray]) -> np.ndarray:
        """float32 ``[N, 3]`` positions in voxel units (hit in voxel ``floor(p)``):
        (eta, phi from ``phi_origin`` in [0, 2 pi), depth)."""
        self._check(hits)
        eta, phi = self._eta_phi(hits)
        i = (eta - self.eta_origin) / self.voxel_eta
        j = np.mod(phi - self.phi_origin, 2.0 * math.pi) / self.voxel_phi
        k = (np.asarray(hits["layer"], np.float64) - 0.5) / self.depths_per_voxel
        p = np.stack([i, j, k], 1)
        if len(p) and p.min() < 0:
            h = int(np.argmin(p.min(1)))
            raise InvalidDataError(f"hit {h} at eta {eta[h]:.4f}, layer {hits['layer'][h]} lies "
                                   f"below the voxel grid origin (eta_origin {self.eta_origin})")
        return p.astype(np.float32)

    def projected_positions(self, hits: Mapping[str, np.ndarray]) -> np.ndarray:
        """float32 ``[N, 3]`` hit positions moved along their line of flight from the origin
        onto the HB inner cylinder, ``(x, y, z) * r_in / rho`` with ``r_in`` =
        :data:`INNER_RADIUS_CM`: distances between them are distances on that cylinder
        (``r_in dphi`` around it, ``r_in dsinh(eta)`` along it). The positions of the
        locality cut of :func:`~caloreco.clustering.condensation.condensation_clustering`."""
        self._check(hits)
        return project_positions(hits, "rho", INNER_RADIUS_CM)
