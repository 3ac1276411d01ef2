"""Tests of the CLUE3D-like shower reconstruction on simulated HGCAL events."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from caloreco.clustering.clue import assign_clusters
from caloreco.clustering.clue3d import (
    ClueParams,
    LayerClusters,
    clue_event,
    layer_clusters,
    link_layer_clusters,
    tune_clue,
)
from caloreco.data.event import Event
from caloreco.errors import ConfigError, InvalidDataError
from caloreco.geometry.registry import make_detector
from caloreco.simulation.particles import GenParticles
from caloreco.simulation.simulator import Simulator

#: MIP-friendly settings: 2D critical density 5 noise sigmas, 3D critical density 0.1 GeV.
MIP_PARAMS = ClueParams(kappa=5.0, critical_density=0.1)


@pytest.fixture(scope="module")
def simulator() -> Simulator:
    # a 1 rad sector of the HGCAL-like endcap keeps the noise hits (and the test) small
    return Simulator(make_detector("hgcal", phi_min=0.0, phi_max=1.0))


def _simulate(sim: Simulator, pdg: list[int], energy: list[float], eta: list[float],
              phi: list[float], seed: int) -> Event:
    particles = GenParticles.from_eta_phi(np.array(pdg), np.array(energy, dtype=float),
                                          np.array(eta, dtype=float), np.array(phi, dtype=float))
    rng = np.random.default_rng([11, seed])
    return sim.simulate(particles, rng)


@pytest.fixture(scope="module")
def two_photons(simulator: Simulator) -> Event:
    # 50 GeV photons at eta 2, phi 0.3 and 0.7: about 35 cm apart on the front face
    ev = _simulate(simulator, [22, 22], [50.0, 50.0], [2.0, 2.0], [0.3, 0.7], seed=0)
    assert ev.n_clusters == 2
    return ev


@pytest.fixture(scope="module")
def muon(simulator: Simulator) -> Event:
    ev = _simulate(simulator, [13], [50.0], [2.2], [0.5], seed=1)
    assert ev.n_clusters == 1
    return ev


def _share(ev: Event, pred: np.ndarray, truth: int) -> tuple[int, float]:
    """The shower holding most of a truth cluster's hit energy, and its fraction."""
    m = ev.hits["truth_cluster"] == truth
    e = ev.hits["energy"][m].astype(np.float64)
    showers = pred[m]
    if not (showers >= 0).any():
        return -1, 0.0
    per = np.bincount(showers[showers >= 0], e[showers >= 0])
    return int(np.argmax(per)), float(per.max() / e.sum())


def test_two_separated_photons_give_two_showers(two_photons: Event) -> None:
    pred = clue_event(two_photons)
    assert pred.shape == (two_photons.n_hits,) and pred.dtype == np.int64
    (s0, f0), (s1, f1) = _share(two_photons, pred, 0), _share(two_photons, pred, 1)
    assert s0 != s1 and f0 > 0.9 and f1 > 0.9
    e = two_photons.hits["energy"].astype(np.float64)
    shower_e = np.bincount(pred[pred >= 0], e[pred >= 0])
    # the two main showers hold nearly all the shower energy, and are pure
    assert sorted(shower_e)[-2:] == sorted(shower_e[[s0, s1]])
    assert shower_e.sum() - shower_e[[s0, s1]].sum() < 1.0
    for s, t in ((s0, 0), (s1, 1)):
        in_s = pred == s
        assert e[in_s & (two_photons.hits["truth_cluster"] == t)].sum() > 0.97 * e[in_s].sum()


def test_muon_is_one_shower_with_mip_settings_and_noise_with_cmssw_defaults(muon: Event) -> None:
    pred = clue_event(muon, params=MIP_PARAMS)
    shower, frac = _share(muon, pred, 0)
    assert shower >= 0 and frac > 0.7
    assert len(np.unique(pred[pred >= 0])) == 1
    # CMSSW defaults: layer clusters of ~0.05 GeV never reach the 4 GeV critical density
    assert (clue_event(muon) == -1).all()


