"""Events -> clustering methods -> jets, recoil and neutral-hadron tables.

:func:`run_physics` either simulates a ``pythia`` data set (written to ``OUT/data`` with its
generator truth) or reads one, clusters every event with each method (``truth``: the
simulation's truth clusters; ``pf``: CMS PF clustering; ``spvcnn``: a trained network via
:class:`~caloreco.clustering.model_clustering.ModelClusterer`, when a checkpoint is given),
and collects per method:

* matched gen/reco jet pairs (:mod:`caloreco.physics.jets`),
* the hadronic recoil of Z -> mu mu events (:mod:`caloreco.physics.met`),
* neutral-hadron probes (:mod:`caloreco.physics.neutral`),

then summarises them in bins (:func:`summarise`) and writes the report
(:mod:`caloreco.physics.report`).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from caloreco.data.event import Event
from caloreco.errors import ConfigError, InputFileError
from caloreco.generators.event import GeneratedEvent
from caloreco.physics.clusters import clusters_from_labels
from caloreco.physics.jets import JET_R, MATCH_DR, antikt_jets, gen_jet_inputs, jet_pairs
from caloreco.physics.met import generator_recoil, muon_clusters, recoil, recoil_table, z_transverse_momentum
from caloreco.physics.neutral import neutral_hadron_probes
from caloreco.physics.stats import binned_summary, robust_summary

#: Calorimeter acceptance in the eta variable of the tables: |eta| for the barrel (both
#: halves), signed eta for the single (+z) HGCAL endcap.
ACCEPTANCE = {"hcal-barrel": (0.0, 1.305, True),  # HB: 15 towers x 0.087 (geometry.hcal)
              "hgcal": (1.5, 3.0, False)}  # HGCAL TDR acceptance (geometry.hgcal)
PT_EDGES = np.array([20.0, 30.0, 50.0, 80.0, 120.0, 200.0, 400.0, 1000.0])  # GeV
QT_EDGES = np.array([0.0, 10.0, 20.0, 40.0, 70.0, 120.0, 200.0, 500.0])  # GeV
#: Hit encoding (:data:`caloreco.models.encoding.ENCODINGS`) a network must read, per detector.
ENCODING_OF_DETECTOR = {"hcal-barrel": "hcal", "hgcal": "hgcal"}
#: Shipped SPVCNN per detector, in the package's ``pretrained`` directory.
SHIPPED_SPVCNN = {"hcal-barrel": "spvcnn_hcal.pt", "hgcal": "spvcnn_dtau.pt"}
ETA_EDGES = {"hcal-barrel": np.array([0.0, 0.435, 0.87, 1.305]),  # 5-tower rings
             "hgcal": np.array([1.5, 1.9, 2.3, 2.6, 3.0])}


@dataclass(frozen=True)
class PhysicsConfig:
    """Settings of :func:`run_physics`.

    Args:
        process: hard process when events are generated (``ttbar``, ``zmumu``, ``ztautau``).
        events: number of events to generate (default 20).
        pileup: Poisson mean of pileup interactions (default 0).
        detector: ``hcal-barrel`` (default) or ``hgcal``.
        seed: data-set seed (default 0).
        methods: clustering methods (default truth, pf); ``spvcnn`` needs ``spvcnn_model``.
        spvcnn_model: checkpoint file or run directory of a trained network for this detector.
        spvcnn_t_beta, spvcnn_t_d: condensation thresholds of the network (default: the
            checkpoint's operating point); a larger ``t_d`` leaves fewer hits unclustered.
        spvcnn_t_d_scan: further ``t_d`` values whose jet response and resolution are
            tabulated (the network runs once; its outputs are re-clustered), e.g. 0.6, 0.7, 0.8.
        device: where the network runs (default cpu).
        gen_jet_pt_min: gen jets above this pT enter the tables [GeV] (default 20).
        reco_jet_pt_min: reco jets above this pT are matched [GeV] (default 5, well below
            the gen threshold so that the response is not biased by it).
        jet_r: anti-kt R (default 0.4); match_dr: matching radius (default 0.2).
        workers: simulation processes (default 1).
    """

    process: str = "ttbar"
    events: int = 20
    pileup: float = 0.0
    detector: str = "hcal-barrel"
    seed: int = 0
    methods: tuple[str, ...] = ("truth", "pf")
    spvcnn_model: str | None = None
    spvcnn_t_beta: float | None = None
    spvcnn_t_d: float | None = None
    spvcnn_t_d_scan: tuple[float, ...] = ()
    device: str = "cpu"
    gen_jet_pt_min: float = 20.0
    reco_jet_pt_min: float = 5.0
    jet_r: float = JET_R
    match_dr: float = MATCH_DR
    workers: int = 1

    def __post_init__(self) -> None:
        if self.detector not in ACCEPTANCE:
            raise ConfigError(f"detector must be one of {sorted(ACCEPTANCE)}, got '{self.detector}'")
        allowed = ("truth", "pf", "spvcnn")
        bad = [m for m in self.methods if m not in allowed]
        if bad or not self.methods:
            raise ConfigError(f"methods must be a non-empty subset of {list(allowed)}, got {list(self.methods)}")
        if "spvcnn" in self.methods and not self.spvcnn_model:
            raise ConfigError("method 'spvcnn' needs a trained checkpoint for this detector (--spvcnn-model): "
                              "for hcal-barrel the shipped src/caloreco/pretrained/spvcnn_hcal.pt "
                              "(spvcnn_checkpoint('hcal-barrel')), for hgcal spvcnn_dtau.pt")
        if self.events < 1:
            raise ConfigError(f"events must be >= 1, got {self.events}")
        if self.spvcnn_t_beta is not None and not 0 < self.spvcnn_t_beta < 1:
            raise ConfigError(f"spvcnn_t_beta must be in (0, 1), got {self.spvcnn_t_beta}")
        if self.spvcnn_t_d is not None and not self.spvcnn_t_d > 0:
            raise ConfigError(f"spvcnn_t_d must be > 0, got {self.spvcnn_t_d}")
        if any(not t > 0 for t in self.spvcnn_t_d_scan):
            raise ConfigError(f"spvcnn_t_d_scan values must be > 0, got {list(self.spvcnn_t_d_scan)}")
        if self.spvcnn_t_d_scan and "spvcnn" not in self.methods:
            raise ConfigError("spvcnn_t_d_scan needs the spvcnn method (--spvcnn-model)")


@dataclass
class PhysicsResult:
    """Per-method row tables (column -> array) and timings."""

    jets: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    recoil: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    neutral: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    recoil_reference: dict[str, np.ndarray] = field(default_factory=dict)  # generator particles reaching
    clustered_energy: dict[str, float] = field(default_factory=dict)  # fraction of the hit energy in clusters
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)  # network methods: model, thresholds
    td_scan: dict[float, dict[str, np.ndarray]] = field(default_factory=dict)  # t_d -> SPVCNN jet rows
    seconds: dict[str, float] = field(default_factory=dict)
    n_events: int = 0


def load_dataset(data: str | Path) -> tuple[list[Event], list[GeneratedEvent], dict[str, Any]]:
    """Events, their generator truth and the manifest of a ``pythia`` data set."""
    from caloreco.data.parquet import read_events
    from caloreco.generators.io import iter_generator_file

    root = Path(data)
    manifest_path = root / "manifest.json"
    if not manifest_path.exists():
        raise InputFileError(root, "not a data set directory (no manifest.json)")
    manifest = json.loads(manifest_path.read_text())
    events: list[Event] = []
    gens: list[GeneratedEvent] = []
    for shard in manifest["shards"]:
        if "generator_file" not in shard:
            raise InputFileError(root / shard["file"], "shard has no generator truth; physics validation "
                                 "needs a data set simulated with --preset pythia")
        evs = read_events(root / shard["file"])
        gen = dict(iter_generator_file(root / shard["generator_file"]))
        for ev in evs:
            if ev.event_id not in gen:
                raise InputFileError(root / shard["generator_file"], f"no generator truth for event {ev.event_id}")
            events.append(ev)
            gens.append(gen[ev.event_id])
    return events, gens, manifest


def simulate(cfg: PhysicsConfig, out: str | Path) -> Path:
    """Simulate the ``pythia`` data set of ``cfg`` into ``out``; returns ``out``."""
    from caloreco.simulation.production import DatasetSpec, simulate_dataset

    spec = DatasetSpec(preset="pythia", preset_options={"process": cfg.process, "pileup": cfg.pileup,
                                                        "detector": cfg.detector},
                       detector=cfg.detector, n_events=cfg.events, shards=max(1, min(cfg.workers, cfg.events)),
                       seed=cfg.seed)
    simulate_dataset(spec, out, workers=cfg.workers)
    return Path(out)


def spvcnn_checkpoint(detector: str) -> Path:
    """Path of the shipped SPVCNN for ``detector`` (:data:`SHIPPED_SPVCNN`: HB trained on PF
    targets of ttbar events, HGCAL on the dtau preset)."""
    from importlib import resources

    if detector not in SHIPPED_SPVCNN:
        raise ConfigError(f"no shipped SPVCNN for detector '{detector}'; one of {sorted(SHIPPED_SPVCNN)}")
    path = Path(str(resources.files("caloreco") / "pretrained" / SHIPPED_SPVCNN[detector]))
    if not path.exists():
        raise InputFileError(path, f"no shipped SPVCNN for {detector} in the package")
    return path


def check_model_detector(model: str | Path, detector: str) -> None:
    """Raise :class:`ConfigError` unless the checkpoint ``model`` reads hits of ``detector``
    (its stored hit-encoding kind, :data:`ENCODING_OF_DETECTOR`)."""
    from caloreco.training.checkpoint import load_checkpoint

    kind = str(load_checkpoint(model).encoding.get("kind", "hgcal"))
    want = ENCODING_OF_DETECTOR[detector]
    if kind != want:
        raise ConfigError(f"--spvcnn-model {model} was trained with the '{kind}' hit encoding, but the data are "
                          f"{detector} hits (encoding '{want}'); use a model trained with --encoding {want}")


def _methods(cfg: PhysicsConfig, detector: str) -> list[Any]:
    from caloreco.evaluation.methods import make_methods

    models = {"spvcnn": cfg.spvcnn_model} if "spvcnn" in cfg.methods else None
    if models:
        check_model_detector(str(cfg.spvcnn_model), detector)
    methods = make_methods(list(cfg.methods), models=models, device=cfg.device, pf_detector=detector)
    for m in methods:
        if m.name == "spvcnn":
            clusterer = m.clusterer  # type: ignore[attr-defined]
            if cfg.spvcnn_t_beta is not None:
                clusterer.t_beta = cfg.spvcnn_t_beta
            if cfg.spvcnn_t_d is not None:
                clusterer.t_d = cfg.spvcnn_t_d
    return methods


def analyse(events: Sequence[Event], gens: Sequence[GeneratedEvent], detector: str,
            cfg: PhysicsConfig) -> PhysicsResult:
    """Cluster ``events`` with every method of ``cfg`` and collect the per-method rows."""
    if len(events) != len(gens):
        raise ConfigError(f"{len(events)} events but {len(gens)} generator records")
    result = PhysicsResult(n_events=len(events))
    gen_jets = [antikt_jets(gen_jet_inputs(g.stable), r=cfg.jet_r, pt_min=cfg.gen_jet_pt_min) for g in gens]
    qts = [z_transverse_momentum(g) for g in gens]
    ref = [(float(np.hypot(*qt)), *generator_recoil(g, qt)) for g, qt in zip(gens, qts) if qt is not None]
    if ref:
        result.recoil_reference = {k: np.array(v, np.float64) for k, v in zip(("qt", "u_par", "u_perp"), zip(*ref))}
    for method in _methods(cfg, detector):
        t0 = time.perf_counter()
        labels = method.cluster(list(events))
        result.seconds[f"{method.name}_clustering"] = time.perf_counter() - t0
        e_all = sum(float(ev.hits["energy"].sum()) for ev in events)
        e_in = sum(float(ev.hits["energy"][lab >= 0].sum()) for ev, lab in zip(events, labels))
        result.clustered_energy[method.name] = e_in / e_all if e_all > 0 else float("nan")
        clusterer = getattr(method, "clusterer", None)
        if clusterer is not None:
            result.settings[method.name] = {"model": str(cfg.spvcnn_model),
                                            **clusterer.clustering_record()}
        jets: list[dict[str, np.ndarray]] = []
        rec: dict[str, list[float]] = {"qt": [], "u_par": [], "u_perp": []}
        neutral: list[dict[str, np.ndarray]] = []
        for ev, gj, qt, lab in zip(events, gen_jets, qts, labels):
            clusters, _ = clusters_from_labels(ev.hits, lab)
            p4 = clusters.four_momenta()
            reco = antikt_jets(p4, r=cfg.jet_r, pt_min=cfg.reco_jet_pt_min)
            jets.append(jet_pairs(gj, reco, max_dr=cfg.match_dr))
            if qt is not None:
                eta, phi = clusters.eta_phi()
                par, perp = recoil(p4, qt, muon_clusters(eta, phi, ev.particles))
                rec["qt"].append(float(np.hypot(*qt)))
                rec["u_par"].append(par)
                rec["u_perp"].append(perp)
            neutral.append(neutral_hadron_probes(ev, lab))
        result.jets[method.name] = {k: np.concatenate([j[k] for j in jets]) for k in jets[0]}
        if method.name == "spvcnn":
            for t_d in cfg.spvcnn_t_d_scan:  # same network outputs, other cluster radius
                scan_jets = [jet_pairs(gj, antikt_jets(clusters_from_labels(ev.hits, lab)[0].four_momenta(),
                                                       r=cfg.jet_r, pt_min=cfg.reco_jet_pt_min), max_dr=cfg.match_dr)
                             for ev, gj, lab in zip(events, gen_jets,
                                                    method.rescan(float(clusterer.t_beta), float(t_d)))]
                result.td_scan[float(t_d)] = {k: np.concatenate([j[k] for j in scan_jets]) for k in scan_jets[0]}
        result.recoil[method.name] = {k: np.asarray(v, np.float64) for k, v in rec.items()}
        result.neutral[method.name] = {k: np.concatenate([n[k] for n in neutral]) for k in neutral[0]}
    return result


def _eta_var(eta: np.ndarray, detector: str) -> np.ndarray:
    return np.abs(eta) if ACCEPTANCE[detector][2] else eta


def summarise(result: PhysicsResult, detector: str, cfg: PhysicsConfig) -> dict[str, Any]:
    """Binned tables per method: jet response/resolution vs gen pT (jets contained in the
    acceptance: eta within R of neither edge) and vs eta; matching efficiency; recoil vs
    q_T; neutral hadrons vs eta."""
    lo, hi, _ = ACCEPTANCE[detector]
    eta_edges = ETA_EDGES[detector]
    out: dict[str, Any] = {"detector": detector, "config": asdict(cfg), "n_events": result.n_events,
                           "eta_variable": "|eta|" if ACCEPTANCE[detector][2] else "eta",
                           "seconds": result.seconds, "methods": {}}
    for name, j in result.jets.items():
        ev = _eta_var(j["eta_gen"], detector)
        ratio = j["e_reco"] / j["e_gen"]
        contained = (ev >= lo + cfg.jet_r) & (ev < hi - cfg.jet_r)
        matched = np.isfinite(ratio)
        inside = (ev >= lo) & (ev < hi)
        m: dict[str, Any] = {
            "jets_vs_pt": binned_summary(j["pt_gen"][contained & matched], ratio[contained & matched], PT_EDGES),
            "jets_vs_eta": binned_summary(ev[inside & matched], ratio[inside & matched], eta_edges),
            "jet_efficiency": {"n_gen": int(contained.sum()), "n_matched": int((contained & matched).sum())},
        }
        r = result.recoil.get(name, {})
        if r and len(r["qt"]):
            m["recoil_vs_qt"] = recoil_table(r["qt"], r["u_par"], r["u_perp"], QT_EDGES)
        n = result.neutral.get(name, {})
        if n and len(n["eta"]):
            ok = n["e_avail"] > 0
            m["neutral_vs_eta"] = binned_summary(_eta_var(n["eta"][ok], detector), n["e_reco"][ok] / n["e_avail"][ok],
                                                 eta_edges)
        m["clustered_energy_fraction"] = result.clustered_energy.get(name, float("nan"))
        if name in result.settings:
            m["settings"] = result.settings[name]
        out["methods"][name] = m
    if result.td_scan:
        out["td_scan"] = {}
        for t_d, j in sorted(result.td_scan.items()):
            ev = _eta_var(j["eta_gen"], detector)
            ratio = j["e_reco"] / j["e_gen"]
            ok = (ev >= lo + cfg.jet_r) & (ev < hi - cfg.jet_r) & np.isfinite(ratio)
            out["td_scan"][f"{t_d:g}"] = {"all": robust_summary(ratio[ok]),
                                         "jets_vs_pt": binned_summary(j["pt_gen"][ok], ratio[ok], PT_EDGES)}
    ref = result.recoil_reference
    if ref:
        out["recoil_reference_vs_qt"] = recoil_table(ref["qt"], ref["u_par"], ref["u_perp"], QT_EDGES)
    return out


def run_physics(cfg: PhysicsConfig, out: str | Path, *, data: str | Path | None = None) -> dict[str, Any]:
    """Generate (or read ``data``), cluster, analyse, and write the report into ``out``."""
    from caloreco.physics.report import write_report

    out = Path(out)
    t0 = time.perf_counter()
    data_dir = Path(data) if data is not None else simulate(cfg, out / "data")
    t_sim = time.perf_counter() - t0
    events, gens, manifest = load_dataset(data_dir)
    detector = str(manifest["detector"])
    if detector not in ACCEPTANCE:
        raise InputFileError(data_dir, f"data set detector '{detector}' is not one of {sorted(ACCEPTANCE)}")
    if data is not None:  # describe the data set that was read, not the generation defaults
        opts = manifest.get("preset_options", {})
        cfg = replace(cfg, detector=detector, events=len(events), seed=int(manifest.get("seed", cfg.seed)),
                      process=str(opts.get("process", cfg.process)), pileup=float(opts.get("pileup", cfg.pileup)))
    result = analyse(events, gens, detector, cfg)
    result.seconds["simulation"] = t_sim if data is None else 0.0
    summary = summarise(result, detector, cfg)
    summary["data"] = str(data_dir)
    write_report(summary, result, out)
    return summary
