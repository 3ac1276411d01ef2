"""Particle species known to the simulation and the generated-particle record.

Masses from the PDG Review of Particle Physics (2024), in GeV.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np

from caloreco.errors import ConfigError


class ShowerKind(Enum):
    """Which shower model a species uses."""

    EM = "em"  # electrons, positrons, photons
    HADRON = "hadron"  # charged and neutral hadrons
    MUON = "muon"  # minimum-ionising through the whole calorimeter


@dataclass(frozen=True)
class Species:
    name: str
    pdg: int
    mass: float  # GeV, PDG
    charge: int
    kind: ShowerKind


SPECIES: dict[str, Species] = {s.name: s for s in [
    Species("e-", 11, 0.000511, -1, ShowerKind.EM),
    Species("e+", -11, 0.000511, 1, ShowerKind.EM),
    Species("gamma", 22, 0.0, 0, ShowerKind.EM),
    Species("pi+", 211, 0.13957, 1, ShowerKind.HADRON),
    Species("pi-", -211, 0.13957, -1, ShowerKind.HADRON),
    Species("K+", 321, 0.49368, 1, ShowerKind.HADRON),
    Species("K-", -321, 0.49368, -1, ShowerKind.HADRON),
    Species("K0L", 130, 0.49761, 0, ShowerKind.HADRON),
    Species("n", 2112, 0.93957, 0, ShowerKind.HADRON),
    Species("p", 2212, 0.93827, 1, ShowerKind.HADRON),
    Species("mu-", 13, 0.10566, -1, ShowerKind.MUON),
    Species("mu+", -13, 0.10566, 1, ShowerKind.MUON),
]}
_BY_PDG = {s.pdg: s for s in SPECIES.values()}
#: aliases accepted on the command line
ALIASES = {"electron": "e-", "positron": "e+", "photon": "gamma", "pion": "pi+", "pi": "pi+",
           "k0l": "K0L", "neutron": "n", "muon": "mu-", "mu": "mu-", "proton": "p"}


def species(name_or_pdg: str | int) -> Species:
    """Look a species up by name, alias or PDG id."""
    if isinstance(name_or_pdg, (int, np.integer)):
        if int(name_or_pdg) in _BY_PDG:
            return _BY_PDG[int(name_or_pdg)]
        raise ConfigError(f"unknown PDG id {name_or_pdg}; known: {sorted(_BY_PDG)}")
    key = ALIASES.get(name_or_pdg.lower(), name_or_pdg)
    if key in SPECIES:
        return SPECIES[key]
    raise ConfigError(f"unknown particle '{name_or_pdg}'; known: {sorted(SPECIES)} (aliases {sorted(ALIASES)})")


def kind_of(pdg: np.ndarray) -> np.ndarray:
    """ShowerKind value ("em", "hadron", "muon") of each PDG id."""
    return np.array([_BY_PDG[int(p)].kind.value for p in pdg], dtype=object)


@dataclass
class GenParticles:
    """Generated particles of one event, entering the calorimeter in straight lines.

    Shapes: all arrays (P,). Units: GeV, cm.
    """

    pdg: np.ndarray
    energy: np.ndarray
    px: np.ndarray
    py: np.ndarray
    pz: np.ndarray
    vx: np.ndarray
    vy: np.ndarray
    vz: np.ndarray
    is_pileup: np.ndarray

    def __len__(self) -> int:
        return len(self.pdg)

    @classmethod
    def from_eta_phi(cls, pdg: np.ndarray, energy: np.ndarray, eta: np.ndarray, phi: np.ndarray,
                     *, is_pileup: np.ndarray | bool = False) -> "GenParticles":
        """Particles from the origin with total energy E and direction (eta, phi)."""
        pdg = np.asarray(pdg, dtype=np.int32)
        energy = np.asarray(energy, dtype=np.float64)
        mass = np.array([_BY_PDG[int(p)].mass for p in pdg]) if len(pdg) else np.zeros(0)
        if (energy < mass).any():
            raise ConfigError("particle energy below its mass")
        p = np.sqrt(np.maximum(energy**2 - mass**2, 0.0))
        theta = 2.0 * np.arctan(np.exp(-np.asarray(eta, dtype=np.float64)))
        z0 = np.zeros(len(pdg))
        return cls(pdg=pdg, energy=energy, px=p * np.sin(theta) * np.cos(phi), py=p * np.sin(theta) * np.sin(phi),
                   pz=p * np.cos(theta), vx=z0, vy=z0.copy(), vz=z0.copy(),
                   is_pileup=np.broadcast_to(np.asarray(is_pileup, dtype=bool), pdg.shape).copy())

    @classmethod
    def concat(cls, parts: list["GenParticles"]) -> "GenParticles":
        return cls(**{k: np.concatenate([getattr(p, k) for p in parts]) for k in cls.__dataclass_fields__})

    def directions(self) -> np.ndarray:
        """Unit momentum vectors, shape (P, 3)."""
        p = np.stack([self.px, self.py, self.pz], axis=1)
        return p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-12)

    def vertices(self) -> np.ndarray:
        return np.stack([self.vx, self.vy, self.vz], axis=1)

    def mass(self) -> np.ndarray:
        return np.array([_BY_PDG[int(p)].mass for p in self.pdg])
