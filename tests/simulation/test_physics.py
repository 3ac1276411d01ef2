"""Emergent physics of the fast simulation against the references in
``../shared/physics-reference.md`` (PDG, HGCAL CE-E test beam, Groom, CALICE)."""

from __future__ import annotations

import numpy as np
import pytest

from caloreco.geometry.registry import make_detector
from caloreco.simulation import GunConfig, Simulator
from caloreco.simulation.spots import place_spots
from caloreco.simulation.validation import (
    gun_sums,
    longitudinal_profile,
    resolution_scan,
    shower_maximum,
)

CRITICAL_ENERGY_GEV = 0.010  # EMShowerParams default, Pb/W/Cu mixture


@pytest.fixture(scope="module")
def hgcal():
    return make_detector("hgcal")


def test_electron_resolution_matches_hgcal_test_beam(hgcal):
    # HGCAL CE-E test beam (2018 prototype): a ~ 22-24 %, c ~ 0.6 %; the issue asks a in
    # 18-30 % and c < 2 % over 10-300 GeV
    scan = resolution_scan(hgcal, "e-", [10, 30, 100, 300], 100, seed=11)
    assert 0.18 <= scan.stochastic <= 0.30, scan.as_dict()
    assert scan.constant < 0.02, scan.as_dict()
    # EM scale: summed hits give the electron energy on average
    assert np.all(np.abs(scan.response - 1.0) < 0.04), scan.response


@pytest.mark.parametrize("energy", [10.0, 50.0, 200.0])
def test_electron_shower_maximum(hgcal, energy):
    # PDG: t_max = ln(E / E_c) - 0.5 for electrons
    prof, depth = longitudinal_profile(hgcal, "e-", energy, 30, seed=3)
    t_max = shower_maximum(depth, prof)
    assert abs(t_max - (np.log(energy / CRITICAL_ENERGY_GEV) - 0.5)) < 1.0, t_max


@pytest.mark.parametrize("energy", [10.0, 50.0, 300.0])
def test_em_lateral_containment_in_moliere_radius(hgcal, energy):
    # PDG: ~90 % of the energy within one Moliere radius (generator level, no noise)
    sim = Simulator(hgcal)
    gun = GunConfig(particle="e-", energy=energy, eta=2.2)
    inside = total = 0.0
    for i in range(20):
        rng = np.random.default_rng([5, i])
        parts = gun.generate(rng)
        rec = sim.shower(parts, rng)
        rows, pos = place_spots(rec.spots, hgcal, parts.vertices(), parts.directions())
        axis = hgcal.crossing(parts.vertices()[rec.spots.particle], parts.directions()[rec.spots.particle], rec.spots.layer)
        r = np.linalg.norm(pos - axis, axis=1)
        r_m = hgcal.layers.moliere_cm[rec.spots.layer]
        inside += rec.spots.energy[r < r_m].sum()
        total += rec.spots.energy.sum()
    assert inside / total >= 0.90, inside / total


def test_pion_response_and_resolution(hgcal):
    # Si/steel + scintillator: a ~ 70-130 %, non-compensating (e/pi > 1)
    pions = resolution_scan(hgcal, "pi+", [10, 30, 100, 200], 100, seed=12)
    assert 0.70 <= pions.stochastic <= 1.30, pions.as_dict()
    assert np.all(pions.response < 0.95) and np.all(pions.response > 0.55), pions.response
    # response rises with energy as the EM fraction grows (Groom)
    assert pions.response[-1] > pions.response[0]
    e50 = gun_sums(hgcal, "e-", 50.0, 60, seed=4).mean()
    pi50 = gun_sums(hgcal, "pi+", 50.0, 60, seed=4).mean()
    assert e50 / pi50 > 1.1


def test_pion_showers_start_deeper_and_spread_wider_than_electrons(hgcal):
    prof_e, _ = longitudinal_profile(hgcal, "e-", 50.0, 20, seed=1)
    prof_pi, _ = longitudinal_profile(hgcal, "pi+", 50.0, 40, seed=1)
    layer = np.arange(1, len(prof_e) + 1)
    assert (prof_pi * layer).sum() / prof_pi.sum() > (prof_e * layer).sum() / prof_e.sum() + 5


def test_muons_leave_one_mip_per_layer(hgcal):
    sim = Simulator(hgcal)
    gun = GunConfig(particle="mu-", energy=50.0, eta=2.0)
    n_layers = len(hgcal.layers)
    mips, layers_hit = [], []
    for i in range(40):
        rng = np.random.default_rng([9, i])
        ev = sim.simulate(gun.generate(rng), rng)
        sel = ev.hits["truth_cluster"] >= 0
        # path-length corrected to normal incidence
        mips.append(ev.hits["truth_energy"][sel] / hgcal.layers.mip_gev[ev.hits["layer"][sel] - 1] * np.tanh(2.0))
        layers_hit.append(len(np.unique(ev.hits["layer"][sel])))
    mips = np.concatenate(mips)
    # one hit in (almost) every layer: threshold at 3 sigma of noise is ~0.3-0.6 MIP
    assert np.mean(layers_hit) > 0.9 * n_layers
    # most probable deposit = 1 MIP (the MIP unit); mean ~ 1/0.7 of it (Landau)
    counts, edges = np.histogram(mips, bins=np.linspace(0.2, 3.0, 29))
    mpv = 0.5 * (edges[np.argmax(counts)] + edges[np.argmax(counts) + 1])
    assert 0.8 <= mpv <= 1.2, mpv
    assert 1.2 <= mips.mean() <= 1.7, mips.mean()
