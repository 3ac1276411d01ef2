"""Object condensation inference: greedy clustering around condensation points.

The inference step of object condensation (Kieseler 2020, https://arxiv.org/abs/2002.03605,
section 4): per event, hits are taken in order of decreasing ``beta`` (input order on
ties); hits with ``beta > t_beta`` are candidates. A candidate that no earlier
condensation point has claimed becomes a condensation point and claims every unclaimed
hit within Euclidean distance ``t_d`` (``||x_i - x_alpha|| <= t_d``) in the clustering
space, itself included. Hits left unclaimed are noise. Equivalently, a hit belongs to the
*first* condensation point (in that order) within ``t_d`` of it.

``assign="nearest"`` keeps the same condensation points but gives each hit to the
*nearest* point within ``t_d`` (ties to the earlier point): where two showers' points sit
closer than ``2 t_d``, the hits between them are split by proximity (a Voronoi partition
cut at radius ``t_d``) instead of all going to the point of higher ``beta``.

Locality in the detector (optional, ``positions`` and ``r_max``): "within ``t_d``" becomes
"within ``t_d`` in the clustering space *and* within ``r_max`` in ``positions``" for both
steps, the claiming of candidates and the assignment of hits. With ``positions`` the hits
projected from the interaction point onto a reference surface
(:meth:`caloreco.models.encoding.HitEncoding.projected_positions`), a condensation point
then only gathers hits whose line of flight passes within ``r_max`` [cm] of it there, and
it only suppresses candidates inside that cone: two showers far apart in the detector stay
two clusters even where the network put them close together in the clustering space.
Without ``positions`` the algorithm is Kieseler's.

Implementation, on the device of the inputs, for batches of many ~20k-hit events with a
few hundred candidates each (no Python loop over hits, none over events on the device):

1. candidates are sorted by (event, -beta, index);
2. the greedy choice of points: for groups of events, the candidate-candidate "within
   t_d" tables are computed at once (padded ``[g, W, W]``) and copied to the host once;
   the greedy loop then runs per event in numpy, once per point (it jumps to the next
   unclaimed candidate). An event with too many candidates for one block is resolved
   block by block against its later candidates (:func:`_greedy_blocks`);
3. every hit is given its event's first point within ``t_d``: on CUDA for all events at
   once from a padded ``[hits, P]`` table in chunks of hits (no synchronisation per
   event); on CPU event by event from ``[hits_e, P_e]`` matrix-product blocks (the least
   arithmetic; measured 2x faster there).

Pair decisions use the exact difference form ``sum_d (x_i,d - x_j,d)^2 <= t_d^2``; the
wide-event path takes matrix-product distances and re-checks the pairs near ``t_d`` with
that form (:class:`_Near`), so the result equals the hit-by-hit algorithm exactly; memory
stays below ``_BLOCK_ELEMENTS`` per block whatever the number of candidates or events.

:func:`cluster_summary` turns the per-hit cluster ids into a per-cluster table (energy
sum, energy-weighted position, hit count), as written by ``caloreco cluster``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from caloreco.errors import ConfigError, InvalidDataError
from caloreco.utils.checks import check_beta_x

#: Hit-to-point assignment rules of :func:`condensation_clustering`.
ASSIGN_MODES = ("first", "nearest")
#: elements of the distance blocks computed at once (``rows * columns``); with the few
#: temporaries of a block, ~64 MB of float32 whatever the number of candidates or hits.
_BLOCK_ELEMENTS = 1 << 22
#: Factor on ``_BLOCK_ELEMENTS`` on CUDA (~1 GB of temporaries): a batch of 256 events of 20k
#: hits then takes ~40 hit chunks instead of ~600 rounds of a dozen small launches each.
_CUDA_BLOCK_FACTOR = 16


def _block_elements(device: torch.device) -> int:
    """Elements of a distance block on ``device``."""
    return _BLOCK_ELEMENTS * (_CUDA_BLOCK_FACTOR if device.type == "cuda" else 1)


def check_assign(assign: str) -> str:
    """``assign`` if it is one of :data:`ASSIGN_MODES`, else :class:`ConfigError`."""
    if assign not in ASSIGN_MODES:
        raise ConfigError(f"assign must be one of {list(ASSIGN_MODES)}, got {assign!r}")
    return assign


def check_r_max(r_max: float | None) -> float | None:
    """``r_max`` if it is None or a finite number > 0, else :class:`ConfigError`."""
    if r_max is not None and not (np.isfinite(r_max) and r_max > 0):
        raise ConfigError(f"r_max must be a finite number > 0 [cm] (or None: no locality cut), "
                          f"got {r_max}")
    return r_max


def _check_positions(positions: Tensor, n: int) -> None:
    if not isinstance(positions, Tensor) or positions.dim() != 2 or positions.shape[0] != n:
        shape = list(positions.shape) if isinstance(positions, Tensor) else type(positions).__name__
        raise InvalidDataError(f"positions must be a tensor of shape [N, P] with N = len(beta) = "
                               f"{n}, got {shape}")
    if not positions.is_floating_point():
        raise InvalidDataError(f"positions must be a floating-point tensor, got {positions.dtype}")
    bad = ~torch.isfinite(positions).all(1)
    if bad.any():
        i = int(torch.nonzero(bad)[0, 0])
        raise InvalidDataError(f"positions of hit {i} are not finite: {positions[i].tolist()}")


def _check(beta: Tensor, x: Tensor, batch: Tensor | None) -> None:
    n = check_beta_x(beta, x)
    if batch is not None:
        if batch.dim() != 1 or batch.shape[0] != n:
            raise InvalidDataError(f"batch must have shape [N] with N = len(beta) = {n}, "
                                   f"got {list(batch.shape)}")
        if batch.is_floating_point() or batch.is_complex() or batch.dtype == torch.bool:
            raise InvalidDataError(f"batch must be an integer tensor, got {batch.dtype}")


class _Near:
    """``||x_i - x_j|| <= t_d`` for blocks of hit pairs, fast and exact.

    The squared distance is taken from one matrix product on per-event centred
    coordinates, ``|a|^2 + |b|^2 - 2 a.b``; pairs whose result lies within its rounding
    bound of ``t_d^2`` are decided again with the exact difference ``sum_d (a_d - b_d)^2``
    on the original coordinates, so the answer does not depend on the product's rounding
    (nor on TF32/bf16 matrix products, whose coarser rounding only widens the bound).
    """

    def __init__(self, x: Tensor, x_centred: Tensor, t_d2: float,
                 gate: "_Gate | None" = None) -> None:
        self.gate = gate
        self.x = x
        self.xc = x_centred
        self.norm2 = x_centred.square().sum(1)
        self.t_d2 = t_d2
        eps = torch.finfo(x.dtype).eps
        if x.dtype == torch.float32 and torch.get_float32_matmul_precision() != "highest":
            eps = 2.0**-7  # TF32 or bf16 products
        self.scale = 8.0 * (x.shape[1] + 4) * eps

    def __call__(self, rows: Tensor, cols: Tensor) -> Tensor:
        """bool ``[len(rows), len(cols)]`` for the hit indices ``rows`` and ``cols``."""
        na, nb = self.norm2[rows], self.norm2[cols]
        bound = na[:, None] + nb[None, :]
        d2 = torch.addmm(bound, self.xc[rows], self.xc[cols].T, alpha=-2.0)
        bound = bound.add_(self.t_d2).mul_(self.scale)
        near = d2 <= self.t_d2
        unsure = torch.nonzero((d2 - self.t_d2).abs_() <= bound)
        if unsure.numel():
            i, j = rows[unsure[:, 0]], cols[unsure[:, 1]]
            near[unsure[:, 0], unsure[:, 1]] = (
                (self.x[i] - self.x[j]).square().sum(1) <= self.t_d2)
        if self.gate is not None:
            near &= self.gate(rows[:, None], cols[None, :])
        return near


class _Gate:
    """``||p_i - p_j|| <= r_max`` in the detector positions ``p`` (exact difference form;
    index tensors broadcast against each other)."""

    def __init__(self, positions: Tensor, r_max: float) -> None:
        self.p = positions
        self.r2 = float(r_max) ** 2

    def __call__(self, i: Tensor, j: Tensor) -> Tensor:
        return (self.p[i] - self.p[j]).square().sum(-1) <= self.r2


def _greedy(near_rows: np.ndarray) -> np.ndarray:
    """Greedy choice on a candidate block: ``near_rows [W, W]`` (candidate order) ->
    indices of the points. Jumps from point to the next unclaimed candidate, so the Python
    loop runs once per point, not per candidate."""
    width = near_rows.shape[0]
    claimed = np.zeros(width, dtype=bool)
    chosen = []
    c = 0
    while c < width:
        chosen.append(c)
        claimed[c:] |= near_rows[c, c:]
        free = np.flatnonzero(~claimed[c + 1:])
        c = c + 1 + int(free[0]) if free.size else width
    return np.asarray(chosen, dtype=np.int64)


def _greedy_blocks(cand_e: Tensor, near: _Near) -> np.ndarray:
    """Greedy choice for an event too wide for one ``[W, W]`` block: blocks of unclaimed
    candidates against the event's later candidates (memory ``block * W``)."""
    device = cand_e.device
    block_elements = _block_elements(device)
    width = cand_e.shape[0]
    claimed = np.zeros(width, dtype=bool)
    is_point = np.zeros(width, dtype=bool)
    start = 0
    while start < width:
        stop = min(width, start + max(1, block_elements // (width - start)))
        block = start + np.flatnonzero(~claimed[start:stop])
        if block.size:
            rows = cand_e[torch.from_numpy(block).to(device)]
            near_np = near(rows, cand_e[start:]).cpu().numpy()
            for r, c in enumerate(block.tolist()):
                if claimed[c]:
                    continue
                is_point[c] = True
                claimed[start:] |= near_np[r]
        start = stop
    return np.flatnonzero(is_point)


def _choose_points(cand: Tensor, x: Tensor, near: _Near, starts: list[int], ends: list[int],
                   t_d2: float) -> list[np.ndarray]:
    """Condensation points of every event (hit indices on the host, greedy order).

    Events are taken in groups whose padded ``[g, W, W]`` candidate distance blocks fit
    ``_BLOCK_ELEMENTS`` (with the ``D`` coordinate differences): one device computation
    and one transfer per group, then the greedy loop per event on the host. An event too
    wide for a block alone goes through :func:`_greedy_blocks`.
    """
    device = cand.device
    block_elements = _block_elements(device)
    dim = x.shape[1] + (near.gate.p.shape[1] if near.gate is not None else 0)
    widths = [e1 - e0 for e0, e1 in zip(starts, ends)]
    points: list[np.ndarray] = [np.zeros(0, dtype=np.int64)] * len(widths)
    e = 0
    while e < len(widths):
        if widths[e] == 0:
            e += 1
            continue
        if widths[e] ** 2 * dim > block_elements:
            cand_e = cand[starts[e]:ends[e]]
            points[e] = cand_e.cpu().numpy()[_greedy_blocks(cand_e, near)]
            e += 1
            continue
        group, w_max = [], 0
        while e < len(widths) and (not group or (len(group) + 1) * max(w_max, widths[e]) ** 2
                                   * dim <= block_elements):
            if widths[e] ** 2 * dim > block_elements:
                break
            if widths[e]:
                group.append(e)
                w_max = max(w_max, widths[e])
            e += 1
        # padded candidate table [g, W] (padding repeats a real candidate, masked later)
        pos = torch.arange(w_max, device=device)
        s = torch.tensor([starts[g] for g in group], device=device)
        w = torch.tensor([widths[g] for g in group], device=device)
        idx = cand[s[:, None] + torch.minimum(pos[None, :], w[:, None] - 1)]
        xc = x[idx]  # [g, W, D]
        near_g = (xc[:, :, None, :] - xc[:, None, :, :]).square().sum(-1) <= t_d2
        if near.gate is not None:
            near_g &= near.gate(idx[:, :, None], idx[:, None, :])
        near_g = near_g.cpu().numpy()
        idx_np = idx.cpu().numpy()
        for k, g in enumerate(group):
            wg = widths[g]
            points[g] = idx_np[k, _greedy(near_g[k, :wg, :wg])]
    return points


def _assign_per_event(out: Tensor, hit_order: Tensor, hit_end: list[int],
                      points: list[np.ndarray], near: _Near) -> None:
    """:func:`_assign` event by event with matrix-product distances (``[hits_e, P_e]``
    blocks): the least arithmetic, the CPU path."""
    device = out.device
    for e, pts_np in enumerate(points):
        n_points = pts_np.shape[0]
        if n_points == 0:
            continue
        pts = torch.from_numpy(pts_np).to(device)
        rank = torch.arange(n_points, device=device)
        h0, h1 = (hit_end[e - 1] if e else 0), hit_end[e]
        step = max(1, _block_elements(device) // n_points)
        for lo in range(h0, h1, step):
            hits = hit_order[lo:min(h1, lo + step)]
            k = torch.where(near(hits, pts), rank, n_points).min(dim=1).values
            out[hits] = torch.where(k < n_points, k, -1)


def _assign(out: Tensor, x: Tensor, event: Tensor, hit_order: Tensor, points: list[np.ndarray],
            t_d2: float, nearest: bool = False, gate: _Gate | None = None) -> None:
    """``out[i]`` = rank of the first point of hit i's event within ``t_d`` (else -1), for
    all events at once: points padded to ``[B, P]``, hits in chunks of ``[rows, P, D]``.
    The GPU path: a few launches per chunk and no host synchronisation per event (it
    computes ``D`` times the differences of the per-event products). With ``nearest``,
    the rank of the nearest point within ``t_d`` (the first of equally near ones); with
    ``gate``, only points inside it count."""
    device = x.device
    dim = x.shape[1] + (gate.p.shape[1] if gate is not None else 0)
    counts = [len(p) for p in points]
    p_max = max(counts, default=0)
    if p_max == 0:
        return
    # the point table is filled on the host and sent in one transfer
    table_np = np.full((len(points), p_max), -1, dtype=np.int64)
    for e, p in enumerate(points):
        table_np[e, :len(p)] = p
    table = torch.from_numpy(table_np).to(device)
    has = (table[:, 0] >= 0)[event[hit_order]]
    hits_all = hit_order[has]
    rank = torch.arange(p_max, device=device)
    step = max(1, _block_elements(device) // (p_max * dim))
    for lo in range(0, hits_all.shape[0], step):
        hits = hits_all[lo:lo + step]
        pidx = table[event[hits]]  # [rows, P]
        valid = pidx >= 0
        d2 = (x[hits][:, None, :] - x[pidx.clamp(min=0)]).square().sum(-1)
        inside = (d2 <= t_d2) & valid
        if gate is not None:
            inside &= gate(hits[:, None], pidx.clamp(min=0))
        if nearest:
            d2 = torch.where(inside, d2, torch.inf)
            inside &= d2 == d2.min(dim=1, keepdim=True).values
        k = torch.where(inside, rank, p_max).min(dim=1).values
        out[hits] = torch.where(k < p_max, k, -1)


def condensation_clustering(beta: Tensor, x: Tensor, batch: Tensor | None = None, *,
                            t_beta: float = 0.1, t_d: float = 0.7,
                            assign: str = "first", positions: Tensor | None = None,
                            r_max: float | None = None) -> Tensor:
    """Cluster hits around condensation points (see the module docstring).

    Args:
        beta: condensation likelihood per hit.
        x: clustering coordinates per hit.
        batch: event index per hit (any integers, need not be sorted); None = one event.
        t_beta: minimal ``beta`` of a condensation point, in (0, 1) (default 0.1).
        t_d: radius of a cluster in the clustering space, > 0 (default 0.7).
        assign: ``"first"`` (default, Kieseler 2020: a hit goes to the first point in
            decreasing-``beta`` order within ``t_d``) or ``"nearest"`` (to the nearest
            point within ``t_d``); the condensation points are the same.
        positions: ``[N, P]`` detector positions per hit [cm] for the locality cut, e.g.
            :meth:`~caloreco.models.encoding.HitEncoding.projected_positions`; given
            together with ``r_max``.
        r_max: with ``positions``: a point claims a candidate or a hit only if it is also
            within ``r_max`` of it there (> 0; see the module docstring); None: no cut.

    Returns:
        int64 ``[N]`` cluster id per hit on the device of ``beta``, -1 for noise; in each
        event ids run over ``0 .. K_b - 1`` in order of decreasing ``beta`` of the
        condensation point.

    Shapes:
        beta ``[N]``, x ``[N, D]``, batch ``[N]`` -> ``[N]``.

    Raises:
        ConfigError: ``t_beta`` outside (0, 1), ``t_d <= 0``, an unknown ``assign``,
            ``r_max <= 0`` or only one of ``positions`` and ``r_max``.
        InvalidDataError: shapes or dtypes that do not match ``beta``, or non-finite
            ``positions``.
    """
    check_assign(assign)
    check_r_max(r_max)
    if (positions is None) != (r_max is None):
        raise ConfigError("positions and r_max go together: give both (locality cut) or "
                          "neither")
    if not 0.0 < t_beta < 1.0:
        raise ConfigError(f"t_beta must be in (0, 1), got {t_beta}")
    if not t_d > 0.0:
        raise ConfigError(f"t_d must be > 0, got {t_d}")
    _check(beta, x, batch)
    if positions is not None:
        _check_positions(positions, beta.shape[0])
    device = beta.device
    n = beta.shape[0]
    out = torch.full((n,), -1, dtype=torch.int64, device=device)
    if n == 0:
        return out
    beta = beta.detach()
    x = x.detach().to(device)
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    if batch is None:
        event = torch.zeros(n, dtype=torch.int64, device=device)
    else:
        _, event = torch.unique(batch.to(device=device, dtype=torch.int64), return_inverse=True)
    n_events = int(event.max()) + 1
    t_d2 = float(t_d) ** 2

    # 1. hits grouped by event; candidates in (event, -beta, index) order (stable sorts)
    hit_order = torch.sort(event, stable=True).indices
    cand = torch.nonzero(beta > t_beta).squeeze(1)
    if cand.shape[0] == 0:
        return out
    cand = cand[torch.sort(-beta[cand], stable=True).indices]
    cand = cand[torch.sort(event[cand], stable=True).indices]
    cand_end = torch.cumsum(torch.bincount(event[cand], minlength=n_events), 0).tolist()
    # coordinates centred per event, for the matrix-product distances
    count = torch.bincount(event, minlength=n_events).clamp(min=1).to(x.dtype)
    centre = x.new_zeros(n_events, x.shape[1]).index_add(0, event, x) / count[:, None]
    x_centred = x - centre[event]
    gate = None
    if positions is not None:
        gate = _Gate(positions.detach().to(device=device, dtype=torch.float64
                                          if positions.dtype == torch.float64 else torch.float32),
                     float(r_max))
    near = _Near(x, x_centred, t_d2, gate)

    # 2. each event's condensation points, in greedy order
    starts = [cand_end[e - 1] if e else 0 for e in range(n_events)]
    points = _choose_points(cand, x, near, starts, cand_end, t_d2)
    # 3. each hit -> its event's first (or nearest) point within t_d; on CUDA, and for
    # "nearest" (which needs exact distances to compare), all events at once
    if x.is_cuda or assign == "nearest":
        _assign(out, x, event, hit_order, points, t_d2, nearest=assign == "nearest", gate=gate)
    else:
        hit_end = torch.cumsum(torch.bincount(event, minlength=n_events), 0).tolist()
        _assign_per_event(out, hit_order, hit_end, points, near)
    return out


def cluster_summary(cluster_id: Any, energy: Any, x: Any, y: Any, z: Any,
                    batch: Any = None, *, beta: Any = None,
                    energy_factor: Any = None) -> dict[str, np.ndarray]:
    """Per-cluster table of predicted clusters: energy sum, energy-weighted centre, size,
    and with ``energy_factor`` (a network's energy head) the corrected energy.

    Noise hits (``cluster_id < 0``) are left out. The centre is
    ``sum_i E_i r_i / sum_i E_i``; a cluster whose energy sum is not positive gets the plain
    mean of its hits instead.

    Args:
        cluster_id: cluster id per hit (e.g. from :func:`condensation_clustering`), -1 noise.
        energy: hit energy (GeV).
        x, y, z: hit position (cm).
        batch: event index per hit; None = one event (index 0).
        beta, energy_factor: per hit, given together: ``energy_corrected`` = the factor of
            the cluster's highest-beta hit (its condensation point, first on ties) times the
            energy sum (:mod:`caloreco.losses.energy`).

    Returns:
        Arrays of K rows sorted by (event, cluster): ``event`` int64, ``cluster`` int64,
        ``energy`` float64, ``x``, ``y``, ``z`` float64, ``n_hits`` int64, and
        ``energy_corrected`` float64 with ``energy_factor``.

    Shapes:
        all inputs ``[N]`` (tensors or arrays) -> arrays ``[K]``.

    Raises:
        InvalidDataError: inputs of different lengths or not one-dimensional.
    """
    def as_np(name: str, value: Any) -> np.ndarray:
        if isinstance(value, Tensor):
            value = value.detach().cpu().numpy()
        arr = np.asarray(value)
        if arr.ndim != 1:
            raise InvalidDataError(f"{name} must be one-dimensional [N], got shape "
                                   f"{list(arr.shape)}")
        return arr

    cid = as_np("cluster_id", cluster_id).astype(np.int64)
    n = cid.shape[0]
    cols = {"energy": energy, "x": x, "y": y, "z": z}
    arrays = {}
    for name, value in cols.items():
        arrays[name] = as_np(name, value).astype(np.float64)
    ev = np.zeros(n, dtype=np.int64) if batch is None else as_np("batch", batch).astype(np.int64)
    for name, arr in {**arrays, "batch": ev}.items():
        if arr.shape[0] != n:
            raise InvalidDataError(f"{name} has {arr.shape[0]} entries but cluster_id has {n}")

    keep = cid >= 0
    pairs = np.stack([ev[keep], cid[keep]], axis=1)
    uniq, inv = np.unique(pairs, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    k = uniq.shape[0]
    e = arrays["energy"][keep]
    n_hits = np.bincount(inv, minlength=k).astype(np.int64)
    e_sum = np.bincount(inv, weights=e, minlength=k)
    weighted = e_sum > 0
    result: dict[str, np.ndarray] = {
        "event": uniq[:, 0].astype(np.int64),
        "cluster": uniq[:, 1].astype(np.int64),
        "energy": e_sum,
    }
    for name in ("x", "y", "z"):
        r = arrays[name][keep]
        mean_w = np.bincount(inv, weights=e * r, minlength=k) / np.where(weighted, e_sum, 1.0)
        mean = np.bincount(inv, weights=r, minlength=k) / np.maximum(n_hits, 1)
        result[name] = np.where(weighted, mean_w, mean)
    result["n_hits"] = n_hits
    if (beta is None) != (energy_factor is None):
        raise InvalidDataError("beta and energy_factor go together (the factor is read at "
                               "each cluster's highest-beta hit)")
    if energy_factor is not None:
        b, f = as_np("beta", beta).astype(np.float64), as_np("energy_factor", energy_factor)
        if b.shape[0] != n or f.shape[0] != n:
            raise InvalidDataError(f"beta and energy_factor need {n} entries like cluster_id, "
                                   f"got {b.shape[0]} and {f.shape[0]}")
        rows = np.flatnonzero(keep)
        order = np.lexsort((rows, -b[keep], inv))  # by cluster, beta descending, index
        first = order[np.r_[True, inv[order][1:] != inv[order][:-1]]]
        cp = np.empty(k, np.int64)
        cp[inv[first]] = rows[first]
        result["energy_corrected"] = f.astype(np.float64)[cp] * e_sum
    return result
