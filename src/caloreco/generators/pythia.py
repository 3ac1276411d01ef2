"""Proton-proton events from Pythia 8 (the ``pythia8mc`` bindings): processes, seeding, record.

Processes (Pythia 8.3 manual, "Top Processes", "Electroweak Processes", "QCD Processes"),
all at ``Beams:eCM`` (default 14 TeV) with the default tune (Monash 2013), parton showers,
multiparton interactions (``PartonLevel:MPI``) and hadronisation (``HadronLevel:all``) on:

==========  ===================================================================
``ttbar``   ``Top:gg2ttbar``, ``Top:qqbar2ttbar`` (tops decay inclusively)
``zmumu``   Z/gamma* + jet: ``WeakBosonAndParton:qqbar2gmZg``, ``qg2gmZq`` with
            ``PhaseSpace:pTHatMin``; the Z/gamma* decays to mu+ mu- only
            (``23:onMode = off``, ``23:onIfAny = 13``), m > 50 GeV (``23:mMin``)
``ztautau`` ``WeakSingleBoson:ffbar2gmZ`` -> tau+ tau- (``23:onIfAny = 15``),
            m_hat > 50 GeV; Pythia decays the taus
``minbias`` inelastic soft QCD for pileup: ``SoftQCD:nonDiffractive``,
            ``singleDiffractive``, ``doubleDiffractive``
==========  ===================================================================

Decays: particles with c tau < 1 m decay in the generator (``ParticleDecays:limitTau0``,
``tau0Max = 1000`` mm: K0S, Lambda, Sigma, Xi, Omega and heavier), as they would in the
tracker volume, which this toolkit does not simulate; pi+-, K+-, K0L, n, p and mu reach
the calorimeter.

Seeding: the instance is initialised once per process with ``Random:seed = init_seed``;
before each call :meth:`PythiaRunner.generate` re-seeds the random engine
(``Rndm::init(seed)``), so an event depends only on its own seed, not on the events
generated before it in the process (up to Pythia's adaptive cross-section maxima, which
grow when violated and are shared by later events).

The event record is read in one call through Pythia's awkward batch interface
(``nextBatch``), converted to numpy columns (:data:`RECORD_FIELDS`), lengths in cm and
times in ns (Pythia uses mm and mm/c).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from caloreco.errors import ConfigError, MissingDependencyError

E_CM_GEV = 14000.0  # HL-LHC design centre-of-mass energy (HL-LHC TDR, CERN-2020-010)
MM_TO_CM = 0.1
MM_PER_NS = 299.792458  # speed of light [mm/ns]
PYTHIA_MAX_SEED = 900_000_000  # Random:seed upper limit (Pythia 8.3 manual, "Random-Number Seed")
TAU0_MAX_MM = 1000.0  # c tau above which particles stay stable (reach the calorimeter)

#: Process name -> Pythia settings; ``{pt_hat_min}`` and ``{m_min}`` are filled in.
PROCESSES: dict[str, tuple[str, ...]] = {
    "ttbar": ("Top:gg2ttbar = on", "Top:qqbar2ttbar = on"),
    "zmumu": ("WeakBosonAndParton:qqbar2gmZg = on", "WeakBosonAndParton:qg2gmZq = on",
              "23:onMode = off", "23:onIfAny = 13", "PhaseSpace:pTHatMin = {pt_hat_min}",
              "23:mMin = {m_min}"),
    "ztautau": ("WeakSingleBoson:ffbar2gmZ = on", "23:onMode = off", "23:onIfAny = 15",
                "PhaseSpace:mHatMin = {m_min}", "23:mMin = {m_min}"),
    "minbias": ("SoftQCD:nonDiffractive = on", "SoftQCD:singleDiffractive = on",
                "SoftQCD:doubleDiffractive = on"),
}
HARD_PROCESSES = ("ttbar", "zmumu", "ztautau")

#: Columns of one event record (one row per Pythia particle, row 0 = the system).
RECORD_FIELDS: dict[str, np.dtype] = {
    "pdg": np.dtype(np.int32),
    "status": np.dtype(np.int32),  # Pythia status code; > 0: final state
    "mother1": np.dtype(np.int32),
    "mother2": np.dtype(np.int32),
    "daughter1": np.dtype(np.int32),
    "daughter2": np.dtype(np.int32),
    "charge": np.dtype(np.float32),  # units of e
    "px": np.dtype(np.float64),  # GeV
    "py": np.dtype(np.float64),
    "pz": np.dtype(np.float64),
    "e": np.dtype(np.float64),
    "m": np.dtype(np.float64),
    "vx": np.dtype(np.float64),  # production vertex [cm]
    "vy": np.dtype(np.float64),
    "vz": np.dtype(np.float64),
    "t": np.dtype(np.float64),  # production time [ns]
}


@dataclass(frozen=True)
class PythiaSetup:
    """What defines an initialised Pythia instance.

    Args:
        process: one of :data:`PROCESSES`.
        e_cm: centre-of-mass energy [GeV], default 14000.
        pt_hat_min: ``PhaseSpace:pTHatMin`` of the Z + jet process [GeV], default 20.
        m_min: lower Z/gamma* mass [GeV], default 50.
        init_seed: ``Random:seed`` at initialisation (events are re-seeded one by one).
        extra: further ``readString`` settings, applied last.
    """

    process: str = "ttbar"
    e_cm: float = E_CM_GEV
    pt_hat_min: float = 20.0
    m_min: float = 50.0
    init_seed: int = 1
    extra: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.process not in PROCESSES:
            raise ConfigError(f"unknown Pythia process '{self.process}'; choose one of {sorted(PROCESSES)}")
        if not self.e_cm > 0 or self.pt_hat_min < 0 or self.m_min < 0:
            raise ConfigError(f"e_cm must be > 0 and pt_hat_min, m_min >= 0, got {self.e_cm}, "
                              f"{self.pt_hat_min}, {self.m_min}")
        if not 0 <= self.init_seed <= PYTHIA_MAX_SEED:
            raise ConfigError(f"init_seed must lie in [0, {PYTHIA_MAX_SEED}], got {self.init_seed}")

    def settings(self) -> tuple[str, ...]:
        """The ``readString`` lines, in order."""
        common = (f"Beams:eCM = {self.e_cm}", "Print:quiet = on", "Next:numberCount = 0",
                  "Random:setSeed = on", f"Random:seed = {self.init_seed}",
                  "PartonLevel:MPI = on", "HadronLevel:all = on",
                  "ParticleDecays:limitTau0 = on", f"ParticleDecays:tau0Max = {TAU0_MAX_MM}")
        proc = tuple(s.format(pt_hat_min=self.pt_hat_min, m_min=self.m_min) for s in PROCESSES[self.process])
        return common + proc + tuple(self.extra)


class PythiaRunner:
    """One initialised Pythia instance (not picklable; see :func:`runner`)."""

    def __init__(self, setup: PythiaSetup) -> None:
        try:
            import pythia8mc
        except ImportError:
            raise MissingDependencyError("pythia8mc", "event generation with Pythia 8") from None
        self.setup = setup
        self.pythia = pythia8mc.Pythia("", False)  # no banner
        for line in setup.settings():
            if not self.pythia.readString(line):
                raise ConfigError(f"Pythia rejected the setting '{line}'")
        if not self.pythia.init():
            raise ConfigError(f"Pythia failed to initialise with {list(setup.settings())}")
        self._charge: dict[int, float] = {}

    def _charges(self, pdg: np.ndarray) -> np.ndarray:
        uniq, inv = np.unique(pdg, return_inverse=True)
        for p in uniq:
            if int(p) not in self._charge:
                self._charge[int(p)] = float(self.pythia.particleData.charge(int(p)))
        return np.array([self._charge[int(p)] for p in uniq], dtype=np.float32)[inv]

    def generate(self, seed: int, n_events: int = 1) -> list[dict[str, np.ndarray]]:
        """``n_events`` event records after re-seeding the engine with ``seed``.

        Failed events are retried (Pythia's ``errorMode`` "skip", at most 10 x n_events tries).
        """
        if n_events == 0:
            return []
        if not 0 <= seed <= PYTHIA_MAX_SEED:
            raise ConfigError(f"seed must lie in [0, {PYTHIA_MAX_SEED}], got {seed}")
        self.pythia.rndm.init(int(seed))
        counts, cols = _record_columns(self.pythia.nextBatch(int(n_events), 10.0).prt)
        cols["charge"] = self._charges(cols["pdg"])
        cols = {k: cols[k].astype(d, copy=False) for k, d in RECORD_FIELDS.items()}
        ends = np.cumsum(counts)
        return [{k: v[e - n:e] for k, v in cols.items()} for n, e in zip(counts, ends)]


def _record_columns(prt: Any) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Per-event counts and flat numpy columns of the batch interface's ``prt`` array.

    Reads the awkward layout's buffers directly (the high-level operations cost ~10 ms per
    call, more than generating a minimum-bias event); other layouts go the high-level way.
    """
    import awkward as ak

    lay = ak.to_layout(prt)
    if not isinstance(lay, ak.contents.ListOffsetArray):
        lay = ak.to_layout(ak.to_packed(prt))
    offsets = np.asarray(lay.offsets.data, dtype=np.int64)
    a, b = int(offsets[0]), int(offsets[-1])
    rec = lay.content

    def plain(node: Any) -> np.ndarray:
        if isinstance(node, ak.contents.NumpyArray):
            return np.asarray(node.data)[a:b]
        return ak.to_numpy(ak.Array(node)[a:b])

    def optional(node: Any, field: str) -> np.ndarray:
        if isinstance(node, ak.contents.IndexedOptionArray) and isinstance(node.content.content(field),
                                                                          ak.contents.NumpyArray):
            index = np.asarray(node.index.data, dtype=np.int64)[a:b]
            values = np.asarray(node.content.content(field).data)
            if len(values) == 0:  # every vertex at the origin
                return np.zeros(len(index))
            return np.where(index >= 0, values[np.maximum(index, 0)], 0.0)
        return ak.to_numpy(ak.fill_none(ak.Array(node)[a:b][field], 0.0))

    cols = {k: plain(rec.content(k)) for k in ("status", "mother1", "mother2", "daughter1", "daughter2", "m")}
    cols["pdg"] = plain(rec.content("id"))
    mom = rec.content("p")
    for k, src in (("px", "px"), ("py", "py"), ("pz", "pz"), ("e", "e")):
        cols[k] = plain(mom.content(src))
    vp = rec.content("vProd")
    for k, src in (("vx", "px"), ("vy", "py"), ("vz", "pz")):
        cols[k] = optional(vp, src) * MM_TO_CM
    cols["t"] = optional(vp, "e") / MM_PER_NS
    return np.diff(offsets), cols


_RUNNERS: dict[PythiaSetup, PythiaRunner] = {}


def runner(setup: PythiaSetup) -> PythiaRunner:
    """The process-wide :class:`PythiaRunner` of ``setup`` (initialised on first use)."""
    if setup not in _RUNNERS:
        _RUNNERS[setup] = PythiaRunner(setup)
    return _RUNNERS[setup]


def final_state(record: dict[str, np.ndarray]) -> np.ndarray:
    """Row indices of the final-state (``status > 0``) particles of a record."""
    return np.flatnonzero(record["status"] > 0)


def descendants_final(record: dict[str, np.ndarray], index: int) -> int:
    """Follow a particle through its copies (same pdg, one daughter) to its last copy.

    Pythia records recoils and radiation as new copies; the last copy of e.g. a Z decay
    muon is the final-state muon. Returns the row of that copy.
    """
    pdg = record["pdg"]
    d1, d2 = record["daughter1"], record["daughter2"]
    i = int(index)
    for _ in range(len(pdg)):
        if record["status"][i] > 0:
            return i
        kids = range(int(d1[i]), int(max(d1[i], d2[i])) + 1) if d1[i] > 0 else range(0)
        same = [k for k in kids if pdg[k] == pdg[i]]
        if not same:
            return i
        i = same[0]
    return i


def boson_decay_products(record: dict[str, np.ndarray], boson: int = 23) -> np.ndarray:
    """Rows of the direct decay products of the last copy of ``boson`` (Z by default).

    Empty if the record has no such boson (e.g. ttbar).
    """
    rows = np.flatnonzero(record["pdg"] == boson)
    if not len(rows):
        return np.zeros(0, np.int64)
    last = int(rows[-1])
    d1, d2 = int(record["daughter1"][last]), int(record["daughter2"][last])
    if d1 <= 0:
        return np.zeros(0, np.int64)
    return np.arange(d1, max(d1, d2) + 1, dtype=np.int64)


def info(setup: PythiaSetup) -> dict[str, Any]:
    """Cross section [mb] and counts of the runner of ``setup`` so far (Pythia ``Info``)."""
    p = runner(setup).pythia
    i = p.infoPython()
    return {"sigma_mb": float(i.sigmaGen()), "sigma_err_mb": float(i.sigmaErr()), "n_accepted": int(i.nAccepted())}
