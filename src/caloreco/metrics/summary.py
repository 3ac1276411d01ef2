"""Evaluation of a clustering over many events, reduced to one report dictionary.

:class:`ClusteringEvaluator` takes one event at a time (per-hit truth and predicted labels,
hit energies, optionally the truth-cluster types and energies) and accumulates

- hit-level mIoU, unweighted and energy-weighted (:mod:`caloreco.metrics.segmentation`),
- SQ / RQ / PQ, energy-weighted and unweighted (:mod:`caloreco.metrics.panoptic`),
- efficiency versus truth energy and fake rate versus predicted energy, from the
  energy-weighted matching,
- the energy response of matched clusters per truth type (:mod:`caloreco.metrics.response`),
- the failure modes of the unmatched clusters (:mod:`caloreco.metrics.failures`).

Data-set values sum intersections, unions, IoUs and counts over events before dividing;
per-event values are kept as well. :func:`evaluate_events` runs it over
:class:`~caloreco.data.event.Event` objects.
"""

from __future__ import annotations

from itertools import zip_longest
from typing import Any, Iterable

import numpy as np

from caloreco.data.event import Event
from caloreco.errors import ConfigError, InvalidDataError
from caloreco.metrics.failures import FailureCounts, classify_failures
from caloreco.metrics.panoptic import (
    DEFAULT_ENERGY_BINS,
    PanopticCounts,
    binned_fraction,
    check_edges,
    match_clusters,
)
from caloreco.metrics.response import RESPONSE_REFERENCES, energy_response, matched_energies
from caloreco.metrics.segmentation import CLASS_NAMES, SegmentationCounts, segmentation_counts

#: Per-event quantities listed under ``result()["per_event"]``.
PER_EVENT_KEYS = ("miou", "miou_weighted", "sq", "rq", "pq", "sq_unweighted", "rq_unweighted",
                  "pq_unweighted")


