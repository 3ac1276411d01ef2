"""Neutral-hadron energy response and resolution of a clustering method.

Probes: simulated neutral hadrons (K0L and neutrons, also the generator hadrons mapped to
them) from the hard scatter with ``E_avail > 2 GeV``, alone in their truth cluster
(``n_particles == 1``) and isolated: no other simulated particle above 0.5 GeV within
dR < 0.3 of the impact point (about 3.5 HB towers; the PF clusters of neighbours would
otherwise be counted as response). Each probe's
reconstructed cluster is the cluster of the method that holds the largest share of the
probe's truth-cluster hit energy; the response is

    R = E_cluster / E_avail,   E_avail = E (K0L),  E - m_n (neutron: the kinetic energy, as
    the simulation showers baryons with it),

with EM-scale cluster energies (hadrons respond at ~ h/e < 1). Tables: median and IQR/1.349
of R in bins of |eta| (:mod:`caloreco.physics.stats`).
"""

from __future__ import annotations

import numpy as np

from caloreco.data.event import Event
from caloreco.physics.jets import delta_r

NEUTRAL_HADRONS = (130, 2112)  # K0L, neutron (simulation species)
NEUTRON_MASS = 0.93957  # GeV, PDG
PROBE_MIN_ENERGY = 2.0  # GeV of available energy
ISOLATION_DR = 0.3
ISOLATION_ENERGY = 0.5  # GeV


def _impact_eta_phi(p: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    x, y, z = (np.asarray(p[k], np.float64) for k in ("vx", "vy", "vz"))
    return np.arcsinh(z / np.maximum(np.hypot(x, y), 1e-12)), np.arctan2(y, x)


def neutral_hadron_probes(event: Event, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Per probe: ``eta``, ``e_avail`` [GeV] and ``e_reco`` [GeV] (0 if it left no hit)."""
    p, c, h = event.particles, event.clusters, event.hits
    cl = p["cluster"].astype(np.int64)
    probe = np.isin(p["pdg"], NEUTRAL_HADRONS) & ~p["is_pileup"] & (cl >= 0)
    probe[probe] &= c["n_particles"][cl[probe]] == 1
    energy_all = p["energy"].astype(np.float64)
    avail_all = np.where(p["pdg"] == 2112, energy_all - NEUTRON_MASS, energy_all)
    probe &= avail_all > PROBE_MIN_ENERGY
    eta_all, phi_all = _impact_eta_phi(p)
    cand = np.flatnonzero(probe)
    if len(cand):
        others = energy_all > ISOLATION_ENERGY
        dr = delta_r(eta_all[cand], phi_all[cand], eta_all[others], phi_all[others])
        dr[np.flatnonzero(others)[None, :] == cand[:, None]] = np.inf  # not itself
        probe[cand[(dr < ISOLATION_DR).any(axis=1)]] = False
    idx = np.flatnonzero(probe)
    truth = h["truth_cluster"].astype(np.int64)
    e = h["energy"].astype(np.float64)
    labels = np.asarray(labels, np.int64)
    e_reco = np.zeros(len(idx))
    for j, i in enumerate(idx):
        mine = (truth == cl[i]) & (labels >= 0)
        if not mine.any():
            continue
        ids, inv = np.unique(labels[mine], return_inverse=True)
        best = ids[np.argmax(np.bincount(inv, weights=e[mine]))]
        e_reco[j] = e[labels == best].sum()
    return {"eta": eta_all[idx], "e_avail": avail_all[idx], "e_reco": e_reco}
