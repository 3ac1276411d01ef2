"""Tests of 2D CLUE against the reference implementations and a brute-force evaluation.

References (../shared/data/README.md, section clue-reference; test use only):

- ``clue-original``: outputs of the CLUE authors' CLUEAlgo (github.com/ZihengChen/CLUEAlgo,
  commit d10e324; Rovere et al., Front. Big Data 3 (2020) 591315), compared point by point;
- ``clusterer-truth``: partitions of CMS Patatrack's CLUEstering (github.com/cms-patatrack/
  CLUEstering, commit 7fa1301, MPL-2.0), compared up to relabelling.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import caloreco.clustering.clue as clue_module
from caloreco.clustering.clue import CONVENTIONS, assign_clusters, clue
from caloreco.errors import ConfigError, InvalidDataError

#: ``../shared/data`` next to the repository.
SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
ORIGINAL = SHARED_DATA / "clue-reference" / "clue-original"
CLUSTERER = SHARED_DATA / "clue-reference" / "clusterer-truth"

#: CLUEstering runs (README): input, truth, (dc, rhoc, absolute outlier distance, seed distance).
CLUSTERER_RUNS = {
    "toy_det_1000": ("toyDetector_1000.csv", "toy_det_1000_truth.csv", (4.0, 2.5, 4.0, None)),
    "sissa_1000": ("sissa_1000.csv", "sissa_1000_truth.csv", (21.0, 10.0, 21.0, None)),
    "data_1024": ("data_1024.csv", "data_1024_truth.csv", (1.3, 10.0, 1.3, None)),
    "aniso_1000": ("aniso_1000.csv", "aniso_1000_truth.csv", (25.0, 5.0, 23.0, None)),
    "moons_1000": ("moons.csv", "moons_1000_truth.csv", (78.0, 80.0, 90.0, 100.0)),
}


def _original_outputs() -> list[object]:
    if not ORIGINAL.is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(
            reason=f"reference data {ORIGINAL} not present (../shared/data next to the repository)"))]
    return sorted((ORIGINAL / "output").glob("*.csv"), key=lambda p: p.name)


def _need(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(f"reference file {path} not present (../shared/data next to the repository)")
    return path


@pytest.mark.parametrize("output", _original_outputs(), ids=lambda p: getattr(p, "stem", "absent"))
def test_reproduces_clue_original_point_by_point(output: Path) -> None:
    # name: <input>_<dc>_<deltao>_<deltac>_<rhoc>.csv (README)
    *stem, dc, deltao, deltac, rhoc = output.stem.split("_")
    points = np.loadtxt(_need(ORIGINAL / "input" / f"{'_'.join(stem)}.csv"), delimiter=",", ndmin=2)
    ref = np.genfromtxt(output, delimiter=",", names=True)
    r = clue(points[:, 0], points[:, 1], points[:, 2].astype(int), points[:, 3], dc=float(dc),
             rhoc=float(rhoc), outlier_distance=float(deltao), seed_distance=float(deltac))
    np.testing.assert_allclose(r.rho, ref["rho"], rtol=1e-6)
    # delta printed with 6 significant digits; 999 = no nearest higher
    np.testing.assert_allclose(np.where(np.isinf(r.delta), 999.0, r.delta), ref["delta"],
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(r.nearest_higher, ref["nh"].astype(int))
    np.testing.assert_array_equal(r.is_seed, ref["isSeed"].astype(bool))
    np.testing.assert_array_equal(r.cluster_id, ref["clusterId"].astype(int))
    assert r.n_clusters == int(ref["clusterId"].max()) + 1


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal noise and a one-to-one map between the cluster labels."""
    if not np.array_equal(a < 0, b < 0):
        return False
    m = a >= 0
    pairs = set(zip(a[m].tolist(), b[m].tolist()))
    return len(pairs) == len(set(a[m].tolist())) == len(set(b[m].tolist()))


