"""CLUE: density-based clustering of the hits of each calorimeter layer.

Rovere, Chen, Di Pilato, Pantaleo, Seez, "CLUE: A Fast Parallel Clustering Algorithm for
High Granularity Calorimeters in High-Energy Physics", Front. Big Data 3 (2020) 591315,
arXiv:2001.09761.

Per layer, with ``d(i, j)`` the transverse distance and ``w`` the weights (energies):

- local density ``rho_i = w_i + f * sum_{j != i, j in N_dc(i)} w_j``;
- nearest higher ``nh_i = argmin_{j in H(i)} d(i, j)``, where ``H(i)`` holds the points of
  the layer with ``rho_j > rho_i`` (or ``rho_j == rho_i`` and ``j > i``) within the search
  distance ``max(outlier_distance, seed_distance)``; ``delta_i = d(i, nh_i)`` (``inf`` if
  ``H(i)`` is empty);
- seed: ``rho_i >= rhoc`` and ``delta_i > seed_distance``; outlier: ``rho_i < rhoc`` and
  ``delta_i > outlier_distance``; every other point follows its nearest higher;
- cluster ids are given to the seeds in increasing point index and passed down the
  follower trees; outliers and all their followers are noise (-1).

Conventions; the first two reproduce a reference implementation point by point (the tests
compare with outputs of both, see ``../shared/data/README.md``):

``"original"`` (the authors' CLUEAlgo, github.com/ZihengChen/CLUEAlgo)
    ``N_dc(i)`` is the Euclidean disc ``d <= dc``, ``f = 1``; delta and the seed/outlier
    tests use the Euclidean distance; float32 arithmetic as the C++ code.
``"clusterer"`` (CMS Patatrack CLUEstering, the ``cluestering`` package, commit 7fa1301)
    per-dimension box neighbourhoods: ``N_dc(i)`` is ``|dx| <= dc and |dy| <= dc``,
    ``f = 0.5`` (flat kernel, self weight 1). Candidates for the nearest higher lie in the
    box of half-width ``max(outlier_distance, seed_distance)``; ``nh_i`` is the Euclidean
    nearest of them and ``delta_i`` its Euclidean distance, while the seed and outlier tests
    use the box: a seed (outlier) has no higher point in the box of half-width
    ``seed_distance`` (``outlier_distance``), i.e. the Chebyshev distance to the nearest
    higher point exceeds it. Float32 arithmetic.
``"cmssw"`` (the layer clustering of CMS HGCAL, CMSSW ``HGCalCLUEAlgo``)
    as ``"original"`` (Euclidean disc, Euclidean delta) with ``f = 0.5``: neighbours count
    half their energy, the hit itself fully. No reference output here; the tests check it
    against a brute-force evaluation of the same definition.

A tie in distance between two higher points is broken towards the lower index (the C++
codes take the first one met in their tile loops, which differs only for exact ties).

Implementation: no loop over points. Layers are stacked along a third coordinate, far apart,
so that one :class:`scipy.spatial.cKDTree` per block of layers answers all fixed-radius
queries (O(N log N)); candidate pairs are then tested exactly in float32, per-point minima
are taken with ``numpy.minimum.at`` and the cluster ids are propagated by pointer jumping.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.spatial import cKDTree

from caloreco.errors import ConfigError, InvalidDataError

#: Valid values of ``convention``.
CONVENTIONS = ("original", "clusterer", "cmssw")

#: Neighbour weight factor ``f`` of the local density per convention (self weight is 1).
_NEIGHBOUR_FACTOR = {"original": 1.0, "clusterer": 0.5, "cmssw": 0.5}

#: Points per KD-tree block; layers are grouped into blocks of at most this many points
#: (a larger single layer is one block) to bound the memory of the pair lists.
_BLOCK_POINTS = 400_000

#: Relative and absolute (times the coordinate scale) margins added to KD-tree radii so
#: that the float64 tree query returns a superset of the pairs passing the float32 test.
_RADIUS_REL_MARGIN = 1e-5
_RADIUS_ABS_MARGIN = 1e-6


@dataclass(frozen=True)
class ClueResult:
    """Output of :func:`clue`, one entry per input point.

    Shapes: N points.

    Attributes:
        rho: float32 (N,) local density.
        delta: float32 (N,) distance to the nearest higher point, ``inf`` when there is
            none within the search distance (the reference CSV files write 999).
        nearest_higher: int64 (N,) index of the nearest higher point, -1 if none.
        is_seed: bool (N,) the point seeds a cluster.
        cluster_id: int64 (N,) cluster id, -1 for outliers and their followers.
        n_clusters: number of clusters (= number of seeds); ids are 0..n_clusters-1.
    """

    rho: np.ndarray
    delta: np.ndarray
    nearest_higher: np.ndarray
    is_seed: np.ndarray
    cluster_id: np.ndarray
    n_clusters: int


def clue(x: object, y: object, layer: object, weight: object, *, dc: float,
         rhoc: float | object, outlier_distance: float, seed_distance: float | None = None,
         convention: str = "original") -> ClueResult:
    """Cluster points layer by layer with CLUE.

    Args:
        x, y: (N,) transverse coordinates (any length unit; the distances below share it).
        layer: (N,) integer layer of each point; points only interact within a layer.
            ``None`` puts every point on one layer.
        weight: (N,) non-negative weights (energies); ``None`` gives every point weight 1.
        dc: density radius (> 0).
        rhoc: critical density: a scalar or an (N,) array (one threshold per point, e.g.
            ``kappa * noise`` as CMSSW).
        outlier_distance: absolute distance beyond which a low-density point with no
            nearer higher point is an outlier (``delta_o``; CMSSW sets
            ``outlierDeltaFactor * dc`` with factor 2), > 0.
        seed_distance: minimum delta of a seed (``delta_c``), > 0; default ``dc``.
        convention: ``"original"`` (default), ``"clusterer"`` or ``"cmssw"``, see the module
            docstring.

    Returns:
        :class:`ClueResult`.

    Shapes:
        N points.

    Raises:
        ConfigError: a parameter that is not a positive finite number, an unknown convention.
        InvalidDataError: arrays of different lengths or not one-dimensional, non-finite
            values, negative weights, non-integer layers.
    """
    if convention not in CONVENTIONS:
        raise ConfigError(f"convention must be one of {list(CONVENTIONS)}, got {convention!r}")
    dc = _positive("dc", dc)
    outlier_distance = _positive("outlier_distance", outlier_distance)
    seed_distance = dc if seed_distance is None else _positive("seed_distance", seed_distance)
    x32 = _coords("x", x)
    n = len(x32)
    y32 = _coords("y", y, n)
    lay = np.zeros(n, dtype=np.int64) if layer is None else _layers(layer, n)
    w32 = np.ones(n, dtype=np.float32) if weight is None else _weights(weight, n)
    rhoc32 = _rhoc(rhoc, n)

    rho = np.zeros(n, dtype=np.float32)
    delta = np.full(n, np.inf, dtype=np.float32)
    # Chebyshev distance to the nearest higher point, for the box tests of "clusterer"
    box_delta = np.full(n, np.inf, dtype=np.float32)
    nh = np.full(n, -1, dtype=np.int64)
    if n:
        # stable sort keeps the input order within a layer: the local index tie-break
        # (j > i) is then the global one
        order = np.argsort(lay, kind="stable")
        for block in _blocks(lay[order]):
            idx = order[block]
            r = _Block(x32[idx], y32[idx], lay[idx], w32[idx], convention)
            r.run(dc, max(outlier_distance, seed_distance))
            rho[idx], delta[idx], box_delta[idx] = r.rho, r.delta, r.box_delta
            nh[idx] = np.where(r.nh >= 0, idx[np.maximum(r.nh, 0)], -1)

    test = box_delta if convention == "clusterer" else delta
    is_seed = (rho >= rhoc32) & (test > np.float32(seed_distance))
    is_outlier = (rho < rhoc32) & (test > np.float32(outlier_distance))
    cluster_id = assign_clusters(nh, is_seed, is_outlier)
    return ClueResult(rho=rho, delta=delta, nearest_higher=nh, is_seed=is_seed,
                      cluster_id=cluster_id, n_clusters=int(is_seed.sum()))


class _Block:
    """Density and nearest higher of the points of a block of whole layers."""

    def __init__(self, x: np.ndarray, y: np.ndarray, layer: np.ndarray, w: np.ndarray,
                 convention: str) -> None:
        self.x, self.y, self.w = x, y, w
        self.box = convention == "clusterer"
        self.factor = _NEIGHBOUR_FACTOR[convention]
        _, self.rank = np.unique(layer, return_inverse=True)
        self.n = len(x)
        self.scale = float(max(np.abs(x).max(), np.abs(y).max(), 1.0))

    def _margin(self, r: float) -> float:
        return r * (1.0 + _RADIUS_REL_MARGIN) + _RADIUS_ABS_MARGIN * self.scale

    def _exact(self, a: np.ndarray, b: np.ndarray, r: float) -> tuple[np.ndarray, ...]:
        """Float32 test of candidate pairs against radius ``r``: (a, b, euclid, cheb)."""
        dx = self.x[a] - self.x[b]
        dy = self.y[a] - self.y[b]
        d = np.sqrt(dx * dx + dy * dy)
        cheb = np.maximum(np.abs(dx), np.abs(dy))
        keep = (cheb if self.box else d) <= np.float32(r)
        return a[keep], b[keep], d[keep], cheb[keep]

    def run(self, dc: float, search: float) -> None:
        n = self.n
        # layers stacked along z, farther apart than any query radius
        gap = 4.0 * max(dc, search) + 1.0
        pts = np.column_stack([self.x.astype(np.float64), self.y.astype(np.float64),
                               self.rank * gap])
        tree = cKDTree(pts)
        p = np.inf if self.box else 2.0
        pairs = tree.query_pairs(self._margin(dc), p=p, output_type="ndarray")
        a, b, d, cheb = self._exact(pairs[:, 0], pairs[:, 1], dc)

        w64 = self.w.astype(np.float64)
        neigh = np.bincount(a, w64[b], minlength=n) + np.bincount(b, w64[a], minlength=n)
        self.rho = (w64 + self.factor * neigh).astype(np.float32)

        # pass 1: nearest higher among the density pairs (within the search distance)
        keep = (cheb if self.box else d) <= np.float32(search)
        lo, hi, dd, cc = self._orient(a[keep], b[keep], d[keep], cheb[keep])
        self.delta, self.nh, self.box_delta = self._nearest(lo, hi, dd, cc)

        # pass 2: a point is settled when its nearest higher lies within dc (every closer
        # point was a candidate); the others search again up to the search distance
        if search > dc:
            todo = np.flatnonzero(~(self.delta <= np.float32(dc)))
            if len(todo):
                sub = cKDTree(pts[todo])
                m = sub.sparse_distance_matrix(tree, self._margin(search), p=p,
                                               output_type="ndarray")
                src, dst = todo[m["i"]], m["j"].astype(np.int64)
                src, dst, d2, c2 = self._exact(src, dst, search)
                higher = self._higher(src, dst)
                delta, nh, box_delta = self._nearest(src[higher], dst[higher], d2[higher],
                                                     c2[higher])
                self.delta[todo], self.nh[todo] = delta[todo], nh[todo]
                self.box_delta[todo] = box_delta[todo]

    def _higher(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """Whether j is higher than i: larger density, or equal density and larger index."""
        return (self.rho[j] > self.rho[i]) | ((self.rho[j] == self.rho[i]) & (j > i))

    def _orient(self, a: np.ndarray, b: np.ndarray, *values: np.ndarray) -> tuple[np.ndarray, ...]:
        """Unordered pairs (a < b) as (lower, higher, values...)."""
        b_higher = self.rho[b] >= self.rho[a]  # b > a wins ties
        return (np.where(b_higher, a, b), np.where(b_higher, b, a), *values)

    def _nearest(self, lo: np.ndarray, hi: np.ndarray, d: np.ndarray,
                 cheb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per point: smallest distance to a higher point, that point, smallest Chebyshev."""
        n = self.n
        delta = np.full(n, np.inf, dtype=np.float32)
        np.minimum.at(delta, lo, d)
        tie = d == delta[lo]
        nh = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(nh, lo[tie], hi[tie])
        nh[np.isinf(delta)] = -1
        box_delta = np.full(n, np.inf, dtype=np.float32)
        if self.box:
            np.minimum.at(box_delta, lo, cheb)
        return delta, nh, box_delta


