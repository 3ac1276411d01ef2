"""The ``caloreco`` command line: a thin layer of argument parsing over library calls.

``main(argv)`` takes an argument list so tests call it directly; errors raised as
:class:`~caloreco.errors.CalorecoError` are turned into one ``ERROR`` line and exit code 2
by :func:`caloreco.__main__.entry`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from caloreco.cli_types import positive_int as _positive_int
from caloreco.errors import ConfigError

Handler = Callable[[argparse.Namespace], int]


def _range(text: str) -> float | tuple[float, float]:
    """'50' -> 50.0; '10,100' or '10:100' -> (10.0, 100.0)."""
    parts = text.replace(":", ",").split(",")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or a range LOW,HIGH, got '{text}'") from None
    if len(values) == 1:
        return values[0]
    if len(values) == 2:
        return (values[0], values[1])
    raise argparse.ArgumentTypeError(f"expected a number or a range LOW,HIGH, got '{text}'")


# ---------------------------------------------------------------------------- simulate
def _sim_config(args: argparse.Namespace) -> Any:
    from dataclasses import replace

    from caloreco.simulation.simulator import SimulationConfig

    cfg = SimulationConfig()
    digi = replace(cfg.digi, threshold_sigma=args.threshold, noise=not args.no_noise)
    truth = replace(cfg.truth, merge_shared_fraction=args.merge_fraction)
    if getattr(args, "truth", "merged") == "particle":  # one truth cluster per particle
        from caloreco.simulation.truth import truth_params

        truth = truth_params("particle")
    return replace(cfg, digi=digi, truth=truth)


def cmd_simulate(args: argparse.Namespace) -> int:
    from caloreco.simulation.guns import PileupConfig
    from caloreco.simulation.production import DatasetSpec, simulate_dataset

    pileup = PileupConfig(mean=args.pileup)
    if args.preset == "gun":
        opts: dict[str, Any] = {"particle": args.particle, "energy": args.energy, "n_particles": args.n_particles,
                                "close_by_cm": args.close_by, "pileup": pileup}
        if args.eta is not None:
            opts["eta"] = args.eta
        elif args.detector == "hcal-barrel":
            opts["eta"] = (-1.2, 1.2)
        if args.phi is not None:
            opts["phi"] = args.phi
    elif args.preset == "pythia":
        opts = {"process": args.process, "pileup": args.pileup, "detector": args.detector}
        if args.pt_hat_min is not None:
            opts["pt_hat_min"] = args.pt_hat_min
    else:
        opts = {"pileup": pileup}
        if args.eta is not None:
            if not isinstance(args.eta, tuple):
                raise ConfigError("--eta for the dtau preset must be a range LOW,HIGH")
            opts["eta"] = args.eta
    spec = DatasetSpec(preset=args.preset, preset_options=opts, detector=args.detector, n_events=args.events,
                       shards=args.shards, seed=args.seed, sim_config=_sim_config(args))
    t0 = time.perf_counter()
    manifest = simulate_dataset(spec, args.out, workers=args.workers)
    dt = time.perf_counter() - t0
    print(f"simulated {manifest['n_events']} events ({manifest['n_hits']} hits) into {args.out} "
          f"in {dt:.1f} s with {args.workers} worker(s)")
    return 0


# ---------------------------------------------------------------------------- convert
def cmd_convert(args: argparse.Namespace) -> int:
    from caloreco.data.convert import convert_file

    manifest = convert_file(args.file, args.format, args.out, collections=args.collections)
    print(f"converted {manifest['n_events']} events ({manifest['n_hits']} hits) from {args.file} into {args.out}")
    return 0


# ---------------------------------------------------------------------------- display
def _event_at(path: str, index: int) -> Any:
    from caloreco.data.parquet import count_events, iter_events

    n = count_events(path)
    if not 0 <= index < n:
        raise ConfigError(f"--event {index} is out of range: {path} has {n} events")
    for i, ev in enumerate(iter_events(path)):
        if i == index:
            return ev
    raise ConfigError(f"--event {index} not found in {path}")


def cmd_display(args: argparse.Namespace) -> int:
    from caloreco.display import write_event_html, write_event_png

    ev = _event_at(args.event_file, args.event)
    out = Path(args.out) if args.out else Path(args.event_file).parent
    stem = f"{Path(args.event_file).stem}-event{args.event}"
    png = write_event_png(ev, out / f"{stem}.png")
    html = write_event_html(ev, out / f"{stem}.html")
    print(f"wrote {png} and {html}")
    return 0


# ---------------------------------------------------------------------------- geometry
def cmd_geometry(args: argparse.Namespace) -> int:
    from caloreco.geometry.neighbours import neighbour_graph
    from caloreco.geometry.plot import save_layer_plot
    from caloreco.geometry.registry import make_detector

    det = make_detector(args.detector)
    out = Path(args.out)
    cells = det.cells
    cells.save_parquet(out / f"{det.name}-cells.parquet", metadata={"detector": det.name})
    layers = args.layer or [1]
    for layer in layers:
        save_layer_plot(det, layer, out / f"{det.name}-layer{layer}.png")
    msg = f"{det.name}: {len(cells)} cells in {len(det.layers)} layers -> {out}"
    if args.neighbours:
        edges = neighbour_graph(det, cache_dir=out)
        msg += f"; neighbour graph {edges.shape[1]} edges"
    print(msg)
    return 0


# ---------------------------------------------------------------------------- validate
def cmd_validate(args: argparse.Namespace) -> int:
    from caloreco.display.validation_plot import write_validation
    from caloreco.geometry.registry import make_detector

    summary = write_validation(make_detector("hgcal"), args.out, n_events=args.events, seed=args.seed)
    print(json.dumps(summary, indent=2))
    return 0


# ---------------------------------------------------------------------------- demo
def cmd_demo(args: argparse.Namespace) -> int:
    """Simulate a held-out dtau set, cluster it with the shipped SPVCNN, score it, display it,
    and validate the simulation physics."""
    from caloreco.display import write_event_html, write_event_png
    from caloreco.display.validation_plot import write_validation
    from caloreco.geometry.plot import save_layer_plot
    from caloreco.geometry.registry import make_detector
    from caloreco.simulation.production import DatasetSpec, simulate_dataset
    from caloreco.data.parquet import iter_events

    out = Path(args.out)
    t0 = time.perf_counter()
    spec = DatasetSpec(preset="dtau", n_events=args.events, shards=2, seed=args.seed)
    manifest = simulate_dataset(spec, out / "data", workers=args.workers)
    print(f"[demo] simulated {manifest['n_events']} held-out dtau events (seed {args.seed}; the "
          f"shipped model was trained on seed 101), {manifest['n_hits'] / manifest['n_events']:.0f} "
          f"hits/event -> {out / 'data'}")
    ev = next(iter_events(out / "data" / manifest["shards"][0]["file"]))
    write_event_png(ev, out / "event0.png")
    write_event_html(ev, out / "event0.html")
    print(f"[demo] event display -> {out / 'event0.png'}, {out / 'event0.html'}")
    _demo_clustering(out, args)
    det = make_detector("hgcal")
    save_layer_plot(det, 40, out / "hgcal-layer40.png")
    print(f"[demo] geometry: {len(det.cells)} cells, layer 40 map -> {out / 'hgcal-layer40.png'}")
    summary = write_validation(det, out, n_events=args.validation_events, seed=args.seed)
    print(f"[demo] validation -> {out / 'validation.png'}: e- a = {100 * summary['electron']['stochastic']:.1f} %/sqrt(GeV), "
          f"c = {100 * summary['electron']['constant']:.2f} %; pi+ a = {100 * summary['pion']['stochastic']:.0f} %/sqrt(GeV); "
          f"e/pi(50 GeV) = {summary['e_over_pi_50']:.2f}")
    print(f"[demo] done in {time.perf_counter() - t0:.0f} s; outputs under {out}")
    return 0


def _demo_clustering(out: Path, args: argparse.Namespace) -> None:
    """Cluster the demo events with the shipped SPVCNN (``caloreco cluster``), then compare
    the shipped networks and CLUE on them (``caloreco evaluate``) and print the table."""
    from caloreco.cli_reco import cmd_cluster
    from caloreco.clustering.model_clustering import pretrained_path
    from caloreco.evaluation.methods import make_methods
    from caloreco.evaluation.report import evaluate
    from caloreco.errors import InputFileError

    # through the real parser, so that every cluster option has its command-line default
    cmd_cluster(build_parser().parse_args(["cluster", "--data", str(out / "data"),
                                           "--out", str(out / "clusters")]))
    names = ["spvcnn"]
    try:
        pretrained_path("gravnet")
        names.append("gravnet")
    except InputFileError:
        pass
    names.append("clue")
    command = (f"caloreco evaluate --data {out / 'data'} --methods {','.join(names)} "
               f"--out {out / 'evaluation'}")
    summary = evaluate(out / "data", make_methods(names), out / "evaluation", displays=1,
                       command=command)
    table = (out / "evaluation" / "report.md").read_text()
    start = table.find("| method")
    print("[demo] clustering on the held-out events (shipped models; "
          f"{summary.get('n_events', '?')} events):")
    print(table[start:table.find("\n\n", start)] if start >= 0 else table)
    print(f"[demo] report, plots and truth-vs-prediction displays -> {out / 'evaluation'}")


# ---------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    from caloreco import __version__

    p = argparse.ArgumentParser(prog="caloreco", description="Machine-learning reconstruction for high-granularity calorimeters.")
    p.add_argument("--version", action="version", version=f"caloreco {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("simulate", help="simulate events into Parquet shards",
                       description="Simulate events with the fast shower simulation; writes shards and manifest.json.")
    s.add_argument("--preset", choices=["gun", "dtau", "pythia"], default="dtau", help="event generator (default dtau)")
    s.add_argument("--events", type=_positive_int, required=True, help="number of events")
    s.add_argument("--out", required=True, help="output directory")
    s.add_argument("--shards", type=_positive_int, default=1, help="number of Parquet shards (default 1)")
    s.add_argument("--workers", type=_positive_int, default=1, help="parallel processes (default 1)")
    s.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    s.add_argument("--detector", choices=["hgcal", "hcal-barrel"], default="hgcal")
    s.add_argument("--particle", default="e-", help="gun particle: e-, e+, gamma, pi+, pi-, K+, K-, K0L, n, p, mu-, mu+")
    s.add_argument("--energy", type=_range, default=(10.0, 100.0), help="gun energy [GeV]: E or LOW,HIGH")
    s.add_argument("--eta", type=_range, default=None, help="eta or LOW,HIGH")
    s.add_argument("--phi", type=_range, default=None, help="phi or LOW,HIGH [rad]")
    s.add_argument("--n-particles", type=_positive_int, default=1, help="gun particles per event")
    s.add_argument("--close-by", type=float, default=0.0, help="place gun particles within this distance [cm] (overlaps)")
    s.add_argument("--pileup", type=float, default=0.0,
                   help="mean number of soft pileup particles; pythia: of minimum-bias interactions (default 0)")
    s.add_argument("--process", choices=["ttbar", "zmumu", "ztautau"], default="ttbar",
                   help="pythia preset: hard process (default ttbar)")
    s.add_argument("--pt-hat-min", type=float, default=None, help="pythia preset: pTHatMin of zmumu [GeV] (default 20)")
    s.add_argument("--truth", choices=["merged", "particle"], default="merged",
                   help="truth clusters: merged particle showers (default) or one per particle (dominant particle)")
    s.add_argument("--threshold", type=float, default=3.0, help="zero suppression in noise sigmas (default 3)")
    s.add_argument("--no-noise", action="store_true", help="no electronics noise and no noise hits")
    s.add_argument("--merge-fraction", type=float, default=0.3, help="shared-energy fraction that merges truth showers")
    s.set_defaults(func=cmd_simulate)

    c = sub.add_parser("convert", help="convert CMS ntuples / EDM4hep files to caloreco Parquet",
                       description="Read a CMS HGCAL reco-ntuple or an EDM4hep file and write caloreco Parquet shards.")
    c.add_argument("file", help="input ROOT file")
    c.add_argument("--format", required=True, choices=["cmssw-ntuple", "edm4hep"])
    c.add_argument("--out", required=True, help="output directory")
    c.add_argument("--collections", nargs="+", default=None, help="EDM4hep CalorimeterHit collections (default: all)")
    c.set_defaults(func=cmd_convert)

    d = sub.add_parser("display", help="event display (PNG + interactive HTML)",
                       description="Draw one event of a caloreco Parquet shard as a PNG and an interactive HTML page.")
    d.add_argument("event_file", help="Parquet shard")
    d.add_argument("--event", type=int, default=0, help="event index in the file (default 0)")
    d.add_argument("--out", default=None, help="output directory (default: beside the file)")
    d.set_defaults(func=cmd_display)

    g = sub.add_parser("geometry", help="write a detector's cell table and layer maps",
                       description="Build a detector, save its cells to Parquet, plot layers, optionally the neighbour graph.")
    g.add_argument("--detector", choices=["hgcal", "hcal-barrel"], default="hgcal")
    g.add_argument("--out", required=True)
    g.add_argument("--layer", type=int, action="append", help="layer to plot (repeatable; default 1)")
    g.add_argument("--neighbours", action="store_true", help="also build (and cache) the neighbour graph")
    g.set_defaults(func=cmd_geometry)

    v = sub.add_parser("validate", help="physics validation of the simulation (plot + JSON)",
                       description="Electron and pion response/resolution, shower maximum and muon MIPs; writes validation.png/json.")
    v.add_argument("--out", required=True)
    v.add_argument("--events", type=_positive_int, default=100, help="events per energy point (default 100)")
    v.add_argument("--seed", type=int, default=0)
    v.set_defaults(func=cmd_validate)

    m = sub.add_parser("demo", help="the main job end to end on embedded defaults",
                       description="Simulate a small held-out dtau data set, cluster it with the shipped SPVCNN and score it, display an event, plot a layer and validate the physics.")
    m.add_argument("--out", default="runs/demo")
    m.add_argument("--events", type=_positive_int, default=40, help="dtau events (default 40)")
    m.add_argument("--workers", type=_positive_int, default=2)
    m.add_argument("--validation-events", type=_positive_int, default=60, help="events per validation point (default 60)")
    m.add_argument("--seed", type=int, default=0)
    m.set_defaults(func=cmd_demo)

    from caloreco.cli_reco import add_commands

    add_commands(sub)
    from caloreco import cli_serve
    cli_serve.add_commands(sub)
    from caloreco import cli_bench
    cli_bench.add_commands(sub)
    from caloreco import cli_physics
    cli_physics.add_commands(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the sub-command; returns the exit code."""
    args = build_parser().parse_args(argv)
    return int(args.func(args))