class ClusteringEvaluator:
    """Accumulates clustering metrics event by event.

    Args:
        energy_bins: bin edges [GeV] of the efficiency, fake-rate and response curves
            (default :data:`~caloreco.metrics.panoptic.DEFAULT_ENERGY_BINS`).
        min_truth_energy: truth clusters below this reference energy [GeV] are ignored in
            the matching metrics (default 0: none); see :mod:`caloreco.metrics.panoptic`.
        response_reference: ``"deposited"`` (default, E_true = sum of the truth cluster's hit
            energies) or ``"generated"`` (the ``truth_energy`` passed to :meth:`add`, which
            then becomes required).

    Example::

        ev = ClusteringEvaluator()
        for truth, pred, energy in batches:
            ev.add(truth, pred, energy)
        report = ev.result()
    """

    def __init__(self, *, energy_bins: object = DEFAULT_ENERGY_BINS,
                 min_truth_energy: float = 0.0, response_reference: str = "deposited") -> None:
        self.energy_bins = check_edges(energy_bins)
        if not np.isfinite(min_truth_energy) or min_truth_energy < 0:
            raise ConfigError(f"min_truth_energy must be a finite number >= 0 [GeV], got "
                              f"{min_truth_energy}")
        if response_reference not in RESPONSE_REFERENCES:
            raise ConfigError(f"response_reference must be one of {list(RESPONSE_REFERENCES)}, "
                              f"got {response_reference!r}")
        self.min_truth_energy = float(min_truth_energy)
        self.response_reference = response_reference
        self.reset()

    def reset(self) -> None:
        """Forget every event added so far."""
        self.n_events = 0
        self.n_hits = 0
        self._seg = SegmentationCounts()
        self._seg_w = SegmentationCounts()
        self._pq = PanopticCounts()
        self._pq_u = PanopticCounts()
        self._failures = FailureCounts()
        self._per_event: dict[str, list[float]] = {k: [] for k in PER_EVENT_KEYS}
        # concatenated at result(): (values, selected) of the curves, response inputs
        self._eff: list[tuple[np.ndarray, np.ndarray]] = []
        self._fake: list[tuple[np.ndarray, np.ndarray]] = []
        self._resp: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._has_types = False

    def add(self, truth: object, pred: object, energy: object, *,
            truth_types: object | None = None, truth_energy: object | None = None,
            event: int | None = None) -> dict[str, float]:
        """Add one event.

        Args:
            truth: (N,) truth-cluster index per hit, -1 for noise.
            pred: (N,) predicted-cluster id per hit, -1 for noise.
            energy: (N,) hit energies [GeV].
            truth_types: (K,) optional :class:`~caloreco.data.event.ClusterType` code per
                truth-cluster index, for the per-type response.
            truth_energy: (K,) optional energy per truth-cluster index [GeV] (e.g. generated):
                reference of ``min_truth_energy`` and of the efficiency curve, and E_true
                when ``response_reference="generated"``.
            event: event id for error messages.

        Returns:
            The event's values of :data:`PER_EVENT_KEYS`.

        Raises:
            InvalidDataError: bad labels or energies (naming the argument and the event).
            ConfigError: ``response_reference="generated"`` without ``truth_energy``.
        """
        if energy is None:
            raise ConfigError("energy (the hit energies) is required by ClusteringEvaluator.add")
        if self.response_reference == "generated" and truth_energy is None:
            raise ConfigError("response_reference='generated' needs truth_energy in every "
                              "ClusteringEvaluator.add call")
        seg = segmentation_counts(truth, pred, event=event)
        seg_w = segmentation_counts(truth, pred, energy, event=event)
        match = match_clusters(truth, pred, energy, weighted=True,
                               min_truth_energy=self.min_truth_energy,
                               truth_energy=truth_energy, event=event)
        match_u = match_clusters(truth, pred, energy, weighted=False,
                                 min_truth_energy=self.min_truth_energy,
                                 truth_energy=truth_energy, event=event)
        resp = matched_energies(match, reference=self.response_reference,
                                truth_types=truth_types, event=event)
        failures = classify_failures(match, truth, pred, energy, event=event)
        # all checks passed: update the state
        pq, pq_u = match.counts, match_u.counts
        self.n_events += 1
        self.n_hits += len(np.asarray(truth))
        self._seg += seg
        self._seg_w += seg_w
        self._pq += pq
        self._pq_u += pq_u
        self._failures += failures
        t_keep, p_keep = ~match.truth_ignored, ~match.pred_ignored
        self._eff.append((match.truth_reference_energy[t_keep], match.truth_matched[t_keep]))
        self._fake.append((match.pred_deposit[p_keep], ~match.pred_matched[p_keep]))
        self._resp.append(resp)
        self._has_types |= truth_types is not None
        values = {"miou": seg.miou, "miou_weighted": seg_w.miou, "sq": pq.sq, "rq": pq.rq,
                  "pq": pq.pq, "sq_unweighted": pq_u.sq, "rq_unweighted": pq_u.rq,
                  "pq_unweighted": pq_u.pq}
        for key, value in values.items():
            self._per_event[key].append(value)
        return values

    def result(self) -> dict[str, Any]:
        """The report: data-set metrics, curves, response and per-event lists.

        Keys: ``n_events``, ``n_hits``; ``miou``, ``miou_weighted`` and ``iou_per_class``,
        ``iou_per_class_weighted`` (``{"noise": .., "signal": ..}``); ``sq, rq, pq, tp, fp,
        fn`` (energy-weighted) and the same with suffix ``_unweighted``; ``efficiency`` and
        ``fake_rate`` (:func:`~caloreco.metrics.panoptic.binned_fraction` dicts);
        ``response`` (:func:`~caloreco.metrics.response.energy_response`, the type groups
        when any event had ``truth_types``); ``failures`` (energy-weighted matching,
        :meth:`~caloreco.metrics.failures.FailureCounts.as_dict`); ``per_event`` (lists of
        :data:`PER_EVENT_KEYS`); ``settings``. Undefined values are NaN.
        """
        def cat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
            return np.concatenate([np.zeros(0, dtype=dtype), *parts])

        pq, pq_u = self._pq.as_dict(), self._pq_u.as_dict()
        reco, true, types = (cat([r[i] for r in self._resp], d)
                             for i, d in enumerate((np.float64, np.float64, np.int64)))
        return {
            "n_events": self.n_events,
            "n_hits": self.n_hits,
            "miou": self._seg.miou,
            "miou_weighted": self._seg_w.miou,
            "iou_per_class": dict(zip(CLASS_NAMES, self._seg.iou.tolist())),
            "iou_per_class_weighted": dict(zip(CLASS_NAMES, self._seg_w.iou.tolist())),
            **{k: pq[k] for k in ("sq", "rq", "pq", "tp", "fp", "fn")},
            **{f"{k}_unweighted": pq_u[k] for k in ("sq", "rq", "pq", "tp", "fp", "fn")},
            "efficiency": binned_fraction(cat([v for v, _ in self._eff], np.float64),
                                          cat([s for _, s in self._eff], bool),
                                          self.energy_bins),
            "fake_rate": binned_fraction(cat([v for v, _ in self._fake], np.float64),
                                         cat([s for _, s in self._fake], bool),
                                         self.energy_bins),
            "response": energy_response(reco, true, types if self._has_types else None,
                                        edges=self.energy_bins),
            "failures": self._failures.as_dict(),
            "per_event": {k: list(v) for k, v in self._per_event.items()},
            "settings": {"energy_bins": self.energy_bins.tolist(),
                         "min_truth_energy": self.min_truth_energy,
                         "response_reference": self.response_reference},
        }


def evaluate_events(events: Iterable[Event], predictions: Iterable[object],
                    **options: Any) -> dict[str, Any]:
    """Evaluate per-hit predicted labels against the truth of :class:`Event` objects.

    Uses ``hits["truth_cluster"]``, ``hits["energy"]``, ``clusters["type"]`` and
    ``clusters["energy"]`` (generated energy, as ``truth_energy``) of each event.

    Args:
        events: the events.
        predictions: one (N,) integer label array per event, -1 for noise, in the same order.
        **options: :class:`ClusteringEvaluator` arguments.

    Returns:
        :meth:`ClusteringEvaluator.result`.

    Raises:
        InvalidDataError: a different number of events and predictions, or a prediction
            whose length is not the event's hit count (naming the event id).
    """
    evaluator = ClusteringEvaluator(**options)
    missing = object()
    for i, (event, pred) in enumerate(zip_longest(events, predictions, fillvalue=missing)):
        if event is missing or pred is missing:
            which = "events" if event is missing else "predictions"
            raise InvalidDataError(f"events and predictions must have the same length; "
                                   f"{which} ran out after {i} entries")
        if not isinstance(event, Event):
            raise InvalidDataError(f"events must yield caloreco Event objects, entry {i} is "
                                   f"a {type(event).__name__}")
        evaluator.add(event.hits["truth_cluster"], pred, event.hits["energy"],
                      truth_types=event.clusters["type"], truth_energy=event.clusters["energy"],
                      event=event.event_id)
    return evaluator.result()
