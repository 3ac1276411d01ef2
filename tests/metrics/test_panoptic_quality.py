"""Tests of the cluster matching, SQ / RQ / PQ, efficiency and fake rate."""

from __future__ import annotations

import numpy as np
import pytest

from caloreco.errors import ConfigError, InvalidDataError
from caloreco.metrics import (
    PanopticCounts,
    binned_fraction,
    efficiency_curve,
    fake_rate_curve,
    match_clusters,
    panoptic_quality,
)


def _brute_force_iou(truth: np.ndarray, pred: np.ndarray, w: np.ndarray
                     ) -> dict[tuple[int, int], float]:
    """IoU of every (pred, truth) pair sharing a hit, by loops (reference implementation)."""
    out = {}
    for p in np.unique(pred[pred >= 0]):
        for t in np.unique(truth[truth >= 0]):
            inter = w[(pred == p) & (truth == t)].sum()
            if (((pred == p) & (truth == t)).any()):
                out[(int(p), int(t))] = inter / (w[pred == p].sum() + w[truth == t].sum() - inter)
    return out


def _random_event(rng: np.random.Generator, n: int = 80, k: int = 6
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Truth labels, a perturbed prediction (relabelled, some hits moved) and energies."""
    truth = rng.integers(-1, k, n)
    perm = rng.permutation(100)[:k] + 3  # arbitrary, sparse predicted ids
    pred = np.where(truth >= 0, perm[truth], -1)
    moved = rng.random(n) < 0.25
    pred[moved] = rng.choice(np.append(perm, [-1, 200]), moved.sum())
    return truth, pred, rng.exponential(1.0, n)


def test_perfect_prediction() -> None:
    truth = np.array([0, 0, 1, 1, 1, -1, 2])
    pred = np.array([7, 7, 3, 3, 3, -1, 0])  # ids need not agree
    for weighted in (True, False):
        c = panoptic_quality(truth, pred, np.arange(1.0, 8.0), weighted=weighted)
        assert (c.sq, c.rq, c.pq, c.tp, c.fp, c.fn) == (1.0, 1.0, 1.0, 3, 0, 0)


def test_all_noise_prediction() -> None:
    truth = np.array([0, 0, 1, -1])
    c = panoptic_quality(truth, np.full(4, -1), np.ones(4))
    assert (c.tp, c.fp, c.fn, c.sq, c.rq, c.pq) == (0, 0, 2, 0.0, 0.0, 0.0)
    empty = panoptic_quality(np.full(3, -1), np.full(3, -1), np.ones(3))
    assert np.isnan(empty.pq) and np.isnan(empty.sq) and np.isnan(empty.rq)


def test_split_cluster() -> None:
    # truth cluster 0 (energy 10) split 6 + 4 between predicted 1 and 2: only 1 matches
    truth = np.zeros(5, dtype=int)
    pred = np.array([1, 1, 1, 2, 2])
    energy = np.array([2.0, 2.0, 2.0, 2.0, 2.0])
    m = match_clusters(truth, pred, energy)
    np.testing.assert_allclose(m.pair_iou, [0.6])
    c = m.counts
    assert (c.tp, c.fp, c.fn) == (1, 1, 0)
    assert c.sq == pytest.approx(0.6)
    assert c.rq == pytest.approx(1 / 1.5)
    assert c.pq == pytest.approx(0.6 / 1.5)
    # an even split matches nothing: IoU 0.5 is not > 0.5
    c = panoptic_quality(np.zeros(4, int), np.array([1, 1, 2, 2]), np.ones(4))
    assert (c.tp, c.fp, c.fn, c.pq) == (0, 2, 1, 0.0)


def test_merged_clusters() -> None:
    # truth 0 (energy 3) and 1 (energy 1) merged into predicted 5: IoU 3/4 with truth 0
    truth = np.array([0, 0, 0, 1])
    pred = np.full(4, 5)
    c = panoptic_quality(truth, pred, np.ones(4))
    assert (c.tp, c.fp, c.fn) == (1, 0, 1)
    assert c.sq == pytest.approx(0.75)
    assert c.pq == pytest.approx(0.75 / 1.5)


def test_noise_hits_count_in_the_union() -> None:
    # predicted cluster = truth cluster (2 GeV) + a truth-noise hit (1 GeV): IoU 2 / 3;
    # a truth hit predicted as noise enlarges e(T) the same way
    truth = np.array([0, 0, -1])
    m = match_clusters(truth, np.array([4, 4, 4]), np.ones(3))
    np.testing.assert_allclose(m.pair_iou, [2 / 3])
    m = match_clusters(np.array([0, 0, 0]), np.array([4, 4, -1]), np.ones(3))
    np.testing.assert_allclose(m.pair_iou, [2 / 3])


def test_energy_weighting_changes_the_match() -> None:
    truth = np.array([0, 0, 0, 0])
    pred = np.array([1, 1, 2, 2])
    energy = np.array([5.0, 4.0, 0.5, 0.5])  # cluster 1 holds 90 % of the energy
    assert panoptic_quality(truth, pred, energy).tp == 1
    assert panoptic_quality(truth, pred, energy, weighted=False).tp == 0


def test_vectorised_matching_agrees_with_loops() -> None:
    rng = np.random.default_rng(11)
    for _ in range(5):
        truth, pred, energy = _random_event(rng)
        for weighted in (True, False):
            w = energy if weighted else np.ones(len(truth))
            ref = _brute_force_iou(truth, pred, w)
            m = match_clusters(truth, pred, energy, weighted=weighted)
            got = {(int(m.pred_ids[p]), int(m.truth_ids[t])): iou
                   for p, t, iou in zip(m.pair_pred, m.pair_truth, m.pair_iou)}
            want = {k: v for k, v in ref.items() if v > 0.5}
            assert got.keys() == want.keys()
            for key in got:
                assert got[key] == pytest.approx(want[key])
            c = m.counts
            assert c.tp + c.fn == len(np.unique(truth[truth >= 0]))
            assert c.tp + c.fp == len(np.unique(pred[pred >= 0]))


def test_against_torchmetrics_unweighted() -> None:
    """Unweighted PQ equals torchmetrics' PanopticQuality for the "thing" class.

    Encoding: every hit is a point with (category, instance) = (1, cluster id) for a
    cluster and (0, 0) for noise, category 0 being a *stuff* class (not void). torchmetrics
    removes from the union only the overlap with *void* points and skips FP / FN only when
    they are mostly void; with no void points its thing IoU is |P n T| / (|P| + |T| - |P n T|)
    with every hit of P and T counted, which is exactly our convention for noise hits.
    Its per-class SQ is 0 without TP, as ours. The stuff class (noise) is matched too, but
    only the thing class is compared: with ``return_per_class`` and ``return_sq_and_rq`` the
    output has shape (classes, 3) = (pq, sq, rq) per class, things first, so row 0.
    """
    torch = pytest.importorskip("torch")
    tm = pytest.importorskip("torchmetrics.detection")

    def encode(labels: np.ndarray) -> object:
        cat = (labels >= 0).astype(np.int64)
        inst = np.where(labels >= 0, labels, 0)
        return torch.from_numpy(np.stack([cat, inst], axis=-1))[None]  # (B=1, N, 2)

    metric = tm.PanopticQuality(things={1}, stuffs={0}, return_sq_and_rq=True,
                                return_per_class=True)
    rng = np.random.default_rng(5)
    total = PanopticCounts()
    for _ in range(6):
        truth, pred, energy = _random_event(rng, n=60, k=5)
        ours = panoptic_quality(truth, pred, energy, weighted=False)
        total += ours
        single = tm.PanopticQuality(things={1}, stuffs={0}, return_sq_and_rq=True,
                                    return_per_class=True)
        pq, sq, rq = single(encode(pred), encode(truth))[0].tolist()
        assert (ours.pq, ours.sq, ours.rq) == (pytest.approx(pq), pytest.approx(sq),
                                               pytest.approx(rq))
        metric.update(encode(pred), encode(truth))
    pq, sq, rq = metric.compute()[0].tolist()
    assert total.tp > 0 and total.fp > 0 and total.fn > 0  # the events exercise all cases
    assert (total.pq, total.sq, total.rq) == (pytest.approx(pq), pytest.approx(sq),
                                              pytest.approx(rq))


def test_min_truth_energy_ignores_small_truth_clusters() -> None:
    # truth 0: 10 GeV, matched; truth 1: 0.2 GeV, matched by pred 8; truth 2: 0.1 GeV, missed
    truth = np.array([0, 0, 1, 2])
    pred = np.array([7, 7, 8, -1])
    energy = np.array([5.0, 5.0, 0.2, 0.1])
    c = panoptic_quality(truth, pred, energy)
    assert (c.tp, c.fp, c.fn) == (2, 0, 1)
    m = match_clusters(truth, pred, energy, min_truth_energy=0.5)
    assert (m.counts.tp, m.counts.fp, m.counts.fn) == (1, 0, 0)
    np.testing.assert_array_equal(m.truth_ignored, [False, True, True])
    np.testing.assert_array_equal(m.pred_ignored, [False, True])
    # with generated energies as the reference, truth 1 is kept (3 GeV) and truth 0 dropped
    m = match_clusters(truth, pred, energy, min_truth_energy=0.5,
                       truth_energy=np.array([0.4, 3.0, 0.3]))
    assert (m.counts.tp, m.counts.fp, m.counts.fn) == (1, 0, 0)
    np.testing.assert_array_equal(m.pred_ignored, [True, False])


def test_efficiency_and_fake_rate_curves() -> None:
    truth = np.array([0, 0, 1, 2, 2, -1])
    pred = np.array([4, 4, -1, 6, 6, 9])
    energy = np.array([1.0, 1.0, 3.0, 10.0, 20.0, 0.5])
    m = match_clusters(truth, pred, energy)
    edges = [0.0, 5.0, 50.0]
    eff = efficiency_curve(m, edges)  # truth energies 2 (matched), 3 (missed), 30 (matched)
    assert (eff["n_total"], eff["n_selected"]) == ([2, 1], [1, 1])
    assert eff["fraction"] == [0.5, 1.0]
    assert eff["error"] == [pytest.approx(np.sqrt(0.25 / 2)), 0.0]
    assert eff["overall"] == pytest.approx(2 / 3)
    fake = fake_rate_curve([m, m], edges)  # pred energies 2, 30 matched, 0.5 fake; twice
    assert (fake["n_total"], fake["n_selected"], fake["fraction"]) == ([4, 2], [2, 0],
                                                                       [0.5, 0.0])
    gen = efficiency_curve(match_clusters(truth, pred, energy,
                                          truth_energy=np.array([60.0, 1.0, 40.0])), edges)
    assert gen["n_total"] == [1, 1]  # 60 GeV is outside the bins but in "overall"
    assert gen["overall"] == pytest.approx(2 / 3)
    empty = binned_fraction(np.zeros(0), np.zeros(0, bool), edges)
    assert np.isnan(empty["fraction"]).all() and np.isnan(empty["overall"])


def test_bad_arguments() -> None:
    truth, pred = np.array([0, 1]), np.array([0, 0])
    with pytest.raises(ConfigError, match="energy is required"):
        match_clusters(truth, pred)
    assert match_clusters(truth, pred, weighted=False).counts.tp == 0
    with pytest.raises(ConfigError, match="min_truth_energy"):
        match_clusters(truth, pred, np.ones(2), min_truth_energy=-1.0)
    with pytest.raises(InvalidDataError, match="truth_energy must be .*at least 2"):
        match_clusters(truth, pred, np.ones(2), truth_energy=np.ones(1))
    with pytest.raises(InvalidDataError, match="truth_energy must be finite"):
        match_clusters(truth, pred, np.ones(2), truth_energy=np.array([1.0, np.nan]))
    with pytest.raises(ConfigError, match="strictly increasing"):
        binned_fraction(np.ones(1), np.ones(1, bool), [2.0, 1.0])
