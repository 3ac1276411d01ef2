"""Tune CLUE3D on a dtau validation set: grid scan by energy-weighted PQ.

Run: ``caloreco simulate --preset dtau --events 200 --shards 2 --seed 202 --out runs/data/val``
then ``OMP_NUM_THREADS=1 python benchmarks/tune_clue.py --data runs/data/val/events-00000.parquet``.
The result is recorded as ``ClueParams.tuned_dtau()``.
"""

from __future__ import annotations

import argparse
import json
import time

from caloreco.clustering.clue3d import clue_event, tune_clue
from caloreco.data.parquet import read_events

GRID = {"kappa": [5, 9], "critical_density": [0.5, 2.0, 4.0], "critical_xy_distance": [2.0, 4.0],
        "density_xy_distance": [2.0, 4.0]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", required=True, help="a dtau shard (validation seed)")
    p.add_argument("--events", type=int, default=30)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    events = read_events(args.data)[: args.events]
    t = time.perf_counter()
    clue_event(events[0])
    print(f"{len(events)} events; one event clustered in {time.perf_counter() - t:.3f} s", flush=True)
    best, table = tune_clue(events, GRID)
    print("best:", {k: getattr(best, k) for k in GRID})
    for row in sorted(table, key=lambda r: -r["score"])[:8]:
        print(row)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"best": {k: getattr(best, k) for k in GRID}, "table": table}, fh, indent=1)


if __name__ == "__main__":
    main()
