"""Cluster-level quality: IoU matching of predicted and truth clusters, SQ / RQ / PQ.

Panoptic quality follows Kirillov et al., "Panoptic Segmentation", CVPR 2019
(https://arxiv.org/abs/1801.00868), with hits in place of pixels. For a predicted cluster P
(hits with ``pred == p``) and a truth cluster T (hits with ``truth == t``)

.. math::
    \\mathrm{IoU}(P, T) = \\frac{w(P \\cap T)}{w(P) + w(T) - w(P \\cap T)}

where :math:`w` sums the hit energies (energy-weighted, the default) or counts hits
(unweighted). **Noise convention:** hits with ``truth == -1`` belong to no truth cluster and
hits with ``pred == -1`` to no predicted cluster, but :math:`w(P)` counts *every* hit of P,
including its truth-noise hits, and :math:`w(T)` every hit of T, including those predicted as
noise. So absorbing noise into a cluster, or losing a cluster's hits to the noise class, both
lower the IoU. (This is the panopticapi / torchmetrics result when noise is a "stuff" class,
not "void".)

A pair matches when IoU > 0.5; with that threshold each cluster has at most one match (two
clusters cannot both hold more than half of a third). Then, with TP the matched pairs, FP the
unmatched predicted clusters and FN the unmatched truth clusters,

.. math::
    \\mathrm{SQ} = \\frac{\\sum_{TP} \\mathrm{IoU}}{|TP|}, \\quad
    \\mathrm{RQ} = \\frac{|TP|}{|TP| + \\frac12 |FP| + \\frac12 |FN|}, \\quad
    \\mathrm{PQ} = \\mathrm{SQ} \\cdot \\mathrm{RQ}.

As in panopticapi, SQ is 0 when there is no TP (so PQ = SQ * RQ always) and all three are NaN
when there is nothing to evaluate (no cluster on either side). Over a data set the IoU sums
and counts are added (:class:`PanopticCounts` adds with ``+``) before dividing.

Details:

- Truth clusters with no hit in the event do not exist for the metric.
- ``min_truth_energy`` (default 0) ignores small truth clusters: a truth cluster whose
  reference energy (``truth_energy[t]`` if given, else :math:`e(T)`, the sum of its hit
  energies) is below it is neither TP nor FN, and a predicted cluster matched to it is not
  an FP (like a "crowd" region in COCO). Its hits still count in the IoU of other pairs.
- The contingency of P x T intersections is built without a loop over hits: the pair key
  ``p * K_T + t`` of each hit with both labels set is reduced with ``np.unique`` and
  ``np.bincount`` (a sparse matrix: only pairs sharing a hit are stored).

Efficiency and fake rate (:func:`efficiency_curve`, :func:`fake_rate_curve`) use the same
matching: the fraction of (non-ignored) truth clusters matched, in bins of their reference
energy, and the fraction of predicted clusters not matched, in bins of :math:`e(P)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

from caloreco.errors import ConfigError, InvalidDataError
from caloreco.metrics.segmentation import check_energy, check_hit_inputs

#: IoU above which a predicted and a truth cluster match (Kirillov et al. 2019; > 0.5 makes
#: the matching unique).
MATCH_IOU = 0.5

#: Default energy bin edges [GeV] of the efficiency, fake-rate and response curves: roughly
#: logarithmic from the MIP-like sub-GeV clusters to TeV showers. Values outside
#: [edges[0], edges[-1]] fall in no bin (the last edge is inclusive, as in np.histogram).
DEFAULT_ENERGY_BINS: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0,
                                          200.0, 500.0, 1000.0)


def check_edges(edges: object, name: str = "energy_bins") -> np.ndarray:
    """Bin edges as a float64 array of >= 2 finite, strictly increasing values.

    Raises:
        ConfigError: naming ``name`` otherwise.
    """
    try:
        arr = np.asarray(edges, dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a sequence of numbers, got {edges!r}") from None
    if arr.ndim != 1 or len(arr) < 2 or not np.isfinite(arr).all() or (np.diff(arr) <= 0).any():
        raise ConfigError(f"{name} must be at least two finite, strictly increasing bin edges, "
                          f"got {arr.tolist()}")
    return arr


def bin_index(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin of each value (np.histogram convention, last edge inclusive), -1 outside."""
    idx = np.searchsorted(edges, values, side="right") - 1
    idx[values == edges[-1]] = len(edges) - 2
    idx[(idx < 0) | (idx >= len(edges) - 1)] = -1
    return idx


