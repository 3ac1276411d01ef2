"""Tests of the accumulation of all metrics over events into one report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from caloreco.data.event import CLUSTER_FIELDS, ClusterType, Event
from caloreco.errors import ConfigError, InvalidDataError
from caloreco.metrics import ClusteringEvaluator, evaluate_events, panoptic_quality

# event A: truth 0 split 3 + 1 GeV (pred 4 matches, IoU 3/4), truth 1 perfectly found
A = dict(truth=np.array([0, 0, 0, 0, 1, 1, -1]), pred=np.array([4, 4, 4, 5, 6, 6, -1]),
         energy=np.array([1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 0.5]),
         truth_types=np.array([ClusterType.EM, ClusterType.HAD]),
         truth_energy=np.array([4.0, 5.0]))
# event B: one truth cluster predicted as noise, one predicted cluster made of noise
B = dict(truth=np.array([0, 0, -1, -1]), pred=np.array([-1, -1, 2, 2]),
         energy=np.array([1.0, 1.0, 1.0, 1.0]),
         truth_types=np.array([ClusterType.MIP]), truth_energy=np.array([2.0]))


def _event(truth: np.ndarray, energy: np.ndarray, types: np.ndarray, gen: np.ndarray,
           event_id: int) -> Event:
    n, k = len(truth), len(types)
    hits = dict(x=np.zeros(n), y=np.zeros(n), z=np.zeros(n), energy=energy, time=np.zeros(n),
                layer=np.ones(n), cell_id=np.arange(n), truth_cluster=truth)
    clusters = {key: np.zeros(k, dtype=dt) for key, dt in CLUSTER_FIELDS.items()}
    clusters.update(energy=gen, type=types)
    return Event.from_columns(hits, clusters, event_id=event_id)


def test_accumulates_over_events() -> None:
    ev = ClusteringEvaluator(energy_bins=[0.0, 3.0, 10.0])
    first = ev.add(**A)
    ev.add(**B)
    r = ev.result()
    assert json.loads(json.dumps(r)).keys() == r.keys()  # plain Python values
    assert (r["n_events"], r["n_hits"]) == (2, 11)
    assert first["pq"] == pytest.approx((0.75 + 1.0) / 2.5)
    # data set: TP 2 (IoU 3/4 and 1), FP 1 + 1, FN 1
    total = (panoptic_quality(A["truth"], A["pred"], A["energy"])
             + panoptic_quality(B["truth"], B["pred"], B["energy"]))
    assert (r["tp"], r["fp"], r["fn"]) == (2, 2, 1)
    assert r["pq"] == pytest.approx(1.75 / 3.5) == pytest.approx(total.pq)
    assert r["sq"] == pytest.approx(0.875)
    assert r["pq_unweighted"] == pytest.approx(1.75 / 3.5)
    assert r["per_event"]["pq"] == [pytest.approx(0.7), 0.0]
    assert r["per_event"]["sq"] == [pytest.approx(0.875), 0.0]  # SQ 0 without TP
    # hit mIoU from summed counts: signal (6 + 0) / (6 + 4), noise (1 + 0) / (1 + 4)
    assert r["iou_per_class"] == {"noise": pytest.approx(0.2), "signal": pytest.approx(0.6)}
    assert r["miou"] == pytest.approx(0.4)
    assert r["per_event"]["miou"] == [1.0, 0.0]
    # efficiency in generated energy: 4 (matched), 5 (matched), 2 (missed)
    assert r["efficiency"]["n_total"] == [1, 2]
    assert r["efficiency"]["fraction"] == [0.0, 1.0]
    # fake rate in e(P): pred 4 (3 GeV) ok, 5 (1 GeV) fake, 6 (4 GeV) ok, 2 (2 GeV) fake
    assert (r["fake_rate"]["n_total"], r["fake_rate"]["n_selected"]) == ([2, 2], [2, 0])
    resp = r["response"]
    assert resp["ALL"]["count"] == 2
    assert resp["EM"]["median"] == pytest.approx(0.75)  # 3 GeV / e(T) = 4 GeV
    assert resp["HAD"]["median"] == pytest.approx(1.0)
    assert resp["MIP"]["count"] == 0
    ev.reset()
    assert ev.result()["n_events"] == 0 and np.isnan(ev.result()["pq"])


def test_generated_reference_and_threshold() -> None:
    ev = ClusteringEvaluator(response_reference="generated", min_truth_energy=3.0)
    ev.add(**A)
    ev.add(**B)  # its only truth cluster (2 GeV) is ignored: no FN
    r = ev.result()
    assert (r["tp"], r["fp"], r["fn"]) == (2, 2, 0)
    assert r["response"]["EM"]["median"] == pytest.approx(3.0 / 4.0)
    assert r["response"]["HAD"]["median"] == pytest.approx(4.0 / 5.0)
    assert r["settings"]["response_reference"] == "generated"
    with pytest.raises(ConfigError, match="needs truth_energy"):
        ev.add(A["truth"], A["pred"], A["energy"])


def test_evaluate_events_perfect_prediction(tiny_events: list[Event]) -> None:
    preds = [e.hits["truth_cluster"].copy() for e in tiny_events]
    r = evaluate_events(tiny_events, preds)
    assert r["n_events"] == len(tiny_events)
    assert (r["miou"], r["miou_weighted"], r["pq"], r["pq_unweighted"]) == (1.0, 1.0, 1.0, 1.0)
    assert r["efficiency"]["overall"] == 1.0 and r["fake_rate"]["overall"] == 0.0
    assert r["response"]["EM"]["count"] == len(tiny_events)
    assert r["response"]["EM"]["median"] == pytest.approx(1.0)
    noise = [np.full(e.n_hits, -1) for e in tiny_events]
    r = evaluate_events(tiny_events, noise)
    assert (r["pq"], r["fn"], r["efficiency"]["overall"]) == (0.0, len(tiny_events), 0.0)


def test_evaluate_events_checks_inputs() -> None:
    events = [_event(A["truth"], A["energy"], A["truth_types"], A["truth_energy"], 7),
              _event(B["truth"], B["energy"], B["truth_types"], B["truth_energy"], 8)]
    r = evaluate_events(events, [A["pred"], B["pred"]])
    assert (r["tp"], r["fp"], r["fn"]) == (2, 2, 1)
    with pytest.raises(InvalidDataError, match="predictions ran out after 1"):
        evaluate_events(events, [A["pred"]])
    with pytest.raises(InvalidDataError, match="events ran out after 2"):
        evaluate_events(events, [A["pred"], B["pred"], B["pred"]])
    with pytest.raises(InvalidDataError, match="pred has 3 hits but truth has 4") as info:
        evaluate_events(events, [A["pred"], B["pred"][:3]])
    assert "event: 8" in str(info.value)
    with pytest.raises(ConfigError, match="response_reference"):
        evaluate_events(events, [A["pred"], B["pred"]], response_reference="seen")
    with pytest.raises(ConfigError, match="min_truth_energy"):
        ClusteringEvaluator(min_truth_energy=float("nan"))
    with pytest.raises(ConfigError, match="energy_bins"):
        ClusteringEvaluator(energy_bins=[1.0])
