"""Attachment of left-over hits: unclustered hits join the cluster of a nearby clustered hit.

Condensation clustering leaves every hit farther than ``t_d`` (in the clustering space)
from all condensation points unassigned. Many of those are the low-energy fringes of real
showers: with the shipped model ~13 % of the signal hits, against 41 % of all hits being
noise. Growing each cluster into its detector neighbourhood recovers them, as the
topological clustering of particle flow grows clusters over adjacent cells:

    pass k:  for every unassigned hit i, j* = argmin_{j assigned} ||p_i - p_j||  (same event),
             cluster(i) = cluster(j*)  if ||p_i - p_j*|| <= R,

with ``p`` the hits' detector positions [cm] (3-d, not projected) and ties going to the
lowest hit index; each of ``passes`` passes sees the hits attached by the previous ones,
so a cluster grows by at most ``passes * R``. Noise hits within ``R`` of a shower are
attached too: the radius trades recovered shower fringes against swallowed noise (chosen on
validation events with ``benchmarks/select_thresholds.py``). A network with a signal head
(:mod:`caloreco.losses.signal`) removes most of that trade-off: with ``candidates`` (its
signal probability at least t_s) only the hits it calls signal are attached, and the
others neither join a cluster nor pass one on.

Implementation, exact and without a dense grid, on CPU and CUDA: assigned hits are sorted
by the key of their cube of side ``R``; each unassigned hit looks up the 27 cubes around
its own with ``searchsorted`` (every hit within ``R`` lies in one of them), the candidate
pairs are expanded from those ranges, and the nearest within ``R`` is a segmented minimum.
The search runs coarse-to-fine: first in cubes of side ``s = R / 3`` (27 times fewer
candidate pairs); a hit that finds an assigned hit within ``s`` there is done, since every
hit at least as close lies in those 27 cubes (ties included), and only the others search
the cubes of side ``R``. After the first pass only the hits attached by the previous pass
are searched: a hit still unassigned had no assigned hit within ``R`` before that pass, so
every assigned hit now within ``R`` of it (the nearest among them included) was attached by
it. Later passes thus cost in proportion to the hits they can still reach, not to all
clustered hits.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from caloreco.errors import ConfigError, InvalidDataError
from caloreco.sparse.coords import BATCH_LIMIT, SPATIAL_LIMIT, pack
from caloreco.sparse.kernel_map import kernel_offsets

#: Candidate pairs expanded at once (memory ~ 40 bytes each).
_PAIR_CHUNK = 1 << 23
#: Unassigned hits searched at once (their cube lookups: ~16 bytes x 27 each).
_QUERY_BLOCK = 1 << 16
#: Finer stages of the search, as divisors of R: cubes of side R / 3 first.
_FINE = (3,)


def check_attach(radius: float | None, passes: int) -> float | None:
    """Validate the attachment settings; returns the radius (None: no attachment)."""
    if radius is None:
        return None
    if not (isinstance(radius, (int, float)) and math.isfinite(radius) and radius > 0):
        raise ConfigError(f"attach radius must be a finite number of cm > 0 (or none), got {radius!r}")
    if not (isinstance(passes, int) and passes >= 1):
        raise ConfigError(f"attach passes must be an integer >= 1, got {passes!r}")
    return float(radius)


def check_t_signal(t_signal: float | None) -> float | None:
    """Validate the signal threshold of the attachment (None: every left-over hit)."""
    if t_signal is None:
        return None
    if not (isinstance(t_signal, (int, float)) and 0.0 <= t_signal <= 1.0):
        raise ConfigError(f"t_signal must be a probability in [0, 1] (or none), got {t_signal!r}")
    return float(t_signal)


def attach_leftovers(cluster_id: Tensor, xyz: Tensor, batch: Tensor | None, *,
                     radius: float, passes: int = 1,
                     candidates: Tensor | None = None) -> Tensor:
    """Give unassigned hits (``cluster_id < 0``) the cluster of the nearest assigned hit of
    their event within ``radius`` [cm] in ``xyz``, ``passes`` times (module docstring);
    with ``candidates``, only the unassigned hits where it is True.

    Shapes:
        cluster_id int64 ``[N]``, xyz float ``[N, 3]``, batch ``[N]`` (event of each hit,
        any integers; None = one event), candidates bool ``[N]`` (None: all) -> int64
        ``[N]`` on the device of ``cluster_id``.

    Raises:
        ConfigError: radius not > 0 or passes < 1.
        InvalidDataError: mismatched shapes or non-finite positions.
    """
    check_attach(radius, passes)
    n = cluster_id.shape[0]
    if cluster_id.dim() != 1:
        raise InvalidDataError(f"cluster_id must have shape [N], got {tuple(cluster_id.shape)}")
    if xyz.shape != (n, 3):
        raise InvalidDataError(f"attach positions must have shape [{n}, 3] (x, y, z per hit), "
                               f"got {tuple(xyz.shape)}")
    if batch is not None and batch.shape != (n,):
        raise InvalidDataError(f"batch must have shape [{n}], got {tuple(batch.shape)}")
    if candidates is not None and (candidates.shape != (n,) or candidates.dtype != torch.bool):
        raise InvalidDataError(f"attach candidates must be a bool mask of shape [{n}], got "
                               f"{candidates.dtype} {tuple(candidates.shape)}")
    device = cluster_id.device
    out = cluster_id.clone()
    if n == 0:
        return out
    xyz = xyz.detach().to(device=device, dtype=torch.float64)
    if not bool(torch.isfinite(xyz).all()):
        raise InvalidDataError("attach positions hold non-finite values")
    event = (torch.zeros(n, dtype=torch.int64, device=device) if batch is None else
             torch.unique(batch.to(device=device, dtype=torch.int64), return_inverse=True)[1])
    if int(event.max()) >= BATCH_LIMIT:
        raise InvalidDataError(f"at most {BATCH_LIMIT} events per call, got {int(event.max()) + 1}")
    # a coarse-to-fine search (module docstring): cube sides R / _FINE, then R
    sides, stage_keys = [], []
    for side in [float(radius) / f for f in _FINE] + [float(radius)]:
        cell = torch.floor((xyz - xyz.min(0).values) / side).long() + 1  # >= 1: room for -1
        if int(cell.max()) + 1 >= SPATIAL_LIMIT:
            if side < radius:
                continue  # a finer stage whose cubes do not fit in the key is skipped
            raise InvalidDataError(f"the hits span more than {SPATIAL_LIMIT - 2} cubes of "
                                   f"{radius} cm per axis; use a larger attach radius")
        sides.append(side)
        stage_keys.append(pack(torch.cat([event[:, None], cell], 1)))
    offs = kernel_offsets(3, device)  # the 27 neighbouring cubes
    dk = (offs[:, 0] << 32) + (offs[:, 1] << 16) + offs[:, 2]
    # the hits a pass searches: every assigned hit in the first pass; in a later pass only
    # those attached by the previous one (module docstring)
    seeds = torch.nonzero(out >= 0).squeeze(1)
    for _ in range(passes):
        todo = torch.nonzero(out < 0 if candidates is None
                             else (out < 0) & candidates.to(device)).squeeze(1)
        if seeds.numel() == 0 or todo.numel() == 0:
            break
        best_j = torch.full_like(todo, n)
        open_rows = torch.arange(todo.numel(), device=device)  # not resolved yet
        for side, keys in zip(sides, stage_keys):
            akeys, order = torch.sort(keys[seeds])
            a_sorted = seeds[order]
            rows = todo[open_rows]
            found = torch.cat([_nearest(rows[b:b + _QUERY_BLOCK], keys, xyz, akeys, a_sorted,
                                        dk, n, side * side)
                               for b in range(0, rows.numel(), _QUERY_BLOCK)])
            ok = found < n  # within one side: every closer or equally close seed was seen
            best_j[open_rows[ok]] = found[ok]
            open_rows = open_rows[~ok]
            if open_rows.numel() == 0:
                break
        hit = best_j < n
        out[todo[hit]] = out[best_j[hit]]
        seeds = todo[hit]
    return out


def _nearest(todo: Tensor, keys: Tensor, xyz: Tensor, akeys: Tensor, a_sorted: Tensor,
             dk: Tensor, n: int, r2: float) -> Tensor:
    """For each hit of ``todo``, the nearest hit of ``a_sorted`` (cube keys ``akeys``,
    sorted) within ``sqrt(r2)``, the lowest index on exact ties; ``n`` where none is."""
    device = todo.device
    n_off = dk.shape[0]
    q = (keys[todo][:, None] + dk[None, :]).reshape(-1)  # [T * 27]
    lo = torch.searchsorted(akeys, q)
    cnt = torch.searchsorted(akeys, q, right=True) - lo
    best_d2 = torch.full((todo.numel(),), math.inf, dtype=torch.float64, device=device)
    best_j = torch.full((todo.numel(),), n, dtype=torch.int64, device=device)
    for s, e in _chunks(cnt):
        c = cnt[s:e]
        slot = torch.repeat_interleave(torch.arange(s, e, device=device), c)
        if slot.numel() == 0:
            continue
        first = torch.cumsum(c, 0) - c  # start of each slot's run in the expansion
        within = torch.arange(slot.numel(), device=device) - torch.repeat_interleave(first, c)
        j = a_sorted[lo[slot] + within]  # candidate assigned hit
        t = slot // n_off  # row in todo
        d2 = (xyz[todo[t]] - xyz[j]).square().sum(1)
        ok = d2 <= r2
        t, j, d2 = t[ok], j[ok], d2[ok]
        best_d2.scatter_reduce_(0, t, d2, "amin")
        best_j.scatter_reduce_(0, t, torch.where(d2 <= best_d2[t], j, n), "amin")
    # a later chunk may have lowered best_d2 after an earlier one chose its index:
    # recompute the index among the pairs at the final minimum (exact ties -> lowest)
    return _lowest_at_min(best_j, best_d2, todo, xyz, cnt, lo, a_sorted, n_off, n, r2)


def _chunks(cnt: Tensor) -> list[tuple[int, int]]:
    """Slot ranges whose expanded candidate pairs number at most :data:`_PAIR_CHUNK`."""
    total = torch.cumsum(cnt, 0)
    if total.numel() == 0 or int(total[-1]) <= _PAIR_CHUNK:
        return [(0, cnt.numel())]
    bounds = torch.searchsorted(total, torch.arange(_PAIR_CHUNK, int(total[-1]), _PAIR_CHUNK,
                                                    device=cnt.device), right=True).tolist()
    edges = sorted(set([0] + [max(1, b) for b in bounds] + [cnt.numel()]))
    return list(zip(edges[:-1], edges[1:]))


def _lowest_at_min(best_j: Tensor, best_d2: Tensor, todo: Tensor, xyz: Tensor, cnt: Tensor,
                   lo: Tensor, a_sorted: Tensor, n_off: int, n: int, r2: float) -> Tensor:
    """Among the candidates of each query at exactly its minimal distance, the lowest index."""
    if len(_chunks(cnt)) == 1:
        return best_j  # one chunk: the minimum was final when the indices were chosen
    device = best_j.device
    out = torch.full_like(best_j, n)
    for s, e in _chunks(cnt):
        c = cnt[s:e]
        slot = torch.repeat_interleave(torch.arange(s, e, device=device), c)
        if slot.numel() == 0:
            continue
        first = torch.cumsum(c, 0) - c
        within = torch.arange(slot.numel(), device=device) - torch.repeat_interleave(first, c)
        j = a_sorted[lo[slot] + within]
        t = slot // n_off
        d2 = (xyz[todo[t]] - xyz[j]).square().sum(1)
        at_min = (d2 <= r2) & (d2 == best_d2[t])
        out.scatter_reduce_(0, t[at_min], j[at_min], "amin")
    return out
