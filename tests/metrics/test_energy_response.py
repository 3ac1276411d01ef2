"""Tests of the energy response of matched clusters."""

from __future__ import annotations

import numpy as np
import pytest

from caloreco.data.event import ClusterType
from caloreco.errors import ConfigError, InvalidDataError
from caloreco.metrics import energy_response, match_clusters, matched_energies, response_stats

#: 101 responses evenly spaced in [0.5, 1.5]: median 1, q16 0.66, q84 1.34 (linear
#: interpolation), so resolution (1.34 - 0.66) / 2 / 1 = 0.34.
RATIOS = np.linspace(0.5, 1.5, 101)


def test_stats_of_known_ratios() -> None:
    stats = response_stats(RATIOS)
    assert stats["count"] == 101
    assert stats["mean"] == pytest.approx(1.0)
    assert stats["median"] == pytest.approx(1.0)
    assert (stats["q16"], stats["q84"]) == (pytest.approx(0.66), pytest.approx(1.34))
    assert stats["resolution"] == pytest.approx(0.34)
    assert response_stats(2 * RATIOS)["resolution"] == pytest.approx(0.34)  # scale-free
    empty = response_stats([])
    assert empty["count"] == 0 and np.isnan(empty["median"])


def test_gaussian_resolution() -> None:
    rng = np.random.default_rng(3)
    r = rng.normal(0.9, 0.09, 20000)
    stats = response_stats(r)
    assert stats["median"] == pytest.approx(0.9, abs=0.005)
    assert stats["resolution"] == pytest.approx(0.1, abs=0.005)  # sigma / median


def test_per_type_and_versus_energy() -> None:
    e_true = np.concatenate([np.full(101, 3.0), np.full(101, 30.0)])
    e_reco = e_true * np.concatenate([RATIOS, 0.8 * RATIOS])
    types = np.repeat([ClusterType.EM, ClusterType.HAD], 101)
    out = energy_response(e_reco, e_true, types, edges=[0.0, 10.0, 100.0])
    assert set(out) == {"ALL", "EM", "HAD", "MIP", "MIX"}
    assert out["ALL"]["count"] == 202
    assert out["EM"]["median"] == pytest.approx(1.0)
    assert out["HAD"]["median"] == pytest.approx(0.8)
    assert out["HAD"]["resolution"] == pytest.approx(0.34)
    assert out["MIP"]["count"] == 0
    vs = out["ALL"]["vs_energy"]
    assert vs["edges"] == [0.0, 10.0, 100.0]
    assert vs["count"] == [101, 101]
    assert vs["median"] == [pytest.approx(1.0), pytest.approx(0.8)]
    assert vs["resolution"] == [pytest.approx(0.34), pytest.approx(0.34)]
    assert set(energy_response(e_reco, e_true)) == {"ALL"}  # no types: one group


def test_zero_true_energy_is_left_out_and_bad_input_raises() -> None:
    out = energy_response([1.0, 5.0], [0.0, 5.0])
    assert out["ALL"]["count"] == 1
    with pytest.raises(InvalidDataError, match="equal length"):
        energy_response([1.0], [1.0, 2.0])
    with pytest.raises(InvalidDataError, match="e_true must be finite"):
        energy_response([1.0], [np.inf])
    with pytest.raises(ConfigError, match="energy_bins"):
        energy_response([1.0], [1.0], edges=[1.0, 1.0])


def test_matched_energies_deposited_and_generated() -> None:
    truth = np.array([0, 0, 0, 1, 1, 2, -1])
    pred = np.array([4, 4, 4, 9, 9, -1, 4])
    energy = np.array([1.0, 1.0, 2.0, 3.0, 1.0, 5.0, 0.5])
    generated = np.array([5.0, 8.0, 6.0])
    types = np.array([ClusterType.EM, ClusterType.MIP, ClusterType.HAD], dtype=np.int8)
    match = match_clusters(truth, pred, energy, truth_energy=generated)
    e_reco, e_true, t = matched_energies(match, truth_types=types)
    np.testing.assert_allclose(e_reco, [4.5, 4.0])  # e(P) includes the truth-noise hit
    np.testing.assert_allclose(e_true, [4.0, 4.0])
    np.testing.assert_array_equal(t, [ClusterType.EM, ClusterType.MIP])
    _, e_gen, t = matched_energies(match, reference="generated")
    np.testing.assert_allclose(e_gen, [5.0, 8.0])
    np.testing.assert_array_equal(t, [-1, -1])
    with pytest.raises(ConfigError, match="reference must be one of"):
        matched_energies(match, reference="true")
    with pytest.raises(ConfigError, match="truth_energy"):
        matched_energies(match_clusters(truth, pred, energy), reference="generated")
    with pytest.raises(InvalidDataError, match="truth_types must be .*at least 3"):
        matched_energies(match, truth_types=types[:2])
    with pytest.raises(InvalidDataError, match="ClusterType codes"):
        matched_energies(match, truth_types=np.array([0, 7, 1]))
