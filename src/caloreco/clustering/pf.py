"""CMS particle-flow (PF) calorimeter clustering, for the barrel HCAL and HGCAL layers.

References: CMS Collaboration, "Particle-flow reconstruction and global event description
with the CMS detector", JINST 12 (2017) P10003, arXiv:1706.04965, sec. 3.3; CMSSW
``RecoParticleFlow/PFClusterProducer``: plugins ``LocalMaximumSeedFinder``,
``Basic2DGenericTopoClusterizer``, ``Basic2DGenericPFlowClusterizer``,
``Basic2DGenericPFlowPositionCalc`` and ``PFMultiDepthClusterizer``, configured as in
``python/particleFlowClusterHBHE_cfi.py`` (``run3_HB`` modifier) and
``python/particleFlowClusterHCAL_cfi.py``. The defaults of :class:`PFParams` are those files'
values; every step below follows the C++ code, with the differences listed at the end.

With ``E_i`` the hit energies, ``T^seed``, ``T^gath`` the thresholds of the hit's depth or
layer, and ``N_i`` (``recHitEnergyNorm`` = ``logWeightDenominator``, by default ``T^gath``):

1. **Seeds** (``LocalMaximumSeedFinder``): ``E_i >= T^seed_i`` and no neighbour (any hit, also
   below threshold) has a strictly larger energy. Neighbours: the 4 towers sharing an edge
   (``n_neighbours_seed = 4``, CMSSW HB), or also the 4 corners (8), or none (0), always at
   the same depth. **Ties:** CMSSW pops hits from a max-heap and a new seed vetoes its
   neighbours, so of two neighbouring candidates with exactly equal energy one is a seed;
   the heap order for equal energies is unspecified, here the lower hit index wins.
2. **Topological clusters** (``Basic2DGenericTopoClusterizer``): connected components of the
   hits with ``E_i >= T^gath_i`` over the neighbour graph (8 towers in eta-phi at the same
   depth with ``use_corner_cells``, CMSSW HBHE), keeping the components that hold a seed.
   As in CMSSW (``PFHCALDenseIdNavigator``) the barrel navigation never crosses depths;
   ``topo_across_depths`` adds the same tower at the adjacent depths (not CMSSW).
3. **Energy sharing** (``Basic2DGenericPFlowClusterizer``, ``excludeOtherSeeds = True``), per
   topo cluster with seeds k: start from clusters = their seed (fraction 1, position and
   energy of the seed) and iterate
   ``f_ik = (E_k / N_i) exp(-d_ik^2 / (2 sigma^2)) / sum_j (E_j / N_i) exp(-d_ij^2 / (2 sigma^2))``
   with ``d_ik`` the 3D distance [cm] from hit i to cluster k and ``E_k = sum_i f_ik E_i`` the
   cluster energy of the previous iteration (``sigma = showerSigma = 10 cm``); a seed keeps
   fraction 1 in its own cluster and 0 in the others. A hit whose denominator is not above
   ``min_frac_tot = 1e-20`` gets no fraction; a fraction is kept only if
   ``d_ik^2 / sigma^2 < 100`` or ``f_ik > 0.9999`` (CMSSW's "keep only close cells"), so hits
   more than ~10 sigma from every cluster are dropped. After each iteration the cluster
   positions are recomputed (step 4); the fit stops when ``max_k dR_k <= tolerance *
   max(1, K - 1)^2`` (``dR`` in eta-phi between successive positions, ``K`` seeds in the topo
   cluster, ``stoppingTolerance = 1e-8``) or after ``max_iterations = 50``. Then fractions
   ``<= min_fraction = 1e-7`` are dropped and energies and positions recomputed. A topo
   cluster with one seed goes through the same loop (every hit within reach gets fraction 1).
4. **Position** (``Basic2DGenericPFlowPositionCalc``): ``x_k = sum_i w_ik x_i / sum_i w_ik``
   with ``w_ik = max(0, ln(f_ik E_i / N_i))`` (0 when ``f_ik < min_fraction_in_calc =
   1e-9``), over the seed and its 4 edge neighbours in the cluster (``posCalcNCrystals = 5``;
   9 adds the corners) when the topo cluster has several seeds, over all hits of the
   cluster (``allCellsPositionCalc``) when it has one.
5. **Depth merging** (``PFMultiDepthClusterizer``, ``merge_depths``), as
   ``particleFlowClusterHCAL`` which CMS PF uses: widths
   ``s_eta,k = max(0.1, sum_i f_ik E_i |eta_i - eta_k| / E_k)`` (same for phi); cluster a links
   to a deeper cluster b (depth difference >= 0.2) when ``deta^2 / (s_eta,a^2 + s_eta,b^2) <
   n_sigma_eta^2`` and likewise in phi (``nSigmaEta = nSigmaPhi = 2``); each cluster keeps
   the incoming link of smallest depth difference, then smallest ``deta^2/.. + dphi^2/..``,
   then largest energy sum; linked clusters are merged (connected components), energies
   add, the position is recomputed over all hits (step 4 with all cells) and the seed is the
   most energetic seed. Unlinked clusters pass unchanged.

Differences from CMSSW: float64 throughout (CMSSW uses float exp/log); a cluster whose
position weights sum to < 1e-9 gets its seed position (CMSSW sets (0, 0, 0)); fractions of a
hit in merged clusters are summed per (hit, cluster); clusters are numbered by decreasing
energy; no pT thresholds, time, cleaning or energy corrections (none are set for HBHE).

HGCAL layers (:meth:`PFParams.hgcal_like`): neighbours are found by distance within a layer,
``d < neighbour_factor * max(p_i, p_j)`` with ``p = sqrt(2 A / sqrt(3))`` the
hexagon-equivalent pitch of the cell area (the in-layer rule of
:mod:`caloreco.geometry.neighbours`): the 6 touching hexagons, 8 tiles around a tile. There
all in-layer neighbours count for seeding and position (4 vs 8 and 5 vs 9 coincide), and
clusters stay 2D (one layer each).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Union

import numpy as np
from scipy.sparse import coo_matrix, csr_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from caloreco.data.event import Event
from caloreco.errors import ConfigError, InvalidDataError
from caloreco.geometry.detector import Detector
from caloreco.geometry.hcal import HCalBarrel, decode_tower_id
from caloreco.geometry.neighbours import NEIGHBOUR_FACTOR

#: An :class:`~caloreco.data.event.Event` or a mapping with the hit columns below.
HitsLike = Union[Event, Mapping[str, np.ndarray]]
#: Hit columns read by :func:`pf_cluster`.
HIT_COLUMNS = ("x", "y", "z", "energy", "layer", "cell_id")
NEIGHBOUR_MODES = ("towers", "distance")
THRESHOLD_UNITS = ("GeV", "noise")

#: CMSSW keeps a fraction only when d^2 / sigma^2 < 100 or the fraction exceeds 0.9999.
_MAX_DIST2 = 100.0
_KEEP_FRACTION = 0.9999
#: Basic2DGenericPFlowPositionCalc ``minAllowedNormalization``.
_MIN_ALLOWED_NORM = 1e-9
#: PFMultiDepthClusterizer: minimum eta and phi width ("assign ~ tower") and minimum depth step.
_MIN_WIDTH = 0.1
_MIN_DEPTH_STEP = 0.2


def _number_in(value: object, lo: float, hi: float, *, closed_low: bool) -> bool:
    """``value`` is a real number in [lo, hi) (``closed_low``) or (lo, hi)."""
    if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, bool):
        return False
    return (lo <= value if closed_low else lo < value) and value < hi


@dataclass(frozen=True)
class PFParams:
    """Parameters of :func:`pf_cluster`; the defaults are CMS HB, Run 3 (:meth:`hb_run3`).

    Args:
        seed_threshold: ``seedingThreshold`` per layer/depth (one value: all layers),
            default (0.125, 0.25, 0.35, 0.35) GeV.
        gathering_threshold: ``gatheringThreshold`` per layer, default (0.1, 0.2, 0.3, 0.3) GeV;
            each must be <= the seed threshold of its layer.
        energy_norm: ``recHitEnergyNorm`` and ``logWeightDenominator`` per layer; None (default)
            uses ``gathering_threshold`` as CMSSW does.
        threshold_unit: ``"GeV"`` (default) or ``"noise"``: the three above are multiples of
            each cell's noise sigma (``detector.noise_mip * detector.mip_gev``).
        neighbours: ``"towers"`` (default: ieta/iphi/depth arithmetic on barrel cell ids, phi
            wraps) or ``"distance"`` (within a layer, for HGCAL).
        n_neighbours_seed: ``nNeighbours`` of the seed finder: 4 (default), 8 or 0.
        use_corner_cells: topo clusters also grow through corner cells (default True).
        topo_across_depths: topo clusters also grow to the same tower at adjacent depths
            (default False, as CMSSW).
        pos_calc_n_crystals: ``posCalcNCrystals`` for topo clusters with several seeds:
            5 (default), 9 or -1 (all hits).
        shower_sigma_cm: ``showerSigma`` [cm], default 10.
        max_iterations: ``maxIterations``, default 50.
        tolerance: ``stoppingTolerance``, default 1e-8.
        min_fraction: ``minFractionToKeep``, default 1e-7.
        min_fraction_in_calc: ``minFractionInCalc``, default 1e-9.
        min_frac_tot: ``minFracTot``, default 1e-20.
        merge_depths: run ``PFMultiDepthClusterizer`` (default True; ``"towers"`` only).
        n_sigma_eta, n_sigma_phi: its ``nSigmaEta``, ``nSigmaPhi``, default 2.
        neighbour_factor: distance factor of the ``"distance"`` neighbours, default 1.5.
    """

    seed_threshold: tuple[float, ...] = (0.125, 0.25, 0.35, 0.35)
    gathering_threshold: tuple[float, ...] = (0.1, 0.2, 0.3, 0.3)
    energy_norm: tuple[float, ...] | None = None
    threshold_unit: str = "GeV"
    neighbours: str = "towers"
    n_neighbours_seed: int = 4
    use_corner_cells: bool = True
    topo_across_depths: bool = False
    pos_calc_n_crystals: int = 5
    shower_sigma_cm: float = 10.0
    max_iterations: int = 50
    tolerance: float = 1e-8
    min_fraction: float = 1e-7
    min_fraction_in_calc: float = 1e-9
    min_frac_tot: float = 1e-20
    merge_depths: bool = True
    n_sigma_eta: float = 2.0
    n_sigma_phi: float = 2.0
    neighbour_factor: float = NEIGHBOUR_FACTOR

    def __post_init__(self) -> None:
        for name in ("seed_threshold", "gathering_threshold", "energy_norm"):
            value = getattr(self, name)
            if value is None:
                continue
            arr = np.atleast_1d(np.asarray(value, dtype=np.float64))
            if arr.ndim != 1 or len(arr) == 0 or not (np.isfinite(arr) & (arr > 0)).all():
                raise ConfigError(f"PFParams.{name} must be a non-empty sequence of positive numbers, got {value!r}")
            object.__setattr__(self, name, tuple(float(v) for v in arr))
        seed, gath = np.asarray(self.seed_threshold), np.asarray(self.gathering_threshold)
        if len(seed) != len(gath) or (self.energy_norm is not None and len(self.energy_norm) != len(seed)):
            raise ConfigError("PFParams.seed_threshold, gathering_threshold and energy_norm need one value per "
                              f"layer each, got lengths {len(seed)}, {len(gath)}, "
                              f"{None if self.energy_norm is None else len(self.energy_norm)}")
        if (seed < gath).any():
            raise ConfigError(f"PFParams.seed_threshold must be >= gathering_threshold layer by layer (a seed "
                              f"starts its topo cluster), got {self.seed_threshold} < {self.gathering_threshold}")
        choices = {"threshold_unit": THRESHOLD_UNITS, "neighbours": NEIGHBOUR_MODES,
                   "n_neighbours_seed": (0, 4, 8), "pos_calc_n_crystals": (5, 9, -1)}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"PFParams.{name} must be one of {list(allowed)}, got {getattr(self, name)!r}")
        for name in ("shower_sigma_cm", "n_sigma_eta", "n_sigma_phi"):
            if not _number_in(getattr(self, name), 0.0, np.inf, closed_low=False):
                raise ConfigError(f"PFParams.{name} must be a positive number, got {getattr(self, name)!r}")
        for name in ("tolerance", "min_fraction", "min_fraction_in_calc", "min_frac_tot"):
            if not _number_in(getattr(self, name), 0.0, 1.0, closed_low=True):
                raise ConfigError(f"PFParams.{name} must lie in [0, 1), got {getattr(self, name)!r}")
        if not isinstance(self.max_iterations, (int, np.integer)) or self.max_iterations < 0:
            raise ConfigError(f"PFParams.max_iterations must be an integer >= 0, got {self.max_iterations!r}")
        if not 1.0 < self.neighbour_factor <= 2.0:
            raise ConfigError(f"PFParams.neighbour_factor must lie in (1, 2], got {self.neighbour_factor!r}")
        if self.neighbours == "distance" and (self.merge_depths or self.topo_across_depths):
            raise ConfigError("PFParams.merge_depths and topo_across_depths need neighbours='towers' (barrel "
                              "depths); set them to False for neighbours='distance'")

    @classmethod
    def hb_run3(cls) -> "PFParams":
        """CMS HB in Run 3: ``particleFlowClusterHBHE`` (``run3_HB``) + ``particleFlowClusterHCAL``."""
        return cls()

    @classmethod
    def hgcal_like(cls) -> "PFParams":
        """PF clustering of each HGCAL layer (every layer: CE-E, CE-H silicon and scintillator).

        Thresholds in units of each cell's noise sigma: gathering 3 sigma (the HGCAL-like
        zero suppression, so every hit can join), seeds 5 sigma (HB uses 3.5-3.75 sigma, the
        ECAL barrel ~6). Shower sigma 1.5 cm and 8-neighbour seeding / 3x3 positions as the
        CMS ECAL PF clustering (``particleFlowClusterECALUncorrected_cfi``), whose cells and
        Moliere radius (~2 cm) are close to those of the CE-E. No depth merging.
        """
        return cls(seed_threshold=(5.0,), gathering_threshold=(3.0,), threshold_unit="noise",
                   neighbours="distance", n_neighbours_seed=8, pos_calc_n_crystals=9,
                   shower_sigma_cm=1.5, merge_depths=False)


@dataclass(frozen=True)
class PFFractions:
    """Sparse hit-to-cluster fractions, one row per (hit, cluster) pair with a fraction.

    Shapes: F pairs. ``hit_index`` int64 (F,), ``cluster_index`` int64 (F,), ``fraction``
    float64 (F,) in (min_fraction, 1], sorted by hit then cluster.
    """

    hit_index: np.ndarray
    cluster_index: np.ndarray
    fraction: np.ndarray


@dataclass(frozen=True)
class PFResult:
    """Output of :func:`pf_cluster`. Shapes: N hits, K clusters, T topo clusters.

    Attributes:
        fractions: :class:`PFFractions`; the cluster energies are ``sum f E_hit``.
        cluster_energy: float64 (K,) [GeV], decreasing.
        cluster_position: float64 (K, 3) x, y, z [cm].
        seed_hit: int64 (K,) hit index of each cluster's seed.
        topo_id: int64 (N,) topo cluster of each hit, -1 outside (ordered by decreasing
            energy of their most energetic seed); with depth merging they stay per depth.
        cluster_id: int64 (N,) cluster of largest fraction (ties: lower id), -1 if none; the
            hard assignment for panoptic metrics.
        is_seed: bool (N,) hits chosen as seeds by step 1.
        n_iterations: int64 (T,) energy-sharing iterations run per topo cluster.
    """

    fractions: PFFractions
    cluster_energy: np.ndarray
    cluster_position: np.ndarray
    seed_hit: np.ndarray
    topo_id: np.ndarray
    cluster_id: np.ndarray
    is_seed: np.ndarray
    n_iterations: np.ndarray

    @property
    def n_clusters(self) -> int:
        return len(self.cluster_energy)

    def fraction_matrix(self) -> csr_matrix:
        """Fractions as a sparse (N hits, K clusters) matrix."""
        f = self.fractions
        return csr_matrix((f.fraction, (f.hit_index, f.cluster_index)),
                          shape=(len(self.topo_id), self.n_clusters))


def pf_cluster(event_or_hits: HitsLike, detector: Detector, *, params: PFParams | None = None) -> PFResult:
    """Cluster the hits of one event with the CMS PF algorithm (see the module docstring).

    Args:
        event_or_hits: an :class:`~caloreco.data.event.Event` or a mapping with the columns
            ``x, y, z`` [cm], ``energy`` [GeV], ``layer`` (1-based; barrel: depth) and
            ``cell_id`` (cells of ``detector``, one hit per cell).
        detector: the detector of the cell ids (``"towers"`` needs the barrel HCAL).
        params: :class:`PFParams`, default :meth:`PFParams.hb_run3`.

    Returns:
        :class:`PFResult`.

    Shapes:
        N hits, K clusters, T topo clusters.

    Raises:
        ConfigError: thresholds not given for the detector's layers, ``"towers"`` on a
            detector that is not the barrel HCAL.
        InvalidDataError: missing or non-1D columns, different lengths, non-finite values,
            unknown or repeated cell ids, a layer that disagrees with the cell id.
    """
    p = PFParams.hb_run3() if params is None else params
    if p.neighbours == "towers" and not isinstance(detector, HCalBarrel):
        raise ConfigError(f"PFParams.neighbours='towers' needs the barrel HCAL ('hcal-barrel'), got detector "
                          f"'{detector.name}'; use PFParams.hgcal_like() or neighbours='distance'")
    xyz, energy, layer, cell_id, event = _read_hits(event_or_hits)
    rows = _cell_rows(detector, cell_id, layer, event)
    seed_thr, gath_thr, norm = _thresholds(p, detector, rows, layer)
    n = len(energy)

    if p.neighbours == "towers":
        four, corner, depth = _tower_edges(cell_id, detector)
    else:
        area = detector.cells.area[rows].astype(np.float64)
        four = _distance_edges(xyz, layer, np.sqrt(2.0 * area / np.sqrt(3.0)), p.neighbour_factor)
        corner = depth = (np.zeros(0, np.int64), np.zeros(0, np.int64))
    none = (np.zeros(0, np.int64), np.zeros(0, np.int64))
    seed_edges = {0: none, 4: four, 8: _cat(four, corner)}[p.n_neighbours_seed]
    topo_edges = _cat(four, corner if p.use_corner_cells else none, depth if p.topo_across_depths else none)
    core_edges = four if p.pos_calc_n_crystals == 5 else _cat(four, corner)

    is_seed = _find_seeds(energy, seed_thr, seed_edges)
    topo_id, n_topo = _topo_clusters(energy, gath_thr, topo_edges, is_seed)
    seeds = np.flatnonzero(is_seed)
    seeds = seeds[np.lexsort((seeds, -energy[seeds], topo_id[seeds]))]  # grouped by topo cluster
    core_keys = np.sort(core_edges[0] * n + core_edges[1]) if p.pos_calc_n_crystals != -1 else None
    h, k, f, c_pos, c_depth, n_iter = _share_energy(xyz, energy, layer, norm, topo_id, n_topo, seeds,
                                                    core_keys, p)
    seed_hit = seeds
    if p.merge_depths and len(seeds):
        h, k, f, c_pos, seed_hit = _merge_depths(h, k, f, c_pos, c_depth, seeds, xyz, energy, norm, p)

    # number the clusters by decreasing energy, then collect the per-hit answers
    n_cl = len(seed_hit)
    c_energy = np.bincount(k, f * energy[h], minlength=n_cl)
    order = np.lexsort((seed_hit, -c_energy))
    new_id = np.empty(n_cl, np.int64)
    new_id[order] = np.arange(n_cl)
    k = new_id[k]
    srt = np.lexsort((k, h))
    h, k, f = h[srt], k[srt], f[srt]
    best = np.lexsort((k, -f, h))
    first = best[np.r_[True, h[best][1:] != h[best][:-1]]] if len(best) else best
    cluster_id = np.full(n, -1, np.int64)
    cluster_id[h[first]] = k[first]
    return PFResult(fractions=PFFractions(h, k, f), cluster_energy=c_energy[order],
                    cluster_position=c_pos[order], seed_hit=seed_hit[order].astype(np.int64),
                    topo_id=topo_id, cluster_id=cluster_id, is_seed=is_seed, n_iterations=n_iter)


# ---------------------------------------------------------------------------- input
def _read_hits(obj: HitsLike) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int | None]:
    """(xyz (N, 3), energy, layer, cell_id, event id) from an event or a column mapping."""
    if isinstance(obj, Event):
        cols, event = obj.hits, obj.event_id
    elif isinstance(obj, Mapping):
        cols, event = obj, None
    else:
        raise InvalidDataError(f"event_or_hits must be an Event or a mapping of hit columns, got {type(obj).__name__}")
    missing = [c for c in HIT_COLUMNS if c not in cols]
    if missing:
        raise InvalidDataError(f"hits are missing column(s) {missing}; pf_cluster needs {list(HIT_COLUMNS)}",
                               event=event)
    arrs = {c: np.asarray(cols[c]) for c in HIT_COLUMNS}
    n = len(arrs["energy"]) if arrs["energy"].ndim == 1 else -1
    for c, a in arrs.items():
        if a.ndim != 1 or len(a) != n:
            raise InvalidDataError(f"hit column '{c}' must be one-dimensional with as many rows as 'energy' "
                                   f"({n}), got shape {a.shape}", event=event)
        if c in ("layer", "cell_id") and n and not (np.issubdtype(a.dtype, np.integer)
                                                     or (np.isfinite(a) & (a == np.round(a))).all()):
            raise InvalidDataError(f"hit column '{c}' must hold integers, got dtype {a.dtype}", event=event)
    fl = {c: arrs[c].astype(np.float64) for c in ("x", "y", "z", "energy")}
    for c, a in fl.items():
        bad = ~np.isfinite(a)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InvalidDataError(f"hit column '{c}' has {int(bad.sum())} non-finite value(s), first at hit {i} "
                                   f"({a[i]})", event=event)
    xyz = np.column_stack([fl["x"], fl["y"], fl["z"]]) if n else np.zeros((0, 3))
    return xyz, fl["energy"], arrs["layer"].astype(np.int64), arrs["cell_id"].astype(np.int64), event


def _cell_rows(det: Detector, cell_id: np.ndarray, layer: np.ndarray, event: int | None) -> np.ndarray:
    """Rows of the hits' cells in ``det.cells``, checking existence, layer and uniqueness."""
    rows = det.cells.index_of(cell_id)
    bad = rows < 0
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InvalidDataError(f"hit column 'cell_id' has {int(bad.sum())} id(s) that are not cells of detector "
                               f"'{det.name}', first at hit {i} ({cell_id[i]})", event=event)
    cell_layer = det.cells.layer[rows].astype(np.int64)
    bad = cell_layer != layer
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InvalidDataError(f"hit column 'layer' disagrees with the layer of the cell id at {int(bad.sum())} "
                               f"hit(s), first at hit {i} (layer {layer[i]}, cell layer {cell_layer[i]})", event=event)
    srt = np.sort(cell_id)
    dup = np.flatnonzero(srt[1:] == srt[:-1])
    if len(dup):
        raise InvalidDataError(f"hit column 'cell_id' must be unique (one hit per cell); id {srt[dup[0]]} appears "
                               f"more than once", event=event)
    return rows


