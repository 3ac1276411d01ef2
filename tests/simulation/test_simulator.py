"""Simulator mechanics: determinism, noise, truth merging, presets, input checks."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import ndtr

from caloreco.data.event import ClusterType
from caloreco.errors import ConfigError
from caloreco.geometry.registry import make_detector
from caloreco.simulation import DTauConfig, GenParticles, GunConfig, Simulator, make_generator


@pytest.fixture(scope="module")
def hgcal():
    return make_detector("hgcal")


def _event(sim, gen, seed):
    rng = np.random.default_rng(seed)
    return sim.simulate(gen.generate(rng), rng)


def test_same_seed_same_event_other_seed_differs(hgcal):
    sim, gen = Simulator(hgcal), make_generator("dtau")
    a, b, c = _event(sim, gen, [1, 2]), _event(sim, gen, [1, 2]), _event(sim, gen, [1, 3])
    for k in a.hits:
        np.testing.assert_array_equal(a.hits[k], b.hits[k])
    assert a.n_hits != c.n_hits or not np.array_equal(a.hits["energy"], c.hits["energy"])


def test_noise_only_event_fires_at_the_rate_the_threshold_implies(hgcal):
    sim = Simulator(hgcal)
    empty = GenParticles.from_eta_phi(np.zeros(0, int), np.zeros(0), np.zeros(0), np.zeros(0))
    rng = np.random.default_rng(0)
    ev = sim.simulate(empty, rng)
    expected = ndtr(-3.0) * len(hgcal.cells)
    assert abs(ev.n_hits - expected) < 5 * np.sqrt(expected)
    assert (ev.hits["truth_cluster"] == -1).all() and ev.n_clusters == 0
    # every noise hit is above 3 sigma of its cell's noise
    rows = hgcal.cells.rows(ev.hits["cell_id"])
    sigma_gev = hgcal.noise_mip(rows) * hgcal.mip_gev(rows)
    assert (ev.hits["energy"] > 3.0 * sigma_gev * (1 - 1e-5)).all()
    assert (ev.hits["truth_energy"] == 0).all()


def test_higher_threshold_fewer_noise_hits(hgcal):
    from dataclasses import replace

    from caloreco.simulation import SimulationConfig

    cfg = SimulationConfig()
    strict = replace(cfg, digi=replace(cfg.digi, threshold_sigma=4.0))
    empty = GenParticles.from_eta_phi(np.zeros(0, int), np.zeros(0), np.zeros(0), np.zeros(0))
    n3 = Simulator(hgcal, cfg).simulate(empty, np.random.default_rng(1)).n_hits
    n4 = Simulator(hgcal, strict).simulate(empty, np.random.default_rng(1)).n_hits
    assert n4 < n3 / 10


def test_hit_positions_are_cell_centres_and_ids_are_known(hgcal):
    ev = _event(Simulator(hgcal), make_generator("dtau"), [4, 0])
    rows = hgcal.cells.rows(ev.hits["cell_id"])
    np.testing.assert_array_equal(ev.hits["x"], hgcal.cells.x[rows])
    np.testing.assert_array_equal(ev.hits["layer"], hgcal.cells.layer[rows])
    assert len(np.unique(ev.hits["cell_id"])) == ev.n_hits
    # time of flight from the origin: > 10 ns at z > 3.2 m
    assert np.median(ev.hits["time"]) > 10.0


def test_overlapping_photons_merge_and_separated_ones_do_not(hgcal):
    sim = Simulator(hgcal)
    close = GunConfig(particle="gamma", energy=50.0, eta=2.2, phi=0.5, n_particles=2, close_by_cm=0.5)
    far = GunConfig(particle="gamma", energy=50.0, eta=(2.0, 2.0), phi=(0.5, 2.5), n_particles=2)
    ev_close = _event(sim, close, [2, 0])
    assert ev_close.n_clusters == 1 and ev_close.clusters["n_particles"][0] == 2
    assert ev_close.clusters["type"][0] == ClusterType.EM
    ev_far = _event(sim, far, [2, 1])
    assert ev_far.n_clusters == 2
    assert set(ev_far.particles["cluster"].tolist()) == {0, 1}


def test_merge_by_distance_types_mixed_clusters_mix(hgcal):
    from dataclasses import replace

    from caloreco.simulation import SimulationConfig

    cfg = SimulationConfig()
    cfg = replace(cfg, truth=replace(cfg.truth, merge_distance_cm=2.0))
    parts = GenParticles.from_eta_phi(np.array([22, 211]), np.array([40.0, 40.0]), np.array([2.2, 2.2]),
                                      np.array([0.5, 0.501]))
    ev = Simulator(hgcal, cfg).simulate(parts, np.random.default_rng(0))
    assert ev.n_clusters == 1
    assert ev.clusters["type"][0] == ClusterType.MIX and ev.clusters["n_particles"][0] == 2
    assert ev.clusters["pdg"][0] in (22, 211)


def test_truth_fractions_and_deposits_are_consistent(hgcal):
    ev = _event(Simulator(hgcal), make_generator("dtau"), [6, 0])
    h = ev.hits
    signal = h["truth_cluster"] >= 0
    assert ((h["truth_fraction"] > 0) & (h["truth_fraction"] <= 1 + 1e-6))[signal].all()
    assert (h["truth_fraction"][signal] + h["truth_fraction2"][signal] <= 1 + 1e-5).all()
    assert (h["truth_fraction"][signal] >= h["truth_fraction2"][signal]).all()
    # each cluster's deposited energy is at least the energy it dominates
    dom = np.bincount(h["truth_cluster"][signal], weights=h["truth_energy"][signal] * h["truth_fraction"][signal],
                      minlength=ev.n_clusters)
    assert (ev.clusters["deposited"] >= dom * (1 - 1e-4)).all()
    # clusters ordered by generated energy, particles point at existing clusters
    assert (np.diff(ev.clusters["energy"]) <= 1e-4).all()
    assert ev.particles["cluster"].max() < ev.n_clusters


def test_dtau_preset_size(hgcal):
    sim, gen = Simulator(hgcal), DTauConfig()
    n_particles, n_hits = [], []
    for i in range(8):
        ev = _event(sim, gen, [10, i])
        n_particles.append(len(ev.particles["pdg"]))
        n_hits.append(ev.n_hits)
    # O(10) particles and ~10-20k hits per endcap event (GravNet/object-condensation data set)
    assert 6 <= np.mean(n_particles) <= 20
    assert 7_000 <= np.mean(n_hits) <= 20_000


def test_pileup_adds_soft_particles(hgcal):
    gen = make_generator("dtau", pileup=make_generator("dtau").pileup.__class__(mean=50.0))
    rng = np.random.default_rng(3)
    parts = gen.generate(rng)
    assert 25 < parts.is_pileup.sum() < 80
    ev = Simulator(hgcal).simulate(parts, rng)
    pu = ev.clusters["is_pileup"]
    assert pu.any() and (~pu).any()


@pytest.mark.parametrize("particle", ["e+", "gamma", "pi-", "K+", "K0L", "n", "p", "mu+"])
def test_every_species_showers(hgcal, particle):
    ev = _event(Simulator(hgcal), GunConfig(particle=particle, energy=30.0, eta=2.0), [1, 1])
    assert ev.n_clusters >= 1
    assert ev.clusters["deposited"].sum() > 0.5


def test_bad_generator_options_are_config_errors():
    with pytest.raises(ConfigError, match="unknown particle"):
        GunConfig(particle="graviton")
    with pytest.raises(ConfigError, match="no option"):
        make_generator("gun", temperature=3)
    with pytest.raises(ConfigError, match="unknown preset"):
        make_generator("ttbar")
    with pytest.raises(ConfigError, match="upper edge"):
        GunConfig(energy=(50.0, 10.0)).generate(np.random.default_rng(0))


def test_barrel_hcal_simulation():
    # the same shower models run on the HCAL-like barrel: electrons at the EM scale, pions
    # with the HB-like resolution (~100-115 %/sqrt(E), physics-reference.md)
    hb = make_detector("hcal-barrel")
    sim = Simulator(hb)
    sums = {}
    for name in ("e-", "pi+"):
        gun = GunConfig(particle=name, energy=50.0, eta=(-1.0, 1.0))
        s = []
        for i in range(60):
            ev = _event(sim, gun, [21, i])
            s.append(ev.hits["energy"][ev.hits["truth_cluster"] >= 0].sum())
        sums[name] = np.array(s)
    assert abs(sums["e-"].mean() / 50.0 - 1.0) < 0.05
    rel = sums["pi+"].std() / sums["pi+"].mean()
    assert 0.08 < rel < 0.25  # a ~ 60-175 % at 50 GeV
    assert sums["e-"].mean() > sums["pi+"].mean()