@pytest.mark.parametrize("run", sorted(CLUSTERER_RUNS))
def test_reproduces_clusterer_partitions(run: str) -> None:
    inp, truth_name, (dc, rhoc, dm, ds) = CLUSTERER_RUNS[run]
    data = np.genfromtxt(_need(CLUSTERER / inp), delimiter=",", skip_header=1, ndmin=2)
    truth = np.genfromtxt(_need(CLUSTERER / truth_name), delimiter=",", names=True)
    np.testing.assert_allclose(data[:, 0], truth["x0"], atol=1e-5)
    r = clue(data[:, 0], data[:, 1], None, data[:, 2], dc=dc, rhoc=rhoc, outlier_distance=dm,
             seed_distance=ds, convention="clusterer")
    labels = truth["cluster_ids"].astype(int)
    assert _same_partition(r.cluster_id, labels)
    assert r.n_clusters == len(set(labels[labels >= 0].tolist()))
    # aniso_1000_truth has is_seed all 0 although it has 3 clusters: not comparable
    if "is_seed" in truth.dtype.names and truth["is_seed"].any():
        np.testing.assert_array_equal(r.is_seed, truth["is_seed"].astype(bool))


# ------------------------------------------------------------ brute-force comparison
def _brute(x: np.ndarray, y: np.ndarray, layer: np.ndarray, w: np.ndarray, dc: float,
           rhoc: float, dm: float, ds: float, convention: str) -> tuple[np.ndarray, ...]:
    """All-pairs evaluation of the definitions in the module docstring."""
    x, y, w = (v.astype(np.float32) for v in (x, y, w))
    n = len(x)
    dx, dy = x[:, None] - x[None], y[:, None] - y[None]
    same = layer[:, None] == layer[None]
    d = np.sqrt(dx * dx + dy * dy)
    cheb = np.maximum(np.abs(dx), np.abs(dy))
    box = convention == "clusterer"
    near = same & ((cheb if box else d) <= np.float32(dc))
    factor = np.where(np.eye(n, dtype=bool), 1.0, 1.0 if convention == "original" else 0.5)
    rho = (near * factor * w[None].astype(np.float64)).sum(1).astype(np.float32)
    idx = np.arange(n)
    higher = (rho[None] > rho[:, None]) | ((rho[None] == rho[:, None]) & (idx[None] > idx[:, None]))
    cand = same & higher & ((cheb if box else d) <= np.float32(max(dm, ds)))
    dd = np.where(cand, d, np.inf)
    nh = np.argmin(dd, 1)
    delta = dd[idx, nh]
    nh[np.isinf(delta)] = -1
    test = np.where(cand, cheb, np.inf).min(1) if box else delta
    seed = (rho >= np.float32(rhoc)) & (test > np.float32(ds))
    outlier = (rho < np.float32(rhoc)) & (test > np.float32(dm))
    cid = np.full(n, -1)
    cid[seed] = np.arange(seed.sum())
    for _ in range(n):  # pass ids down one level per step
        cid = np.where(seed | outlier | (nh < 0), cid, cid[np.maximum(nh, 0)])
    return rho, delta, nh, seed, cid


