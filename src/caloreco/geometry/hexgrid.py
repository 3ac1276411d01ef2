"""Analytic hexagonal lattices: centres of pointy-topped hexagonal cells and point lookup.

A lattice of pitch ``d`` (distance between neighbouring centres) has basis vectors
``e1 = d (1, 0)`` and ``e2 = d (1/2, sqrt(3)/2)``; a cell is labelled by integer axial
coordinates ``(a, b)`` with centre ``a e1 + b e2``. Each cell is a regular hexagon of area
``sqrt(3)/2 d^2``. Looking up the cell containing a point rounds its fractional axial
coordinates in cube coordinates (exact Voronoi cell of the lattice), fully vectorised.
"""

from __future__ import annotations

import numpy as np

SQRT3 = float(np.sqrt(3.0))


def hex_area(pitch: float) -> float:
    """Area of one cell [cm^2] for centre-to-centre distance ``pitch`` [cm]."""
    return SQRT3 / 2.0 * pitch**2


def hex_centres(a: np.ndarray, b: np.ndarray, pitch: float) -> tuple[np.ndarray, np.ndarray]:
    """Centre (x, y) of the cells with axial coordinates (a, b)."""
    x = pitch * (a + 0.5 * b)
    y = pitch * (SQRT3 / 2.0) * b
    return x, y


def hex_round(x: np.ndarray, y: np.ndarray, pitch: float) -> tuple[np.ndarray, np.ndarray]:
    """Axial coordinates (a, b) of the cell whose hexagon contains each point (x, y)."""
    fb = y / (pitch * SQRT3 / 2.0)
    fa = x / pitch - 0.5 * fb
    # cube coordinates (q, r, s) with q + r + s = 0; round and fix the worst component
    q, r = fa, fb
    s = -q - r
    rq, rr, rs = np.rint(q), np.rint(r), np.rint(s)
    dq, dr, ds = np.abs(rq - q), np.abs(rr - r), np.abs(rs - s)
    fix_q = (dq > dr) & (dq > ds)
    fix_r = ~fix_q & (dr > ds)
    rq = np.where(fix_q, -rr - rs, rq)
    rr = np.where(fix_r, -rq - rs, rr)
    return rq.astype(np.int64), rr.astype(np.int64)


def hex_lattice_in_annulus(r_min: float, r_max: float, pitch: float) -> tuple[np.ndarray, np.ndarray]:
    """Axial coordinates of all cells whose centre lies in ``r_min <= r < r_max``."""
    nb = int(np.ceil(r_max / (pitch * SQRT3 / 2.0))) + 1
    b = np.arange(-nb, nb + 1)
    na = int(np.ceil(r_max / pitch + nb / 2.0)) + 1
    a = np.arange(-na, na + 1)
    A, B = np.meshgrid(a, b, indexing="ij")
    A, B = A.ravel(), B.ravel()
    x, y = hex_centres(A, B, pitch)
    r = np.hypot(x, y)
    keep = (r >= r_min) & (r < r_max)
    return A[keep], B[keep]