def test_arrays_input_equals_event_input(two_photons: Event) -> None:
    h = two_photons.hits
    arrays = {k: h[k] for k in ("x", "y", "z", "energy", "layer", "energy_mip", "cell_type")}
    np.testing.assert_array_equal(clue_event(arrays), clue_event(two_photons))


def test_noise_column_and_fallback_noise(two_photons: Event) -> None:
    h = two_photons.hits
    base = {k: h[k] for k in ("x", "y", "z", "energy", "layer")}
    # without any noise information the fallback sigma applies to every hit
    fallback = clue_event(base)
    explicit = clue_event({**base, "noise": np.full(two_photons.n_hits, 0.0021)})
    np.testing.assert_array_equal(fallback, explicit)
    # a huge noise makes every hit fall below ecut: all noise
    assert (clue_event({**base, "noise": np.full(two_photons.n_hits, 1e3)}) == -1).all()


def test_layer_clusters_sum_hit_energy(two_photons: Event) -> None:
    lcs = layer_clusters(two_photons)
    e = two_photons.hits["energy"].astype(np.float64)
    m = lcs.hit_cluster >= 0
    assert np.isclose(lcs.energy.sum(), e[m].sum())
    # each layer cluster lies on one layer
    hit_layer = two_photons.hits["layer"].astype(np.int64)
    np.testing.assert_array_equal(lcs.layer[lcs.hit_cluster[m]], hit_layer[m])


def _stack(x0: float, layers: range, energy: float, z0: float = 320.0) -> dict[str, np.ndarray]:
    n = len(layers)
    return dict(x=np.full(n, x0), y=np.zeros(n), z=z0 + 2.0 * np.arange(n),
                layer=np.array(list(layers)), energy=np.full(n, energy))


def test_linking_joins_aligned_layer_clusters_and_separates_far_ones() -> None:
    a, b = _stack(80.0, range(1, 21), 2.0), _stack(120.0, range(1, 21), 3.0)
    lone = dict(x=np.array([200.0]), y=np.array([50.0]), z=np.array([330.0]),
                layer=np.array([5]), energy=np.array([0.2]))
    cols = {k: np.concatenate([a[k], b[k], lone[k]]) for k in a}
    lcs = LayerClusters(hit_cluster=np.arange(41), **cols)
    shower = link_layer_clusters(lcs, ClueParams())
    assert len(set(shower[:20])) == 1 and len(set(shower[20:40])) == 1
    assert shower[0] != shower[20] and shower[0] >= 0 and shower[20] >= 0
    assert shower[40] == -1  # an isolated soft cluster is an outlier


def _brute_link(lcs: LayerClusters, p: ClueParams) -> np.ndarray:
    """All-pairs evaluation of the linking rules of the module docstring."""
    k = len(lcs.energy)
    z = np.abs(lcs.z)
    u, v = lcs.x / z, lcs.y / z
    dl = np.abs(lcs.layer[:, None] - lcs.layer[None])
    dt = z[:, None] * np.hypot(u[:, None] - u[None], v[:, None] - v[None])
    idx = np.arange(k)
    sib = (dl <= p.density_sibling_layers) & (idx[:, None] != idx[None])
    near = sib & (dt < p.density_xy_distance) & ((dl > 0) | p.density_on_same_layer)
    rho = lcs.energy + p.kernel_density_factor * (near * lcs.energy[None]).sum(1)
    higher = (rho[None] > rho[:, None]) | ((rho[None] == rho[:, None]) & (idx[None] > idx[:, None]))
    search = p.outlier_multiplier * p.critical_xy_distance
    dist = np.where(sib & higher & (dt <= search), dt**2 + (lcs.z[:, None] - lcs.z[None]) ** 2,
                    np.inf)
    nh = np.argmin(dist, 1)
    none = np.isinf(dist[idx, nh])
    nh[none] = -1
    d_t, d_l = np.where(none, np.inf, dt[idx, nh]), np.where(none, np.inf, dl[idx, nh])
    seed = (((d_t > p.critical_xy_distance) | (d_l > p.critical_z_distance_layers))
            & (rho >= p.critical_density) & (lcs.energy / rho > p.critical_self_density))
    shower = assign_clusters(nh, seed, (d_t > search) & (rho < p.critical_density))
    size = np.bincount(shower[shower >= 0], minlength=int(seed.sum()))
    kept = size >= p.min_layer_clusters
    renum = np.r_[np.where(kept, np.cumsum(kept) - 1, -1), -1]
    return renum[np.where(shower >= 0, shower, len(kept))]


