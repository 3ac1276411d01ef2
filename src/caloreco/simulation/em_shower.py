"""Electromagnetic showers: Grindhammer-Peters parametrisation (hep-ex/0001020).

Longitudinal profile per shower: dE/dt = E b (b t)^(a-1) e^(-b t) / Gamma(a), t in X0, with
the shower maximum T = (a-1)/b and a drawn per shower from correlated Gaussians in ln T
and ln a (homogeneous-medium parameters, y = E / E_c):

    <ln T> = ln(ln y - 0.812),            sigma(ln T) = 1 / (-1.4 + 1.26 ln y)
    <ln a> = ln(0.81 + (0.458 + 2.26/Z) ln y),  sigma(ln a) = 1 / (-0.58 + 0.86 ln y)
    rho(ln T, ln a) = 0.705 - 0.023 ln y

Radial profile in Moliere radii (coefficients as Geant4 GFlashHomoShowerParameterisation), two components at relative depth tau = t / T:
f(r) = p f_C(r) + (1 - p) f_T(r), f_X(r) = 2 r R_X^2 / (r^2 + R_X^2)^2 with
R_C = z1 + z2 tau, R_T = k1 (exp(k3 (tau - k2)) + exp(k4 (tau - k2))),
p = p1 exp((p2 - tau)/p3 - exp((p2 - tau)/p3)).

The shower is split into N = 93 ln(Z) E^0.876 spots (E in GeV) of equal energy; photons
first travel an exponential conversion depth of mean 9/7 X0 (PDG). Sampling fluctuations
are applied per (shower, layer) by :func:`~caloreco.simulation.spots.group_fluctuation`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from caloreco.geometry.layers import LayerStack
from caloreco.simulation.spots import (
    Spots,
    group_fluctuation,
    quantise_to_mips,
    radial_offsets,
    sample_lorentzian_radius,
)


@dataclass(frozen=True)
class EMShowerParams:
    """Material and resolution parameters of the EM shower model."""

    critical_energy_gev: float = 0.010  # E_c of the Pb/W/Cu CE-E mixture: X0-weighted PDG values (Pb 7.4, W 8.0, Cu 19.4 MeV)
    z_eff: float = 74.0  # effective Z of the CE-E absorber: W/Pb dominate its X0 (Pb 82, W 74, Cu 29)
    stochastic: float = 0.18  # per-layer sampling term [sqrt(GeV)]; with MIP-crossing statistics gives the ~22-24 % of the CE-E test beam (physics-reference.md)
    spot_scale: float = 0.5  # multiplies the Grindhammer-Peters number of spots; MIP quantisation sets the crossing count, so fewer, larger spots cost only a little clumping and halve the time
    conversion_x0: float = 9.0 / 7.0  # mean photon conversion depth [X0] (PDG, pair production)
    # Grindhammer-Peters radii are in homogeneous-medium Moliere units, which hold ~88 % of
    # the energy (r90 = 1.10-1.16 R_M for 10-300 GeV, measured on this parametrisation); the
    # effective R_M of a sampling calorimeter is quoted as its 90 % containment radius
    # (PDG sec. 34.5; HGCAL TDR), so radii are scaled to put >= 90 % inside R_M_eff at 10-300 GeV.
    radial_scale: float = 0.80


def _longitudinal_parameters(energy: np.ndarray, p: EMShowerParams, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per-shower (alpha, beta) of the gamma profile, with correlated fluctuations."""
    lny = np.log(np.maximum(energy / p.critical_energy_gev, 3.0))
    mean_lnT = np.log(np.maximum(lny - 0.812, 0.1))
    sig_lnT = 1.0 / np.maximum(-1.4 + 1.26 * lny, 0.5)
    mean_lna = np.log(0.81 + (0.458 + 2.26 / p.z_eff) * lny)
    sig_lna = 1.0 / np.maximum(-0.58 + 0.86 * lny, 0.5)
    rho = np.clip(0.705 - 0.023 * lny, -0.99, 0.99)
    z1 = rng.standard_normal(energy.shape)
    z2 = rng.standard_normal(energy.shape)
    lnT = mean_lnT + sig_lnT * z1
    lna = mean_lna + sig_lna * (rho * z1 + np.sqrt(1.0 - rho**2) * z2)
    alpha = np.maximum(np.exp(lna), 1.05)
    T = np.exp(lnT)
    beta = (alpha - 1.0) / T
    return alpha, beta