def check_per_cluster(values: object, name: str, truth: np.ndarray, *,
                      event: int | None = None) -> np.ndarray:
    """A per-truth-cluster array long enough to be indexed by every label in ``truth``.

    Raises:
        InvalidDataError: naming ``name`` if it is not 1-D or shorter than max(truth) + 1.
    """
    arr = np.asarray(values)
    need = int(truth.max()) + 1 if len(truth) else 0
    if arr.ndim != 1 or len(arr) < need:
        raise InvalidDataError(f"{name} must be a one-dimensional array with one entry per "
                               f"truth cluster (at least {need}, the largest truth label + 1), "
                               f"got shape {arr.shape}", event=event)
    return arr


@dataclass(frozen=True)
class PanopticCounts:
    """Summed IoU of the true positives and the TP / FP / FN counts; add with ``+``."""

    iou_sum: float = 0.0
    tp: int = 0
    fp: int = 0
    fn: int = 0

    def __add__(self, other: PanopticCounts) -> PanopticCounts:
        return PanopticCounts(self.iou_sum + other.iou_sum, self.tp + other.tp,
                              self.fp + other.fp, self.fn + other.fn)

    @property
    def _denominator(self) -> float:
        return self.tp + 0.5 * self.fp + 0.5 * self.fn

    @property
    def sq(self) -> float:
        """Segmentation quality: mean IoU of the TPs (0 without TP; NaN if nothing to match)."""
        if self._denominator == 0:
            return float("nan")
        return self.iou_sum / self.tp if self.tp else 0.0

    @property
    def rq(self) -> float:
        """Recognition quality TP / (TP + FP/2 + FN/2) (an F1 score); NaN if empty."""
        d = self._denominator
        return self.tp / d if d else float("nan")

    @property
    def pq(self) -> float:
        """Panoptic quality SQ * RQ = sum IoU / (TP + FP/2 + FN/2); NaN if empty."""
        d = self._denominator
        return self.iou_sum / d if d else float("nan")

    def as_dict(self) -> dict[str, float | int]:
        """``sq, rq, pq, tp, fp, fn, iou_sum`` as plain Python numbers."""
        return {"sq": self.sq, "rq": self.rq, "pq": self.pq, "tp": self.tp, "fp": self.fp,
                "fn": self.fn, "iou_sum": float(self.iou_sum)}


@dataclass(frozen=True)
class ClusterMatch:
    """The clusters of one event and their IoU > 0.5 matches.

    Clusters are held in compact order: index i of the truth arrays is the truth cluster
    ``truth_ids[i]``, index j of the predicted arrays the predicted cluster ``pred_ids[j]``.

    Shapes:
        ``truth_ids, truth_deposit, truth_generated, truth_ignored``: (K_T,), the truth
        clusters with at least one hit; ``pred_ids, pred_deposit``: (K_P,);
        ``pair_truth, pair_pred, pair_iou``: (M,) matched pairs (compact indices), including
        pairs whose truth cluster is ignored.
    """

    truth_ids: np.ndarray
    pred_ids: np.ndarray
    #: e(T): sum of the hit energies of each truth cluster [GeV] (hit counts if no energy).
    truth_deposit: np.ndarray
    #: e(P): sum of the hit energies of each predicted cluster [GeV] (hit counts if no energy).
    pred_deposit: np.ndarray
    #: ``truth_energy[truth_ids]`` when a per-truth-cluster energy was given, else None.
    truth_generated: np.ndarray | None
    truth_ignored: np.ndarray
    pair_truth: np.ndarray
    pair_pred: np.ndarray
    pair_iou: np.ndarray
    weighted: bool

    @property
    def truth_reference_energy(self) -> np.ndarray:
        """(K_T,) energy used for ``min_truth_energy`` and efficiency: generated if given."""
        return self.truth_generated if self.truth_generated is not None else self.truth_deposit

    @property
    def truth_matched(self) -> np.ndarray:
        """(K_T,) bool: the truth cluster has a match."""
        out = np.zeros(len(self.truth_ids), dtype=bool)
        out[self.pair_truth] = True
        return out

    @property
    def pred_matched(self) -> np.ndarray:
        """(K_P,) bool: the predicted cluster has a match."""
        out = np.zeros(len(self.pred_ids), dtype=bool)
        out[self.pair_pred] = True
        return out

    @property
    def pred_ignored(self) -> np.ndarray:
        """(K_P,) bool: matched to an ignored truth cluster (neither TP nor FP)."""
        out = np.zeros(len(self.pred_ids), dtype=bool)
        out[self.pair_pred[self.truth_ignored[self.pair_truth]]] = True
        return out

    @property
    def pair_kept(self) -> np.ndarray:
        """(M,) bool: the pair is a true positive (its truth cluster is not ignored)."""
        return ~self.truth_ignored[self.pair_truth]

    @property
    def counts(self) -> PanopticCounts:
        """The event's IoU sum and TP / FP / FN."""
        kept = self.pair_kept
        tp = int(kept.sum())
        fn = int((~self.truth_ignored & ~self.truth_matched).sum())
        fp = int((~self.pred_matched).sum())
        return PanopticCounts(float(self.pair_iou[kept].sum()), tp, fp, fn)


