"""Jets with fastjet, gen-jet inputs, matching and the robust estimators."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("fastjet")

from caloreco.physics.jets import Jets, antikt_jets, delta_r, gen_jet_inputs, jet_pairs, match_jets  # noqa: E402
from caloreco.physics.stats import binned_summary, robust_summary  # noqa: E402


def _p4(pt: float, eta: float, phi: float) -> list[float]:
    return [pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta), pt * np.cosh(eta)]


def test_antikt_groups_particles_within_r() -> None:
    parts = np.array([_p4(50, 0.0, 0.0), _p4(10, 0.2, 0.1), _p4(30, 0.5, 2.0), _p4(5, 0.3, -2.9),
                      _p4(5, 0.3, 3.0)])  # the last two straddle phi = pi: one jet
    jets = antikt_jets(parts, r=0.4, pt_min=1.0)
    assert len(jets) == 3
    np.testing.assert_array_equal(jets.n_constituents, [2, 1, 2])
    np.testing.assert_allclose(jets.p4[0], np.sum(parts[:2], axis=0))  # E-scheme
    assert jets.pt[0] > jets.pt[1] > jets.pt[2]
    assert len(antikt_jets(parts, r=0.4, pt_min=40.0)) == 1
    assert len(antikt_jets(np.zeros((0, 4)))) == 0
    # the anti-kt hard jet is a cone of radius R: a particle at dR = 0.39 joins, 0.41 does not
    near = antikt_jets(np.array([_p4(100, 0, 0), _p4(1, 0.39, 0)]), r=0.4)
    far = antikt_jets(np.array([_p4(100, 0, 0), _p4(1, 0.41, 0)]), r=0.4)
    assert len(near) == 1 and len(far) == 2


def test_gen_jet_inputs_exclude_neutrinos_muons_and_pileup() -> None:
    stable = {"pdg": np.array([211, 13, -14, 22, 2112, 211]), "vertex": np.array([0, 0, 0, 0, 0, 1]),
              "px": np.arange(6.0), "py": np.zeros(6), "pz": np.zeros(6), "e": np.arange(6.0)}
    np.testing.assert_array_equal(gen_jet_inputs(stable)[:, 0], [0.0, 3.0, 4.0])
    np.testing.assert_array_equal(gen_jet_inputs(stable, include_pileup=True)[:, 0], [0.0, 3.0, 4.0, 5.0])


def test_delta_r_wraps_phi() -> None:
    assert delta_r(np.array([0.0]), np.array([3.1]), np.array([0.0]), np.array([-3.1]))[0, 0] == \
        pytest.approx(2 * np.pi - 6.2)


def test_matching_is_one_to_one_and_closest_first() -> None:
    gen = Jets(np.array([_p4(50, 0.0, 0.0), _p4(40, 0.1, 0.0), _p4(30, 1.0, 1.0)]), np.ones(3, np.int64))
    reco = Jets(np.array([_p4(45, 0.08, 0.0), _p4(20, 1.5, 1.0)]), np.ones(2, np.int64))
    g, r = match_jets(gen, reco, max_dr=0.2)
    np.testing.assert_array_equal(g, [1])  # the closest gen jet takes the only reco jet in reach
    np.testing.assert_array_equal(r, [0])
    pairs = jet_pairs(gen, reco)
    assert np.isnan(pairs["e_reco"][[0, 2]]).all()
    assert pairs["e_reco"][1] == pytest.approx(reco.energy[0])


def test_robust_summary_of_a_gaussian() -> None:
    x = np.random.default_rng(0).normal(0.8, 0.1, 20000)
    s = robust_summary(x)
    assert s["median"] == pytest.approx(0.8, abs=0.003)
    assert s["sigma"] == pytest.approx(0.1, rel=0.03)  # IQR / 1.349
    assert s["rel_sigma"] == pytest.approx(0.125, rel=0.03)
    assert s["median_err"] == pytest.approx(1.2533 * 0.1 / np.sqrt(20000), rel=0.05)
    assert robust_summary(np.array([]))["n"] == 0 and np.isnan(robust_summary(np.array([1.0]))["sigma"])
    rows = binned_summary(np.array([1.0, 2.0, 2.5, 9.0]), np.array([1.0, 2.0, 4.0, 5.0]), np.array([0.0, 2.0, 3.0]))
    assert [r["n"] for r in rows] == [1, 2] and rows[1]["median"] == pytest.approx(3.0)
