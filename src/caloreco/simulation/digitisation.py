"""Digitisation: electronics noise, zero suppression, noise-only hits and hit time.

- Each cell has Gaussian noise of sigma = noise_mip(cell type) x MIP energy of its layer.
- A hit is kept when its measured energy exceeds ``threshold_sigma`` x sigma (default 3,
  i.e. ~0.3-0.6 MIP for silicon, as HGCAL reconstruction keeps ~0.5 MIP).
- Cells without signal fire at the rate the threshold implies, p = Q(threshold_sigma)
  (Gaussian upper tail); their energies are drawn from the tail above threshold.
- Time: time of flight from the origin plus a Gaussian of sigma_t = A / (S/N) (+) C with
  A = 1.5 ns and C = 20 ps, giving ~25 ps for large signals (HGCAL TDR timing).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr, ndtri

from caloreco.geometry.detector import Detector

SPEED_OF_LIGHT_CM_NS = 29.9792458  # c [cm/ns]


@dataclass(frozen=True)
class DigitisationParams:
    threshold_sigma: float = 3.0  # zero-suppression threshold in units of the cell noise
    noise: bool = True  # add electronics noise and noise-only hits
    time_jitter_ns: float = 1.5  # A of sigma_t = A/(S/N) (+) C (HGCAL TDR, ~25 ps at S/N > 100)
    time_constant_ns: float = 0.020  # C, the constant term of the timing resolution (HGCAL TDR)


@dataclass
class Digis:
    """Digitised hits: cell rows and measured values."""

    rows: np.ndarray  # cell rows in detector.cells
    energy: np.ndarray  # measured energy [GeV, EM scale]
    energy_mip: np.ndarray  # measured energy [MIP]
    time: np.ndarray  # [ns]
    signal: np.ndarray  # noise-free signal energy [GeV] (0 for noise-only hits)


def hit_time(detector: Detector, rows: np.ndarray, snr: np.ndarray, p: DigitisationParams,
             rng: np.random.Generator) -> np.ndarray:
    c = detector.cells
    tof = np.sqrt(c.x[rows].astype(np.float64) ** 2 + c.y[rows] ** 2 + c.z[rows] ** 2) / SPEED_OF_LIGHT_CM_NS
    sigma = np.hypot(p.time_jitter_ns / np.maximum(snr, 1.0), p.time_constant_ns)
    return tof + sigma * rng.standard_normal(len(rows))


def digitise(detector: Detector, rows: np.ndarray, signal: np.ndarray, p: DigitisationParams,
             rng: np.random.Generator) -> Digis:
    """Digitise the cells ``rows`` (unique) with noise-free ``signal`` [GeV]; add noise hits."""
    mip = detector.mip_gev(rows)
    sigma_mip = detector.noise_mip(rows)
    if p.noise:
        measured = signal + sigma_mip * mip * rng.standard_normal(len(rows))
        keep = measured > p.threshold_sigma * sigma_mip * mip
        # a cell of zero noise (ideal detector) keeps any positive signal
        keep |= (sigma_mip == 0) & (signal > 0)
    else:
        measured = signal.copy()
        keep = signal > 0
    rows, measured, signal, mip, sigma_mip = rows[keep], measured[keep], signal[keep], mip[keep], sigma_mip[keep]

    if p.noise:
        n_cells = len(detector.cells)
        p_fire = float(ndtr(-p.threshold_sigma))
        n_noise = rng.poisson(p_fire * max(n_cells - len(rows), 0))
        cand = rng.integers(0, n_cells, size=n_noise)
        cand = np.unique(cand)
        cand = cand[~np.isin(cand, rows, assume_unique=True)]
        cand = cand[detector.noise_mip(cand) > 0]
        # tail sample: P(Z > z) uniform in (0, p_fire)
        z = -ndtri(p_fire * rng.uniform(1e-12, 1.0, size=len(cand)))
        n_mip = detector.mip_gev(cand)
        n_sig = detector.noise_mip(cand)
        rows = np.concatenate([rows, cand])
        measured = np.concatenate([measured, z * n_sig * n_mip])
        signal = np.concatenate([signal, np.zeros(len(cand))])
        mip = np.concatenate([mip, n_mip])
        sigma_mip = np.concatenate([sigma_mip, n_sig])
    snr = measured / np.maximum(sigma_mip * mip, 1e-12)
    time = hit_time(detector, rows, np.where(sigma_mip > 0, snr, 1e3), p, rng)
    return Digis(rows=rows, energy=measured, energy_mip=measured / mip, time=time, signal=signal)
