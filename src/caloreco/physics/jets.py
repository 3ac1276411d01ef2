"""Anti-kt jets on clusters and on generator particles, matching, energy response.

Jets: anti-kt (Cacciari, Salam, Soyez, JHEP 04 (2008) 063) with R = 0.4 (the LHC standard),
E-scheme recombination, from ``fastjet`` (classic ``ClusterSequence`` over ``PseudoJet``).

* **Reco jets** cluster the massless four-vectors of one method's calorimeter clusters
  (:mod:`caloreco.physics.clusters`): EM-scale energies, no calibration, no pileup
  subtraction.
* **Gen jets** cluster the stable generator particles of the hard-scatter interaction,
  excluding neutrinos (invisible) and muons (MIPs in a calorimeter; CMS gen jets exclude
  neutrinos and, in the "NoNu"/"NoMuNoNu" variants, muons), with their momenta at the
  production vertex. Pileup particles are not in gen jets.
* **Matching**: each gen jet to the nearest reco jet with
  ``dR = sqrt(deta^2 + dphi^2) < 0.2`` (= R/2), one to one, closest pairs first.
* **Response** ``E_reco / E_gen`` of matched pairs; tables give its median and
  ``IQR / 1.349`` (:mod:`caloreco.physics.stats`) in bins of gen-jet pT and |eta|.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from caloreco.errors import MissingDependencyError

JET_R = 0.4  # anti-kt distance parameter of CMS/ATLAS standard jets
MATCH_DR = 0.2  # reco-gen matching radius, R / 2
GEN_JET_EXCLUDED = (12, 13, 14, 16)  # |pdg| left out of gen jets: neutrinos and muons


@dataclass
class Jets:
    """Jets of one event, ordered by decreasing pT. Shapes: J jets; GeV."""

    p4: np.ndarray  # (J, 4) px, py, pz, E
    n_constituents: np.ndarray  # (J,)

    def __len__(self) -> int:
        return len(self.p4)

    @property
    def pt(self) -> np.ndarray:
        return np.hypot(self.p4[:, 0], self.p4[:, 1])

    @property
    def energy(self) -> np.ndarray:
        return self.p4[:, 3]

    @property
    def eta(self) -> np.ndarray:
        return np.arcsinh(self.p4[:, 2] / np.maximum(self.pt, 1e-12))

    @property
    def phi(self) -> np.ndarray:
        return np.arctan2(self.p4[:, 1], self.p4[:, 0])


def antikt_jets(p4: np.ndarray, *, r: float = JET_R, pt_min: float = 0.0) -> Jets:
    """Anti-kt jets of the four-vectors ``p4`` (P, 4) = (px, py, pz, E) with pT > ``pt_min``."""
    try:
        import fastjet
    except ImportError:
        raise MissingDependencyError("fastjet", "jet clustering") from None
    p4 = np.asarray(p4, np.float64).reshape(-1, 4)
    if len(p4) == 0:
        return Jets(np.zeros((0, 4)), np.zeros(0, np.int64))
    inputs = [fastjet.PseudoJet(float(a), float(b), float(c), float(d)) for a, b, c, d in p4]
    seq = fastjet.ClusterSequence(inputs, fastjet.JetDefinition(fastjet.antikt_algorithm, r))
    jets = fastjet.sorted_by_pt(seq.inclusive_jets(pt_min))
    out = np.array([[j.px(), j.py(), j.pz(), j.E()] for j in jets]).reshape(-1, 4)
    n = np.array([len(j.constituents()) for j in jets], dtype=np.int64)
    return Jets(out, n)


def gen_jet_inputs(stable: Mapping[str, np.ndarray], *, include_pileup: bool = False) -> np.ndarray:
    """(P, 4) four-vectors of the gen-jet constituents (module docstring) of a
    :class:`~caloreco.generators.event.GeneratedEvent` ``stable`` table."""
    keep = ~np.isin(np.abs(stable["pdg"]), GEN_JET_EXCLUDED)
    if not include_pileup:
        keep &= stable["vertex"] == 0
    return np.column_stack([stable[k][keep] for k in ("px", "py", "pz", "e")]).astype(np.float64)


def delta_r(eta1: np.ndarray, phi1: np.ndarray, eta2: np.ndarray, phi2: np.ndarray) -> np.ndarray:
    """Pairwise ``dR`` (len1, len2) with dphi wrapped into [-pi, pi]."""
    deta = np.asarray(eta1)[:, None] - np.asarray(eta2)[None, :]
    dphi = np.angle(np.exp(1j * (np.asarray(phi1)[:, None] - np.asarray(phi2)[None, :])))
    return np.hypot(deta, dphi)


def match_jets(gen: Jets, reco: Jets, *, max_dr: float = MATCH_DR) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matches ``(gen index, reco index)`` with dR < ``max_dr``, closest first."""
    if len(gen) == 0 or len(reco) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    dr = delta_r(gen.eta, gen.phi, reco.eta, reco.phi)
    g, r = np.nonzero(dr < max_dr)
    order = np.argsort(dr[g, r], kind="stable")
    used_g, used_r, out_g, out_r = set(), set(), [], []
    for i in order:
        if g[i] in used_g or r[i] in used_r:
            continue
        used_g.add(g[i]), used_r.add(r[i])
        out_g.append(g[i]), out_r.append(r[i])
    return np.array(out_g, np.int64), np.array(out_r, np.int64)


def jet_pairs(gen: Jets, reco: Jets, *, max_dr: float = MATCH_DR) -> dict[str, np.ndarray]:
    """Per gen jet: its pT, eta, E and the matched reco jet's E and pT (NaN if unmatched)."""
    gi, ri = match_jets(gen, reco, max_dr=max_dr)
    e_reco = np.full(len(gen), np.nan)
    pt_reco = np.full(len(gen), np.nan)
    e_reco[gi] = reco.energy[ri]
    pt_reco[gi] = reco.pt[ri]
    return {"pt_gen": gen.pt, "eta_gen": gen.eta, "e_gen": gen.energy, "e_reco": e_reco, "pt_reco": pt_reco}
