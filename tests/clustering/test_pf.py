"""Tests of the CMS particle-flow clustering: hand-computed fractions, thresholds, seeding
rules, barrel navigation, depth merging, simulated pions, energy conservation, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from caloreco.clustering.pf import PFParams, PFResult, pf_cluster
from caloreco.errors import ConfigError, InvalidDataError
from caloreco.geometry.hcal import encode_tower_id
from caloreco.geometry.registry import make_detector

SIGMA2 = 10.0**2  # showerSigma^2 [cm^2]


@pytest.fixture(scope="module")
def hb():
    return make_detector("hcal-barrel")


def _hits(det, towers):
    """Hit columns for (depth, ieta, iphi, energy) tuples, at the cell centres."""
    depth, ieta, iphi, energy = (np.array(v) for v in zip(*towers))
    ids = encode_tower_id(depth, ieta, iphi)
    rows = det.cells.index_of(ids)
    assert (rows >= 0).all()
    c = det.cells
    return {"x": c.x[rows], "y": c.y[rows], "z": c.z[rows], "energy": energy.astype(np.float64),
            "layer": depth, "cell_id": ids}


def _xyz(hits):
    return np.column_stack([hits["x"], hits["y"], hits["z"]]).astype(np.float64)


def _frac(r: PFResult, hit: int, cluster: int) -> float:
    f = r.fractions
    sel = (f.hit_index == hit) & (f.cluster_index == cluster)
    return float(f.fraction[sel].sum())


def _cluster_of_seed(r: PFResult, hit: int) -> int:
    return int(np.flatnonzero(r.seed_hit == hit)[0])


# ---------------------------------------------------------------------------- energy sharing
def test_two_seed_fractions_energies_and_positions_by_hand(hb):
    # depth 1, one eta row: 5 | 1 | 0.8 | 3 GeV; seeds at both ends
    hits = _hits(hb, [(1, 3, 10, 5.0), (1, 3, 11, 1.0), (1, 3, 12, 0.8), (1, 3, 13, 3.0)])
    r = pf_cluster(hits, hb, params=PFParams(max_iterations=1, merge_depths=False))
    assert r.is_seed.tolist() == [True, False, False, True]
    assert r.n_clusters == 2 and (r.topo_id == 0).all() and r.n_iterations.tolist() == [1]
    a, b = _cluster_of_seed(r, 0), _cluster_of_seed(r, 3)
    # one iteration: clusters still at their seeds, with the seed energies
    xyz, e = _xyz(hits), hits["energy"]
    g = lambda i, s: np.exp(-((xyz[i] - xyz[s]) ** 2).sum() / (2 * SIGMA2))  # noqa: E731
    f_a = {i: 5.0 * g(i, 0) / (5.0 * g(i, 0) + 3.0 * g(i, 3)) for i in (1, 2)}
    for i in (1, 2):
        assert _frac(r, i, a) == pytest.approx(f_a[i], rel=1e-12)
        assert _frac(r, i, b) == pytest.approx(1.0 - f_a[i], rel=1e-12)
    assert (_frac(r, 0, a), _frac(r, 0, b), _frac(r, 3, b), _frac(r, 3, a)) == (1.0, 0.0, 1.0, 0.0)
    e_a = 5.0 + f_a[1] * 1.0 + f_a[2] * 0.8
    np.testing.assert_allclose(r.cluster_energy[[a, b]], [e_a, e.sum() - e_a], rtol=1e-12)
    # position: log weights ln(f E / 0.1 GeV) over the seed and its 4 edge neighbours
    w0, w1 = np.log(5.0 / 0.1), np.log(f_a[1] * 1.0 / 0.1)
    np.testing.assert_allclose(r.cluster_position[a], (w0 * xyz[0] + w1 * xyz[1]) / (w0 + w1), rtol=1e-12)
    w3, w2 = np.log(3.0 / 0.1), np.log((1 - f_a[2]) * 0.8 / 0.1)
    np.testing.assert_allclose(r.cluster_position[b], (w3 * xyz[3] + w2 * xyz[2]) / (w3 + w2), rtol=1e-12)
    assert r.cluster_id.tolist() == [a, a, b, b]


def test_fit_converges_to_a_fixed_point(hb):
    hits = _hits(hb, [(1, 3, 10, 5.0), (1, 3, 11, 1.0), (1, 3, 12, 0.8), (1, 3, 13, 3.0), (1, 4, 11, 0.5)])
    r = pf_cluster(hits, hb, params=PFParams(merge_depths=False))
    assert 2 <= r.n_iterations[0] < 50
    xyz, e = _xyz(hits), hits["energy"]
    for i in (1, 2, 4):  # the fractions reproduce themselves from the final clusters
        num = r.cluster_energy * np.exp(-((xyz[i] - r.cluster_position) ** 2).sum(axis=1) / (2 * SIGMA2))
        for k in range(2):
            assert _frac(r, i, k) == pytest.approx(num[k] / num.sum(), rel=1e-6)
    np.testing.assert_allclose(r.fraction_matrix().sum(axis=1).A1, 1.0, rtol=1e-12)
    assert r.cluster_energy.sum() == pytest.approx(e.sum(), rel=1e-12)
    assert r.cluster_energy[0] >= r.cluster_energy[1]


# ---------------------------------------------------------------------------- thresholds and seeds
def test_gathering_threshold_is_per_depth(hb):
    hits = _hits(hb, [(2, 5, 20, 2.0), (2, 5, 21, 0.15), (2, 5, 19, 0.25),   # depth 2: 0.2 GeV
                      (1, 5, 20, 2.0), (1, 5, 21, 0.15)])                      # depth 1: 0.1 GeV
    r = pf_cluster(hits, hb, params=PFParams(merge_depths=False))
    assert r.topo_id[1] == -1 and r.cluster_id[1] == -1
    assert r.topo_id[2] == r.topo_id[0] >= 0 and r.cluster_id[2] == r.cluster_id[0]
    assert r.topo_id[4] == r.topo_id[3] >= 0 and r.topo_id[3] != r.topo_id[0]


def test_seed_needs_the_seed_threshold(hb):
    hits = _hits(hb, [(1, -10, 40, 0.12), (1, 10, 60, 0.125), (3, 2, 2, 0.34), (3, 8, 8, 0.36)])
    r = pf_cluster(hits, hb)
    assert r.is_seed.tolist() == [False, True, False, True]  # >= 0.125 (depth 1), 0.35 (depth 3)
    assert r.cluster_id.tolist() == [-1, r.cluster_id[1], -1, r.cluster_id[3]] and r.n_clusters == 2
    assert r.topo_id[0] == -1  # above the gathering threshold, but no seed in its component


def test_4_versus_8_neighbour_seeding(hb):
    hits = _hits(hb, [(1, 1, 10, 2.0), (1, 2, 11, 1.0)])  # corner neighbours
    r4 = pf_cluster(hits, hb, params=PFParams(n_neighbours_seed=4))
    r8 = pf_cluster(hits, hb, params=PFParams(n_neighbours_seed=8))
    assert r4.is_seed.tolist() == [True, True] and r4.n_clusters == 2
    assert r4.topo_id.tolist() == [0, 0]  # one topo cluster through the corner
    assert r8.is_seed.tolist() == [True, False] and r8.n_clusters == 1
    assert r8.cluster_energy[0] == pytest.approx(3.0)
    no_corner = pf_cluster(hits, hb, params=PFParams(use_corner_cells=False))
    assert no_corner.topo_id.tolist() == [0, 1]


def test_equal_energy_neighbours_lower_index_wins(hb):
    row = [(1, 1, 10, 1.0), (1, 1, 11, 1.0), (1, 1, 12, 1.0)]
    assert pf_cluster(_hits(hb, row), hb).is_seed.tolist() == [True, False, True]
    middle_first = [row[1], row[0], row[2]]
    assert pf_cluster(_hits(hb, middle_first), hb).is_seed.tolist() == [True, False, False]


def test_phi_wraps_and_eta_crosses_zero(hb):
    hits = _hits(hb, [(1, 4, 72, 2.0), (1, 4, 1, 1.0), (1, -1, 30, 2.0), (1, 1, 30, 1.0), (1, 4, 70, 1.0)])
    r = pf_cluster(hits, hb)
    assert r.is_seed.tolist() == [True, False, True, False, True]
    assert r.topo_id[0] == r.topo_id[1] and r.topo_id[2] == r.topo_id[3]
    assert len(set(r.topo_id.tolist())) == 3


# ---------------------------------------------------------------------------- depths
def test_depth_merging_links_compatible_clusters(hb):
    hits = _hits(hb, [(1, 3, 30, 3.0), (2, 3, 30, 4.0), (2, 3, 40, 4.0)])
    two_d = pf_cluster(hits, hb, params=PFParams(merge_depths=False))
    merged = pf_cluster(hits, hb)
    assert two_d.n_clusters == 3 and merged.n_clusters == 2
    k = merged.cluster_id[0]
    assert merged.cluster_id[1] == k != merged.cluster_id[2]
    assert merged.cluster_energy[k] == pytest.approx(7.0) and merged.seed_hit[k] == 1
    xyz = _xyz(hits)
    w0, w1 = np.log(3.0 / 0.1), np.log(4.0 / 0.2)  # all-cells position with per-depth denominators
    np.testing.assert_allclose(merged.cluster_position[k], (w0 * xyz[0] + w1 * xyz[1]) / (w0 + w1), rtol=1e-12)


def test_topo_across_depths_option(hb):
    hits = _hits(hb, [(1, 3, 30, 3.0), (2, 3, 30, 0.21)])  # depth-2 hit: gathering, not seed
    assert pf_cluster(hits, hb, params=PFParams(merge_depths=False)).cluster_id.tolist() == [0, -1]
    r = pf_cluster(hits, hb, params=PFParams(merge_depths=False, topo_across_depths=True))
    assert r.topo_id.tolist() == [0, 0] and r.cluster_id.tolist() == [0, 0]


# ---------------------------------------------------------------------------- simulated events
@pytest.fixture(scope="module")
def pion_events(hb):
    from caloreco.simulation import GenParticles, Simulator

    sim = Simulator(hb)
    single = GenParticles.from_eta_phi(np.array([-211]), np.array([50.0]), np.array([0.3]), np.array([1.0]))
    pair = GenParticles.from_eta_phi(np.array([-211, -211]), np.array([50.0, 50.0]), np.array([0.3, -0.6]),
                                     np.array([1.0, -2.0]))
    return {"single": sim.simulate(single, np.random.default_rng(11)),
            "pair": sim.simulate(pair, np.random.default_rng(12))}


def _eta_phi(pos):
    return np.arcsinh(pos[:, 2] / np.hypot(pos[:, 0], pos[:, 1])), np.arctan2(pos[:, 1], pos[:, 0])


def test_single_pion_gives_one_dominant_cluster(hb, pion_events):
    ev = pion_events["single"]
    r = pf_cluster(ev, hb)
    e = ev.hits["energy"]
    assert r.cluster_energy[0] > 0.9 * e[r.cluster_id >= 0].sum()
    assert r.cluster_energy[0] > 0.8 * ev.clusters["deposited"].sum()
    eta, phi = _eta_phi(r.cluster_position[:1])
    assert abs(eta[0] - 0.3) < 0.1 and abs(phi[0] - 1.0) < 0.1


def test_two_separated_pions_give_two_clusters(hb, pion_events):
    ev = pion_events["pair"]
    r = pf_cluster(ev, hb)
    assert r.cluster_energy[1] > 15.0 and (r.cluster_energy[2:] < 3.0).all()
    eta, phi = _eta_phi(r.cluster_position[:2])
    o = np.argsort(eta)
    np.testing.assert_allclose(eta[o], [-0.6, 0.3], atol=0.1)
    np.testing.assert_allclose(phi[o], [-2.0, 1.0], atol=0.1)


@pytest.mark.parametrize("merge", [True, False])
@pytest.mark.parametrize("name", ["single", "pair"])
def test_energy_is_conserved(hb, pion_events, name, merge):
    ev = pion_events[name]
    r = pf_cluster(ev, hb, params=PFParams(merge_depths=merge))
    e = ev.hits["energy"].astype(np.float64)
    per_hit = r.fraction_matrix().sum(axis=1).A1
    in_topo = r.topo_id >= 0
    np.testing.assert_allclose(per_hit[in_topo], 1.0, atol=1e-6)
    assert (per_hit[~in_topo] == 0).all() and ((r.cluster_id >= 0) == in_topo).all()
    assert r.cluster_energy.sum() == pytest.approx(e[in_topo].sum(), rel=1e-6)
    f = r.fractions
    np.testing.assert_allclose(np.bincount(f.cluster_index, f.fraction * e[f.hit_index], minlength=r.n_clusters),
                               r.cluster_energy, rtol=1e-12)


def test_hgcal_layers_with_distance_neighbours():
    from caloreco.simulation import GunConfig, Simulator

    det = make_detector("hgcal", phi_min=0.0, phi_max=0.5)
    rng = np.random.default_rng(3)
    ev = Simulator(det).simulate(GunConfig(particle="e-", energy=20.0, eta=2.2, phi=0.25).generate(rng), rng)
    r = pf_cluster(ev, det, params=PFParams.hgcal_like())
    f, layer, e = r.fractions, ev.hits["layer"], ev.hits["energy"].astype(np.float64)
    lo = np.full(r.n_clusters, 99)
    hi = np.zeros(r.n_clusters, int)
    np.minimum.at(lo, f.cluster_index, layer[f.hit_index])
    np.maximum.at(hi, f.cluster_index, layer[f.hit_index])
    assert r.n_clusters > 10 and (lo == hi).all()  # 2D clusters, one layer each
    assert r.cluster_energy.sum() == pytest.approx(e[r.topo_id >= 0].sum(), rel=1e-6)
    eta, phi = _eta_phi(r.cluster_position[:5])
    assert np.all(np.abs(eta - 2.2) < 0.05) and np.all(np.abs(phi - 0.25) < 0.05)
    with pytest.raises(ConfigError, match="barrel HCAL"):
        pf_cluster(ev, det)


# ---------------------------------------------------------------------------- bad input
def test_empty_event(hb):
    hits = {k: np.zeros(0) for k in ("x", "y", "z", "energy")} | {"layer": np.zeros(0, int),
                                                                  "cell_id": np.zeros(0, np.int64)}
    r = pf_cluster(hits, hb)
    assert r.n_clusters == 0 and r.cluster_position.shape == (0, 3) and len(r.n_iterations) == 0


def test_bad_input_raises(hb):
    good = _hits(hb, [(1, 3, 10, 5.0), (1, 3, 11, 1.0)])
    cases = {
        "not cells": good | {"cell_id": good["cell_id"] + 7 * (1 << 40)},
        "non-finite": good | {"energy": np.array([5.0, np.nan])},
        "one-dimensional": good | {"x": good["x"][:1]},
        "missing column": {k: v for k, v in good.items() if k != "cell_id"},
        "disagrees": good | {"layer": np.array([1, 2])},
        "unique": good | {"cell_id": good["cell_id"][[0, 0]]},
    }
    for message, hits in cases.items():
        with pytest.raises(InvalidDataError, match=message):
            pf_cluster(hits, hb)
    with pytest.raises(InvalidDataError, match="Event or a mapping"):
        pf_cluster([1, 2, 3], hb)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="one per layer"):
        pf_cluster(good, hb, params=PFParams(seed_threshold=(1.0, 1.0, 1.0), gathering_threshold=(0.5, 0.5, 0.5)))


@pytest.mark.parametrize("options, message", [
    ({"n_neighbours_seed": 6}, "n_neighbours_seed"),
    ({"shower_sigma_cm": 0.0}, "shower_sigma_cm"),
    ({"seed_threshold": (0.05, 0.25, 0.35, 0.35)}, ">= gathering_threshold"),
    ({"gathering_threshold": (0.1, -0.2, 0.3, 0.3)}, "positive"),
    ({"energy_norm": (0.1, 0.2)}, "lengths"),
    ({"max_iterations": -1}, "max_iterations"),
    ({"neighbours": "distance"}, "merge_depths"),
    ({"threshold_unit": "MeV"}, "threshold_unit"),
])
def test_bad_params_raise(options, message):
    with pytest.raises(ConfigError, match=message):
        PFParams(**options)