def _radial_scale(tau: np.ndarray, energy: np.ndarray, z: float, rng: np.random.Generator) -> np.ndarray:
    """Radius scale (in Moliere radii) of each spot's component (core or tail)."""
    lnE = np.log(energy)
    z1 = 0.0251 + 0.00319 * lnE
    z2 = 0.1162 - 0.000381 * z
    k1 = 0.659 - 0.00309 * z
    k2 = 0.645
    k3 = -2.59
    k4 = 0.3585 + 0.0412 * lnE
    p1 = 2.632 - 0.00094 * z
    p2 = 0.401 + 0.00187 * z
    p3 = 1.313 - 0.0686 * lnE
    r_core = z1 + z2 * tau
    r_tail = k1 * (np.exp(k3 * (tau - k2)) + np.exp(k4 * (tau - k2)))
    arg = (p2 - tau) / p3
    p = np.clip(p1 * np.exp(arg - np.exp(arg)), 0.0, 1.0)
    core = rng.uniform(size=tau.shape) < p
    return np.where(core, r_core, r_tail)


def n_spots(energy: np.ndarray, z: float, scale: float) -> np.ndarray:
    """Grindhammer-Peters spot count N = 93 ln(Z) E^0.876, at least one spot."""
    return np.maximum(np.rint(scale * 93.0 * np.log(z) * np.maximum(energy, 1e-6) ** 0.876), 1).astype(np.int64)


def em_spots(particle: np.ndarray, energy: np.ndarray, path_factor: np.ndarray, is_photon: np.ndarray,
             start_x0: np.ndarray, layers: LayerStack, rng: np.random.Generator,
             params: EMShowerParams = EMShowerParams(), *, fluctuate: bool = True) -> Spots:
    """Spots of EM showers.

    Args:
        particle: index of each shower's particle (S_sh,).
        energy: shower energy [GeV].
        path_factor: material per unit normal depth (1/cos of the incidence angle).
        is_photon: photons get a conversion depth before the shower starts.
        start_x0: depth along the path where the shower starts [X0] (0 at the front face).
        layers: the detector's layer stack.
        fluctuate: apply per-layer sampling fluctuations.
    """
    if len(energy) == 0:
        return Spots.empty()
    alpha, beta = _longitudinal_parameters(energy, params, rng)
    n = n_spots(energy, params.z_eff, params.spot_scale)
    idx = np.repeat(np.arange(len(energy)), n)
    t = rng.gamma(alpha[idx], 1.0 / beta[idx])
    start = start_x0 + np.where(is_photon, rng.exponential(params.conversion_x0, size=len(energy)), 0.0)
    depth_normal = (start[idx] + t) / path_factor[idx]
    layer = layers.layer_at_depth(depth_normal, unit="x0")
    tau = t * beta[idx] / (alpha[idx] - 1.0)
    r = sample_lorentzian_radius(_radial_scale(tau, energy[idx], params.z_eff, rng), rng)
    r_cm = r * params.radial_scale * layers.moliere_cm[np.maximum(layer, 0)]
    du, dv = radial_offsets(r_cm, rng)
    e = (energy / n)[idx]
    spots = Spots(particle[idx].astype(np.int64), layer, du, dv, e)
    spots = spots.select(layer >= 0)  # spots behind the last layer leak out
    if fluctuate:
        key = spots.particle * len(layers) + spots.layer
        spots.energy = group_fluctuation(key, spots.energy, params.stochastic, rng)
        spots = quantise_to_mips(spots, layers.mip_gev, rng)
    return spots
