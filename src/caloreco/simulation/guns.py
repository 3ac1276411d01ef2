"""Event generators: particle guns, the dtau-like preset and soft pileup.

Each generator is a frozen dataclass with ``generate(rng) -> GenParticles``; the registry
:data:`PRESETS` maps preset names to them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Protocol

import numpy as np

from caloreco.errors import ConfigError
from caloreco.simulation.particles import GenParticles, species

Range = float | tuple[float, float]

TAU_MASS = 1.77686  # GeV, PDG
PI0_MASS = 0.134977  # GeV, PDG


def _draw(value: Range, rng: np.random.Generator, size: int) -> np.ndarray:
    if isinstance(value, (tuple, list)):
        lo, hi = float(value[0]), float(value[1])
        if hi < lo:
            raise ConfigError(f"range ({lo}, {hi}) has its upper edge below its lower edge")
        return rng.uniform(lo, hi, size=size)
    return np.full(size, float(value))


class Generator(Protocol):
    def generate(self, rng: np.random.Generator) -> GenParticles: ...


@dataclass(frozen=True)
class PileupConfig:
    """Soft particles overlaid on each event: Poisson number with mean ``mean`` (default 0).

    Composition ~ minimum-bias final states reaching a calorimeter: charged pions, photons
    from pi0 decays and a few neutral hadrons; pT exponential with mean ``pt_mean`` GeV
    (<pT> ~ 0.5 GeV for 13-14 TeV minimum bias, CMS/ATLAS measurements).
    """

    mean: float = 0.0
    pt_mean: float = 0.5
    eta: tuple[float, float] = (1.5, 3.0)

    def generate(self, rng: np.random.Generator) -> GenParticles:
        n = rng.poisson(self.mean) if self.mean > 0 else 0
        names = rng.choice(["pi+", "pi-", "gamma", "K0L"], size=n, p=[0.3, 0.3, 0.3, 0.1])
        pdg = np.array([species(str(s)).pdg for s in names], dtype=np.int32)
        eta = rng.uniform(*self.eta, size=n)
        pt = rng.exponential(self.pt_mean, size=n) + 0.05
        mass = np.array([species(int(p)).mass for p in pdg]) if n else np.zeros(0)
        energy = np.sqrt((pt * np.cosh(eta)) ** 2 + mass**2)
        return GenParticles.from_eta_phi(pdg, energy, eta, rng.uniform(-np.pi, np.pi, n), is_pileup=True)


@dataclass(frozen=True)
class GunConfig:
    """Single-species particle gun.

    ``particle`` is a name, alias or PDG id (or a tuple, one per event chosen at random);
    ``energy``, ``eta``, ``phi`` are values or (low, high) ranges. With ``close_by_cm`` > 0
    the particles after the first enter within that distance of the first one at
    z = ``close_by_z`` (overlapping showers).
    """

    particle: str | tuple[str, ...] = "e-"
    energy: Range = (10.0, 100.0)
    eta: Range = (1.7, 2.7)
    phi: Range = (-np.pi, np.pi)
    n_particles: int = 1
    close_by_cm: float = 0.0
    close_by_z: float = 320.0  # cm, HGCAL front face
    pileup: PileupConfig = PileupConfig()

    def __post_init__(self) -> None:
        if self.n_particles < 1:
            raise ConfigError(f"n_particles must be >= 1, got {self.n_particles}")
        names = self.particle if isinstance(self.particle, tuple) else (self.particle,)
        for n in names:
            species(n)

    def generate(self, rng: np.random.Generator) -> GenParticles:
        n = self.n_particles
        names = self.particle if isinstance(self.particle, tuple) else (self.particle,)
        pdg = np.array([species(names[int(rng.integers(len(names)))]).pdg for _ in range(n)], dtype=np.int32)
        energy = _draw(self.energy, rng, n)
        eta = _draw(self.eta, rng, n)
        phi = _draw(self.phi, rng, n)
        if self.close_by_cm > 0 and n > 1:
            r0 = self.close_by_z / np.sinh(eta[0])
            x0, y0 = r0 * np.cos(phi[0]), r0 * np.sin(phi[0])
            rad = self.close_by_cm * np.sqrt(rng.uniform(size=n - 1))
            ang = rng.uniform(0, 2 * np.pi, n - 1)
            x, y = x0 + rad * np.cos(ang), y0 + rad * np.sin(ang)
            eta[1:] = np.arcsinh(self.close_by_z / np.hypot(x, y))
            phi[1:] = np.arctan2(y, x)
        mass = np.array([species(int(p)).mass for p in pdg])
        energy = np.maximum(energy, mass + 1e-3)
        gun = GenParticles.from_eta_phi(pdg, energy, eta, phi)
        return GenParticles.concat([gun, self.pileup.generate(rng)])


# tau decay modes (visible products, charged pions as "pi", pi0 as "pi0") with branching
# fractions from the PDG (2024): e nu nu 17.8 %, mu nu nu 17.4 %, pi nu 10.8 %,
# pi pi0 nu 25.5 %, pi 2pi0 nu 9.3 %, 3pi nu 9.0 %, 3pi pi0 nu 4.5 % (renormalised)
TAU_MODES: tuple[tuple[tuple[str, ...], float], ...] = (
    (("e",), 0.178),
    (("mu",), 0.174),
    (("pi",), 0.108),
    (("pi", "pi0"), 0.255),
    (("pi", "pi0", "pi0"), 0.093),
    (("pi", "pi", "pi"), 0.090),
    (("pi", "pi", "pi", "pi0"), 0.045),
)


@dataclass(frozen=True)
class DTauConfig:
    """Two tau-like jets in one endcap, as the GravNet/object-condensation HGCAL data set.

    Each tau (transverse momentum in ``tau_pt``, direction in ``eta``; E = pT cosh eta, so
    ~100-400 GeV in the endcap) decays by a PDG mode; its
    visible energy fraction is uniform in ``visible_fraction`` and shared among the visible
    products with a flat Dirichlet; pi0 -> gamma gamma with a flat energy split and the
    minimal opening angle m/sqrt(E1 E2); products deviate from the tau axis by ~m_tau/E.
    With probability ``neutral_hadron_prob`` a tau also carries a K0L (neutral hadron).
    Each jet adds a Poisson(``jet_extra_mean``) number of soft companions (charged pions,
    photons, K0L; 1 GeV to 10 % of the tau energy, within ``jet_cone`` of the axis), so an
    event holds O(10) particles like the GravNet/object-condensation data set.
    """

    tau_pt: tuple[float, float] = (30.0, 150.0)  # GeV; Z/gamma* -> tau tau visible taus
    eta: tuple[float, float] = (1.8, 2.7)
    visible_fraction: tuple[float, float] = (0.5, 1.0)
    neutral_hadron_prob: float = 0.15
    min_particle_energy: float = 1.0
    jet_extra_mean: float = 3.0
    jet_cone: float = 0.1  # rad
    pileup: PileupConfig = PileupConfig()

    def _tau(self, rng: np.random.Generator, eta0: float, phi0: float) -> tuple[list[int], list[float], list[float], list[float]]:
        E = rng.uniform(*self.tau_pt) * np.cosh(eta0)
        probs = np.array([m[1] for m in TAU_MODES])
        mode = TAU_MODES[rng.choice(len(TAU_MODES), p=probs / probs.sum())][0]
        prods = list(mode)
        if rng.uniform() < self.neutral_hadron_prob:
            prods.append("K0L")
        e_vis = E * rng.uniform(*self.visible_fraction)
        shares = rng.dirichlet(np.full(len(prods), 2.0)) * e_vis
        shares = np.maximum(shares, self.min_particle_energy)
        sign = 1 if rng.uniform() < 0.5 else -1
        pdg, en, eta, phi = [], [], [], []
        theta0 = 2 * np.arctan(np.exp(-eta0))
        for name, e in zip(prods, shares):
            # deviation from the tau axis: ~ m_tau / E_tau (boosted decay cone)
            dth = abs(rng.normal(0.0, TAU_MASS / E))
            dirs = _rotate(theta0, phi0, dth, rng.uniform(0, 2 * np.pi))
            if name == "pi0":
                z = rng.uniform(0.05, 0.95)
                e1, e2 = z * e, (1 - z) * e
                opening = PI0_MASS / np.sqrt(e1 * e2)
                th_c, ph_c = dirs
                az = rng.uniform(0, 2 * np.pi)
                for ei, ang in ((e1, opening * e2 / e), (e2, -opening * e1 / e)):
                    t, p = _rotate(th_c, ph_c, abs(ang), az + (0 if ang >= 0 else np.pi))
                    pdg.append(22), en.append(ei), eta.append(-np.log(np.tan(t / 2))), phi.append(p)
                continue
            code = {"e": 11 * -sign, "mu": 13 * -sign, "pi": 211 * sign, "K0L": 130}[name]
            pdg.append(code), en.append(e), eta.append(-np.log(np.tan(dirs[0] / 2))), phi.append(dirs[1])
        for _ in range(rng.poisson(self.jet_extra_mean)):
            name = ("pi+", "pi-", "gamma", "gamma", "K0L")[int(rng.integers(5))]
            e = rng.uniform(self.min_particle_energy, max(0.1 * E, self.min_particle_energy + 0.1))
            t, p = _rotate(theta0, phi0, abs(rng.normal(0.0, self.jet_cone)), rng.uniform(0, 2 * np.pi))
            pdg.append(species(name).pdg), en.append(e), eta.append(-np.log(np.tan(t / 2))), phi.append(p)
        return pdg, en, eta, phi

    def generate(self, rng: np.random.Generator) -> GenParticles:
        out: list[GenParticles] = []
        phi1 = rng.uniform(-np.pi, np.pi)
        for phi0 in (phi1, phi1 + rng.uniform(0.6, 2 * np.pi - 0.6)):
            pdg, en, eta, phi = self._tau(rng, rng.uniform(*self.eta), (phi0 + np.pi) % (2 * np.pi) - np.pi)
            mass = np.array([species(int(p)).mass for p in pdg])
            out.append(GenParticles.from_eta_phi(np.array(pdg), np.maximum(en, mass + 1e-3), np.array(eta), np.array(phi)))
        out.append(self.pileup.generate(rng))
        return GenParticles.concat(out)


def _rotate(theta: float, phi: float, dtheta: float, azimuth: float) -> tuple[float, float]:
    """Direction (theta, phi) at angle ``dtheta`` from (theta, phi), at ``azimuth`` around it."""
    d = np.array([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)])
    ref = np.array([0.0, 0.0, 1.0]) if abs(d[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    u = np.cross(d, ref)
    u /= np.linalg.norm(u)
    v = np.cross(d, u)
    n = np.cos(dtheta) * d + np.sin(dtheta) * (np.cos(azimuth) * u + np.sin(azimuth) * v)
    return float(np.arccos(np.clip(n[2], -1, 1))), float(np.arctan2(n[1], n[0]))


PRESETS: dict[str, type] = {"gun": GunConfig, "dtau": DTauConfig}

# Pythia 8 events propagated to the calorimeter (Pythia itself is imported only when events are made)
from caloreco.generators.preset import PythiaConfig  # noqa: E402

PRESETS["pythia"] = PythiaConfig


def make_generator(preset: str, **options: Any) -> Generator:
    """Build the generator of ``preset`` with keyword overrides of its fields."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset '{preset}'; choose one of {sorted(PRESETS)}")
    cls = PRESETS[preset]
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(f"preset '{preset}' has no option(s) {unknown}; its options are {sorted(known)}")
    return cls(**options)
