"""Command-line handlers of the physics validation: ``caloreco physics`` and ``caloreco
pf-targets``.

Registered on the main parser by :func:`add_commands`; like :mod:`caloreco.cli` they only
parse arguments and call :func:`caloreco.physics.analysis.run_physics` and
:func:`caloreco.physics.targets.write_pf_target_dataset`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def _positive_int(text: str) -> int:
    from caloreco.cli import _positive_int as pi

    return pi(text)


def _float_list(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got '{text}'") from None


def cmd_physics(args: argparse.Namespace) -> int:
    from caloreco.physics.analysis import PhysicsConfig, run_physics

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if args.spvcnn_model and "spvcnn" not in methods:
        methods.append("spvcnn")
    cfg = PhysicsConfig(process=args.process, events=args.events, pileup=args.pileup, detector=args.detector,
                        seed=args.seed, methods=tuple(methods), spvcnn_model=args.spvcnn_model,
                        spvcnn_t_beta=args.spvcnn_t_beta, spvcnn_t_d=args.spvcnn_t_d,
                        spvcnn_t_d_scan=tuple(args.spvcnn_t_d_scan),
                        device=args.device, gen_jet_pt_min=args.gen_jet_pt_min, workers=args.workers)
    summary = run_physics(cfg, args.out, data=args.data)
    print(f"physics validation of {summary['n_events']} events ({summary['config']['process']}, "
          f"{summary['detector']}) -> {Path(args.out) / 'physics.md'}")
    for name, m in summary["methods"].items():
        rows = [r for r in m["jets_vs_pt"] if r["n"] > 0]
        n = sum(r["n"] for r in rows)
        line = f"  {name}: {n} matched jets"
        if rows:
            best = max(rows, key=lambda r: r["n"])
            line += (f", response {best['median']:.3f}, rel. resolution {best['rel_sigma']:.3f} "
                     f"at pT {best['lo']:g}-{best['hi']:g} GeV")
        if "recoil_vs_qt" in m:
            n_z = sum(r["n"] for r in m["recoil_vs_qt"])
            line += f"; recoil of {n_z} Z events"
        print(line)
    return 0


def cmd_pf_targets(args: argparse.Namespace) -> int:
    import time

    from caloreco.physics.targets import write_pf_target_dataset

    t0 = time.perf_counter()
    manifest = write_pf_target_dataset(args.data, args.out)
    print(f"wrote {manifest['n_events']} events with PF-cluster targets "
          f"({manifest['n_target_clusters']} clusters) to {args.out} in {time.perf_counter() - t0:.1f} s")
    return 0


def add_commands(sub: Any) -> None:
    """Register ``physics`` and ``pf-targets`` on the sub-parser collection."""
    p = sub.add_parser("physics", help="jet / MET / neutral-hadron validation on Pythia events",
                       description="Generate Pythia events (or read a --preset pythia data set), cluster them "
                                   "with truth, PF and optionally a trained SPVCNN, and write jet energy "
                                   "response/resolution, hadronic-recoil and neutral-hadron tables and plots.")
    p.add_argument("--out", required=True, help="output directory (report; generated data in OUT/data)")
    p.add_argument("--data", default=None, help="existing data set simulated with --preset pythia (skip generation)")
    p.add_argument("--process", choices=["ttbar", "zmumu", "ztautau"], default="ttbar")
    p.add_argument("--events", type=_positive_int, default=20, help="events to generate (default 20)")
    p.add_argument("--pileup", type=float, default=0.0, help="mean number of pileup interactions (default 0)")
    p.add_argument("--detector", choices=["hcal-barrel", "hgcal"], default="hcal-barrel")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=_positive_int, default=1, help="simulation processes (default 1)")
    p.add_argument("--methods", default="truth,pf", help="comma-separated: truth, pf, spvcnn (default truth,pf)")
    p.add_argument("--spvcnn-model", default=None, help="trained checkpoint (file or run dir) for this detector; shipped: "
                        "src/caloreco/pretrained/spvcnn_hcal.pt (hcal-barrel), spvcnn_dtau.pt (hgcal)")
    p.add_argument("--spvcnn-t-beta", type=float, default=None, help="condensation threshold (default: the model's)")
    p.add_argument("--spvcnn-t-d", type=float, default=None,
                   help="condensation radius (default: the model's); larger leaves fewer hits unclustered")
    p.add_argument("--spvcnn-t-d-scan", type=_float_list, default=[],
                   help="also tabulate jets at these t_d values, e.g. 0.6,0.7,0.8 (network run once)")
    p.add_argument("--device", default="cpu", help="device of the network (default cpu)")
    p.add_argument("--gen-jet-pt-min", type=float, default=20.0, help="gen-jet pT threshold [GeV] (default 20)")
    p.set_defaults(func=cmd_physics)

    t = sub.add_parser("pf-targets", help="copy a data set with PF clusters as the truth (training targets)",
                       description="Rewrite every shard of a data set with the CMS PF clusters of its hits as "
                                   "truth clusters (target definition (b), caloreco.physics.targets), for "
                                   "'caloreco train' or evaluation against PF; generator truth is copied.")
    t.add_argument("--data", required=True, help="data set directory (with manifest.json)")
    t.add_argument("--out", required=True, help="output data set directory (not --data)")
    t.set_defaults(func=cmd_pf_targets)