@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("seed", range(6))
def test_matches_brute_force_on_random_layers(convention: str, seed: int,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # small blocks: several KD-trees; wide search: second nearest-higher pass
    monkeypatch.setattr(clue_module, "_BLOCK_POINTS", 60)
    rng = np.random.default_rng(seed)
    n = int(rng.integers(50, 250))
    x = np.round(rng.normal(0, 8, n), 1)  # 0.1 grid: many equal distances
    y = np.round(rng.normal(0, 8, n), 1)
    layer = rng.integers(0, 4, n) * 5 - 3
    w = rng.choice([0.5, 1.0, 2.0], n) if seed % 2 else rng.uniform(0.1, 2.0, n)
    dc, dm, ds, rhoc = (float(v) for v in rng.uniform([0.5, 0.5, 0.5, 0.5], [3, 7, 7, 4]))
    r = clue(x, y, layer, w, dc=dc, rhoc=rhoc, outlier_distance=dm, seed_distance=ds,
             convention=convention)
    rho, delta, nh, is_seed, cid = _brute(x, y, layer, w, dc, rhoc, dm, ds, convention)
    np.testing.assert_allclose(r.rho, rho, rtol=1e-6)
    np.testing.assert_array_equal(r.nearest_higher, nh)
    np.testing.assert_allclose(r.delta, delta, rtol=1e-6)
    np.testing.assert_array_equal(r.is_seed, is_seed)
    np.testing.assert_array_equal(r.cluster_id, cid)


def test_two_blobs_two_clusters_and_isolated_noise() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal([0, 0], 0.3, (30, 2))
    b = rng.normal([10, 0], 0.3, (30, 2))
    pts = np.vstack([a, b, [[5.0, 20.0]]])
    r = clue(pts[:, 0], pts[:, 1], np.zeros(61, int), np.ones(61), dc=1.0, rhoc=3.0,
             outlier_distance=2.0)
    assert r.n_clusters == 2
    assert len(set(r.cluster_id[:30])) == 1 and len(set(r.cluster_id[30:60])) == 1
    assert r.cluster_id[0] != r.cluster_id[30] and r.cluster_id[60] == -1
    assert np.isinf(r.delta[r.is_seed]).all()  # each blob's peak has no higher point near


def test_layers_do_not_interact() -> None:
    x = np.array([0.0, 0.1, 0.0, 0.1])
    r = clue(x, np.zeros(4), np.array([1, 1, 2, 2]), np.ones(4), dc=1.0, rhoc=1.5,
             outlier_distance=2.0)
    np.testing.assert_array_equal(r.rho, [2, 2, 2, 2])
    np.testing.assert_array_equal(r.nearest_higher, [1, -1, 3, -1])
    np.testing.assert_array_equal(r.cluster_id, [0, 0, 1, 1])


def test_per_point_critical_density_and_defaults() -> None:
    x = np.array([0.0, 5.0])
    r = clue(x, np.zeros(2), None, None, dc=1.0, rhoc=np.array([0.5, 2.0]), outlier_distance=2.0)
    np.testing.assert_array_equal(r.is_seed, [True, False])
    np.testing.assert_array_equal(r.cluster_id, [0, -1])


def test_empty_input() -> None:
    r = clue(np.zeros(0), np.zeros(0), np.zeros(0, int), np.zeros(0), dc=1.0, rhoc=1.0,
             outlier_distance=2.0)
    assert r.n_clusters == 0 and len(r.cluster_id) == 0 and r.rho.dtype == np.float32


def test_assign_clusters_follows_chains_and_drops_outlier_trees() -> None:
    # 0 <- 1 <- 2 (seed 0); 3 outlier <- 4; 5 seed; 6 follower without nearest higher
    nh = np.array([-1, 0, 1, -1, 3, -1, -1])
    seed = np.array([1, 0, 0, 0, 0, 1, 0], bool)
    outlier = np.array([0, 0, 0, 1, 0, 0, 0], bool)
    np.testing.assert_array_equal(assign_clusters(nh, seed, outlier), [0, 0, 0, -1, -1, 1, -1])


@pytest.mark.parametrize("kwargs, error, text", [
    (dict(dc=0.0), ConfigError, "dc"),
    (dict(outlier_distance=-1.0), ConfigError, "outlier_distance"),
    (dict(seed_distance=float("nan")), ConfigError, "seed_distance"),
    (dict(rhoc=float("inf")), ConfigError, "rhoc"),
    (dict(convention="cmsw"), ConfigError, "'original', 'clusterer', 'cmssw'"),
    (dict(y=np.zeros(2)), InvalidDataError, "y has 2 entries"),
    (dict(x=np.array([0.0, np.nan, 1.0])), InvalidDataError, "x must be finite"),
    (dict(weight=np.array([1.0, -1.0, 1.0])), InvalidDataError, "weight must be >= 0"),
    (dict(layer=np.array([1.0, 1.5, 2.0])), InvalidDataError, "layer must hold integers"),
    (dict(x=np.zeros((3, 1))), InvalidDataError, "x must be one-dimensional"),
    (dict(rhoc=np.ones(2)), InvalidDataError, "rhoc has 2 entries"),
])
def test_bad_inputs_raise_typed_errors(kwargs: dict, error: type, text: str) -> None:
    args = dict(x=np.zeros(3), y=np.zeros(3), layer=np.zeros(3, int), weight=np.ones(3),
                dc=1.0, rhoc=1.0, outlier_distance=2.0)
    args.update(kwargs)
    with pytest.raises(error, match=text.replace("(", r"\(").replace("[", r"\[")):
        clue(args.pop("x"), args.pop("y"), args.pop("layer"), args.pop("weight"), **args)