@pytest.mark.parametrize("seed", range(12))
def test_linking_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, 120))
    layer = rng.integers(1, 30, k)
    lcs = LayerClusters(hit_cluster=np.arange(k), x=np.round(rng.normal(80, 6, k), 1),
                        y=np.round(rng.normal(20, 6, k), 1), z=320 + 2.5 * layer, layer=layer,
                        energy=rng.choice([0.5, 1.0, 2.0, 5.0], k) if seed % 2
                        else rng.exponential(2.0, k))
    params = ClueParams(critical_density=float(rng.choice([0.5, 2.0, 4.0])),
                        density_on_same_layer=seed % 3 == 0,
                        density_sibling_layers=int(rng.integers(0, 6)))
    np.testing.assert_array_equal(link_layer_clusters(lcs, params), _brute_link(lcs, params))


def test_small_showers_are_dropped() -> None:
    one = LayerClusters(hit_cluster=np.zeros(1, np.int64), x=np.array([80.0]), y=np.zeros(1),
                        z=np.array([320.0]), layer=np.array([3]), energy=np.array([10.0]))
    assert link_layer_clusters(one, ClueParams())[0] == -1
    assert link_layer_clusters(one, ClueParams(min_layer_clusters=1))[0] == 0


def test_tune_clue_scans_the_grid(two_photons: Event, muon: Event) -> None:
    events = [two_photons, muon]
    grid = {"critical_density": [0.1, 4.0], "kappa": [5.0, 9.0]}
    best, table = tune_clue(events, grid)  # default score: energy-weighted PQ
    assert len(table) == 4 and all({"critical_density", "kappa", "score"} <= set(r) for r in table)
    top = max(table, key=lambda r: r["score"])
    assert (best.critical_density, best.kappa) == (top["critical_density"], top["kappa"])
    assert 0.9 < top["score"] <= 1.0

    def muon_found(evs: list[Event], preds: list[np.ndarray]) -> float:
        return float((preds[1] >= 0).mean())

    best, table = tune_clue(events, {"critical_density": [4.0, 0.1]}, base=MIP_PARAMS,
                            score_fn=muon_found)
    assert best == replace(MIP_PARAMS, critical_density=0.1)
    assert table[0]["score"] == 0.0 and table[1]["score"] > 0.0


@pytest.mark.parametrize("grid, text", [
    ({}, "at least one"),
    ({"critical_densty": [1.0]}, "unknown ClueParams field"),
    ({"kappa": []}, "empty"),
    ({"kappa": [-1.0]}, "kappa"),
])
def test_tune_clue_rejects_bad_grids(two_photons: Event, grid: dict, text: str) -> None:
    with pytest.raises(ConfigError, match=text):
        tune_clue([two_photons], grid)


def test_bad_inputs_raise_typed_errors() -> None:
    with pytest.raises(InvalidDataError, match=r"\['layer'\] missing"):
        clue_event({"x": np.zeros(2), "y": np.zeros(2), "z": np.zeros(2), "energy": np.ones(2)})
    with pytest.raises(InvalidDataError, match="'energy' has shape"):
        clue_event({"x": np.zeros(2), "y": np.zeros(2), "z": np.zeros(2), "energy": np.ones(3),
                    "layer": np.ones(2, int)})
    with pytest.raises(ConfigError, match="dc_silicon"):
        ClueParams(dc_silicon=0.0)
    with pytest.raises(ConfigError, match="density_sibling_layers"):
        ClueParams(density_sibling_layers=1.5)
