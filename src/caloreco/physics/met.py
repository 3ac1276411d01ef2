"""Hadronic recoil in Z -> mu mu + jets: MET response and resolution.

With the Z transverse momentum ``q_T`` from the generator muons (the final-state copies
of the Z decay muons, after radiation) and the clusters of one method (muon MIP clusters
removed: clusters within dR < 0.1 of a muon's calorimeter impact point), the hadronic
recoil is the vector sum of the cluster transverse momenta

    u_T = sum_k p_T,k,     MET = -(u_T + q_T),

split into the components parallel and perpendicular to q_T:
``u_par = u_T . q_T / |q_T|`` and ``u_perp = (q_T x u_T)_z / |q_T|``. In bins of
``|q_T|`` (physics-reference.md; CMS, JINST 14 (2019) P07004):

* response ``1 - <u_par + q_T> / <q_T>`` = ``-<u_par> / <q_T>`` (1: recoil fully measured),
  with means;
* resolutions ``sigma(u_par + q_T)`` and ``sigma(u_perp)`` [GeV], as IQR / 1.349.

The reference :func:`generator_recoil` sums the generator particles that reach the
calorimeter: the recoil of a perfect calorimeter with the same acceptance (in the HB,
|eta| < 1.3, it is ~0.35 of q_T in Z + jet events at 14 TeV; tracks below ~1 GeV loop).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from caloreco.generators.event import GeneratedEvent
from caloreco.generators.pythia import boson_decay_products, descendants_final
from caloreco.physics.jets import delta_r
from caloreco.physics.stats import IQR_TO_SIGMA

MUON_CLUSTER_DR = 0.1  # clusters this close to a muon's impact are its MIP deposit


def z_transverse_momentum(gen: GeneratedEvent) -> np.ndarray | None:
    """``q_T = (px, py)`` of the final-state Z decay muons [GeV], None without a Z -> mu mu."""
    rec = gen.record
    d = boson_decay_products(rec)
    if len(d) != 2 or not (np.abs(rec["pdg"][d]) == 13).all():
        return None
    rows = [descendants_final(rec, i) for i in d]
    return np.array([rec["px"][rows].sum(), rec["py"][rows].sum()])


def muon_clusters(cluster_eta: np.ndarray, cluster_phi: np.ndarray, particles: Mapping[str, np.ndarray],
                  *, max_dr: float = MUON_CLUSTER_DR) -> np.ndarray:
    """Mask (K,) of clusters within ``max_dr`` of a simulated muon's impact point.

    ``particles`` is the simulated event's particle table, whose vertices are the impact
    points on the calorimeter face (:mod:`caloreco.generators.preset`).
    """
    mu = np.abs(particles["pdg"]) == 13
    if not mu.any() or len(cluster_eta) == 0:
        return np.zeros(len(cluster_eta), bool)
    x, y, z = (np.asarray(particles[k], np.float64)[mu] for k in ("vx", "vy", "vz"))
    eta = np.arcsinh(z / np.maximum(np.hypot(x, y), 1e-12))
    phi = np.arctan2(y, x)
    return (delta_r(cluster_eta, cluster_phi, eta, phi) < max_dr).any(axis=1)


def recoil(p4: np.ndarray, qt: np.ndarray, exclude: np.ndarray | None = None) -> tuple[float, float]:
    """``(u_par, u_perp)`` of the clusters ``p4`` (K, 4) not in ``exclude`` against ``q_T``."""
    keep = np.ones(len(p4), bool) if exclude is None else ~exclude
    ux, uy = p4[keep, 0].sum(), p4[keep, 1].sum()
    q = float(np.hypot(*qt))
    if q == 0:
        return float("nan"), float("nan")
    return (ux * qt[0] + uy * qt[1]) / q, (qt[0] * uy - qt[1] * ux) / q


def generator_recoil(gen: GeneratedEvent, qt: np.ndarray) -> tuple[float, float]:
    """``(u_par, u_perp)`` of the generator particles that reach the calorimeter face
    (``fate == 0``, muons excluded, pileup included): the recoil a perfect calorimeter
    with this acceptance would measure, the reference for the cluster recoil."""
    st = gen.stable
    m = (st["fate"] == 0) & (np.abs(st["pdg"]) != 13)
    p4 = np.column_stack([st["px"][m], st["py"][m], st["pz"][m], st["e"][m]])
    return recoil(p4, qt)


def recoil_table(qt: np.ndarray, u_par: np.ndarray, u_perp: np.ndarray, edges: np.ndarray) -> list[dict[str, float]]:
    """Per ``|q_T|`` bin: n, <q_T>, response, sigma(u_par + q_T), sigma(u_perp) (module docstring)."""
    qt, u_par, u_perp = (np.asarray(v, np.float64) for v in (qt, u_par, u_perp))
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (qt >= lo) & (qt < hi) & np.isfinite(u_par)
        n = int(m.sum())
        row: dict[str, float] = {"lo": float(lo), "hi": float(hi), "n": n}
        if n == 0:
            row.update(qt_mean=np.nan, response=np.nan, sigma_par=np.nan, sigma_perp=np.nan)
        else:
            par = u_par[m] + qt[m]
            iqr = lambda v: float(np.subtract(*np.percentile(v, [75, 25])) / IQR_TO_SIGMA)  # noqa: E731
            row.update(qt_mean=float(qt[m].mean()), response=float(1.0 - par.mean() / qt[m].mean()),
                       sigma_par=iqr(par) if n >= 2 else np.nan, sigma_perp=iqr(u_perp[m]) if n >= 2 else np.nan)
        rows.append(row)
    return rows