def _thresholds(p: PFParams, det: Detector, rows: np.ndarray,
                layer: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seed, gathering and norm thresholds per hit [GeV]."""
    n_layers = len(det.layers)
    out = []
    for name in ("seed_threshold", "gathering_threshold", "energy_norm"):
        values = getattr(p, name)
        if values is None:
            values = p.gathering_threshold
        if len(values) not in (1, n_layers):
            raise ConfigError(f"PFParams.{name} needs 1 value or {n_layers} (one per layer of detector "
                              f"'{det.name}'), got {len(values)}")
        v = np.asarray(values, dtype=np.float64)
        out.append(np.full(len(layer), v[0]) if len(v) == 1 else v[layer - 1])
    if p.threshold_unit == "noise":
        sigma = np.asarray(det.noise_mip(rows), np.float64) * np.asarray(det.mip_gev(rows), np.float64)
        out = [t * sigma for t in out]
    return out[0], out[1], out[2]


# ---------------------------------------------------------------------------- neighbours
Edges = tuple[np.ndarray, np.ndarray]


def _cat(*edges: Edges) -> Edges:
    return np.concatenate([e[0] for e in edges]), np.concatenate([e[1] for e in edges])


def _tower_edges(cell_id: np.ndarray, det: HCalBarrel) -> tuple[Edges, Edges, Edges]:
    """Directed hit pairs (edge-sharing, corner, adjacent depth) from barrel tower ids.

    ``ieta`` = -n..-1, 1..n becomes a contiguous index (ieta -1 and 1 are neighbours),
    ``iphi`` wraps around; each offset is looked up in the sorted tower keys of the hits.
    """
    cfg = det.config
    n = len(cell_id)
    depth, ieta, iphi = decode_tower_id(cell_id)
    n_e, n_p = 2 * cfg.n_eta, cfg.n_phi
    e = np.where(ieta < 0, ieta + cfg.n_eta, ieta + cfg.n_eta - 1)
    phi = iphi - 1
    key = (depth * n_e + e) * n_p + phi
    order = np.argsort(key)
    skey = key[order]

    def find(offsets: list[tuple[int, int, int]]) -> Edges:
        src, dst = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
        for dd, de, dp in offsets if n else []:
            e2 = e + de
            k2 = ((depth + dd) * n_e + e2) * n_p + (phi + dp) % n_p
            pos = np.minimum(np.searchsorted(skey, k2), n - 1)
            hit = (e2 >= 0) & (e2 < n_e) & (skey[pos] == k2)
            src.append(np.flatnonzero(hit))
            dst.append(order[pos[hit]])
        s, d = np.concatenate(src), np.concatenate(dst)
        pair = np.unique(s[s != d] * n + d[s != d])  # tiny n_phi can repeat a cell or find itself
        return pair // max(n, 1), pair % max(n, 1)

    return (find([(0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1)]),
            find([(0, 1, 1), (0, 1, -1), (0, -1, 1), (0, -1, -1)]),
            find([(1, 0, 0), (-1, 0, 0)]))


def _distance_edges(xyz: np.ndarray, layer: np.ndarray, pitch: np.ndarray, factor: float) -> Edges:
    """Directed in-layer pairs with ``d_xy < factor * max(p_i, p_j)``."""
    if len(layer) < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    radius = factor * float(pitch.max())
    _, rank = np.unique(layer, return_inverse=True)
    pts = np.column_stack([xyz[:, 0], xyz[:, 1], rank * (4.0 * radius + 1.0)])  # layers far apart
    pairs = cKDTree(pts).query_pairs(radius, output_type="ndarray")
    i, j = pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64)
    d2 = ((xyz[i, :2] - xyz[j, :2]) ** 2).sum(axis=1)
    ok = (layer[i] == layer[j]) & (d2 < (factor * np.maximum(pitch[i], pitch[j])) ** 2)
    return np.concatenate([i[ok], j[ok]]), np.concatenate([j[ok], i[ok]])


# ---------------------------------------------------------------------------- seeds, topo clusters
def _find_seeds(energy: np.ndarray, seed_thr: np.ndarray, edges: Edges) -> np.ndarray:
    """Local maxima above the seed threshold; equal-energy neighbours: the lower index wins."""
    src, dst = edges
    is_seed = energy >= seed_thr
    is_seed[src[energy[dst] > energy[src]]] = False
    tie = is_seed[src] & is_seed[dst] & (energy[src] == energy[dst])
    if not tie.any():
        return is_seed
    # CMSSW's greedy pass in pop order, restricted to the tied pairs: a hit is a seed unless a
    # tied neighbour popped before it (here: lower index) became one
    lo, hi = np.minimum(src[tie], dst[tie]), np.maximum(src[tie], dst[tie])
    undecided = np.zeros(len(energy), bool)
    undecided[lo] = undecided[hi] = True
    is_seed[undecided] = False
    while undecided.any():
        waiting = np.zeros(len(energy), bool)
        waiting[hi[undecided[lo]]] = True  # a lower tied neighbour is still open
        ready = undecided & ~waiting
        vetoed = np.zeros(len(energy), bool)
        vetoed[hi[is_seed[lo]]] = True
        is_seed[ready & ~vetoed] = True
        undecided &= ~ready
    return is_seed


def _topo_clusters(energy: np.ndarray, gath_thr: np.ndarray, edges: Edges,
                   is_seed: np.ndarray) -> tuple[np.ndarray, int]:
    """Topo cluster of each hit (-1 outside), by decreasing energy of the best seed."""
    n = len(energy)
    ok = energy >= gath_thr
    src, dst = edges
    keep = ok[src] & ok[dst]
    graph = coo_matrix((np.ones(int(keep.sum())), (src[keep], dst[keep])), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    seeds = np.flatnonzero(is_seed)  # seed >= gathering threshold, so every seed is in ``ok``
    order = np.lexsort((seeds, -energy[seeds]))
    comps, first = np.unique(label[seeds[order]], return_index=True)
    ranked = comps[np.argsort(first)]
    new = np.full(label.max() + 1 if n else 0, -1, np.int64)
    new[ranked] = np.arange(len(ranked))
    topo = np.where(ok, new[label], -1) if n else np.zeros(0, np.int64)
    return topo.astype(np.int64), len(ranked)


# ---------------------------------------------------------------------------- energy sharing
def _eta_phi(xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rho = np.hypot(xyz[:, 0], xyz[:, 1])
    return np.arcsinh(xyz[:, 2] / np.maximum(rho, 1e-12)), np.arctan2(xyz[:, 1], xyz[:, 0])


def _wrap(dphi: np.ndarray) -> np.ndarray:
    return (dphi + np.pi) % (2.0 * np.pi) - np.pi


def _log_weights(h: np.ndarray, f: np.ndarray, energy: np.ndarray, norm: np.ndarray,
                 use: np.ndarray, min_fraction_in_calc: float) -> np.ndarray:
    """``max(0, ln(f E / N))`` where ``use`` and ``f >= min_fraction_in_calc``, else 0."""
    with np.errstate(divide="ignore"):
        w = np.log(f * energy[h] / norm[h])
    return np.where(use & (f >= min_fraction_in_calc) & (w > 0), w, 0.0)


def _weighted_position(h: np.ndarray, k: np.ndarray, w: np.ndarray, xyz: np.ndarray,
                       fallback: np.ndarray) -> np.ndarray:
    """``sum w x / sum w`` per cluster; ``fallback`` where the weights sum to < 1e-9."""
    n_cl = len(fallback)
    wsum = np.bincount(k, w, minlength=n_cl)
    num = np.column_stack([np.bincount(k, w * xyz[h, d], minlength=n_cl) for d in range(3)])
    good = wsum >= _MIN_ALLOWED_NORM
    return np.where(good[:, None], num / np.where(good, wsum, 1.0)[:, None], fallback)


def _share_energy(xyz: np.ndarray, energy: np.ndarray, layer: np.ndarray, norm: np.ndarray,
                  topo_id: np.ndarray, n_topo: int, seeds: np.ndarray, core_keys: np.ndarray | None,
                  p: PFParams) -> tuple[np.ndarray, ...]:
    """Iterative Gaussian-mixture fit of all topo clusters at once (module docstring, step 3).

    Works on the list of (hit, cluster) pairs of each topo cluster (hits x seeds), so one
    iteration is a few vectorised passes; topo clusters leave the loop as they converge.
    Returns (hit, cluster, fraction) after pruning, positions (K, 3), depths (K,) and the
    iterations per topo cluster.
    """
    n, n_cl = len(energy), len(seeds)
    k_topo = topo_id[seeds]
    n_seeds_t = np.bincount(k_topo, minlength=n_topo)
    k_start = np.cumsum(n_seeds_t) - n_seeds_t
    members = np.flatnonzero(topo_id >= 0)
    reps = n_seeds_t[topo_id[members]]
    ph = np.repeat(members, reps)
    pk = k_start[topo_id[ph]] + np.arange(len(ph)) - np.repeat(np.cumsum(reps) - reps, reps)
    pt = topo_id[ph]
    seed_of = np.full(n, -1, np.int64)
    seed_of[seeds] = np.arange(n_cl)
    own = seed_of[ph] == pk
    other_seed = (seed_of[ph] >= 0) & ~own
    in_calc = n_seeds_t[pt] == 1  # one seed: all cells; several: seed and its core neighbours
    if core_keys is None:
        in_calc[:] = True
    elif len(ph):
        q = seeds[pk] * n + ph
        at = np.minimum(np.searchsorted(core_keys, q), max(len(core_keys) - 1, 0))
        in_calc |= own | ((core_keys[at] == q) if len(core_keys) else False)

    def update(sel: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h, k = ph[sel], pk[sel]
        w = _log_weights(h, f, energy, norm, in_calc[sel], p.min_fraction_in_calc)
        return np.bincount(k, f * energy[h], minlength=n_cl), _weighted_position(h, k, w, xyz, xyz[seeds])

    frac = own.astype(np.float64)  # the initial clusters: each seed alone
    c_energy, c_pos = energy[seeds].copy(), xyz[seeds].copy()
    tol = p.tolerance * np.maximum(1.0, n_seeds_t - 1.0) ** 2
    active = np.ones(n_topo, bool)
    n_iter = np.zeros(n_topo, np.int64)
    inv_s2 = 1.0 / p.shower_sigma_cm**2
    for _ in range(p.max_iterations):
        sel = active[pt]
        h, k = ph[sel], pk[sel]
        d2 = ((xyz[h] - c_pos[k]) ** 2).sum(axis=1) * inv_s2
        raw = np.where(own[sel], 1.0,
                       np.where(other_seed[sel], 0.0, c_energy[k] / norm[h] * np.exp(-0.5 * d2)))
        tot = np.bincount(h, raw, minlength=n)[h]
        ok = (tot > p.min_frac_tot) | (own[sel] & (tot > 0))
        f = np.where(ok, raw / np.where(ok, tot, 1.0), 0.0)
        frac[sel] = np.where(ok & ((d2 < _MAX_DIST2) | (f > _KEEP_FRACTION)), f, 0.0)
        new_energy, new_pos = update(sel, frac[sel])
        act_k = active[k_topo]
        eta0, phi0 = _eta_phi(c_pos)
        c_energy[act_k], c_pos[act_k] = new_energy[act_k], new_pos[act_k]
        eta1, phi1 = _eta_phi(c_pos)
        diff = np.zeros(n_topo)
        np.maximum.at(diff, k_topo, np.hypot(eta1 - eta0, _wrap(phi1 - phi0)))
        n_iter[active] += 1
        active &= diff > tol
        if not active.any():
            break

    keep = frac > p.min_fraction
    h, k, f = ph[keep], pk[keep], frac[keep]
    _, c_pos = update(keep, f)
    # cluster depth as CMSSW: the layer if all position hits share it, else the weighted mean
    use = in_calc[keep]
    w = _log_weights(h, f, energy, norm, use, p.min_fraction_in_calc)
    lo = np.full(n_cl, np.iinfo(np.int64).max)
    hi = np.full(n_cl, np.iinfo(np.int64).min)
    np.minimum.at(lo, k[use], layer[h[use]])
    np.maximum.at(hi, k[use], layer[h[use]])
    wsum = np.bincount(k, w, minlength=n_cl)
    mean = np.bincount(k, w * layer[h], minlength=n_cl) / np.where(wsum > 0, wsum, 1.0)
    c_depth = np.where((lo == hi) | (wsum <= 0), layer[seeds], mean).astype(np.float64)
    return h, k, f, c_pos, c_depth, n_iter


# ---------------------------------------------------------------------------- depth merging
def _merge_depths(h: np.ndarray, k: np.ndarray, f: np.ndarray, c_pos: np.ndarray, c_depth: np.ndarray,
                  seeds: np.ndarray, xyz: np.ndarray, energy: np.ndarray, norm: np.ndarray,
                  p: PFParams) -> tuple[np.ndarray, ...]:
    """``PFMultiDepthClusterizer`` (module docstring, step 5)."""
    n_cl = len(seeds)
    ef = f * energy[h]
    c_energy = np.bincount(k, ef, minlength=n_cl)
    eta_c, phi_c = _eta_phi(c_pos)
    eta_h, phi_h = _eta_phi(xyz[h])
    s_eta = np.maximum(np.bincount(k, ef * np.abs(eta_h - eta_c[k]), minlength=n_cl) / c_energy, _MIN_WIDTH) ** 2
    s_phi = np.maximum(np.bincount(k, ef * np.abs(_wrap(phi_h - phi_c[k])), minlength=n_cl) / c_energy,
                       _MIN_WIDTH) ** 2
    # candidate pairs from a KD-tree in (eta, phi), periodic in phi, then the exact test
    radius = max(p.n_sigma_eta * np.sqrt(2.0 * s_eta.max()), p.n_sigma_phi * np.sqrt(2.0 * s_phi.max()))
    eta0 = eta_c - eta_c.min()
    phi0 = np.mod(phi_c, 2.0 * np.pi)
    phi0 = np.where(phi0 >= 2.0 * np.pi, 0.0, phi0)
    tree = cKDTree(np.column_stack([eta0, phi0]), boxsize=[eta0.max() + 2.0 * radius + 1.0, 2.0 * np.pi])
    pairs = tree.query_pairs(radius, p=np.inf, output_type="ndarray").astype(np.int64)
    i = np.concatenate([pairs[:, 0], pairs[:, 1]])
    j = np.concatenate([pairs[:, 1], pairs[:, 0]])
    dz = c_depth[j] - c_depth[i]  # links go inside out, between different depths
    deta2 = (eta_c[i] - eta_c[j]) ** 2 / (s_eta[i] + s_eta[j])
    dphi2 = _wrap(phi_c[i] - phi_c[j]) ** 2 / (s_phi[i] + s_phi[j])
    ok = (dz >= _MIN_DEPTH_STEP) & (deta2 < p.n_sigma_eta**2) & (dphi2 < p.n_sigma_phi**2)
    i, j, dz, dr = i[ok], j[ok], dz[ok], (deta2 + dphi2)[ok]
    # prune: one incoming link per cluster (smallest dz, smallest dr, largest energy sum)
    order = np.lexsort((i, -(c_energy[i] + c_energy[j]), dr, dz, j))
    first = order[np.r_[True, j[order][1:] != j[order][:-1]]] if len(order) else order
    li, lj = i[first], j[first]
    n_comp, comp = connected_components(coo_matrix((np.ones(len(li)), (li, lj)), shape=(n_cl, n_cl)),
                                        directed=False)
    linked = np.zeros(n_cl, bool)
    linked[li] = linked[lj] = True
    # merged seed: the most energetic seed of the component
    by_energy = np.lexsort((np.arange(n_cl), -energy[seeds]))
    comps, at = np.unique(comp[by_energy], return_index=True)
    m_seed = np.empty(n_comp, np.int64)
    m_seed[comps] = seeds[by_energy[at]]
    # linked components: all-cells position over the members' entries; others unchanged
    mk = comp[k]
    w = _log_weights(h, f, energy, norm, np.ones(len(h), bool), p.min_fraction_in_calc)
    m_pos = _weighted_position(h, mk, w, xyz, xyz[m_seed])
    unlinked = ~linked
    m_pos[comp[unlinked]] = c_pos[unlinked]  # singletons keep their position
    # fractions of one hit in several merged members add up
    key, inv = np.unique(h * n_comp + mk, return_inverse=True)
    m_f = np.bincount(inv.ravel(), f, minlength=len(key))
    return key // n_comp, key % n_comp, m_f, m_pos, m_seed
