"""Truth definitions for HCAL clustering targets: particle, merged, PF clusters."""

from __future__ import annotations

import numpy as np
import pytest

from caloreco.clustering.pf import pf_cluster
from caloreco.errors import ConfigError
from caloreco.geometry.registry import make_detector
from caloreco.physics.targets import hit_targets, pf_targets, with_pf_targets
from caloreco.simulation.particles import GenParticles
from caloreco.simulation.simulator import SimulationConfig, Simulator
from caloreco.simulation.truth import NO_MERGE, truth_params


def _event(definition: str = "merged"):
    det = make_detector("hcal-barrel")
    # an overlapping pi+ / photon pair and an isolated K0L
    parts = GenParticles.from_eta_phi(np.array([211, 22, 130]), np.array([50.0, 20.0, 30.0]),
                                      np.array([0.30, 0.33, -0.8]), np.array([0.50, 0.52, 2.0]))
    sim = Simulator(det, SimulationConfig(truth=truth_params(definition)))
    return sim.simulate(parts, np.random.default_rng(7)), det


def test_pf_targets_are_the_largest_fraction_cluster() -> None:
    ev, det = _event()
    labels, frac = pf_targets(ev, det)
    res = pf_cluster(ev, det)
    np.testing.assert_array_equal(labels, res.cluster_id)
    assert labels.max() >= 1  # at least the K0L and the pi+/gamma pair
    assigned = labels >= 0
    assert ((frac[assigned] > 0) & (frac[assigned] <= 1)).all() and (frac[~assigned] == 0).all()
    assert hit_targets(ev, "pf", det).tolist() == labels.tolist()
    assert hit_targets(ev, "merged").tolist() == ev.hits["truth_cluster"].tolist()


def test_event_with_pf_targets() -> None:
    ev, det = _event()
    pf = with_pf_targets(ev, det)
    labels, _ = pf_targets(ev, det)
    assert pf.n_clusters == len(np.unique(labels[labels >= 0]))
    tc = pf.hits["truth_cluster"]
    for k in range(pf.n_clusters):
        assert pf.clusters["energy"][k] == pytest.approx(pf.hits["energy"][tc == k].sum(), rel=1e-5)
    # hits with the same PF target have the same new truth and vice versa
    assert len({(int(a), int(b)) for a, b in zip(labels, tc)}) == pf.n_clusters + int((labels < 0).any())
    big = pf.clusters["energy"] > 2.0  # small PF clusters may be made of noise hits only (no particle)
    assert (pf.clusters["n_particles"][big] >= 1).all() and big.sum() >= 2
    # the K0L cluster (at eta -0.8) is a hadron shower of pdg 130
    z = np.array([pf.hits["z"][tc == k].mean() for k in range(pf.n_clusters)])
    assert pf.clusters["pdg"][np.argmin(z)] == 130


def test_particle_truth_never_merges() -> None:
    assert truth_params("particle").merge_shared_fraction == NO_MERGE > 1.0
    assert truth_params("merged").merge_shared_fraction == pytest.approx(0.3)
    ev_p, _ = _event("particle")
    ev_m, _ = _event("merged")
    assert (ev_p.clusters["n_particles"] == 1).all()
    assert ev_p.n_clusters >= ev_m.n_clusters
    assert ev_p.clusters["n_particles"].sum() == ev_m.clusters["n_particles"].sum()  # same particles left hits
    with pytest.raises(ConfigError, match="truth definition"):
        truth_params("pf")
    with pytest.raises(ConfigError, match="target definition"):
        hit_targets(ev_p, "cells")
    with pytest.raises(ConfigError, match="detector"):
        hit_targets(ev_p, "pf")
