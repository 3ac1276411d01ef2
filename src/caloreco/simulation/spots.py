"""Energy spots: the discrete deposits every shower model produces.

A spot is (particle, layer, lateral offset, energy): the shower model decides in which
layer's slab and how far from the shower axis a piece of energy is deposited; the
detector then places the spot on the layer surface and finds its cell.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from caloreco.geometry.detector import Detector


@dataclass
class Spots:
    """Columns of S spots: ``particle`` index, 0-based ``layer``, lateral offsets ``du, dv``
    [cm] in the plane transverse to the particle direction, EM-scale ``energy`` [GeV]."""

    particle: np.ndarray
    layer: np.ndarray
    du: np.ndarray
    dv: np.ndarray
    energy: np.ndarray

    @classmethod
    def empty(cls) -> "Spots":
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), np.zeros(0), np.zeros(0))

    @classmethod
    def concat(cls, parts: list["Spots"]) -> "Spots":
        parts = [p for p in parts if len(p.energy)] or [cls.empty()]
        return cls(*(np.concatenate([getattr(p, k) for p in parts]) for k in ("particle", "layer", "du", "dv", "energy")))

    def __len__(self) -> int:
        return len(self.energy)

    def select(self, mask: np.ndarray) -> "Spots":
        return Spots(self.particle[mask], self.layer[mask], self.du[mask], self.dv[mask], self.energy[mask])


def radial_offsets(radius: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Split radii into (du, dv) with a uniform azimuth."""
    alpha = rng.uniform(0.0, 2.0 * np.pi, size=radius.shape)
    return radius * np.cos(alpha), radius * np.sin(alpha)


def sample_lorentzian_radius(scale: np.ndarray, rng: np.random.Generator, u_max: float = 0.999) -> np.ndarray:
    """Radius r with density 2 r R^2 / (r^2 + R^2)^2 (Grindhammer-Peters radial component).

    The cumulative is F(r) = r^2 / (r^2 + R^2), so r = R sqrt(u / (1 - u)); ``u_max`` bounds
    the tail at R sqrt(u_max / (1 - u_max)) (31.6 R by default).
    """
    u = rng.uniform(0.0, u_max, size=scale.shape)
    return scale * np.sqrt(u / (1.0 - u))


def group_fluctuation(key: np.ndarray, energy: np.ndarray, stochastic: np.ndarray | float,
                      rng: np.random.Generator) -> np.ndarray:
    """Scale spot energies so that each group's sum fluctuates with variance a^2 E.

    The group sum E is replaced by a Gamma(E / a^2, a^2) variate: mean E, variance a^2 E, and
    additive over groups, so a shower summed over layers has sigma/E = a / sqrt(E) - the
    sampling term. ``stochastic`` (a, in sqrt(GeV)) is per spot; each group must share it.
    """
    if len(key) == 0:
        return energy
    uniq, inv = np.unique(key, return_inverse=True)
    e_group = np.bincount(inv, weights=energy, minlength=len(uniq))
    a2 = np.broadcast_to(np.asarray(stochastic, dtype=np.float64) ** 2, energy.shape)
    a2_group = np.zeros(len(uniq))
    a2_group[inv] = a2
    shape = e_group / np.maximum(a2_group, 1e-30)
    vis = np.where(a2_group > 0, rng.gamma(np.maximum(shape, 1e-12), a2_group), e_group)
    factor = np.where(e_group > 0, vis / np.maximum(e_group, 1e-30), 0.0)
    return energy * factor[inv]


def quantise_to_mips(spots: Spots, mip_gev: np.ndarray, rng: np.random.Generator) -> Spots:
    """Turn continuous spot energies into charged-track crossings of the active layer.

    A sensor sees energy only as tracks crossing it, each depositing ``x`` MIP with x drawn
    from the Landau-like distribution of :func:`~caloreco.simulation.mip.landau_like`
    (most probable value 1, mean ~1.43). A spot of EM-scale energy e in a layer whose MIP
    is worth m GeV gets k ~ Poisson(e / (<x> m)) crossings and energy m * sum(x): the
    expectation is unchanged, and the crossing statistics add the Poisson + Landau part
    of the sampling fluctuations. Spots with no crossing are dropped.
    """
    from caloreco.simulation.mip import MOYAL_MEAN, landau_like

    m = mip_gev[spots.layer]
    k = rng.poisson(spots.energy / (MOYAL_MEAN * m))
    keep = k > 0
    out = spots.select(keep)
    k = k[keep]
    total = k.sum()
    x = landau_like(int(total), rng)
    owner = np.repeat(np.arange(len(k)), k)
    out.energy = np.bincount(owner, weights=x, minlength=len(k)) * m[keep]
    return out


def place_spots(spots: Spots, detector: Detector, vertex: np.ndarray, direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cell row of each spot (-1 outside every cell) and the spot positions (S, 3).

    The spot sits where the particle's axis crosses its layer, displaced by (du, dv) along
    two unit vectors transverse to the particle direction.
    """
    if len(spots) == 0:
        return np.zeros(0, np.int64), np.zeros((0, 3))
    v = vertex[spots.particle]
    d = direction[spots.particle]
    pos = detector.crossing(v, d, spots.layer)
    u_vec, v_vec = detector.transverse_basis(d)
    pos = pos + spots.du[:, None] * u_vec + spots.dv[:, None] * v_vec
    ok = np.isfinite(pos).all(axis=1)
    rows = np.full(len(spots), -1, dtype=np.int64)
    rows[ok] = detector.lookup(pos[ok, 0], pos[ok, 1], pos[ok, 2], spots.layer[ok] + 1)
    return rows, pos
