"""Minimum-ionising tracks: muons, and charged hadrons before their first interaction.

Each crossed layer receives path_factor x (its MIP energy) x L, with L drawn from a Moyal
distribution (a closed-form approximation of the Landau distribution, Moyal 1955) whose
most probable value is 1 and whose mean is 1/0.7 ~ 1.4: the most probable deposit is ~0.7 of
the mean for thin silicon (physics-reference.md). The MIP unit is the most probable
deposit, as in the CMS HGCAL MIP calibration.
"""

from __future__ import annotations

import numpy as np

from caloreco.geometry.layers import LayerStack
from caloreco.simulation.spots import Spots

MOYAL_MPV_OVER_MEAN = 0.7  # physics-reference.md: most probable ~0.7 of the mean
_EULER_GAMMA = 0.5772156649
# Moyal mean = loc + scale (gamma + ln 2); choose scale so that loc (= MPV = 1) / mean = 0.7
MOYAL_SCALE = (1.0 / MOYAL_MPV_OVER_MEAN - 1.0) / (_EULER_GAMMA + np.log(2.0))
_TRUNCATION = 20.0  # deposits above 20 MPV (rare delta rays) are clipped


def _truncated_mean() -> float:
    """Mean of the clipped Moyal deposit (numerical integral, computed once at import)."""
    z = np.linspace(-8, 8, 200001)
    w = np.exp(-0.5 * z * z)
    x = np.clip(1.0 - MOYAL_SCALE * np.log(np.maximum(z * z, 1e-300)), 0.05, _TRUNCATION)
    return float((x * w).sum() / w.sum())


#: mean deposit of one crossing in MPV units (~1.4)
MOYAL_MEAN = _truncated_mean()


def landau_like(size: int, rng: np.random.Generator) -> np.ndarray:
    """Deposit in units of the most probable value (Moyal with MPV 1), truncated at 20."""
    # Moyal: X = loc - 2 scale ln|Z| with Z ~ N(0, 1) (the chi-square(1) representation)
    z = rng.standard_normal(size)
    x = 1.0 - MOYAL_SCALE * np.log(np.maximum(z * z, 1e-300))
    return np.clip(x, 0.05, _TRUNCATION)


def mip_spots(particle: np.ndarray, path_factor: np.ndarray, n_layers: np.ndarray, layers: LayerStack,
              rng: np.random.Generator) -> Spots:
    """One spot per crossed layer on the axis, for the first ``n_layers[i]`` layers of track i."""
    n_layers = np.asarray(n_layers, dtype=np.int64)
    if n_layers.sum() == 0:
        return Spots.empty()
    idx = np.repeat(np.arange(len(particle)), n_layers)
    starts = np.repeat(np.cumsum(n_layers) - n_layers, n_layers)
    layer = np.arange(len(idx)) - starts
    e = layers.mip_gev[layer] * path_factor[idx] * landau_like(len(idx), rng)
    zero = np.zeros(len(idx))
    return Spots(particle[idx].astype(np.int64), layer, zero, zero.copy(), e)
