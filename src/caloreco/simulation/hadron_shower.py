"""Hadronic showers.

- First inelastic interaction at an exponential depth of mean 1 lambda_I along the path;
  a charged hadron is a MIP before it (:mod:`~caloreco.simulation.mip`). A hadron that
  crosses the whole calorimeter without interacting stays a MIP (punch-through).
- EM fraction per shower (Groom, NIM A 572 (2007) 633): <f_em> = 1 - (E / E0)^(k - 1) with
  E0 = 1 GeV, k = 0.82 for pions, drawn from a Beta distribution of width ``sigma_fem``.
- Non-compensation: the hadronic part is seen at h/e = 1 / e_over_h of the EM scale.
- Longitudinal profile (Bock et al., NIM 186 (1981) 533, as used by GFLASH):
  dE/dx = w Gamma(x/X0; a, b) + (1 - w) Gamma(x/lambda_I; a, d) after the interaction point,
  a = 0.6165 + 0.3183 ln E, b = 0.2198, d = 0.9099 - 0.0237 ln E (E in GeV), w = f_em.
- Lateral: the EM part spreads over ~1 Moliere radius around the axis; the hadronic part
  has a core (0.1 lambda) and a halo (0.35 lambda) so that ~95 % lies within 1 lambda_I
  (physics-reference.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from caloreco.geometry.layers import LayerStack
from caloreco.simulation.em_shower import n_spots
from caloreco.simulation.spots import (
    Spots,
    group_fluctuation,
    quantise_to_mips,
    radial_offsets,
    sample_lorentzian_radius,
)


@dataclass(frozen=True)
class HadronShowerParams:
    """Parameters of the hadron shower model (sources in the module docstring)."""

    groom_e0_gev: float = 1.0  # Groom 2007: E0 ~ 1 GeV for pions
    groom_k: float = 0.82  # Groom 2007: k ~ 0.82 for pions
    sigma_fem: float = 0.12  # event-to-event spread of f_em at 10-100 GeV (Wigmans, Calorimetry, ch. 2)
    e_over_h: float = 1.6  # Si/steel non-compensation, e/h ~ 1.3-2 (physics-reference.md)
    stochastic_em: float = 0.18  # per-layer sampling term of the EM part [sqrt(GeV)], as EM showers
    stochastic_had: float = 1.10  # sampling + binding-energy (invisible-energy) fluctuations of the hadronic part [sqrt(GeV)]; tuned so pions give a ~ 85 % (CALICE Si-W/Fe-scint, physics-reference.md: 70-110 %)
    core_lambda: float = 0.10  # hadronic core radius scale [lambda_I]
    halo_lambda: float = 0.35  # hadronic halo radius scale [lambda_I]
    core_fraction: float = 0.6  # share of the hadronic part in the core
    em_radius_moliere: float = 1.0  # radius scale of the EM part [Moliere radii]
    spot_scale: float = 0.5  # multiplies the number of spots (as EMShowerParams.spot_scale)
    z_eff: float = 74.0  # for the spot count (as EM showers)


def em_fraction(energy: np.ndarray, p: HadronShowerParams, rng: np.random.Generator) -> np.ndarray:
    """Per-shower EM fraction drawn around Groom's mean."""
    mean = np.clip(1.0 - (np.maximum(energy, p.groom_e0_gev) / p.groom_e0_gev) ** (p.groom_k - 1.0), 0.02, 0.95)
    var = np.minimum(p.sigma_fem**2, mean * (1 - mean) * 0.9)
    common = mean * (1 - mean) / var - 1.0
    return rng.beta(mean * common, (1 - mean) * common)


def hadron_spots(particle: np.ndarray, energy: np.ndarray, path_factor: np.ndarray, start_lambda: np.ndarray,
                 layers: LayerStack, rng: np.random.Generator, params: HadronShowerParams = HadronShowerParams(),
                 *, fluctuate: bool = True) -> Spots:
    """Spots of hadron showers starting at ``start_lambda`` (depth along the path [lambda_I]).

    Returns spots of both components; the EM part carries energy f E, the hadronic part
    (1 - f) E / (e/h), both at the EM scale.
    """
    if len(energy) == 0:
        return Spots.empty()
    E = np.maximum(energy, 0.05)
    lnE = np.log(E)
    f = em_fraction(E, params, rng)
    a = np.maximum(0.6165 + 0.3183 * lnE, 0.3)
    b = 0.2198
    d = 0.9099 - 0.0237 * lnE
    vis_em = f * E
    vis_had = (1.0 - f) * E / params.e_over_h
    n_em = n_spots(vis_em, params.z_eff, params.spot_scale)
    n_had = n_spots(vis_had, params.z_eff, params.spot_scale)
    start_x0 = layers.x0_at_lambda(start_lambda / path_factor) * path_factor
    parts = []
    for comp, n, vis in ((0, n_em, vis_em), (1, n_had, vis_had)):
        idx = np.repeat(np.arange(len(E)), n)
        if comp == 0:
            t = rng.gamma(a[idx], 1.0 / b)
            layer = layers.layer_at_depth((start_x0[idx] + t) / path_factor[idx], unit="x0")
            scale = params.em_radius_moliere * layers.moliere_cm[np.maximum(layer, 0)]
        else:
            t = rng.gamma(a[idx], 1.0 / d[idx])
            layer = layers.layer_at_depth((start_lambda[idx] + t) / path_factor[idx], unit="lambda")
            core = rng.uniform(size=len(idx)) < params.core_fraction
            scale = np.where(core, params.core_lambda, params.halo_lambda) * layers.lambda_cm[np.maximum(layer, 0)]
        du, dv = radial_offsets(sample_lorentzian_radius(scale, rng), rng)
        s = Spots(particle[idx].astype(np.int64), layer, du, dv, (vis / n)[idx]).select(layer >= 0)
        if fluctuate:
            key = (s.particle * len(layers) + s.layer) * 2 + comp
            s.energy = group_fluctuation(key, s.energy, params.stochastic_em if comp == 0 else params.stochastic_had, rng)
            s = quantise_to_mips(s, layers.mip_gev, rng)
        parts.append(s)
    return Spots.concat(parts)
