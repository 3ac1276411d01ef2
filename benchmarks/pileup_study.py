"""Pileup in HGCAL: dtau events at pileup mu = 0, 50, 200; SPVCNN and CLUE3D quality and cost.

For each mu the study simulates ``N`` bunch crossings on the HGCAL-like endcap, each the
hard dtau event of ``caloreco simulate --preset dtau --seed SEED`` event ``i`` (the same
generated particles at every mu) plus pileup, and reports

* hits per event, and the share of them that are pileup (truth cluster flagged
  ``is_pileup``) and electronic noise (truth -1);
* per method (``spvcnn``: the shipped model; ``clue``: CLUE3D tuned on dtau), mIoU, SQ,
  RQ, PQ (energy-weighted, :class:`caloreco.metrics.ClusteringEvaluator`) and the same
  SQ / RQ / PQ for the hard scatter only (``*_hs``: pileup truth clusters ignored like COCO
  "crowd" regions: neither TP nor FN, and a predicted cluster matched to one is no FP);
* per method the wall time of each event, one thread, against its hit count: the
  least-squares line ``t = a + b * hits``, the power-law exponent ``p`` of ``t ~ hits^p``
  (log-log fit) and the extrapolation test (the line fitted on the lower mu values
  predicts the highest; measured / predicted > 1 means super-linear growth). CLUE3D,
  timed on the same events in the same run, is the baseline;
* the sparse-convolution work of SPVCNN's input (voxels, occupied 3x3x3 neighbours per
  voxel, submanifold pairs per hit), and its time against those pairs: whether a growth
  of the time per hit comes from more arithmetic per hit or from elsewhere.

Pileup models (``--pileup-model``):

``pythia`` (default)  Poisson(mu) Pythia 8 minimum-bias interactions (``SoftQCD``
                      non-diffractive + single- and double-diffractive, 14 TeV, Monash),
                      vertices z ~ N(0, 5.3 cm), stable particles propagated through the
                      3.8 T field to the HGCAL front face (:mod:`caloreco.generators`); the
                      minimum-bias overlay of ``caloreco simulate --preset pythia``, here
                      laid over the dtau hard event instead of a Pythia hard process.
``soft``              ``PileupConfig(mean=mu)`` of ``caloreco simulate --preset dtau
                      --pileup MU``: Poisson(mu) *particles* (not interactions), pT ~ 0.5 GeV.

Truth labelling (the simulation's, :mod:`caloreco.simulation.truth`): every pileup particle
is a particle like any other: its shower becomes a truth cluster of its own (merged with
others, pileup or hard, when they share > 30 % of the smaller deposit), flagged
``clusters["is_pileup"]`` when all its particles are pileup (a merged pileup + hard cluster
counts as hard scatter); a hit's truth is its largest contributor. Only
electronic noise is truth -1. So pileup hits count as signal in the mIoU and every
pileup cluster is a truth cluster in the PQ (hence the ``*_hs`` columns).

Random streams: hard particles ``default_rng([seed, i])`` (exactly the dtau preset's
generated particles), pileup ``default_rng([seed, i, 1])``, showers and digitisation
``default_rng([seed, i, 2])``. The hard particles are identical across mu; their shower
fluctuations are not (the shower stream is shared with the pileup particles).

Run: ``OMP_NUM_THREADS=1 python benchmarks/pileup_study.py [--mu 0,50,200] [--events 20]
[--seed 404] [--pileup-model pythia] [--repeat 2] [--out runs/pileup]`` (``--events``
takes one count or one per mu, e.g. ``20,20,10``; ``--repeat``: timed calls per event, the
fastest kept); writes ``pileup_study.json`` and ``pileup_study.md``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from caloreco.data.event import Event
from caloreco.errors import ConfigError
from caloreco.simulation.particles import GenParticles

PILEUP_MODELS = ("pythia", "soft")
DEFAULT_MU = (0.0, 50.0, 200.0)
#: Reference-energy threshold [GeV] of the hard-scatter view: pileup truth clusters get
#: reference energy 0 and fall below it; every hard-scatter cluster has >= 1 GeV generated.
HS_IGNORE_BELOW = 1e-6
METRIC_KEYS = ("miou", "miou_weighted", "sq", "rq", "pq", "pq_unweighted")


# ---------------------------------------------------------------------------- generation
def minbias_overlay(mu: float, rng: np.random.Generator, surface: Any, *, setup: Any = None,
                    sigma_z_cm: float | None = None) -> GenParticles:
    """Poisson(``mu``) Pythia minimum-bias interactions, as simulation input (``is_pileup``).

    Random numbers, in order: the interaction count, the Pythia seed, the vertex positions.
    The interactions are those of :func:`caloreco.generators.event.generate_event` (same
    Pythia set-up, vertex spread and propagation to ``surface``), without a hard scatter.
    """
    from caloreco.generators.event import LUMINOUS_SIGMA_Z_CM, STABLE_FIELDS, GeneratedEvent
    from caloreco.generators.preset import to_simulation
    from caloreco.generators.pythia import PYTHIA_MAX_SEED, PythiaSetup, final_state, runner

    setup = setup or PythiaSetup("minbias")
    sigma_z = LUMINOUS_SIGMA_Z_CM if sigma_z_cm is None else sigma_z_cm
    n = int(rng.poisson(mu)) if mu > 0 else 0
    seed = int(rng.integers(1, PYTHIA_MAX_SEED))
    vertex_z = np.r_[0.0, rng.normal(0.0, sigma_z, size=n)]
    parts = [{k: np.zeros(0, d) for k, d in STABLE_FIELDS.items()}]
    for k, rec in enumerate(runner(setup).generate(seed, n) if n else [], start=1):  # no Pythia init at n = 0
        rows = final_state(rec)
        cols = {c: rec[c][rows] for c in ("pdg", "charge", "px", "py", "pz", "e", "vx", "vy", "vz", "t")}
        cols["vz"] = cols["vz"] + vertex_z[k]
        cols.update(vertex=np.full(len(rows), k), index=rows, sim_index=np.full(len(rows), -1),
                    fate=np.zeros(len(rows)))
        parts.append(cols)
    stable = {k: np.concatenate([p[k] for p in parts]).astype(d, copy=False) for k, d in STABLE_FIELDS.items()}
    return to_simulation(GeneratedEvent(record={}, stable=stable, vertex_z=vertex_z), surface)


class CrossingMaker:
    """Simulates crossing ``i`` of seed ``seed`` at pileup ``mu``: dtau hard event + pileup.

    Args:
        pileup_model: one of :data:`PILEUP_MODELS` (default ``"pythia"``).
        detector: detector name (default ``"hgcal"``).
    """

    def __init__(self, pileup_model: str = "pythia", detector: str = "hgcal") -> None:
        from caloreco.geometry.registry import make_detector
        from caloreco.simulation.guns import DTauConfig
        from caloreco.simulation.simulator import Simulator

        if pileup_model not in PILEUP_MODELS:
            raise ConfigError(f"pileup_model must be one of {list(PILEUP_MODELS)}, got '{pileup_model}'")
        self.pileup_model = pileup_model
        self.detector = make_detector(detector)
        self.simulator = Simulator(self.detector)
        self.hard = DTauConfig()
        self._surface: Any = None

    def pileup(self, mu: float, rng: np.random.Generator) -> GenParticles:
        if self.pileup_model == "soft":
            from caloreco.simulation.guns import PileupConfig

            return PileupConfig(mean=mu).generate(rng)
        if self._surface is None:
            from caloreco.generators.propagation import calorimeter_surface

            self._surface = calorimeter_surface(self.detector)
        return minbias_overlay(mu, rng, self._surface)

    def event(self, mu: float, seed: int, i: int) -> Event:
        hard = self.hard.generate(np.random.default_rng([seed, i]))
        pileup = self.pileup(mu, np.random.default_rng([seed, i, 1]))
        particles = GenParticles.concat([hard, pileup])
        return self.simulator.simulate(particles, np.random.default_rng([seed, i, 2]), event_id=i)


# ---------------------------------------------------------------------------- evaluation
def sparse_work(clusterer: Any, event: Event) -> dict[str, int]:
    """Voxels (stride 1) and submanifold 3x3x3 pairs (stride 1 and summed over strides
    1-16) of the network's input for ``event``: the work of the sparse convolutions, which
    grows with hits times the occupied neighbours of each voxel. Empty for networks
    without a coordinate manager (GravNet)."""
    import torch

    model = clusterer.model
    if not hasattr(model, "prepare"):
        return {}
    points = torch.from_numpy(clusterer.encoding.points(event.hits))
    mgr = model.prepare(points, torch.zeros(len(points), dtype=torch.long))
    model.build_maps(mgr)  # the coarser strides exist once the strided maps are built
    out = {"voxels": mgr.n_voxels(1), "pairs_s1": 0, "pairs": 0}
    for stride in (1, 2, 4, 8, 16):
        kmap = mgr.submanifold(stride, 3)
        pairs = int((kmap.nbr < mgr.n_voxels(stride)).sum())
        out["pairs"] += pairs
        if stride == 1:
            out["pairs_s1"] = pairs
    return out


def _timed(method: Any, event: Event, repeat: int) -> tuple[np.ndarray, float, dict[str, float]]:
    """Labels, the fastest of ``repeat`` wall times and, for a network, its stage timings
    of that fastest call (a shared machine only ever adds time)."""
    best, stages = np.inf, {}
    for _ in range(repeat):
        t0 = time.perf_counter()
        labels = method.cluster([event])[0]
        dt = time.perf_counter() - t0
        if dt < best:
            best = dt
            stages = method.clusterer.timings.as_dict() if hasattr(method, "clusterer") else {}
    return labels, best, stages


def linearity(size: Sequence[float], seconds: Sequence[float], mu: Sequence[float]) -> dict[str, Any]:
    """Fit ``t = a + b * size`` (size: hits, or convolution pairs) and test for super-linear growth.

    Returns ``a_ms``, ``b_ms_per_1k`` (ms per 1000 units of size), ``r2``; ``exponent``
    (slope of log t vs log size); ``mean_rel_residual`` per mu (mean of (t - fit) / fit);
    ``extrapolation_ratio``: mean measured / predicted time at the highest mu of the line
    fitted on the other mu values (NaN with fewer than two distinct lower sizes).
    """
    h, t, m = (np.asarray(v, dtype=np.float64) for v in (size, seconds, mu))
    out: dict[str, Any] = {"a_ms": float("nan"), "b_ms_per_1k": float("nan"), "r2": float("nan"),
                           "exponent": float("nan"), "mean_rel_residual": {}, "extrapolation_ratio": float("nan")}
    if len(np.unique(h)) < 2:
        return out
    b, a = np.polyfit(h, t, 1)
    fit = a + b * h
    ss = float(((t - t.mean()) ** 2).sum())
    out.update(a_ms=1e3 * a, b_ms_per_1k=1e6 * b, r2=1 - float(((t - fit) ** 2).sum()) / ss if ss > 0 else 1.0)
    ok = (h > 0) & (t > 0)
    if len(np.unique(h[ok])) >= 2:
        out["exponent"] = float(np.polyfit(np.log(h[ok]), np.log(t[ok]), 1)[0])
    out["mean_rel_residual"] = {f"{v:g}": float(np.mean((t[m == v] - fit[m == v]) / fit[m == v]))
                                for v in np.unique(m)}
    top = m == m.max()
    if len(np.unique(h[~top])) >= 2:
        b_lo, a_lo = np.polyfit(h[~top], t[~top], 1)
        out["extrapolation_ratio"] = float(np.mean(t[top]) / np.mean(a_lo + b_lo * h[top]))
    return out


def run_study(mus: Sequence[float] = DEFAULT_MU, events: int | Sequence[int] = 20, *, seed: int = 404,
              pileup_model: str = "pythia", methods: Sequence[str] = ("spvcnn", "clue"),
              repeat: int = 1, progress: bool = False) -> dict[str, Any]:
    """Simulate, cluster, score and time; the JSON-ready result (see the module docstring).

    Args:
        mus: pileup values (Poisson means), default (0, 50, 200).
        events: events per mu, one count for all or one per mu (default 20).
        seed: data-set seed (default 404).
        pileup_model: ``"pythia"`` (default) or ``"soft"``.
        methods: names for :func:`caloreco.evaluation.methods.make_methods` (default
            spvcnn, clue; the first is the one compared, the last the baseline).
        repeat: timed calls per event and method; the fastest counts (default 1).
        progress: print one line per event.

    Raises:
        ConfigError: empty or negative ``mus``, a count per mu of the wrong length or < 1.
    """
    from caloreco.evaluation.methods import make_methods
    from caloreco.metrics import ClusteringEvaluator

    mus = [float(m) for m in mus]
    if not mus or any(not np.isfinite(m) or m < 0 for m in mus):
        raise ConfigError(f"mus must be a non-empty list of pileup values >= 0, got {mus}")
    counts = [int(events)] * len(mus) if np.isscalar(events) else [int(n) for n in events]  # type: ignore[arg-type]
    if len(counts) != len(mus) or min(counts) < 1:
        raise ConfigError(f"events must be one count >= 1 or one per mu ({len(mus)}), got {events}")
    if repeat < 1:
        raise ConfigError(f"repeat must be >= 1, got {repeat}")
    maker = CrossingMaker(pileup_model)
    meths = make_methods(list(methods))
    per_event: list[dict[str, Any]] = []
    per_mu: list[dict[str, Any]] = []
    warm = False
    for mu, n in zip(mus, counts):
        evals = {m.name: (ClusteringEvaluator(), ClusteringEvaluator(min_truth_energy=HS_IGNORE_BELOW))
                 for m in meths}
        hits, pu_hits, noise_hits, n_clusters, n_pu_clusters, sim_s = [], [], [], [], [], []
        for i in range(n):
            t0 = time.perf_counter()
            ev = maker.event(mu, seed, i)
            sim_s.append(time.perf_counter() - t0)
            truth = ev.hits["truth_cluster"]
            is_pu = ev.clusters["is_pileup"].astype(bool)
            hits.append(ev.n_hits)
            noise_hits.append(int((truth < 0).sum()))
            pu_hits.append(int(is_pu[truth[truth >= 0]].sum()))
            n_clusters.append(len(is_pu))
            n_pu_clusters.append(int(is_pu.sum()))
            if not warm:  # first calls pay one-off costs (allocations, lazy imports)
                for m in meths:
                    m.cluster([ev])
                warm = True
            row: dict[str, Any] = {"mu": mu, "event": i, "hits": ev.n_hits, "simulation_s": sim_s[-1]}
            hs_energy = np.where(is_pu, 0.0, ev.clusters["energy"])
            for m in meths:
                labels, dt, stages = _timed(m, ev, repeat)
                row[f"{m.name}_s"] = dt
                if stages:
                    row[f"{m.name}_stages"] = stages
                    if "pairs" not in row:  # after the timing, not part of it
                        row.update(sparse_work(m.clusterer, ev))
                full, hs = evals[m.name]
                full.add(truth, labels, ev.hits["energy"], truth_types=ev.clusters["type"],
                         truth_energy=ev.clusters["energy"], event=i)
                hs.add(truth, labels, ev.hits["energy"], truth_energy=hs_energy, event=i)
            per_event.append(row)
            if progress:
                print(f"mu {mu:g} event {i}: {ev.n_hits} hits, sim {sim_s[-1]:.2f} s, "
                      + ", ".join(f"{m.name} {row[m.name + '_s']:.2f} s" for m in meths), flush=True)
        entry: dict[str, Any] = {
            "mu": mu, "events": n, "hits_mean": float(np.mean(hits)), "hits_std": float(np.std(hits)),
            "pileup_hit_fraction": float(np.sum(pu_hits) / max(np.sum(hits), 1)),
            "noise_hit_fraction": float(np.sum(noise_hits) / max(np.sum(hits), 1)),
            "truth_clusters_mean": float(np.mean(n_clusters)),
            "pileup_clusters_mean": float(np.mean(n_pu_clusters)),
            "simulation_s_mean": float(np.mean(sim_s)), "methods": {},
        }
        rows = [r for r in per_event if r["mu"] == mu and "pairs" in r]
        if rows:
            entry["voxels_mean"] = float(np.mean([r["voxels"] for r in rows]))
            voxels = max(np.sum([r["voxels"] for r in rows]), 1)  # pairs include each voxel with itself
            entry["neighbours_per_voxel"] = float(np.sum([r["pairs_s1"] for r in rows]) / voxels) - 1.0
            entry["pairs_per_hit"] = float(np.sum([r["pairs"] for r in rows]) / max(np.sum(hits), 1))
        for m in meths:
            full, hs = (e.result() for e in evals[m.name])
            secs = [r[f"{m.name}_s"] for r in per_event if r["mu"] == mu]
            entry["methods"][m.name] = {
                **{k: full[k] for k in METRIC_KEYS},
                "sq_hs": hs["sq"], "rq_hs": hs["rq"], "pq_hs": hs["pq"],
                "ms_per_event": 1e3 * float(np.mean(secs)),
                "us_per_hit": 1e6 * float(np.sum(secs) / max(np.sum(hits), 1)),
            }
        per_mu.append(entry)
    mu_of = [r["mu"] for r in per_event]
    fits = {m.name: linearity([r["hits"] for r in per_event], [r[f"{m.name}_s"] for r in per_event], mu_of)
            for m in meths}
    for m in meths:  # networks on a voxel grid: time against the convolutions' pairs as well
        if all("pairs" in r for r in per_event):
            fits[f"{m.name} vs pairs"] = linearity([r["pairs"] for r in per_event],
                                                   [r[f"{m.name}_s"] for r in per_event], mu_of)
            break
    return {"settings": {"mus": mus, "events": counts, "seed": seed, "pileup_model": pileup_model, "repeat": repeat,
                         "methods": [m.name for m in meths], "baseline": meths[-1].name,
                         "method_details": {m.name: m.details() for m in meths if hasattr(m, "details")}},
            "per_mu": per_mu, "fits": fits, "per_event": per_event}


# ---------------------------------------------------------------------------- output
def format_markdown(result: dict[str, Any]) -> str:
    """The three tables of the result: events per mu, quality and time, time-vs-hits fits."""
    s = result["settings"]
    names = s["methods"]
    lines = [f"pileup model `{s['pileup_model']}`, seed {s['seed']}, events per mu {s['events']}, "
             f"time: fastest of {s.get('repeat', 1)} call(s) per event", "",
             "| mu | events | hits/event | pileup hits | noise hits | truth clusters/event (pileup) |",
             "|---|---|---|---|---|---|"]
    for e in result["per_mu"]:
        lines.append(f"| {e['mu']:g} | {e['events']} | {e['hits_mean']:.0f} ± {e['hits_std']:.0f} | "
                     f"{100 * e['pileup_hit_fraction']:.0f} % | {100 * e['noise_hit_fraction']:.0f} % | "
                     f"{e['truth_clusters_mean']:.0f} ({e['pileup_clusters_mean']:.0f}) |")
    lines += ["", "| mu | method | mIoU | mIoU (E-w.) | SQ | RQ | PQ | PQ unweighted | SQ hs | RQ hs | PQ hs "
              "| ms/event | µs/hit | time / baseline |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for e in result["per_mu"]:
        base = e["methods"][s["baseline"]]["ms_per_event"]
        for name in names:
            r = e["methods"][name]
            lines.append(f"| {e['mu']:g} | {name} | {r['miou']:.3f} | {r['miou_weighted']:.3f} | {r['sq']:.3f} | "
                         f"{r['rq']:.3f} | **{r['pq']:.3f}** | {r['pq_unweighted']:.3f} | {r['sq_hs']:.3f} | "
                         f"{r['rq_hs']:.3f} | **{r['pq_hs']:.3f}** | {r['ms_per_event']:.0f} | "
                         f"{r['us_per_hit']:.1f} | {r['ms_per_event'] / base:.2f} |")
    if "neighbours_per_voxel" in result["per_mu"][0]:
        lines += ["", "| mu | voxels/event | occupied 3x3x3 neighbours per voxel (stride 1, itself excluded) | "
                  "submanifold pairs per hit (strides 1-16) |", "|---|---|---|---|"]
        for e in result["per_mu"]:
            lines.append(f"| {e['mu']:g} | {e['voxels_mean']:.0f} | {e['neighbours_per_voxel']:.1f} | "
                         f"{e['pairs_per_hit']:.1f} |")
    lines += ["", "| time of | against | a (ms) | b (ms per 1k) | R² | exponent p (t ~ size^p) | "
              "rel. residual per mu | highest mu: measured / extrapolated |", "|---|---|---|---|---|---|---|---|"]
    for key, f in result["fits"].items():
        name, _, against = key.partition(" vs ")
        res = ", ".join(f"{k}: {100 * v:+.0f} %" for k, v in f["mean_rel_residual"].items())
        lines.append(f"| {name} | {against or 'hits'} | {f['a_ms']:.0f} | {f['b_ms_per_1k']:.3g} | {f['r2']:.3f} | "
                     f"{f['exponent']:.2f} | {res} | {f['extrapolation_ratio']:.2f} |")
    return "\n".join(lines) + "\n"


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mu", type=_floats, default=list(DEFAULT_MU), help="pileup values (default 0,50,200)")
    p.add_argument("--events", type=lambda t: [int(v) for v in t.split(",")], default=[20],
                   help="events per mu: one count or one per mu (default 20)")
    p.add_argument("--seed", type=int, default=404)
    p.add_argument("--pileup-model", choices=PILEUP_MODELS, default="pythia")
    p.add_argument("--methods", default="spvcnn,clue", help="compared method(s), baseline last (default spvcnn,clue)")
    p.add_argument("--repeat", type=int, default=2, help="timed calls per event and method, fastest kept (default 2)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--out", default="runs/pileup", help="folder of pileup_study.json / .md (default runs/pileup)")
    args = p.parse_args(argv)

    import torch

    from caloreco.utils.atomic import atomic_write_text

    torch.set_num_threads(args.threads)
    events = args.events[0] if len(args.events) == 1 else args.events
    t0 = time.perf_counter()
    result = run_study(args.mu, events, seed=args.seed, pileup_model=args.pileup_model,
                       methods=args.methods.split(","), repeat=args.repeat, progress=True)
    result["settings"].update(threads=args.threads, total_s=time.perf_counter() - t0)
    table = format_markdown(result)
    out = Path(args.out)
    atomic_write_text(out / "pileup_study.json", json.dumps(result, indent=1, default=float) + "\n")
    atomic_write_text(out / "pileup_study.md", table)
    print(table)
    print(f"total {result['settings']['total_s']:.0f} s; wrote {out / 'pileup_study.json'} and "
          f"{out / 'pileup_study.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
