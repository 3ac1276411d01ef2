"""Energy response of matched clusters, per truth-cluster type and versus energy.

For each matched pair (P, T) of :func:`~caloreco.metrics.panoptic.match_clusters` the
response is

.. math::
    R = E_\\mathrm{reco} / E_\\mathrm{true}, \\qquad E_\\mathrm{reco} = e(P)

with :math:`e(P)` the sum of the hit energies of the predicted cluster and
:math:`E_\\mathrm{true}` either e(T), the sum of the energies of the hits labelled T
(``reference="deposited"``, default), or the energy per truth cluster given to
:func:`match_clusters` as ``truth_energy``, e.g. the generated ``clusters["energy"]``
(``reference="generated"``). Pairs with :math:`E_\\mathrm{true} \\le 0` have no defined
response and are left out.

Per group (all pairs, and each :class:`~caloreco.data.event.ClusterType` EM / HAD / MIP /
MIX when types are given) the summary holds the count, mean and median of R and the
resolution

.. math::
    \\sigma_\\mathrm{eff} / \\mathrm{median} = \\frac{(q_{84} - q_{16}) / 2}{\\mathrm{median}}

with :math:`q_{16}, q_{84}` the 16th and 84th percentiles (the central 68 % interval, one
standard deviation for a Gaussian; robust against the tails of leakage and merging), and
the same quantities in bins of :math:`E_\\mathrm{true}`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from caloreco.data.event import ClusterType
from caloreco.errors import ConfigError, InvalidDataError
from caloreco.metrics.panoptic import (
    DEFAULT_ENERGY_BINS,
    ClusterMatch,
    bin_index,
    check_edges,
    check_per_cluster,
)

#: The two choices of the true energy in the response.
RESPONSE_REFERENCES: tuple[str, str] = ("deposited", "generated")

#: Group holding every matched pair, whatever its type.
ALL_TYPES = "ALL"

#: Percentiles bounding the central 68 % interval (+-1 sigma of a Gaussian).
_Q_LOW, _Q_HIGH = 16.0, 84.0

_STAT_KEYS = ("count", "mean", "median", "q16", "q84", "resolution")


def response_stats(ratios: object) -> dict[str, float | int]:
    """Count, mean, median, 16th / 84th percentiles and resolution of response values.

    ``resolution`` = (q84 - q16) / 2 / median. Every value but the count is NaN when there
    are no ratios (and the resolution when the median is 0).
    """
    r = np.asarray(ratios, dtype=np.float64)
    if len(r) == 0:
        return {"count": 0, **{k: float("nan") for k in _STAT_KEYS[1:]}}
    q16, med, q84 = np.percentile(r, [_Q_LOW, 50.0, _Q_HIGH])
    res = 0.5 * (q84 - q16) / med if med != 0 else float("nan")
    return {"count": int(len(r)), "mean": float(r.mean()), "median": float(med),
            "q16": float(q16), "q84": float(q84), "resolution": float(res)}


def matched_energies(match: ClusterMatch, *, reference: str = "deposited",
                     truth_types: object | None = None,
                     event: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """E_reco, E_true and truth type of the true-positive pairs of one event.

    Args:
        match: the event's matching.
        reference: ``"deposited"`` (E_true = e(T)) or ``"generated"`` (the ``truth_energy``
            given to :func:`~caloreco.metrics.panoptic.match_clusters`).
        truth_types: (K,) optional :class:`ClusterType` code per truth-cluster index.
        event: event id for error messages.

    Returns:
        ``(e_reco, e_true, types)``, (M,) arrays; ``types`` is -1 where unknown.

    Raises:
        ConfigError: unknown ``reference``, or ``"generated"`` without ``truth_energy``.
        InvalidDataError: ``truth_types`` too short or holding an unknown code.
    """
    if reference not in RESPONSE_REFERENCES:
        raise ConfigError(f"reference must be one of {list(RESPONSE_REFERENCES)}, got "
                          f"{reference!r}")
    kept = match.pair_kept
    pt, pp = match.pair_truth[kept], match.pair_pred[kept]
    if reference == "generated":
        if match.truth_generated is None:
            raise ConfigError("reference='generated' needs the per-truth-cluster energies: "
                              "pass truth_energy to match_clusters")
        e_true = match.truth_generated[pt]
    else:
        e_true = match.truth_deposit[pt]
    types = np.full(len(pt), -1, dtype=np.int64)
    if truth_types is not None:
        table = check_per_cluster(truth_types, "truth_types", match.truth_ids, event=event)
        codes = np.asarray(table)[match.truth_ids]
        valid = np.isin(codes, [int(c) for c in ClusterType])
        if not valid.all():
            raise InvalidDataError(
                f"truth_types must hold ClusterType codes "
                f"{ {c.name: int(c) for c in ClusterType} }, got {codes[~valid][0]!r} for "
                f"truth cluster {int(match.truth_ids[~valid][0])}", event=event)
        types = codes.astype(np.int64)[pt]
    return match.pred_deposit[pp], np.asarray(e_true, dtype=np.float64), types


def _binned_stats(ratios: np.ndarray, e_true: np.ndarray, edges: np.ndarray
                  ) -> dict[str, list[Any]]:
    idx = bin_index(e_true, edges)
    per_bin = [response_stats(ratios[idx == b]) for b in range(len(edges) - 1)]
    out: dict[str, list[Any]] = {"edges": edges.tolist()}
    for key in _STAT_KEYS:
        out[key] = [s[key] for s in per_bin]
    return out


def energy_response(e_reco: object, e_true: object, types: object | None = None, *,
                    edges: object = DEFAULT_ENERGY_BINS) -> dict[str, dict[str, Any]]:
    """Response E_reco / E_true summarised per truth type and in bins of E_true.

    Args:
        e_reco: (M,) reconstructed energies [GeV].
        e_true: (M,) true energies [GeV]; pairs with e_true <= 0 are left out.
        types: (M,) optional :class:`ClusterType` code per pair (-1 = unknown: in ``ALL``
            only).
        edges: (B + 1,) bin edges of E_true [GeV].

    Returns:
        ``{"ALL": ..., "EM": ..., "HAD": ..., "MIP": ..., "MIX": ...}`` (the type groups only
        when ``types`` is given); each group is :func:`response_stats`' dict plus
        ``vs_energy`` with ``edges`` and per-bin lists of the same statistics.

    Raises:
        InvalidDataError: arrays of unequal length, non-finite or negative energies.
        ConfigError: bad ``edges``.
    """
    edges_arr = check_edges(edges)
    reco = np.asarray(e_reco, dtype=np.float64)
    true = np.asarray(e_true, dtype=np.float64)
    if reco.ndim != 1 or true.shape != reco.shape:
        raise InvalidDataError(f"e_reco and e_true must be one-dimensional arrays of equal "
                               f"length, got shapes {reco.shape} and {true.shape}")
    for name, arr in (("e_reco", reco), ("e_true", true)):
        if not (np.isfinite(arr) & (arr >= 0)).all():
            raise InvalidDataError(f"{name} must be finite and >= 0 [GeV]")
    tp = np.full(len(reco), -1) if types is None else np.asarray(types)
    if tp.shape != reco.shape:
        raise InvalidDataError(f"types must have one entry per pair ({len(reco)}), got shape "
                               f"{tp.shape}")
    ok = true > 0
    ratios, true, tp = reco[ok] / true[ok], true[ok], tp[ok]
    groups: dict[str, np.ndarray] = {ALL_TYPES: np.ones(len(ratios), dtype=bool)}
    if types is not None:
        groups.update({c.name: tp == int(c) for c in ClusterType})
    return {name: {**response_stats(ratios[sel]),
                   "vs_energy": _binned_stats(ratios[sel], true[sel], edges_arr)}
            for name, sel in groups.items()}
