"""Failure modes of unmatched clusters: a hand example and consistency with PQ's counts."""

from __future__ import annotations

import numpy as np
import pytest

from caloreco.metrics import ClusteringEvaluator, failure_modes, panoptic_quality


def test_hand_example() -> None:
    n = -1
    #        T0 -> P0 (merged)  T1 -> P0 (matched)    T2: P1 P1 P2 P2 noise P3 (split)
    truth = [0, 0, 0, 0] + [1] * 6 + [2] * 6 + [n, n] + [3] * 4 + [4, 4] + [n]
    pred = [0, 0, 0, 0] + [0] * 6 + [1, 1, 2, 2, n, 3] + [3, 3] + [n, n, n, 4] + [4, 5] + [4]
    # T3: 3 of 4 hits predicted noise (lost); T4: half in P4, half in P5 (split)
    # P1, P2: pieces of T2 (fragments); P3: 2 of 3 hits truth noise (noise);
    # P4: one hit each of T3, T4 and noise (mixed); P5: one hit of T4 (fragment, IoU 0.5)
    got = failure_modes(np.array(truth), np.array(pred), weighted=False)
    assert (got.truth_matched, got.merged, got.split, got.lost) == (1, 1, 2, 1)
    assert (got.pred_matched, got.fragment, got.noise, got.mixed) == (1, 3, 1, 1)
    d = got.as_dict()
    assert d["truth"]["merged"] == 1 and d["truth"]["split_fraction"] == pytest.approx(2 / 5)
    assert d["pred"]["fragment_fraction"] == pytest.approx(3 / 6)


def test_energy_weighting_changes_the_mode() -> None:
    # T0 has 3 hits: 2 soft ones predicted noise, 1 hard one in a cluster with much else
    truth = np.array([0, 0, 0, 1, 1, 1, 1])
    pred = np.array([-1, -1, 0, 0, 0, 0, 0])
    energy = np.array([0.1, 0.1, 5.0, 1.0, 1.0, 1.0, 1.0])
    assert failure_modes(truth, pred, weighted=False).lost == 1  # by hits: mostly noise
    assert failure_modes(truth, pred, energy).merged == 1  # by energy: mostly in P0


@pytest.mark.parametrize("seed", range(5))
def test_modes_add_up_to_the_pq_counts(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 400
    truth = rng.integers(-1, 12, n)
    pred = np.where(rng.random(n) < 0.7, truth, rng.integers(-1, 15, n))  # noisy copy
    energy = rng.exponential(1.0, n)
    for weighted, min_e in [(True, 0.0), (False, 0.0), (True, 20.0)]:
        f = failure_modes(truth, pred, energy, weighted=weighted, min_truth_energy=min_e)
        pq = panoptic_quality(truth, pred, energy, weighted=weighted, min_truth_energy=min_e)
        assert f.truth_matched == f.pred_matched == pq.tp
        assert f.merged + f.split + f.lost == pq.fn
        assert f.fragment + f.noise + f.mixed == pq.fp


def test_evaluator_sums_failures_over_events() -> None:
    ev = ClusteringEvaluator()
    total = None
    rng = np.random.default_rng(9)
    for _ in range(3):
        truth = rng.integers(-1, 6, 100)
        pred = np.where(rng.random(100) < 0.6, truth, rng.integers(-1, 8, 100))
        energy = rng.exponential(1.0, 100)
        ev.add(truth, pred, energy)
        f = failure_modes(truth, pred, energy)
        total = f if total is None else total + f
    r = ev.result()
    assert r["failures"] == total.as_dict()
    assert r["failures"]["truth"]["matched"] == r["tp"]
    assert sum(r["failures"]["pred"][k] for k in ("fragment", "noise", "mixed")) == r["fp"]
