"""Geometry timings on one core: full HGCAL-like endcap cells, point lookup, neighbour graph.

Prints the time to build the ~3.5M cells, the lookup rate for 2M random deposits spread over
all layers inside the acceptance (deposits/s), the neighbour-graph build (no cache) and a
cache read. Best of ``--repeat`` runs for the fast steps. Run:
``python benchmarks/bench_geometry.py [--deposits N] [--repeat R]``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

from caloreco.geometry import HCalBarrel, HGCalEndcap, neighbour_graph
from caloreco.geometry.neighbours import build_neighbour_graph


def random_deposits(det: HGCalEndcap, n: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Points uniform in area within 1.5 < eta < 3 on uniformly chosen layers."""
    rng = np.random.default_rng(seed)
    layer = rng.integers(1, len(det.layers) + 1, n)
    z = det.layers.position[layer - 1]
    r_lo, r_hi = z / np.sinh(det.config.eta_max), z / np.sinh(det.config.eta_min)
    r = np.sqrt(rng.uniform(r_lo**2, r_hi**2))
    phi = rng.uniform(-np.pi, np.pi, n)
    return r * np.cos(phi), r * np.sin(phi), z, layer


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--deposits", type=int, default=2_000_000)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    print(f"pid {os.getpid()}, 1 process, numpy {np.__version__}")

    t0 = time.perf_counter()
    det = HGCalEndcap()
    cells = det.cells
    t_cells = time.perf_counter() - t0
    print(f"HGCAL cells:      {len(cells):>9d} cells in {t_cells:6.2f} s")

    x, y, z, layer = random_deposits(det, args.deposits)
    det.lookup(x[:10], y[:10], z[:10], layer[:10])  # builds the dense index once
    t_look = best_of(lambda: det.lookup(x, y, z, layer), args.repeat)
    rows = det.lookup(x, y, z, layer)
    print(f"HGCAL lookup:     {args.deposits:>9d} deposits in {t_look:6.3f} s = "
          f"{args.deposits / t_look / 1e6:6.1f} M deposits/s ({(rows >= 0).mean():.4f} found, best of {args.repeat})")

    t0 = time.perf_counter()
    edges = build_neighbour_graph(det)
    t_graph = time.perf_counter() - t0
    print(f"HGCAL graph:      {edges.shape[1]:>9d} edges in {t_graph:6.2f} s "
          f"({edges.shape[1] / len(cells):.2f} per cell)")
    with tempfile.TemporaryDirectory() as tmp:
        neighbour_graph(det, cache_dir=tmp)  # writes the cache (a second build)
        t_read = best_of(lambda: neighbour_graph(det, cache_dir=tmp), args.repeat)
        size = sum(os.path.getsize(os.path.join(tmp, f)) for f in os.listdir(tmp))
    print(f"HGCAL graph cache: read in {t_read:6.2f} s ({size / 2**20:.0f} MiB on disk)")

    hb = HCalBarrel()
    t_hb = best_of(lambda: HCalBarrel().cells, args.repeat)
    hx, hy, hz = hb.cells.x, hb.cells.y, hb.cells.z
    reps = max(1, args.deposits // len(hx))
    hx, hy, hz, hl = (np.tile(a, reps) for a in (hx, hy, hz, hb.cells.layer))
    t_hl = best_of(lambda: hb.lookup(hx, hy, hz, hl), args.repeat)
    print(f"HB cells:         {len(hb.cells):>9d} cells in {t_hb * 1e3:6.1f} ms; lookup "
          f"{len(hx) / t_hl / 1e6:.1f} M deposits/s")


if __name__ == "__main__":
    main()
