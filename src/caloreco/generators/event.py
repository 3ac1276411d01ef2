"""A generated bunch crossing: the hard scatter's full record plus all stable particles.

:class:`GeneratedEvent` keeps

``record`` (R rows, :data:`~caloreco.generators.pythia.RECORD_FIELDS`)
    the complete Pythia record of the hard-scatter interaction (status, mothers,
    daughters, momenta, production vertices shifted to the interaction's vertex);
``stable`` (S rows, :data:`STABLE_FIELDS`)
    every final-state particle of the hard scatter (``vertex`` 0) and of the pileup
    interactions (``vertex`` 1..n), with ``index`` its row in its interaction's record and,
    once the event is prepared for the simulation, ``sim_index`` (row in the simulated
    event's particle table, -1 if not simulated) and ``fate`` (why not, :data:`FATES`);
``vertex_z`` (n + 1,)
    the longitudinal position of each interaction [cm].

Pileup: ``n ~ Poisson(mu)`` minimum-bias interactions; every interaction's vertex is drawn
from the luminous region, z ~ N(0, sigma_z) (transverse size ~ 10 um, neglected).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from caloreco.generators.pythia import PYTHIA_MAX_SEED, PythiaSetup, final_state, runner

#: Columns of the stable-particle table.
STABLE_FIELDS: dict[str, np.dtype] = {
    "pdg": np.dtype(np.int32),
    "charge": np.dtype(np.float32),
    "px": np.dtype(np.float64),  # GeV, at the production vertex
    "py": np.dtype(np.float64),
    "pz": np.dtype(np.float64),
    "e": np.dtype(np.float64),
    "vx": np.dtype(np.float64),  # production vertex [cm]
    "vy": np.dtype(np.float64),
    "vz": np.dtype(np.float64),
    "t": np.dtype(np.float64),  # production time [ns]
    "vertex": np.dtype(np.int16),  # 0: hard scatter, k >= 1: k-th pileup interaction
    "index": np.dtype(np.int32),  # row in the record of its interaction
    "sim_index": np.dtype(np.int32),  # row in the simulated event's particles, -1: not simulated
    "fate": np.dtype(np.int8),  # FATES code
}

#: Why a stable particle is (not) simulated.
FATES = {0: "simulated", 1: "neutrino", 2: "looper", 3: "outside acceptance", 4: "below min_energy"}
NEUTRINOS = (12, 14, 16)

# Luminous-region rms length ~ sigma_z(bunch) / sqrt(2) = 7.55 cm / sqrt(2) for head-on Gaussian
# bunches (LHC Design Report, CERN-2004-003: rms bunch length 7.55 cm; HL-LHC keeps it).
LUMINOUS_SIGMA_Z_CM = 5.3


@dataclass
class GeneratedEvent:
    """Generator truth of one bunch crossing (see the module docstring)."""

    record: dict[str, np.ndarray]
    stable: dict[str, np.ndarray]
    vertex_z: np.ndarray

    @property
    def n_pileup(self) -> int:
        return len(self.vertex_z) - 1

    def hard_scatter(self) -> dict[str, np.ndarray]:
        """The stable particles of the hard-scatter interaction (``vertex == 0``)."""
        m = self.stable["vertex"] == 0
        return {k: v[m] for k, v in self.stable.items()}


def _stable_of(record: dict[str, np.ndarray], vertex: int) -> dict[str, np.ndarray]:
    rows = final_state(record)
    out = {k: record[k][rows] for k in ("pdg", "charge", "px", "py", "pz", "e", "vx", "vy", "vz", "t")}
    n = len(rows)
    out.update(vertex=np.full(n, vertex), index=rows, sim_index=np.full(n, -1), fate=np.zeros(n))
    return out


def _shift(record: dict[str, np.ndarray], dz: float) -> dict[str, np.ndarray]:
    out = dict(record)
    out["vz"] = record["vz"] + dz
    return out


def generate_event(hard: PythiaSetup, rng: np.random.Generator, *, pileup_mu: float = 0.0,
                   minbias: PythiaSetup | None = None,
                   sigma_z_cm: float = LUMINOUS_SIGMA_Z_CM) -> GeneratedEvent:
    """One bunch crossing: the hard scatter of ``hard`` plus Poisson(``pileup_mu``) pileup.

    Random numbers, in order: the hard-scatter seed, the pileup count, the pileup seed,
    the vertex positions, all from ``rng`` (so event ``i`` of seed ``s`` is reproducible
    from ``default_rng([s, i])``).
    """
    hard_seed = int(rng.integers(1, PYTHIA_MAX_SEED))
    n_pu = int(rng.poisson(pileup_mu)) if pileup_mu > 0 else 0
    pu_seed = int(rng.integers(1, PYTHIA_MAX_SEED))
    vertex_z = rng.normal(0.0, sigma_z_cm, size=1 + n_pu) if sigma_z_cm > 0 else np.zeros(1 + n_pu)
    record = _shift(runner(hard).generate(hard_seed, 1)[0], vertex_z[0])
    parts = [_stable_of(record, 0)]
    if n_pu:
        mb = minbias or PythiaSetup("minbias", e_cm=hard.e_cm)
        for k, rec in enumerate(runner(mb).generate(pu_seed, n_pu), start=1):
            parts.append(_stable_of(_shift(rec, vertex_z[k]), k))
    stable = {k: np.concatenate([p[k] for p in parts]).astype(d, copy=False) for k, d in STABLE_FIELDS.items()}
    return GeneratedEvent(record=record, stable=stable, vertex_z=vertex_z)
