"""Robust response and resolution estimators shared by the physics tables.

For a sample of ratios r (e.g. ``E_reco / E_gen``):

* response ``<r>`` = median(r);
* resolution ``sigma(r) = IQR(r) / 1.349`` (the interquartile range of a Gaussian is
  1.349 sigma), insensitive to non-Gaussian tails (unmatched energy, pileup), and the
  relative resolution ``sigma(r) / <r>``;
* statistical uncertainty of the median ``1.2533 sigma / sqrt(n)`` (Gaussian case);
* sigma and the uncertainty are NaN for fewer than two values.
"""

from __future__ import annotations

import numpy as np

IQR_TO_SIGMA = 1.349  # IQR of a unit Gaussian: 2 * 0.6745
MEDIAN_ERROR = 1.2533  # sqrt(pi / 2): standard error of the median / (sigma / sqrt(n))


def robust_summary(values: np.ndarray) -> dict[str, float]:
    """``n``, ``median``, ``median_err``, ``sigma`` (IQR/1.349), ``rel_sigma`` (sigma/median),
    ``mean``; NaN for an empty sample."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    n = len(v)
    if n == 0:
        return {"n": 0, "median": np.nan, "median_err": np.nan, "sigma": np.nan, "rel_sigma": np.nan,
                "mean": np.nan}
    q25, med, q75 = np.percentile(v, [25, 50, 75])
    sigma = (q75 - q25) / IQR_TO_SIGMA if n >= 2 else np.nan
    return {"n": n, "median": float(med), "median_err": float(MEDIAN_ERROR * sigma / np.sqrt(n)),
            "sigma": float(sigma), "rel_sigma": float(sigma / med) if med != 0 else np.nan,
            "mean": float(v.mean())}


def binned_summary(x: np.ndarray, values: np.ndarray, edges: np.ndarray) -> list[dict[str, float]]:
    """:func:`robust_summary` of ``values`` in bins of ``x`` (``lo <= x < hi``), with the bin
    edges and the mean ``x`` of each bin."""
    x, values = np.asarray(x, np.float64), np.asarray(values, np.float64)
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (x >= lo) & (x < hi)
        row = {"lo": float(lo), "hi": float(hi), "x_mean": float(x[m].mean()) if m.any() else np.nan}
        row.update(robust_summary(values[m]))
        rows.append(row)
    return rows