def match_clusters(truth: object, pred: object, energy: object | None = None, *,
                   weighted: bool = True, min_truth_energy: float = 0.0,
                   truth_energy: object | None = None,
                   event: int | None = None) -> ClusterMatch:
    """Match the predicted to the truth clusters of one event by IoU > 0.5.

    Args:
        truth: (N,) truth-cluster index per hit, -1 for noise.
        pred: (N,) predicted-cluster id per hit (any non-negative integers), -1 for noise.
        energy: (N,) hit energies [GeV]; needed when ``weighted``. Without it the deposits
            of :class:`ClusterMatch` are hit counts.
        weighted: energy-weighted IoU (default) or hit-count IoU.
        min_truth_energy: truth clusters with reference energy below this [GeV] are ignored
            (see the module docstring); default 0 keeps all.
        truth_energy: (K,) optional energy per truth-cluster index [GeV], e.g. the generated
            ``clusters["energy"]``; it replaces e(T) as the reference energy.
        event: event id for error messages.

    Shapes:
        N hits, K truth-table rows; see :class:`ClusterMatch` for the output.

    Raises:
        InvalidDataError: for bad labels, energies or a too short ``truth_energy``.
        ConfigError: for ``weighted`` without ``energy`` or a bad ``min_truth_energy``.
    """
    t, p, e = check_hit_inputs(truth, pred, energy, event=event)
    if weighted and e is None:
        raise ConfigError("energy is required for the energy-weighted IoU (weighted=True); "
                          "pass the hit energies or weighted=False")
    if not np.isfinite(min_truth_energy) or min_truth_energy < 0:
        raise ConfigError(f"min_truth_energy must be a finite number >= 0 [GeV], got "
                          f"{min_truth_energy}")
    n = len(t)
    hit_e = e if e is not None else np.ones(n)
    w = hit_e if weighted else np.ones(n)

    tm, pm = t >= 0, p >= 0
    truth_ids, t_sig = np.unique(t[tm], return_inverse=True)
    pred_ids, p_sig = np.unique(p[pm], return_inverse=True)
    n_t, n_p = len(truth_ids), len(pred_ids)
    t_area = np.bincount(t_sig, weights=w[tm], minlength=n_t)
    p_area = np.bincount(p_sig, weights=w[pm], minlength=n_p)
    truth_deposit = np.bincount(t_sig, weights=hit_e[tm], minlength=n_t)
    pred_deposit = np.bincount(p_sig, weights=hit_e[pm], minlength=n_p)

    # sparse P x T contingency: one key per (pred, truth) pair sharing at least one hit
    t_idx = np.full(n, -1, dtype=np.int64)
    p_idx = np.full(n, -1, dtype=np.int64)
    t_idx[tm], p_idx[pm] = t_sig, p_sig
    both = tm & pm
    keys, inv = np.unique(p_idx[both] * n_t + t_idx[both], return_inverse=True)
    inter = np.bincount(inv, weights=w[both], minlength=len(keys))
    pi, ti = (keys // n_t, keys % n_t) if n_t else (keys, keys)
    union = p_area[pi] + t_area[ti] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        # clip: summing in different orders can leave union a rounding error below inter
        iou = np.minimum(np.where(union > 0, inter / union, 0.0), 1.0)
    sel = iou > MATCH_IOU

    generated = None
    if truth_energy is not None:
        table = check_per_cluster(truth_energy, "truth_energy", t, event=event)
        generated = check_energy(table, "truth_energy", len(table), event=event,
                                 what="truth cluster")[truth_ids]
    ref = generated if generated is not None else truth_deposit
    return ClusterMatch(truth_ids=truth_ids, pred_ids=pred_ids, truth_deposit=truth_deposit,
                        pred_deposit=pred_deposit, truth_generated=generated,
                        truth_ignored=ref < min_truth_energy, pair_truth=ti[sel],
                        pair_pred=pi[sel], pair_iou=iou[sel], weighted=bool(weighted))


def panoptic_quality(truth: object, pred: object, energy: object | None = None, *,
                     weighted: bool = True, min_truth_energy: float = 0.0,
                     truth_energy: object | None = None,
                     event: int | None = None) -> PanopticCounts:
    """SQ / RQ / PQ counts of one event; see :func:`match_clusters` for the arguments."""
    return match_clusters(truth, pred, energy, weighted=weighted,
                          min_truth_energy=min_truth_energy, truth_energy=truth_energy,
                          event=event).counts


def binned_fraction(values: np.ndarray, selected: np.ndarray,
                    edges: object = DEFAULT_ENERGY_BINS) -> dict[str, Any]:
    """Fraction of selected entries in bins of ``values``.

    Args:
        values: (K,) the binned quantity, e.g. an energy [GeV].
        selected: (K,) bool, the entries counted in the numerator.
        edges: (B + 1,) bin edges, strictly increasing.

    Returns:
        ``edges`` (B + 1), ``n_total`` and ``n_selected`` (B, ints), ``fraction`` (B, NaN for
        an empty bin), ``error`` (B, binomial sqrt(f (1 - f) / n)), and ``overall`` (the
        fraction over all K entries, in or out of the bins; NaN if K = 0). Plain lists.
    """
    edges_arr = check_edges(edges)
    values = np.asarray(values, dtype=np.float64)
    selected = np.asarray(selected, dtype=bool)
    nb = len(edges_arr) - 1
    idx = bin_index(values, edges_arr)
    inside = idx >= 0
    total = np.bincount(idx[inside], minlength=nb)
    passed = np.bincount(idx[inside & selected], minlength=nb)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(total > 0, passed / np.maximum(total, 1), np.nan)
        err = np.where(total > 0, np.sqrt(frac * (1 - frac) / np.maximum(total, 1)), np.nan)
    overall = float(selected.mean()) if len(selected) else float("nan")
    return {"edges": edges_arr.tolist(), "n_total": total.tolist(),
            "n_selected": passed.tolist(), "fraction": frac.tolist(), "error": err.tolist(),
            "overall": overall}


def _as_matches(matches: ClusterMatch | Iterable[ClusterMatch]) -> list[ClusterMatch]:
    return [matches] if isinstance(matches, ClusterMatch) else list(matches)


def efficiency_curve(matches: ClusterMatch | Iterable[ClusterMatch],
                     edges: object = DEFAULT_ENERGY_BINS) -> dict[str, Any]:
    """Fraction of truth clusters matched, in bins of their reference energy.

    The reference energy is ``truth_energy`` when it was given to :func:`match_clusters`,
    else e(T); ignored truth clusters are left out. Returns :func:`binned_fraction`'s dict.
    """
    ms = _as_matches(matches)
    values = [m.truth_reference_energy[~m.truth_ignored] for m in ms]
    sel = [m.truth_matched[~m.truth_ignored] for m in ms]
    return binned_fraction(np.concatenate([np.zeros(0), *values]),
                           np.concatenate([np.zeros(0, dtype=bool), *sel]), edges)


def fake_rate_curve(matches: ClusterMatch | Iterable[ClusterMatch],
                    edges: object = DEFAULT_ENERGY_BINS) -> dict[str, Any]:
    """Fraction of predicted clusters without a match, in bins of e(P).

    Predicted clusters matched to an ignored truth cluster are left out. Returns
    :func:`binned_fraction`'s dict.
    """
    ms = _as_matches(matches)
    values = [m.pred_deposit[~m.pred_ignored] for m in ms]
    sel = [~m.pred_matched[~m.pred_ignored] for m in ms]
    return binned_fraction(np.concatenate([np.zeros(0), *values]),
                           np.concatenate([np.zeros(0, dtype=bool), *sel]), edges)
