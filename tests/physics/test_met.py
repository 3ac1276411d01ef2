"""Hadronic recoil: components, muon-cluster removal, Z q_T from the generator."""

from __future__ import annotations

import numpy as np
import pytest

from caloreco.physics.met import muon_clusters, recoil, recoil_table


def test_recoil_components() -> None:
    qt = np.array([30.0, 40.0])  # |q_T| = 50
    # clusters balancing q_T exactly, plus a perpendicular 3 GeV piece
    perp = np.array([-4.0, 3.0]) * 3 / 5
    p4 = np.array([[-30.0, -40.0, 0.0, 50.0], [perp[0], perp[1], 0.0, 3.0]])
    u_par, u_perp = recoil(p4, qt)
    assert u_par == pytest.approx(-50.0)
    assert u_perp == pytest.approx(3.0)  # (q x u)_z / |q| > 0: u to the left of q_T
    u_par, _ = recoil(p4, qt, exclude=np.array([True, False]))
    assert u_par == pytest.approx(0.0, abs=1e-12)


def test_recoil_table_response_and_resolution() -> None:
    rng = np.random.default_rng(1)
    qt = rng.uniform(20, 40, 4000)
    u_par = -0.7 * qt + rng.normal(0, 5.0, qt.size)
    u_perp = rng.normal(0, 4.0, qt.size)
    (row,) = recoil_table(qt, u_par, u_perp, np.array([20.0, 40.0]))
    assert row["n"] == 4000
    assert row["response"] == pytest.approx(0.7, abs=0.01)  # 1 - <u_par + q_T>/<q_T>
    assert row["sigma_perp"] == pytest.approx(4.0, rel=0.05)
    # u_par + q_T = 0.3 q_T + noise: the q_T spread adds 0.3 * 20 / sqrt(12) in quadrature
    assert row["sigma_par"] == pytest.approx(np.hypot(5.0, 0.3 * 20 / np.sqrt(12)), rel=0.08)


def test_muon_clusters_by_impact_point() -> None:
    particles = {"pdg": np.array([13, 211]), "vx": np.array([177.7, 0.0]), "vy": np.array([0.0, 177.7]),
                 "vz": np.array([0.0, 0.0])}
    eta = np.array([0.02, 0.0, 0.5])
    phi = np.array([0.03, np.pi / 2, 0.0])
    np.testing.assert_array_equal(muon_clusters(eta, phi, particles), [True, False, False])
    no_mu = {k: v[1:] for k, v in particles.items()}
    assert not muon_clusters(eta, phi, no_mu).any()


def test_z_qt_balances_the_visible_generator_recoil() -> None:
    pytest.importorskip("pythia8mc")
    from caloreco.generators.preset import PythiaConfig
    from caloreco.generators.pythia import boson_decay_products, descendants_final
    from caloreco.physics.met import generator_recoil, z_transverse_momentum

    cfg = PythiaConfig(process="zmumu")
    for i in range(3):
        _, gen = cfg.generate_with_record(np.random.default_rng([2, i]))
        qt = z_transverse_momentum(gen)
        st = gen.stable
        vis = ~np.isin(np.abs(st["pdg"]), [12, 13, 14, 16])
        p4 = np.column_stack([st[k][vis] for k in ("px", "py", "pz", "e")])
        u_par, u_perp = recoil(p4, qt)
        # momentum balance: everything but the Z muons recoils, up to neutrinos and other muons
        z_rows = [descendants_final(gen.record, i) for i in boson_decay_products(gen.record)]
        z_mu = (st["vertex"] == 0) & np.isin(st["index"], z_rows)
        assert z_mu.sum() == 2
        lost = np.isin(np.abs(st["pdg"]), [12, 13, 14, 16]) & ~z_mu
        missing = np.hypot(st["px"][lost].sum(), st["py"][lost].sum())
        assert abs(u_par + np.hypot(*qt)) < missing + 1e-6 and abs(u_perp) < missing + 1e-6
        # what reaches the calorimeter is a part of it
        g_par, _ = generator_recoil(gen, qt)
        assert np.isfinite(g_par)
    ttbar = PythiaConfig(process="ttbar").generate_with_record(np.random.default_rng([2, 0]))[1]
    assert z_transverse_momentum(ttbar) is None
