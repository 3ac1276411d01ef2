"""The ``pythia`` simulation preset: Pythia events, propagated, as the simulation's input.

Each stable particle of a :class:`~caloreco.generators.event.GeneratedEvent` is propagated
through the solenoid field to the calorimeter front face
(:mod:`caloreco.generators.propagation`) and enters the fast simulation there, in a straight
line along its direction at impact, as one of the species the simulation knows
(:data:`caloreco.simulation.particles.SPECIES`):

====================================  ==============================================
generator particle                    simulated as
====================================  ==============================================
e+-, gamma, mu+-, pi+-, K+-, K0L,     itself (EM shower, MIP, hadron shower)
n, p
other charged hadrons (anti-proton,   pi+ / pi- by charge, with the particle's total
long-lived charged baryons)           energy (an anti-proton annihilates: ~E + m
                                      is available, E is used)
other neutral hadrons (anti-neutron,  K0L, with the total energy
K0S / Lambda if made stable)
neutrinos                             dropped (``fate`` 1)
====================================  ==============================================

The simulated energy is the generator energy E; the momentum is rescaled to
``sqrt(E^2 - m^2)`` of the mapped species along the impact direction. Loopers (``fate`` 2),
particles outside the detector's acceptance (3) and below ``min_energy`` (4) are not
simulated; ``stable["sim_index"]`` links every simulated particle to its row in the event.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from caloreco.errors import ConfigError
from caloreco.generators.event import LUMINOUS_SIGMA_Z_CM, NEUTRINOS, GeneratedEvent, generate_event
from caloreco.generators.propagation import B_FIELD_T, Surface, calorimeter_surface, propagate
from caloreco.generators.pythia import E_CM_GEV, HARD_PROCESSES, PythiaSetup

if TYPE_CHECKING:
    from caloreco.simulation.particles import GenParticles

PI_PLUS, PI_MINUS, K0L = 211, -211, 130
DETECTORS = ("hcal-barrel", "hgcal")


def _species_by_pdg() -> dict:
    # imported here: caloreco.simulation registers this preset while it initialises
    from caloreco.simulation.particles import SPECIES

    return {s.pdg: s for s in SPECIES.values()}


def simulation_pdg(pdg: np.ndarray, charge: np.ndarray) -> np.ndarray:
    """PDG id each generator particle is simulated as (0: not simulated, a neutrino)."""
    pdg = np.asarray(pdg, np.int64)
    charge = np.asarray(charge, np.float64)
    known = np.isin(pdg, list(_species_by_pdg()))
    by_charge = np.where(charge > 0, PI_PLUS, np.where(charge < 0, PI_MINUS, K0L))
    out = np.where(known, pdg, by_charge)
    return np.where(np.isin(np.abs(pdg), NEUTRINOS), 0, out).astype(np.int32)


def to_simulation(gen: GeneratedEvent, surface: Surface, *, b_field: float = B_FIELD_T,
                  min_energy: float = 0.0) -> GenParticles:
    """The particles of ``gen`` that reach ``surface``, as simulation input.

    Fills ``gen.stable["sim_index"]`` and ``gen.stable["fate"]`` in place.
    """
    from caloreco.simulation.particles import GenParticles

    known = _species_by_pdg()
    st = gen.stable
    sim_pdg = simulation_pdg(st["pdg"], st["charge"])
    vertex = np.stack([st["vx"], st["vy"], st["vz"]], axis=1)
    prop = propagate(st["px"], st["py"], st["pz"], vertex, st["charge"], surface, b_field=b_field)
    fate = np.where(sim_pdg == 0, 1, np.where(prop.looper, 2, np.where(~prop.reached, 3,
                    np.where(st["e"] < min_energy, 4, 0))))
    keep = np.flatnonzero(fate == 0)
    st["fate"] = fate.astype(np.int8)
    st["sim_index"] = np.full(len(fate), -1, np.int32)
    st["sim_index"][keep] = np.arange(len(keep), dtype=np.int32)
    pdg = sim_pdg[keep]
    mass = np.array([known[int(p)].mass for p in pdg]) if len(pdg) else np.zeros(0)
    energy = np.maximum(st["e"][keep], mass + 1e-6)
    p = np.sqrt(np.maximum(energy**2 - mass**2, 0.0))
    d, pos = prop.direction[keep], prop.position[keep]
    return GenParticles(pdg=pdg, energy=energy, px=p * d[:, 0], py=p * d[:, 1], pz=p * d[:, 2],
                        vx=pos[:, 0], vy=pos[:, 1], vz=pos[:, 2], is_pileup=st["vertex"][keep] > 0)


@dataclass(frozen=True)
class PythiaConfig:
    """Simulation preset ``pythia``: Pythia 8 events with pileup, propagated in the field.

    Args:
        process: hard process, one of ``ttbar`` (default), ``zmumu``, ``ztautau``
            (:data:`caloreco.generators.pythia.PROCESSES`).
        pileup: Poisson mean mu of minimum-bias interactions per crossing (0, 50, 200, ...).
        detector: the data set's detector, whose front face the particles are propagated
            to (``hcal-barrel``, default, or ``hgcal``).
        e_cm: centre-of-mass energy [GeV], default 14000.
        pt_hat_min: ``PhaseSpace:pTHatMin`` of ``zmumu`` [GeV], default 20.
        b_field: solenoid field [T], default 3.8 (CMS).
        sigma_z_cm: rms length of the luminous region [cm], default 5.3.
        min_energy: particles below this energy [GeV] are not simulated, default 0.
        init_seed: Pythia's ``Random:seed`` at initialisation (events are re-seeded from
            the event's random stream), default 1.
    """

    process: str = "ttbar"
    pileup: float = 0.0
    detector: str = "hcal-barrel"
    e_cm: float = E_CM_GEV
    pt_hat_min: float = 20.0
    b_field: float = B_FIELD_T
    sigma_z_cm: float = LUMINOUS_SIGMA_Z_CM
    min_energy: float = 0.0
    init_seed: int = 1

    def __post_init__(self) -> None:
        if self.process not in HARD_PROCESSES:
            raise ConfigError(f"process must be one of {list(HARD_PROCESSES)}, got '{self.process}'")
        if self.detector not in DETECTORS:
            raise ConfigError(f"detector must be one of {list(DETECTORS)}, got '{self.detector}'")
        if not (np.isfinite(self.pileup) and self.pileup >= 0):
            raise ConfigError(f"pileup (mean number of interactions) must be >= 0, got {self.pileup}")
        if self.sigma_z_cm < 0 or self.min_energy < 0 or not self.b_field >= 0:
            raise ConfigError(f"sigma_z_cm, min_energy and b_field must be >= 0, got {self.sigma_z_cm}, "
                              f"{self.min_energy}, {self.b_field}")
        self.hard_setup()  # validates e_cm, pt_hat_min, init_seed

    def hard_setup(self) -> PythiaSetup:
        return PythiaSetup(self.process, e_cm=self.e_cm, pt_hat_min=self.pt_hat_min, init_seed=self.init_seed)

    def minbias_setup(self) -> PythiaSetup:
        return PythiaSetup("minbias", e_cm=self.e_cm, init_seed=self.init_seed)

    def surface(self) -> Surface:
        from caloreco.geometry.registry import make_detector

        return calorimeter_surface(make_detector(self.detector))

    def generate_with_record(self, rng: np.random.Generator) -> tuple[GenParticles, GeneratedEvent]:
        """Simulation input and generator truth of one crossing."""
        gen = generate_event(self.hard_setup(), rng, pileup_mu=self.pileup, minbias=self.minbias_setup(),
                             sigma_z_cm=self.sigma_z_cm)
        particles = to_simulation(gen, self.surface(), b_field=self.b_field, min_energy=self.min_energy)
        return particles, gen

    def generate(self, rng: np.random.Generator) -> GenParticles:
        return self.generate_with_record(rng)[0]

    def write_records(self, records: Sequence[tuple[int, GeneratedEvent]], path: str | Path) -> Path:
        """Write the generator truth of a shard (:func:`caloreco.generators.io.write_generator_file`)."""
        from caloreco.generators.io import write_generator_file

        return write_generator_file(records, path)