def assign_clusters(nearest_higher: np.ndarray, is_seed: np.ndarray,
                    is_outlier: np.ndarray) -> np.ndarray:
    """Cluster ids from the follower trees: seeds numbered 0.. in index order, followers
    take the id of the seed at the root of their nearest-higher chain, -1 for outliers,
    their followers and points without a nearest higher that are not seeds.

    Args:
        nearest_higher: int (N,) index of the point followed, -1 if none; the chains must
            be acyclic (each step goes to a strictly higher point).
        is_seed, is_outlier: bool (N,).

    Returns:
        int64 (N,) cluster ids.
    """
    nh = np.asarray(nearest_higher, dtype=np.int64)
    n = len(nh)
    root = np.arange(n)
    follower = ~is_seed & ~is_outlier & (nh >= 0)
    root[follower] = nh[follower]
    # pointer jumping: depth halves per step (nearest-higher chains are acyclic)
    while True:
        nxt = root[root]
        if np.array_equal(nxt, root):
            break
        root = nxt
    seed_id = np.full(n, -1, dtype=np.int64)
    seed_id[is_seed] = np.arange(int(is_seed.sum()))
    return seed_id[root]


def _blocks(sorted_layer: np.ndarray) -> list[slice]:
    """Slices of whole layers with at most ``_BLOCK_POINTS`` points (one layer may exceed)."""
    starts = np.flatnonzero(np.r_[True, sorted_layer[1:] != sorted_layer[:-1]])
    bounds = np.r_[starts, len(sorted_layer)]
    out, begin = [], 0
    for k in range(1, len(bounds)):
        if bounds[k] - begin > _BLOCK_POINTS and bounds[k - 1] > begin:
            out.append(slice(begin, int(bounds[k - 1])))
            begin = int(bounds[k - 1])
    out.append(slice(begin, len(sorted_layer)))
    return out


