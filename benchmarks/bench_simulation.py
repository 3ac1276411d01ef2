"""Throughput of the fast simulation on one core (dtau preset, full HGCAL-like endcap).

Prints events/s and hits/s for the dtau preset and, as a baseline measured in the same run
on the same machine, for single 50 GeV electrons; the ratio is the robust figure on shared,
noisy machines. Run: ``python benchmarks/bench_simulation.py [--events N]``.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from caloreco.geometry.registry import make_detector
from caloreco.simulation import GunConfig, Simulator, make_generator


def run(sim: Simulator, gen, n: int, seed: int) -> tuple[float, int]:
    hits = 0
    t0 = time.perf_counter()
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        hits += sim.simulate(gen.generate(rng), rng).n_hits
    return time.perf_counter() - t0, hits


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--events", type=int, default=100)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    t0 = time.perf_counter()
    det = make_detector("hgcal")
    det.cells
    det.lookup(np.zeros(1), np.zeros(1), None, np.ones(1, dtype=int))
    print(f"geometry: {len(det.cells)} cells, built in {time.perf_counter() - t0:.2f} s; pid {os.getpid()}, 1 process")
    sim = Simulator(det)
    run(sim, make_generator("dtau"), 3, 999)  # warm-up
    best: dict[str, tuple[float, int]] = {}
    for r in range(args.repeat):
        for name, gen in (("dtau", make_generator("dtau")), ("e- 50 GeV (baseline)", GunConfig(particle="e-", energy=50.0, eta=2.2))):
            dt, hits = run(sim, gen, args.events, r)
            if name not in best or dt < best[name][0]:
                best[name] = (dt, hits)
    for name, (dt, hits) in best.items():
        print(f"{name:>22}: {args.events / dt:8.1f} events/s  {hits / dt / 1e3:8.1f} k hits/s  "
              f"{hits / args.events:8.0f} hits/event  {1e3 * dt / args.events:6.1f} ms/event (best of {args.repeat})")
    (d_dt, _), (b_dt, _) = best["dtau"], best["e- 50 GeV (baseline)"]
    print(f"dtau event costs {d_dt / b_dt:.2f} x a 50 GeV electron event in this run; target >= 20 dtau events/s per core")


if __name__ == "__main__":
    main()
