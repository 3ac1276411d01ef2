"""2D CLUE timing on one CPU thread, in the configuration of the CLUE paper's CPU benchmark.

Rovere et al., arXiv:2001.09761 (Front. Big Data 3 (2020) 591315): synthetic events of
100 layers with up to 10^4 points per layer (10^6 points); the authors' single-threaded
CPU implementation took 705 ms for 10^6 points on their machine (Intel Xeon, 2020). This
machine differs, so the script also times a baseline on the same points in the same run,
a :class:`scipy.spatial.cKDTree` build plus one fixed-radius pair query at ``dc`` (the
first step CLUE itself needs); the ratio CLUE / baseline is the figure to compare across
machines.

Points per layer (the layout of the authors' toyDetector inputs, which the shared
reference files ``clue-reference/clue-original/input/toyDetector_*.csv`` show: blobs of
about 10 points with a spread of about 2 cm, 5 % uniform noise, weight 1, in a
500 cm x 500 cm square): 95 % of the points in Gaussian blobs of 10 points (sigma 2 cm,
centres uniform), 5 % uniform noise; each layer drawn independently. CLUE parameters of
the authors' toyDetector runs (reference outputs ``toyDetector_*_5_10_5_8.csv``):
dc = 5, outlier distance 10, seed distance 5, rhoc = 8, convention "original".

Run with one thread: ``OMP_NUM_THREADS=1 python benchmarks/bench_clue.py
[--layers 100] [--per-layer 10000] [--repeat 3]``; prints the median of the repeats.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from scipy.spatial import cKDTree  # noqa: E402

from caloreco.clustering.clue import clue  # noqa: E402

PAPER_MS = 705.0  # single-threaded CPU, 10^6 points (arXiv:2001.09761)
HALF_SIDE_CM = 250.0  # toyDetector inputs span -250..250 cm
BLOB_POINTS = 10
BLOB_SIGMA_CM = 2.0
NOISE_FRACTION = 0.05
DC, OUTLIER, SEED, RHOC = 5.0, 10.0, 5.0, 8.0


def toy_layers(n_layers: int, per_layer: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    """x, y [cm], layer, weight of ``n_layers`` independent toyDetector-like layers."""
    rng = np.random.default_rng(seed)
    n_blobs = int(round(per_layer * (1 - NOISE_FRACTION) / BLOB_POINTS))
    n_noise = per_layer - n_blobs * BLOB_POINTS
    centres = rng.uniform(-HALF_SIDE_CM, HALF_SIDE_CM, (n_layers, n_blobs, 2))
    blobs = np.repeat(centres, BLOB_POINTS, axis=1)
    blobs += rng.normal(0.0, BLOB_SIGMA_CM, blobs.shape)
    noise = rng.uniform(-HALF_SIDE_CM, HALF_SIDE_CM, (n_layers, n_noise, 2))
    pts = np.concatenate([blobs, noise], axis=1).reshape(-1, 2)
    layer = np.repeat(np.arange(n_layers), per_layer)
    return pts[:, 0], pts[:, 1], layer, np.ones(len(layer))


def median_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(1e3 * (time.perf_counter() - t0))
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", type=int, default=100)
    p.add_argument("--per-layer", type=int, default=10_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    x, y, layer, w = toy_layers(args.layers, args.per_layer, args.seed)
    n = len(x)
    print(f"pid {os.getpid()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, "
          f"numpy {np.__version__}; {args.layers} layers x {args.per_layer} points = {n} points")

    def run_clue():
        return clue(x, y, layer, w, dc=DC, rhoc=RHOC, outlier_distance=OUTLIER,
                    seed_distance=SEED)

    def run_baseline():
        pts = np.column_stack([x, y, layer * (4 * OUTLIER + 1.0)])
        cKDTree(pts, balanced_tree=False).query_pairs(DC, output_type="ndarray")

    r = run_clue()
    clue_ms = median_ms(run_clue, args.repeat)
    base_ms = median_ms(run_baseline, args.repeat)
    print(f"clusters {r.n_clusters} ({r.n_clusters / args.layers:.0f} per layer), "
          f"noise fraction {np.mean(r.cluster_id < 0):.3f}")
    print(f"CLUE 2D: {clue_ms:.0f} ms (median of {args.repeat})")
    print(f"baseline cKDTree build + pairs within dc: {base_ms:.0f} ms; "
          f"ratio CLUE / baseline {clue_ms / base_ms:.2f}")
    scaled = PAPER_MS * n / 1e6
    print(f"paper (arXiv:2001.09761, 1 CPU thread, another machine): {PAPER_MS:.0f} ms for "
          f"10^6 points" + (f" (~{scaled:.0f} ms scaled to {n} points)" if n != 10**6 else ""))


if __name__ == "__main__":
    main()
