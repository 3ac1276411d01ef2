"""Pythia 8 generation: processes, conservation laws, seeding, pileup overlay."""

from __future__ import annotations

import sys

import numpy as np
import pytest

pytest.importorskip("pythia8mc")

from caloreco.errors import ConfigError, MissingDependencyError  # noqa: E402
from caloreco.generators.event import generate_event  # noqa: E402
from caloreco.generators.pythia import (  # noqa: E402
    PythiaRunner,
    PythiaSetup,
    boson_decay_products,
    descendants_final,
    final_state,
    runner,
)

Z_MASS = 91.1880  # GeV, PDG 2024


def _mass(rec: dict[str, np.ndarray], rows: np.ndarray) -> float:
    e, px, py, pz = (rec[k][rows].sum() for k in ("e", "px", "py", "pz"))
    return float(np.sqrt(max(e**2 - px**2 - py**2 - pz**2, 0.0)))


@pytest.fixture(scope="module")
def ttbar() -> list[dict[str, np.ndarray]]:
    return runner(PythiaSetup("ttbar")).generate(seed=11, n_events=5)


def test_ttbar_record_has_two_tops_and_conserves_four_momentum(ttbar: list[dict[str, np.ndarray]]) -> None:
    for rec in ttbar:
        hard = (np.abs(rec["status"]) == 22) & (np.abs(rec["pdg"]) == 6)  # tops of the hard process
        assert sorted(rec["pdg"][hard].tolist()) == [-6, 6]
        # the last copy of each top decays to W b
        for top in (6, -6):
            last = np.flatnonzero(rec["pdg"] == top)[-1]
            kids = rec["pdg"][rec["daughter1"][last]:rec["daughter2"][last] + 1]
            assert sorted(np.abs(kids).tolist()) == [5, 24]
        fs = final_state(rec)
        total = [rec[k][fs].sum() for k in ("e", "px", "py", "pz")]
        np.testing.assert_allclose(total, [14000.0, 0.0, 0.0, 0.0], atol=1e-4)
        assert rec["charge"][fs].sum() == pytest.approx(2.0)  # two protons
        # mothers and daughters point inside the record
        n = len(rec["pdg"])
        for k in ("mother1", "mother2", "daughter1", "daughter2"):
            assert rec[k].min() >= 0 and rec[k].max() < n
        # no decaying particle with c tau < 1 m is left final (K0S, Lambda decay), neutrinos are there
        assert not np.isin(np.abs(rec["pdg"][fs]), [310, 3122]).any()


def test_final_state_ids_and_units(ttbar: list[dict[str, np.ndarray]]) -> None:
    rec = ttbar[0]
    fs = final_state(rec)
    assert len(fs) > 100
    assert set(np.abs(rec["pdg"][fs])) <= {11, 12, 13, 14, 16, 22, 130, 211, 321, 2112, 2212, 3112, 3222, 3312, 3334}
    # massless photons, on-shell pions
    pi = fs[np.abs(rec["pdg"][fs]) == 211]
    m = np.sqrt(np.maximum(rec["e"][pi] ** 2 - rec["px"][pi] ** 2 - rec["py"][pi] ** 2 - rec["pz"][pi] ** 2, 0))
    np.testing.assert_allclose(m, 0.13957, atol=2e-3)
    # production vertices in cm: decays of B/D hadrons displace by O(mm) not O(m)
    r = np.hypot(rec["vx"][fs], rec["vy"][fs])
    assert np.median(r) < 0.1 and r.max() < 200.0


def test_same_seed_same_event_regardless_of_history() -> None:
    r = runner(PythiaSetup("ttbar"))
    a = r.generate(seed=77)[0]
    r.generate(seed=78)
    b = r.generate(seed=77)[0]
    c = r.generate(seed=79)[0]
    assert len(a["pdg"]) == len(b["pdg"])
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert len(c["pdg"]) != len(a["pdg"]) or not np.array_equal(c["px"], a["px"])


def test_zmumu_mass_peak() -> None:
    recs = runner(PythiaSetup("zmumu")).generate(seed=123, n_events=40)
    m_born, m_final = [], []
    for rec in recs:
        d = boson_decay_products(rec)
        assert sorted(rec["pdg"][d].tolist()) == [-13, 13]
        m_born.append(_mass(rec, d))
        m_final.append(_mass(rec, np.array([descendants_final(rec, i) for i in d])))
        assert all(rec["status"][descendants_final(rec, i)] > 0 for i in d)
    m_born, m_final = np.array(m_born), np.array(m_final)
    assert abs(np.median(m_born) - Z_MASS) < 1.0
    peak = m_final[(m_final > 81) & (m_final < 101)]
    assert len(peak) > 25 and abs(np.median(peak) - Z_MASS) < 1.0  # after final-state radiation


def test_ztautau_taus_decay() -> None:
    rec = runner(PythiaSetup("ztautau")).generate(seed=5)[0]
    d = boson_decay_products(rec)
    assert sorted(rec["pdg"][d].tolist()) == [-15, 15]
    fs = final_state(rec)
    assert not (np.abs(rec["pdg"][fs]) == 15).any()
    assert (np.abs(rec["pdg"][fs]) == 16).sum() >= 2  # one tau neutrino per tau decay


def test_pileup_multiplicity_scales_with_mu() -> None:
    hard = PythiaSetup("zmumu")
    counts = {}
    for mu in (5.0, 20.0):
        n_pu, n_stable = [], []
        for i in range(4):
            ev = generate_event(hard, np.random.default_rng([3, i]), pileup_mu=mu)
            assert ev.stable["vertex"].max(initial=0) == ev.n_pileup
            n_pu.append(ev.n_pileup)
            n_stable.append(int((ev.stable["vertex"] > 0).sum()))
        counts[mu] = (np.mean(n_pu), np.mean(n_stable))
    assert 2.0 < counts[5.0][0] < 9.0 and 14.0 < counts[20.0][0] < 27.0  # Poisson(mu), 4 events
    ratio = counts[20.0][1] / counts[5.0][1]
    assert 2.0 < ratio < 7.0  # ~4 x more pileup particles
    ev = generate_event(hard, np.random.default_rng([3, 0]), pileup_mu=0.0)
    assert ev.n_pileup == 0 and (ev.stable["vertex"] == 0).all()


def test_vertices_are_smeared_per_interaction() -> None:
    ev = generate_event(PythiaSetup("zmumu"), np.random.default_rng([9, 1]), pileup_mu=10.0, sigma_z_cm=5.3)
    for k, z in enumerate(ev.vertex_z):
        sel = ev.stable["vertex"] == k
        # prompt particles sit at their interaction's vertex
        assert np.median(ev.stable["vz"][sel]) == pytest.approx(z, abs=0.05)
    again = generate_event(PythiaSetup("zmumu"), np.random.default_rng([9, 1]), pileup_mu=10.0, sigma_z_cm=5.3)
    np.testing.assert_array_equal(ev.stable["px"], again.stable["px"])


def test_setup_validation_and_missing_dependency(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="unknown Pythia process"):
        PythiaSetup("higgs")
    with pytest.raises(ConfigError, match="init_seed"):
        PythiaSetup("ttbar", init_seed=-1)
    with pytest.raises(ConfigError, match="seed"):
        runner(PythiaSetup("ttbar")).generate(seed=10**10)
    assert runner(PythiaSetup("ttbar")).generate(seed=1, n_events=0) == []
    monkeypatch.setitem(sys.modules, "pythia8mc", None)  # import fails
    with pytest.raises(MissingDependencyError, match="pip install pythia8mc"):
        PythiaRunner(PythiaSetup("ttbar", init_seed=2))
