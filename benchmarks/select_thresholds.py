"""Choose the condensation thresholds (t_beta, t_d) of a trained model on validation events.

Runs the network once per event, re-clusters for every (assign, t_beta, t_d) of the grid
(``assign``: hits to the first or to the nearest condensation point within t_d) and prints
the energy-weighted PQ and mIoU; the best PQ is the model's operating point (stored in the
shipped checkpoint). Select on a validation set, report on another seed.

Run: ``OMP_NUM_THREADS=1 python benchmarks/select_thresholds.py --model RUN/last.pt
--data runs/data/val --events 30``.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from caloreco.clustering.condensation import condensation_clustering
from caloreco.metrics import ClusteringEvaluator
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
    p.add_argument("--json", default=None)
    args = p.parse_args()
    model, enc = load_checkpoint(args.model).build()
    ds = EncodedEvents(args.data, enc)
    outs = []
    for i in range(min(args.events, len(ds))):
        b = collate([ds[i]])
        with torch.no_grad():
            coords, beta = model(b["features"], b["points"], b["batch"])[:2]
        outs.append((b, coords, beta))
    table = []
    modes = [m.strip() for m in args.assign.split(",") if m.strip()]
    for assign in modes:
        for tb in T_BETA:
            for td in T_D:
                ev = ClusteringEvaluator()
                for b, coords, beta in outs:
                    pred = condensation_clustering(beta, coords, t_beta=tb, t_d=td,
                                                   assign=assign)
                    ev.add(b["target"].numpy(), pred.numpy(), b["energy"].numpy())
                r = ev.result()
                table.append({"assign": assign, "t_beta": tb, "t_d": td, "pq": r["pq"],
                              "miou": r["miou"], "sq": r["sq"], "rq": r["rq"]})
    best = max(table, key=lambda r: r["pq"])
    for assign in modes:
        for tb in T_BETA:
            print(f"{assign} t_beta {tb}: " + "  ".join(
                f"t_d {r['t_d']}: {r['pq']:.3f}" for r in table
                if r["t_beta"] == tb and r["assign"] == assign))
    print(f"best: {best}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"best": best, "table": table}, fh, indent=1)


if __name__ == "__main__":
    main()
