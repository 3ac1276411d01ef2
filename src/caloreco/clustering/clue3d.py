"""CLUE3D-like shower reconstruction: 2D CLUE per layer, then CLUE over the layer clusters.

Step 1, layer clusters (CMSSW ``HGCalCLUEAlgo``, RecoLocalCalo/HGCalRecProducers, and
Rovere et al., arXiv:2001.09761): :func:`~caloreco.clustering.clue.clue` with the
``"cmssw"`` convention on the hits of each layer, silicon and scintillator separately
(CMSSW clusters them in separate tiles), weight = energy [GeV], critical density
``rhoc = kappa * sigma_noise`` per hit, hits below ``ecut * sigma_noise`` left out, outlier
distance ``outlier_delta_factor * dc``.

Step 2, linking (CMSSW TICL ``PatternRecognitionbyCLUE3D``, RecoHGCal/TICL, M. Rovere
2021): every layer cluster k becomes a point with energy ``E_k`` (sum of its hits),
energy-weighted ``(x_k, y_k)``, mean ``z_k`` and its layer ``l_k``. Distances are projective
("useAbsoluteProjectiveScale"): cluster j is moved along its line of sight from the origin
to the plane of i, ``d_t(i, j) = |z_i| * || (x_i, y_i)/|z_i| - (x_j, y_j)/|z_j| ||`` [cm].

- density ``rho_i = E_i + kernel_density_factor * sum E_j`` over clusters j with
  ``|l_j - l_i| <= density_sibling_layers`` and ``d_t(i, j) < density_xy_distance``
  (clusters of the same layer only with ``density_on_same_layer``);
- nearest higher: among the clusters within ``density_sibling_layers`` layers with higher
  density (ties: higher index), the one minimising ``d_t^2 + (z_i - z_j)^2``, searched up to
  ``d_t <= outlier_multiplier * critical_xy_distance``; ``delta_t``, ``delta_l`` its
  transverse and layer distances (``inf`` when none);
- seed: ``(delta_t > critical_xy_distance or delta_l > critical_z_distance_layers)`` and
  ``rho >= critical_density`` and ``E / rho > critical_self_density``; outlier:
  ``delta_t > outlier_multiplier * critical_xy_distance`` and ``rho < critical_density``;
  the rest follow their nearest higher (one that has none is noise);
- showers with fewer than ``min_layer_clusters`` layer clusters are dropped (noise);
  a hit takes the shower id of its layer cluster, -1 for noise.

Nearest higher beyond the search distance: CMSSW looks in a window of eta-phi tiles; here
such a cluster is a seed or an outlier anyway unless it fails the self-density test, in
which case it is noise rather than a follower of a distant cluster.

Shapes: N hits, K layer clusters.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

import numpy as np
from scipy.spatial import cKDTree

from caloreco.clustering.clue import assign_clusters, clue
from caloreco.errors import ConfigError, InvalidDataError

if TYPE_CHECKING:
    from caloreco.data.event import Event

#: Hit columns that :func:`clue_event` needs.
REQUIRED_HIT_COLUMNS = ("x", "y", "z", "energy", "layer")


@dataclass(frozen=True)
class ClueParams:
    """Parameters of :func:`clue_event`.

    Layer clustering (defaults: CMSSW ``HGCalCLUEAlgo`` fillPSetDescription, v11 geometry:
    ``deltac = (1.3, 1.3, 5.0)`` cm for CE-E silicon, CE-H silicon, scintillator, ``kappa =
    9``, ``ecut = 3``, ``outlierDeltaFactor = 2``):

    Args:
        dc_silicon: density radius on silicon layers [cm] (default 1.3, about one coarse
            cell pitch of 1.21 cm).
        dc_scintillator: density radius among scintillator tiles [cm] (default 5.0; tiles
            are about 2-4 cm wide in caloreco's HGCAL model).
        kappa: critical density in units of the hit's noise sigma (default 9).
        ecut: hits below ``ecut`` noise sigmas are left out (default 3; the simulation's
            zero suppression is already 3 sigma).
        outlier_delta_factor: 2D outlier distance in units of ``dc`` (default 2).
        noise_gev: noise sigma [GeV] used for hits whose noise cannot be derived (no
            ``noise`` column, nor ``energy_mip`` and ``cell_type``); default 0.0021 GeV, the
            120 um CE-E silicon of caloreco's HGCAL model (0.21 MIP x ~10 MeV).

    Linking (defaults: CMSSW TICL ``PatternRecognitionbyCLUE3D`` fillPSetDescription,
    2021). With them a lone muon (about 50 MeV per layer cluster) never reaches the 4 GeV
    critical density and is noise, as in CMSSW where MIPs have their own TICL iteration;
    ``kappa=5, critical_density=0.1`` keep muons (and fragment hadron showers more).
    :func:`tune_clue` adapts the values to a data set:

    Args:
        density_sibling_layers: layers on each side in the density and the nearest-higher
            search (CMSSW ``densitySiblingLayers`` 5).
        density_xy_distance: projective transverse radius of the density [cm] (CMSSW
            ``densityXYDistanceSqr`` 16 cm^2).
        kernel_density_factor: weight of the other clusters' energy in the density (0.2).
        density_on_same_layer: count clusters of the same layer in the density (False).
        critical_density: minimum density of a seed [GeV] (4.0).
        critical_self_density: minimum ``E / rho`` of a seed (0.15).
        critical_xy_distance: minimum transverse delta of a seed [cm] (4.0).
        critical_z_distance_layers: minimum layer delta of a seed (5).
        outlier_multiplier: outlier distance in units of ``critical_xy_distance`` (2).
        min_layer_clusters: minimum layer clusters of a shower (CMSSW
            ``minNumLayerCluster`` 2).
    """

    dc_silicon: float = 1.3
    dc_scintillator: float = 5.0
    kappa: float = 9.0
    ecut: float = 3.0
    outlier_delta_factor: float = 2.0
    noise_gev: float = 0.0021
    density_sibling_layers: int = 5
    density_xy_distance: float = 4.0
    kernel_density_factor: float = 0.2
    density_on_same_layer: bool = False
    critical_density: float = 4.0
    critical_self_density: float = 0.15
    critical_xy_distance: float = 4.0
    critical_z_distance_layers: int = 5
    outlier_multiplier: float = 2.0
    min_layer_clusters: int = 2

    @classmethod
    def tuned_dtau(cls) -> "ClueParams":
        """Parameters tuned on the dtau preset (validation set: seed 202, 30 events; grid
        kappa {5, 9} x critical_density {0.5, 2, 4} x critical_xy_distance {2, 4} x
        density_xy_distance {2, 4}, best energy-weighted PQ 0.475 vs 0.41 for the CMSSW
        defaults; ``python benchmarks/tune_clue.py`` as recorded in docs/benchmarks.md)."""
        return cls(kappa=5, critical_density=2.0, density_xy_distance=2.0)

    def __post_init__(self) -> None:
        for name in ("dc_silicon", "dc_scintillator", "outlier_delta_factor", "noise_gev",
                     "density_xy_distance", "critical_xy_distance", "outlier_multiplier"):
            v = getattr(self, name)
            if not np.isfinite(v) or v <= 0:
                raise ConfigError(f"ClueParams.{name} must be a positive finite number, got {v!r}")
        for name in ("kappa", "ecut", "kernel_density_factor", "critical_density",
                     "critical_self_density"):
            v = getattr(self, name)
            if not np.isfinite(v) or v < 0:
                raise ConfigError(f"ClueParams.{name} must be a finite number >= 0, got {v!r}")
        for name in ("density_sibling_layers", "critical_z_distance_layers", "min_layer_clusters"):
            v = getattr(self, name)
            if int(v) != v or v < 0:
                raise ConfigError(f"ClueParams.{name} must be an integer >= 0, got {v!r}")


@dataclass(frozen=True)
class LayerClusters:
    """Layer clusters of one event (step 1 of :func:`clue_event`).

    Attributes:
        hit_cluster: int64 (N,) layer cluster of each hit, -1 for hits left out or 2D noise.
        x, y, z: float64 (K,) energy-weighted transverse position and mean z [cm].
        layer: int64 (K,) layer.
        energy: float64 (K,) summed hit energy [GeV].
    """

    hit_cluster: np.ndarray
    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    layer: np.ndarray
    energy: np.ndarray


def clue_event(event_or_arrays: Event | Mapping[str, object], *,
               params: ClueParams = ClueParams()) -> np.ndarray:
    """Reconstruct the showers of one event: shower id per hit, -1 for noise.

    Args:
        event_or_arrays: an :class:`~caloreco.data.event.Event` or a mapping of (N,) hit
            columns ``x, y, z`` [cm], ``energy`` [GeV], ``layer``; optional ``noise``
            (sigma [GeV]) or ``energy_mip`` with ``cell_type`` (the noise then follows
            caloreco's HGCAL model), and ``cell_type`` to tell scintillator tiles.
        params: :class:`ClueParams` (default values documented there).

    Returns:
        int64 (N,) shower ids 0..S-1 (numbered by seed), -1 for noise.

    Raises:
        InvalidDataError: a missing column, bad values (from :func:`clue`).
    """
    lcs = layer_clusters(event_or_arrays, params)
    shower = link_layer_clusters(lcs, params)
    return np.r_[shower, -1][np.where(lcs.hit_cluster >= 0, lcs.hit_cluster, len(shower))]


def layer_clusters(event_or_arrays: Event | Mapping[str, object],
                   params: ClueParams = ClueParams()) -> LayerClusters:
    """Step 1: 2D CLUE per layer (silicon and scintillator apart), see the module docstring.

    Takes the same input as :func:`clue_event`.
    """
    hits = _hit_columns(event_or_arrays)
    x, y, z = (np.asarray(hits[k], dtype=np.float64) for k in ("x", "y", "z"))
    energy = np.asarray(hits["energy"], dtype=np.float64)
    layer = np.asarray(hits["layer"]).astype(np.int64)
    n = len(x)
    sigma = _noise_sigma(hits, params, n)
    scint = _is_scintillator(hits, n)
    keep = energy >= params.ecut * sigma
    hit_cluster = np.full(n, -1, dtype=np.int64)
    offset = 0
    for on_scint, dc in ((False, params.dc_silicon), (True, params.dc_scintillator)):
        idx = np.flatnonzero(keep & (scint == on_scint))
        if not len(idx):
            continue
        r = clue(x[idx], y[idx], layer[idx] * 2 + (z[idx] < 0),
                 energy[idx], dc=dc, rhoc=params.kappa * sigma[idx],
                 outlier_distance=params.outlier_delta_factor * dc, convention="cmssw")
        hit_cluster[idx] = np.where(r.cluster_id >= 0, r.cluster_id + offset, -1)
        offset += r.n_clusters
    k = offset
    m = hit_cluster >= 0
    hc, e = hit_cluster[m], energy[m]
    esum = np.bincount(hc, e, minlength=k)
    count = np.bincount(hc, minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        wx = np.bincount(hc, e * x[m], minlength=k) / esum
        wy = np.bincount(hc, e * y[m], minlength=k) / esum
    # a cluster of zero energy: plain mean position
    flat = ~(esum > 0)
    if flat.any():
        wx[flat] = (np.bincount(hc, x[m], minlength=k) / np.maximum(count, 1))[flat]
        wy[flat] = (np.bincount(hc, y[m], minlength=k) / np.maximum(count, 1))[flat]
    lz = np.bincount(hc, z[m], minlength=k) / np.maximum(count, 1)
    llayer = np.zeros(k, dtype=np.int64)
    llayer[hc] = layer[m]
    return LayerClusters(hit_cluster=hit_cluster, x=wx, y=wy, z=lz, layer=llayer, energy=esum)


def link_layer_clusters(lcs: LayerClusters, params: ClueParams) -> np.ndarray:
    """Step 2: CLUE3D over the layer clusters; shower id per layer cluster, -1 for noise."""
    k = len(lcs.energy)
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    p = params
    absz = np.maximum(np.abs(lcs.z), 1e-6)
    u, v = lcs.x / absz, lcs.y / absz
    # layers of the two endcaps never meet
    side_layer = lcs.layer + np.where(lcs.z < 0, 10**6, 0)
    n_sib = int(p.density_sibling_layers)
    search = p.outlier_multiplier * p.critical_xy_distance
    reach = max(p.density_xy_distance, search) / float(absz.min())
    # box query in (u, v, layer * s): n_sib + 1/2 layers span the transverse reach
    s = reach / (n_sib + 0.5)
    tree = cKDTree(np.column_stack([u, v, side_layer * s]))
    pairs = tree.query_pairs(reach * (1 + 1e-9), p=np.inf, output_type="ndarray")
    a = np.concatenate([pairs[:, 0], pairs[:, 1]]).astype(np.int64)
    b = np.concatenate([pairs[:, 1], pairs[:, 0]]).astype(np.int64)
    dl = np.abs(side_layer[a] - side_layer[b])
    near = dl <= n_sib
    a, b, dl = a[near], b[near], dl[near]
    dt = absz[a] * np.hypot(u[a] - u[b], v[a] - v[b])  # transverse distance seen from a

    # density of a
    e = lcs.energy
    reachable = dt < p.density_xy_distance
    if not p.density_on_same_layer:
        reachable &= dl > 0
    rho = e + p.kernel_density_factor * np.bincount(a[reachable], e[b[reachable]], minlength=k)

    # nearest higher of a: minimise dt^2 + dz^2 among higher clusters within the search
    higher = (rho[b] > rho[a]) | ((rho[b] == rho[a]) & (b > a))
    cand = higher & (dt <= search)
    a, b, dl, dt = a[cand], b[cand], dl[cand], dt[cand]
    dist = dt**2 + (lcs.z[a] - lcs.z[b]) ** 2
    best = np.full(k, np.inf)
    np.minimum.at(best, a, dist)
    tie = dist == best[a]
    nh = np.full(k, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(nh, a[tie], b[tie])
    nh[np.isinf(best)] = -1
    delta_t = np.full(k, np.inf)
    delta_l = np.full(k, np.inf)
    chosen = b == nh[a]
    delta_t[a[chosen]] = dt[chosen]
    delta_l[a[chosen]] = dl[chosen]

    with np.errstate(invalid="ignore", divide="ignore"):
        self_density = np.where(rho > 0, e / rho, 0.0)
    is_seed = (((delta_t > p.critical_xy_distance) | (delta_l > p.critical_z_distance_layers))
               & (rho >= p.critical_density) & (self_density > p.critical_self_density))
    is_outlier = (delta_t > search) & (rho < p.critical_density)
    shower = assign_clusters(nh, is_seed, is_outlier)

    # drop small showers and renumber the rest 0..S-1 in seed order
    n_lc = np.bincount(shower[shower >= 0], minlength=int(is_seed.sum()))
    kept = n_lc >= p.min_layer_clusters
    new_id = np.r_[np.where(kept, np.cumsum(kept) - 1, -1), -1]
    return new_id[np.where(shower >= 0, shower, len(kept))]


def tune_clue(events: Sequence[Event], grid: Mapping[str, Sequence[Any]], *,
              base: ClueParams = ClueParams(),
              score_fn: Callable[[Sequence[Event], list[np.ndarray]], float] | None = None,
              ) -> tuple[ClueParams, list[dict[str, Any]]]:
    """Scan a parameter grid on events and keep the best score.

    Args:
        events: the events (with truth).
        grid: ``{ClueParams field: values}``; every combination is tried, the other fields
            come from ``base``.
        base: parameters for the fields not in ``grid`` (default :class:`ClueParams`).
        score_fn: ``score_fn(events, predictions) -> float``, higher is better; default the
            energy-weighted panoptic quality PQ of all events together
            (:func:`caloreco.metrics.panoptic_quality`, counts summed over events).

    Returns:
        ``(best_params, table)``: table holds one dict per combination, its grid values and
        ``"score"``, in grid order; the first best combination wins ties.

    Raises:
        ConfigError: an empty grid or events, an unknown field name (listing the valid
            ones), an empty value list, or invalid parameter values.
    """
    events = list(events)
    if not events:
        raise ConfigError("tune_clue needs at least one event")
    if not grid:
        raise ConfigError("grid must name at least one ClueParams field")
    valid = [f.name for f in fields(ClueParams)]
    unknown = sorted(set(grid) - set(valid))
    if unknown:
        raise ConfigError(f"grid has unknown ClueParams field(s) {unknown}; valid: {valid}")
    names = list(grid)
    for name in names:
        if len(grid[name]) == 0:
            raise ConfigError(f"grid[{name!r}] is empty; give at least one value")
    score = score_fn if score_fn is not None else _panoptic_score
    table: list[dict[str, Any]] = []
    best: tuple[float, ClueParams] | None = None
    for values in itertools.product(*(grid[n] for n in names)):
        params = replace(base, **dict(zip(names, values)))
        preds = [clue_event(ev, params=params) for ev in events]
        value = float(score(events, preds))
        table.append({**dict(zip(names, values)), "score": value})
        if best is None or value > best[0]:
            best = (value, params)
    assert best is not None  # the grid is not empty
    return best[1], table


def _panoptic_score(events: Sequence[Event], predictions: Iterable[np.ndarray]) -> float:
    """Energy-weighted PQ with the panoptic counts summed over the events."""
    from caloreco.metrics import PanopticCounts, panoptic_quality

    total = PanopticCounts()
    for ev, pred in zip(events, predictions):
        total = total + panoptic_quality(ev.hits["truth_cluster"], pred, ev.hits["energy"],
                                         event=ev.event_id)
    return total.pq


# ------------------------------------------------------------------------- inputs
def _hit_columns(src: Event | Mapping[str, object]) -> Mapping[str, object]:
    hits = getattr(src, "hits", src)
    if not isinstance(hits, Mapping):
        raise InvalidDataError(f"event_or_arrays must be an Event or a mapping of hit columns, "
                               f"got {type(src).__name__}")
    missing = [c for c in REQUIRED_HIT_COLUMNS if c not in hits]
    if missing:
        raise InvalidDataError(f"hit column(s) {missing} missing; clue_event needs "
                               f"{list(REQUIRED_HIT_COLUMNS)}, got {sorted(hits)}",
                               event=getattr(src, "event_id", None))
    n = len(np.asarray(hits["x"]))
    for c in REQUIRED_HIT_COLUMNS:
        arr = np.asarray(hits[c])
        if arr.shape != (n,):
            raise InvalidDataError(f"hit column '{c}' has shape {arr.shape}, expected ({n},) "
                                   f"like x", event=getattr(src, "event_id", None))
    return hits


def _noise_sigma(hits: Mapping[str, object], params: ClueParams, n: int) -> np.ndarray:
    """Noise sigma per hit [GeV]: ``noise`` column, else the HGCAL model, else the default."""
    if "noise" in hits:
        sigma = np.asarray(hits["noise"], dtype=np.float64)
        if sigma.shape != (n,) or not np.isfinite(sigma).all() or (sigma < 0).any():
            raise InvalidDataError("hit column 'noise' must hold (N,) finite sigmas >= 0 [GeV]")
        return sigma
    sigma = np.full(n, params.noise_gev)
    if "energy_mip" in hits and "cell_type" in hits:
        from caloreco.geometry.cells import CellType
        from caloreco.geometry.hgcal import NOISE_MIP

        table = np.array([NOISE_MIP.get(t, 0.0) for t in CellType], dtype=np.float64)
        ctype = np.asarray(hits["cell_type"]).astype(np.int64)
        e_mip = np.asarray(hits["energy_mip"], dtype=np.float64)
        energy = np.asarray(hits["energy"], dtype=np.float64)
        known = (ctype >= 0) & (ctype < len(table)) & (e_mip != 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            model = table[np.clip(ctype, 0, len(table) - 1)] * energy / e_mip
        known &= np.isfinite(model) & (model > 0)
        sigma[known] = model[known]
    return sigma


def _is_scintillator(hits: Mapping[str, object], n: int) -> np.ndarray:
    if "cell_type" not in hits:
        return np.zeros(n, dtype=bool)
    from caloreco.geometry.cells import CellType

    return np.asarray(hits["cell_type"]).astype(np.int64) == int(CellType.SCINTILLATOR)