# ---------------------------------------------------------------------------- checks
def _positive(name: str, value: object) -> float:
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a positive number, got {value!r}") from None
    if not np.isfinite(v) or v <= 0:
        raise ConfigError(f"{name} must be a positive finite number, got {value!r}")
    return v


def _array(name: str, values: object, n: int | None, check: Callable[[np.ndarray], bool],
           rule: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise InvalidDataError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if n is not None and len(arr) != n:
        raise InvalidDataError(f"{name} has {len(arr)} entries, expected {n} like x")
    if not check(arr):
        raise InvalidDataError(f"{name} must be {rule}")
    return arr


def _coords(name: str, values: object, n: int | None = None) -> np.ndarray:
    arr = _array(name, values, n, lambda a: a.dtype.kind in "biuf", "numeric")
    arr = arr.astype(np.float32)
    bad = ~np.isfinite(arr)
    if bad.any():
        raise InvalidDataError(f"{name} must be finite; entry {int(np.argmax(bad))} is "
                               f"{arr[np.argmax(bad)]} ({int(bad.sum())} non-finite values)")
    return arr


def _layers(values: object, n: int) -> np.ndarray:
    arr = _array("layer", values, n, lambda a: a.dtype.kind in "biuf", "numeric")
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr) | (arr != np.round(arr))
        if bad.any():
            raise InvalidDataError(f"layer must hold integers; entry {int(np.argmax(bad))} is "
                                   f"{arr[np.argmax(bad)]}")
    return arr.astype(np.int64)


def _weights(values: object, n: int) -> np.ndarray:
    arr = _coords("weight", values, n)
    if (arr < 0).any():
        k = int(np.argmax(arr < 0))
        raise InvalidDataError(f"weight must be >= 0; entry {k} is {arr[k]}")
    return arr


def _rhoc(value: object, n: int) -> np.ndarray | np.float32:
    if np.ndim(value) == 0:
        try:
            v = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ConfigError(f"rhoc must be a number or an (N,) array, got {value!r}") from None
        if not np.isfinite(v):
            raise ConfigError(f"rhoc must be a finite number, got {value!r}")
        return np.float32(v)
    arr = _array("rhoc", value, n, lambda a: a.dtype.kind in "biuf", "numeric")
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise InvalidDataError("rhoc must be finite for every point")
    return arr
