"""The event simulator: particles -> shower spots -> cells -> digitised hits with truth."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from caloreco.data.event import ClusterType, Event
from caloreco.geometry.detector import Detector
from caloreco.simulation.digitisation import DigitisationParams, digitise
from caloreco.simulation.em_shower import EMShowerParams, em_spots
from caloreco.simulation.hadron_shower import HadronShowerParams, hadron_spots
from caloreco.simulation.mip import mip_spots
from caloreco.simulation.particles import GenParticles, ShowerKind, kind_of
from caloreco.simulation.spots import Spots, place_spots
from caloreco.simulation.truth import (
    CellContributions,
    TruthParams,
    cluster_type,
    merge_particles,
    top_contributors,
)

_BARYONS = {2112, -2112, 2212, -2212}  # showers get the kinetic energy only


@dataclass(frozen=True)
class SimulationConfig:
    """All physics and digitisation parameters of the fast simulation."""

    em: EMShowerParams = field(default_factory=EMShowerParams)
    hadron: HadronShowerParams = field(default_factory=HadronShowerParams)
    digi: DigitisationParams = field(default_factory=DigitisationParams)
    truth: TruthParams = field(default_factory=TruthParams)
    fluctuate: bool = True  # sampling fluctuations (off for generator-level studies)


@dataclass
class ShowerRecord:
    """Spots of one event plus per-particle facts the truth needs."""

    spots: Spots
    interacted: np.ndarray  # hadron had an inelastic interaction inside the calorimeter


class Simulator:
    """Fast shower simulation on any :class:`~caloreco.geometry.detector.Detector`."""

    def __init__(self, detector: Detector, config: SimulationConfig | None = None) -> None:
        self.detector = detector
        self.config = config or SimulationConfig()

    def shower(self, particles: GenParticles, rng: np.random.Generator) -> ShowerRecord:
        """Spots of every particle (before placing them on cells)."""
        det, cfg = self.detector, self.config
        layers = det.layers
        P = len(particles)
        interacted = np.zeros(P, dtype=bool)
        if P == 0:
            return ShowerRecord(Spots.empty(), interacted)
        dirs = particles.directions()
        pf = det.path_factor(particles.vertices(), dirs)
        kinds = kind_of(particles.pdg)
        index = np.arange(P)
        parts: list[Spots] = []

        em = kinds == ShowerKind.EM.value
        parts.append(em_spots(index[em], particles.energy[em], pf[em], particles.pdg[em] == 22,
                              np.zeros(em.sum()), layers, rng, cfg.em, fluctuate=cfg.fluctuate))

        mu = kinds == ShowerKind.MUON.value
        parts.append(mip_spots(index[mu], pf[mu], np.full(mu.sum(), len(layers)), layers, rng))

        had = kinds == ShowerKind.HADRON.value
        if had.any():
            h = index[had]
            depth = rng.exponential(1.0, size=len(h))  # first interaction [lambda_I along the path]
            layer_int = layers.layer_at_depth(depth / pf[h], unit="lambda")
            inter = layer_int >= 0
            interacted[h] = inter
            charged = np.array([abs(int(p)) not in (130, 2112) for p in particles.pdg[h]])
            n_mip = np.where(inter, layer_int, len(layers)) * charged
            parts.append(mip_spots(h, pf[h], n_mip, layers, rng))
            e_avail = particles.energy[h] - np.where(np.isin(particles.pdg[h], list(_BARYONS)), particles.mass()[h], 0.0)
            parts.append(hadron_spots(h[inter], e_avail[inter], pf[h][inter], depth[inter], layers, rng,
                                      cfg.hadron, fluctuate=cfg.fluctuate))
        return ShowerRecord(Spots.concat(parts), interacted)

    def simulate(self, particles: GenParticles, rng: np.random.Generator, *, event_id: int = 0) -> Event:
        """Simulate one event: showers, cells, digitisation and truth."""
        det, cfg = self.detector, self.config
        P = len(particles)
        record = self.shower(particles, rng)
        dirs = particles.directions() if P else np.zeros((0, 3))
        vertex = particles.vertices() if P else np.zeros((0, 3))
        rows, _ = place_spots(record.spots, det, vertex, dirs)
        inside = rows >= 0
        contrib = CellContributions.aggregate(rows[inside], record.spots.particle[inside],
                                              record.spots.energy[inside], max(P, 1))
        impact = det.crossing(vertex, dirs, np.zeros(P, dtype=np.int64)) if P else np.zeros((0, 3))
        comp = merge_particles(contrib, P, impact, cfg.truth) if P else np.zeros(0, np.int64)
        n_comp = int(comp.max()) + 1 if P else 1
        cl_contrib = CellContributions.aggregate(contrib.row, comp[contrib.who], contrib.energy, n_comp)
        cell_rows, cell_signal = cl_contrib.cell_totals()
        digis = digitise(det, cell_rows, cell_signal, cfg.digi, rng)
        top, frac, second, frac2 = top_contributors(cl_contrib, digis.rows)

        # truth clusters: components that are the largest contributor of at least one hit,
        # ordered by generated energy (descending)
        comp_energy = np.bincount(comp, weights=particles.energy, minlength=n_comp) if P else np.zeros(1)
        kept = np.unique(top[top >= 0])
        kept = kept[np.argsort(-comp_energy[kept], kind="stable")]
        new_index = np.full(n_comp, -1, dtype=np.int64)
        new_index[kept] = np.arange(len(kept))
        remap = lambda a: np.where(a >= 0, new_index[np.maximum(a, 0)], -1)  # noqa: E731
        truth = remap(top)
        truth2 = remap(second)

        in_hits = np.isin(cl_contrib.row, digis.rows)
        deposited = np.bincount(cl_contrib.who[in_hits], weights=cl_contrib.energy[in_hits], minlength=n_comp)
        clusters = self._cluster_table(particles, comp, kept, record.interacted, deposited)
        particle_cluster = remap(comp) if P else np.zeros(0, np.int64)

        c = det.cells
        order = np.argsort(c.cell_id[digis.rows], kind="stable")
        r = digis.rows[order]
        hits = {
            "x": c.x[r], "y": c.y[r], "z": c.z[r], "energy": digis.energy[order], "time": digis.time[order],
            "layer": c.layer[r], "cell_id": c.cell_id[r], "truth_cluster": truth[order],
            "energy_mip": digis.energy_mip[order], "cell_type": c.type[r], "truth_fraction": frac[order],
            "truth_energy": digis.signal[order], "truth_cluster2": truth2[order], "truth_fraction2": frac2[order],
        }
        parts = {"pdg": particles.pdg, "energy": particles.energy, "px": particles.px, "py": particles.py,
                 "pz": particles.pz, "vx": particles.vx, "vy": particles.vy, "vz": particles.vz,
                 "cluster": particle_cluster, "is_pileup": particles.is_pileup}
        return Event.from_columns(hits, clusters, parts, event_id=event_id, detector=det.name)

    @staticmethod
    def _cluster_table(particles: GenParticles, comp: np.ndarray, kept: np.ndarray, interacted: np.ndarray,
                       deposited: np.ndarray) -> dict[str, np.ndarray]:
        kinds = kind_of(particles.pdg) if len(particles) else np.zeros(0, object)
        cat = np.where(kinds == ShowerKind.EM.value, ClusterType.EM,
                       np.where((kinds == ShowerKind.HADRON.value) & interacted, ClusterType.HAD, ClusterType.MIP))
        rows = {k: [] for k in ("energy", "deposited", "type", "pdg", "px", "py", "pz", "n_particles", "is_pileup")}
        for k in kept:
            members = np.flatnonzero(comp == k)
            lead = members[np.argmax(particles.energy[members])]
            rows["energy"].append(particles.energy[members].sum())
            rows["deposited"].append(deposited[k])
            rows["type"].append(int(cluster_type([ClusterType(int(x)) for x in cat[members]])))
            rows["pdg"].append(particles.pdg[lead])
            rows["px"].append(particles.px[members].sum())
            rows["py"].append(particles.py[members].sum())
            rows["pz"].append(particles.pz[members].sum())
            rows["n_particles"].append(len(members))
            rows["is_pileup"].append(bool(particles.is_pileup[members].all()))
        return {k: np.asarray(v) for k, v in rows.items()}
