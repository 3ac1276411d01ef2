"""Energy response of matched clusters against the generated energy: summed hit energy
against the energy head's correction (:mod:`caloreco.losses.energy`), per truth type.

For every true-positive pair (P, T) of the IoU > 0.5 matching, ``R = E(P) / E_gen(T)`` with
``E(P)`` the summed hit energy of the predicted cluster (the raw response) or its
``energy_corrected`` (the factor of its condensation point times that sum). Prints the
mean, median and resolution (half the 16-84 % width over the median) per type, both ways,
on the same matched pairs.

Run: ``OMP_NUM_THREADS=2 python benchmarks/energy_response.py --model RUN/last.pt
--data runs/data/test [--events 100] [--json out.json]`` (the model needs an energy head).
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from caloreco.clustering.condensation import cluster_summary
from caloreco.clustering.model_clustering import ModelClusterer
from caloreco.data.dataset import _shard_paths
from caloreco.data.event import ClusterType
from caloreco.data.parquet import read_events
from caloreco.metrics.panoptic import match_clusters
from caloreco.metrics.response import energy_response


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--events", type=int, default=100)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    events = [e for f in _shard_paths(args.data) for e in read_events(f)][: args.events]
    clusterer = ModelClusterer.from_checkpoint(args.model)
    preds = clusterer.cluster_events(events)
    if any(pr.energy_factor is None for pr in preds):
        raise SystemExit(f"{args.model} has no energy head")
    raw, corrected, true, types = [], [], [], []
    for ev, pr in zip(events, preds):
        h = ev.hits
        m = match_clusters(h["truth_cluster"], pr.cluster_id, h["energy"],
                           truth_energy=ev.clusters["energy"])
        table = cluster_summary(pr.cluster_id, h["energy"], h["x"], h["y"], h["z"],
                                beta=pr.beta, energy_factor=pr.energy_factor)
        by_id = dict(zip(table["cluster"].tolist(), table["energy_corrected"].tolist()))
        kept = m.pair_kept
        pt, pp = m.pair_truth[kept], m.pair_pred[kept]
        raw.append(m.pred_deposit[pp])
        corrected.append(np.array([by_id[int(c)] for c in m.pred_ids[pp]], np.float64))
        true.append(m.truth_generated[pt])
        types.append(np.asarray(ev.clusters["type"])[m.truth_ids[pt]])
    raw_a, corr_a, true_a = np.concatenate(raw), np.concatenate(corrected), np.concatenate(true)
    type_a = np.concatenate(types).astype(np.int64)
    out = {"events": len(events), "pairs": int(len(true_a)),
           "raw": energy_response(raw_a, true_a, type_a),
           "corrected": energy_response(corr_a, true_a, type_a)}
    groups = ["ALL"] + [t.name for t in ClusterType]
    print(f"{len(events)} events, {len(true_a)} matched pairs; response E / E_gen")
    print(f"{'group':>6} {'n':>5}  {'raw mean':>9} {'median':>7} {'resol.':>7}  "
          f"{'corrected mean':>14} {'median':>7} {'resol.':>7}")
    for g in groups:
        r, c = out["raw"].get(g), out["corrected"].get(g)
        if not r or not r.get("count"):
            continue
        print(f"{g:>6} {r['count']:>5}  {r['mean']:>9.3f} {r['median']:>7.3f} {r['resolution']:>7.3f}  "
              f"{c['mean']:>14.3f} {c['median']:>7.3f} {c['resolution']:>7.3f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
