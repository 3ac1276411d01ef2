"""How well a clustering keeps each truth cluster together: containment and purity.

For a truth cluster T (hits with ``truth == t``) and the predicted clusters P (hits with
``pred == p``, -1 = noise), with ``w`` the hit energies (or 1 per hit):

- the *best* predicted cluster of T is the P with the largest ``w(P & T)`` (ties: more hits,
  then the lower id); -1 when no hit of T is in any predicted cluster;
- *containment* ``w(P_best & T) / w(T)``, by energy and by hit count: the share of T that
  ends up in one predicted cluster (1 = nothing lost to noise or to other clusters);
- *purity* ``w(P_best & T) / w(P_best)``: the share of that predicted cluster that belongs
  to T (hits of other truth clusters and truth noise lower it).

This differs from the IoU matching of :func:`caloreco.metrics.match_clusters`: every truth
cluster gets a best predicted cluster, however poor, so that a fragmentation (a track cut
into pieces, a shower losing its halo) shows as a containment number rather than as a
missing match. :func:`layers_kept_together` gives the same view per layer for 2D (layer)
clusterings.

Everything is numpy; no loop over hits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from caloreco.errors import InvalidDataError
from caloreco.metrics.segmentation import check_hit_inputs


@dataclass(frozen=True)
class Containment:
    """Containment of one truth cluster in its best predicted cluster.

    Attributes:
        truth: truth-cluster id.
        best: id of the best predicted cluster, -1 if no hit of the truth cluster is in a
            predicted cluster (then fractions are 0 and purities NaN).
        n_hits: hits of the truth cluster.
        energy: summed energy of its hits [GeV] (its hit count without energies).
        hit_fraction: fraction of its hits in ``best``.
        energy_fraction: fraction of its energy in ``best``.
        hit_purity: fraction of the hits of ``best`` that belong to the truth cluster.
        energy_purity: fraction of the energy of ``best`` that belongs to the truth cluster.
        clustered_fraction: fraction of its hits in any predicted cluster (not -1).
        n_pred: number of distinct predicted clusters holding some of its hits.
    """

    truth: int
    best: int
    n_hits: int
    energy: float
    hit_fraction: float
    energy_fraction: float
    hit_purity: float
    energy_purity: float
    clustered_fraction: float
    n_pred: int


def containment(truth: object, pred: object, energy: object | None = None, *,
                event: int | None = None) -> list[Containment]:
    """Containment and purity of every truth cluster (definitions in the module docstring).

    Args:
        truth: (N,) truth-cluster id per hit, -1 for noise.
        pred: (N,) predicted-cluster id per hit, -1 for noise.
        energy: (N,) hit energies [GeV] >= 0; None weights every hit by 1.
        event: event id for error messages.

    Returns:
        One :class:`Containment` per truth id present (``truth >= 0``), in increasing id.

    Raises:
        InvalidDataError: labels < -1 or not integer, unequal lengths, bad energies.
    """
    t, p, e = check_hit_inputs(truth, pred, energy, event=event)
    w = np.ones(len(t)) if e is None else e
    truth_ids, t_idx = np.unique(t[t >= 0], return_inverse=True)
    sig = t >= 0
    n_t = len(truth_ids)
    t_hits = np.bincount(t_idx, minlength=n_t)
    t_energy = np.bincount(t_idx, weights=w[sig], minlength=n_t)
    both = sig & (p >= 0)
    t_clustered = np.bincount(np.searchsorted(truth_ids, t[both]), minlength=n_t)

    # (truth, pred) pairs sharing hits: hit count and energy of each intersection
    pair_t = np.searchsorted(truth_ids, t[both])
    pair_p = p[both]
    key, inv = np.unique(np.column_stack([pair_t, pair_p]), axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    inter_n = np.bincount(inv, minlength=len(key))
    inter_e = np.bincount(inv, weights=w[both], minlength=len(key))
    # best pair per truth cluster: sort by truth, then energy, hits (descending), pred id
    order = np.lexsort((key[:, 1], -inter_n, -inter_e, key[:, 0]))
    first = order[np.r_[True, key[order, 0][1:] != key[order, 0][:-1]]] if len(key) else order
    n_pred = np.bincount(key[:, 0], minlength=n_t) if len(key) else np.zeros(n_t, int)

    p_ids, p_idx = np.unique(p[p >= 0], return_inverse=True)
    p_hits = np.bincount(p_idx, minlength=len(p_ids))
    p_energy = np.bincount(p_idx, weights=w[p >= 0], minlength=len(p_ids))

    out = {}
    for k in first:
        ti, best = int(key[k, 0]), int(key[k, 1])
        j = int(np.searchsorted(p_ids, best))
        with np.errstate(invalid="ignore", divide="ignore"):
            e_frac = inter_e[k] / t_energy[ti] if t_energy[ti] > 0 else np.nan
            e_pur = inter_e[k] / p_energy[j] if p_energy[j] > 0 else np.nan
        out[ti] = Containment(
            truth=int(truth_ids[ti]), best=best, n_hits=int(t_hits[ti]),
            energy=float(t_energy[ti]), hit_fraction=float(inter_n[k] / t_hits[ti]),
            energy_fraction=float(e_frac), hit_purity=float(inter_n[k] / p_hits[j]),
            energy_purity=float(e_pur),
            clustered_fraction=float(t_clustered[ti] / t_hits[ti]), n_pred=int(n_pred[ti]))
    return [out.get(i, Containment(
        truth=int(truth_ids[i]), best=-1, n_hits=int(t_hits[i]), energy=float(t_energy[i]),
        hit_fraction=0.0, energy_fraction=0.0, hit_purity=float("nan"),
        energy_purity=float("nan"), clustered_fraction=0.0, n_pred=0)) for i in range(n_t)]


def layers_kept_together(truth: object, pred: object, layer: object, *,
                         event: int | None = None) -> dict[int, tuple[int, int]]:
    """Per truth cluster: on how many of its layers all its hits share one predicted cluster.

    Meant for layer (2D) clusterings, whose clusters never span layers: a layer of truth
    cluster T counts as kept together when every hit of T on that layer has the same
    predicted id and that id is not -1 (a layer with one hit of T counts when that hit is
    clustered).

    Args:
        truth: (N,) truth-cluster id per hit, -1 for noise.
        pred: (N,) predicted (layer-)cluster id per hit, -1 for noise.
        layer: (N,) integer layer per hit (use a distinct value per detector side or
            subsystem if layers repeat there).
        event: event id for error messages.

    Returns:
        ``{truth id: (layers kept together, layers with hits of T)}``.

    Raises:
        InvalidDataError: bad labels, or ``layer`` not (N,) integers.
    """
    t, p, _ = check_hit_inputs(truth, pred, None, event=event)
    lay = np.asarray(layer)
    if lay.shape != t.shape or lay.dtype.kind not in "iu":
        raise InvalidDataError(f"layer must be ({len(t)},) integers, got shape {lay.shape} "
                               f"dtype {lay.dtype}", event=event)
    sig = t >= 0
    key, inv = np.unique(np.column_stack([t[sig], lay[sig].astype(np.int64)]), axis=0,
                         return_inverse=True)
    inv = inv.reshape(-1)
    ps = p[sig]
    lo = np.full(len(key), np.iinfo(np.int64).max)
    hi = np.full(len(key), np.iinfo(np.int64).min)
    np.minimum.at(lo, inv, ps)
    np.maximum.at(hi, inv, ps)
    kept = (lo == hi) & (lo >= 0)
    out: dict[int, tuple[int, int]] = {}
    for tid in np.unique(key[:, 0]) if len(key) else []:
        sel = key[:, 0] == tid
        out[int(tid)] = (int(kept[sel].sum()), int(sel.sum()))
    return out
