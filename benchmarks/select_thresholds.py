"""Choose the condensation thresholds (t_beta, t_d) of a trained model on validation events.

Runs the network once per event, re-clusters for every (assign, r_max, scale, attach,
t_signal, t_beta, t_d) of the grid (``assign``: hits to the first or to the nearest condensation point within
t_d; ``r_max``: the locality cut in cm on the hits' projected positions, ``none`` for none;
``scale``: the detector term's ``position_scale`` in cm, ``none`` for none;
``attach``: the left-over attachment, radius in cm and passes; ``t_signal``: the signal
threshold of the attachment for a model with a signal head, ``none`` for none) and prints the
energy-weighted PQ (and mIoU in brackets); the best PQ is the model's operating point (stored in the
shipped checkpoint). Select on a validation set, report on another seed.

Run: ``OMP_NUM_THREADS=1 python benchmarks/select_thresholds.py --model RUN/last.pt
--data runs/data/val --events 30 [--assign nearest --r-max none,8,10 --position-scale none,10
--attach none,4:3 --t-signal none,0.5]``.
"""

from __future__ import annotations

import argparse
import itertools
import json

import numpy as np
import torch

from caloreco.clustering.model_clustering import condense_outputs, hit_xyz
from caloreco.metrics import ClusteringEvaluator
from caloreco.models.registry import named_outputs
from caloreco.training.checkpoint import load_checkpoint
from caloreco.training.data import EncodedEvents, collate

T_BETA = (0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9)
T_D = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.2)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--events", type=int, default=30)
    p.add_argument("--assign", default="first,nearest",
                   help="comma list of hit-to-point rules to scan (default first,nearest)")
    p.add_argument("--r-max", default="none",
                   help="comma list of locality cuts [cm] to scan, 'none' for none (default none)")
    p.add_argument("--position-scale", default="none",
                   help="comma list of detector-term scales [cm] to scan, 'none' for none "
                        "(default none)")
    p.add_argument("--attach", default="none",
                   help="comma list of left-over attachments RADIUS_CM:PASSES (e.g. 3:3,4:3) to "
                        "scan, 'none' for none (default none)")
    p.add_argument("--t-signal", default="none",
                   help="comma list of signal thresholds of the attachment (a model with a "
                        "signal head), 'none' for none (default none)")
    p.add_argument("--t-beta", default=",".join(map(str, T_BETA)), help="comma list of t_beta")
    p.add_argument("--t-d", default=",".join(map(str, T_D)), help="comma list of t_d")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    model, enc = load_checkpoint(args.model).build()
    ds = EncodedEvents(args.data, enc)
    outs = []
    for i in range(min(args.events, len(ds))):
        b = collate([ds[i]])
        with torch.no_grad():
            o = named_outputs(model, model(b["features"], b["points"], b["batch"]))
        hits = ds.event(i).hits
        pos = torch.from_numpy(enc.projected_positions(hits))
        outs.append((b, o["coords"], o["beta"], pos, torch.from_numpy(hit_xyz(hits)),
                     o.get("signal")))
    table = []
    modes = [m.strip() for m in args.assign.split(",") if m.strip()]
    cuts = [None if c.strip() == "none" else float(c) for c in args.r_max.split(",") if c.strip()]
    scales = [None if c.strip() == "none" else float(c)
              for c in args.position_scale.split(",") if c.strip()]
    attaches = [None if a.strip() == "none" else (float(a.split(":")[0]), int(a.split(":")[1]))
                for a in args.attach.split(",") if a.strip()]
    gates = [None if c.strip() == "none" else float(c)
             for c in args.t_signal.split(",") if c.strip()]
    if any(g is not None for g in gates) and outs and outs[0][5] is None:
        raise SystemExit(f"--t-signal {args.t_signal}: {args.model} has no signal head")
    t_betas = [float(t) for t in args.t_beta.split(",")]
    t_ds = [float(t) for t in args.t_d.split(",")]
    for assign, r_max, scale, att, gate, tb, td in itertools.product(
            modes, cuts, scales, attaches, gates, t_betas, t_ds):
        ev = ClusteringEvaluator()
        for b, coords, beta, pos, xyz, signal in outs:
            pred = condense_outputs(beta, coords, None, t_beta=tb, t_d=td, assign=assign,
                                    r_max=r_max, positions=pos, position_scale=scale,
                                    attach_r=None if att is None else att[0],
                                    attach_passes=1 if att is None else att[1], xyz=xyz,
                                    signal=signal, t_signal=None if att is None else gate)
            ev.add(b["target"].numpy(), pred.numpy(), b["energy"].numpy())
        r = ev.result()
        table.append({"assign": assign, "r_max": r_max, "position_scale": scale,
                      "attach_r": None if att is None else att[0],
                      "attach_passes": 1 if att is None else att[1], "t_signal": gate,
                      "t_beta": tb, "t_d": td,
                      "pq": r["pq"], "miou": r["miou"], "sq": r["sq"], "rq": r["rq"]})
    best = max(table, key=lambda r: r["pq"])
    for assign, r_max, scale, att, gate, tb in itertools.product(modes, cuts, scales, attaches,
                                                                 gates, t_betas):
        key = (assign, r_max, scale, None if att is None else att[0], gate, tb)
        print(f"{assign} r_max {r_max} scale {scale} "
              f"attach {'none' if att is None else '%g:%d' % att} t_signal {gate} "
              f"t_beta {tb}: " + "  ".join(
                  f"t_d {r['t_d']}: {r['pq']:.3f} ({r['miou']:.3f})" for r in table
                  if (r["assign"], r["r_max"], r["position_scale"], r["attach_r"],
                      r["t_signal"], r["t_beta"]) == key
                  and (att is None or r["attach_passes"] == att[1])))
    print(f"best: {best}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"best": best, "table": table}, fh, indent=1)


if __name__ == "__main__":
    main()
