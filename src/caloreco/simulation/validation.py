"""Emergent-behaviour checks of the simulation: response, resolution, shower depth, MIPs.

These functions run single-particle guns and reduce them to the figures test beams
publish; the tests compare them with ``../shared/physics-reference.md`` and ``caloreco
demo`` plots them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import curve_fit
from scipy.stats import norm

from caloreco.geometry.detector import Detector
from caloreco.simulation.guns import GunConfig
from caloreco.simulation.simulator import SimulationConfig, Simulator


def gun_sums(detector: Detector, particle: str, energy: float, n_events: int, *, seed: int = 0, eta: float = 2.2,
             config: SimulationConfig | None = None) -> np.ndarray:
    """Summed energy of the signal hits (truth_cluster >= 0, noise included) per event."""
    sim = Simulator(detector, config)
    gun = GunConfig(particle=particle, energy=float(energy), eta=eta)
    out = np.empty(n_events)
    for i in range(n_events):
        rng = np.random.default_rng([seed, int(energy * 1000), i])
        ev = sim.simulate(gun.generate(rng), rng, event_id=i)
        sel = ev.hits["truth_cluster"] >= 0
        out[i] = ev.hits["energy"][sel].sum()
    return out


def gaussian_core(values: np.ndarray, k: float = 2.0, iterations: int = 5) -> tuple[float, float]:
    """Mean and sigma of the Gaussian core: iterate on +-k sigma around the mean and correct
    sigma for the truncation, as test-beam analyses fit +-2 sigma."""
    mu, sigma = float(np.median(values)), float(np.std(values))
    shrink = np.sqrt(1.0 - 2.0 * k * norm.pdf(k) / (2.0 * norm.cdf(k) - 1.0))
    for _ in range(iterations):
        sel = values[np.abs(values - mu) < k * max(sigma, 1e-12)]
        if len(sel) < 5:
            break
        mu, sigma = float(sel.mean()), float(sel.std() / shrink)
    return mu, sigma


def resolution_model(E: np.ndarray, a: float, c: float) -> np.ndarray:
    """sigma_E / E = a / sqrt(E) (+) c."""
    return np.sqrt(a**2 / E + c**2)


@dataclass
class ResolutionScan:
    energies: np.ndarray
    response: np.ndarray  # <E_reco> / E
    resolution: np.ndarray  # sigma / <E_reco>
    resolution_err: np.ndarray
    stochastic: float  # a [sqrt(GeV)]
    constant: float  # c

    def as_dict(self) -> dict[str, object]:
        return {"energies": self.energies.tolist(), "response": self.response.tolist(),
                "resolution": self.resolution.tolist(), "stochastic": self.stochastic, "constant": self.constant}


def resolution_scan(detector: Detector, particle: str, energies: list[float], n_events: int, *, seed: int = 0,
                    eta: float = 2.2, config: SimulationConfig | None = None) -> ResolutionScan:
    """Response and resolution versus energy, fitted with a / sqrt(E) (+) c."""
    E = np.asarray(energies, dtype=float)
    resp, res, err = [], [], []
    for e in E:
        mu, sigma = gaussian_core(gun_sums(detector, particle, e, n_events, seed=seed, eta=eta, config=config))
        resp.append(mu / e)
        res.append(sigma / mu)
        err.append(sigma / mu / np.sqrt(2.0 * (n_events - 1)))
    res_a, err_a = np.array(res), np.array(err)
    (a, c), _ = curve_fit(resolution_model, E, res_a, p0=(0.2, 0.01), sigma=err_a, bounds=([0, 0], [5, 1]))
    return ResolutionScan(E, np.array(resp), res_a, err_a, float(a), float(c))


def longitudinal_profile(detector: Detector, particle: str, energy: float, n_events: int, *, seed: int = 0,
                         eta: float = 2.2, config: SimulationConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean signal energy per layer and the depth of each layer along the particle [X0]."""
    sim = Simulator(detector, config)
    gun = GunConfig(particle=particle, energy=float(energy), eta=eta)
    L = len(detector.layers)
    prof = np.zeros(L)
    for i in range(n_events):
        rng = np.random.default_rng([seed, i])
        ev = sim.simulate(gun.generate(rng), rng)
        sel = ev.hits["truth_cluster"] >= 0
        prof += np.bincount(ev.hits["layer"][sel].astype(int) - 1, weights=ev.hits["truth_energy"][sel], minlength=L)
    path = 1.0 / np.tanh(eta)  # 1/cos(theta) for a line from the origin
    return prof / n_events, detector.layers.cum_x0 * path


def shower_maximum(depth: np.ndarray, profile: np.ndarray) -> float:
    """Depth of the maximum of a gamma-function fit to a longitudinal profile [X0].

    The fitted profile is E b (b t)^(a-1) e^(-b t) / Gamma(a) with the layer energies taken
    as samples of the slabs before each layer (centre = half a slab in front of the layer);
    the maximum is (a - 1) / b.
    """
    from scipy.special import gammaln

    slab = np.diff(np.concatenate([[0.0], depth]))
    t = depth - 0.5 * slab
    dens = profile / np.maximum(slab, 1e-9)

    def model(t: np.ndarray, E: float, a: float, b: float) -> np.ndarray:
        return E * b * np.exp((a - 1) * np.log(np.maximum(b * t, 1e-12)) - b * t - gammaln(a))

    m = profile > 0
    (E, a, b), _ = curve_fit(model, t[m], dens[m], p0=(profile.sum(), 4.0, 0.5), bounds=([0, 1.01, 0.05], [np.inf, 30, 3]))
    return float((a - 1) / b)
