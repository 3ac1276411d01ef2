"""k nearest neighbours within events: the (non-differentiable) neighbour table of GravNet.

:func:`knn` returns, for every row of ``x``, the indices of its ``k`` nearest rows of the
same event (same ``batch`` value), nearest first, and a validity mask:

* **The point itself is included.** It lies at distance 0, so it is normally column 0
  (as in PyG's ``knn``/``GravNetConv``); only if more than ``k`` rows share exactly the
  same coordinates may another of them take its place.
* **Events with fewer than k points** (n < k): columns ``n .. k-1`` are padding, filled
  with the row's own index and ``False`` in the mask, so the table stays rectangular and
  every index is valid for gathering.
* Indices are global row numbers of ``x`` (int64); ``batch`` need not be sorted.
* The indices carry no gradient: differentiable quantities (distances, weights) are
  recomputed from the rows they point to, in torch.

Backends, chosen by the device of ``x`` (both exact up to floating-point ties):

* CPU: :class:`scipy.spatial.cKDTree`, one tree per event, queried with one worker.
  O(N log N) per event; scipy is already a dependency of caloreco (a wheel on every
  platform), whereas ``faiss-cpu`` would be a new dependency for no gain at these sizes
  (10^4 points in a 4-d space), and ``torch-cluster``/``pyg-lib`` have no usable wheels
  (see ``shared/dependency-notes.md``).
* CUDA: :func:`knn_cdist`, brute force ``torch.cdist`` + ``topk`` per event on blocks of
  ``chunk`` queries, so that at most ``chunk x n_event`` distances exist at once (4096 x
  20k floats = 328 MB) rather than a dense n x n matrix. It runs on CPU as well (used by
  the tests). ``cdist``'s fast matrix-product form ``|a|^2 + |b|^2 - 2 a.b`` loses the
  small distances of close hits to cancellation and reorders neighbours (seen as GravNet
  outputs differing between CPU and CUDA), while its exact difference form is ~10x slower
  on a GPU; so the matrix-product form picks ``k +`` :data:`RERANK_MARGIN` candidates and
  exact distances from coordinate differences rank them. Exact ties may still come out in
  either order.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import Tensor

from caloreco.errors import ConfigError, InvalidDataError

#: Extra candidates taken by the matrix-product distances before exact re-ranking.
RERANK_MARGIN = 16
#: Queries per ``cdist`` block in :func:`knn_cdist`.
DEFAULT_CHUNK = 4096


def _check(x: Tensor, k: int, batch: Tensor | None) -> Tensor:
    if x.dim() != 2:
        raise InvalidDataError(f"knn expects points x of shape [N, S], got {tuple(x.shape)}")
    if k < 1:
        raise ConfigError(f"knn needs k >= 1, got k={k}")
    if not bool(torch.isfinite(x).all()):
        raise InvalidDataError("knn got non-finite coordinates (NaN or inf) in x")
    if batch is None:
        return torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    if batch.shape != (x.shape[0],):
        raise InvalidDataError(f"knn expects batch of shape [{x.shape[0]}] (one event index "
                               f"per point), got {tuple(batch.shape)}")
    return batch.long()


def _events(batch: Tensor) -> tuple[Tensor, list[int]]:
    """Row order grouping the events (stable) and the size of each non-empty event."""
    order = torch.argsort(batch, stable=True)
    counts = torch.unique_consecutive(batch[order], return_counts=True)[1]
    return order, counts.tolist()


def _pad(local: Tensor, n: int, k: int) -> tuple[Tensor, Tensor]:
    """Pad a ``[n, min(n, k)]`` table of local indices to ``[n, k]`` with the row itself."""
    mask = torch.ones(n, k, dtype=torch.bool, device=local.device)
    if local.shape[1] == k:
        return local, mask
    self_idx = torch.arange(n, device=local.device)[:, None].expand(n, k - local.shape[1])
    mask[:, local.shape[1]:] = False
    return torch.cat([local, self_idx], dim=1), mask


def knn(x: Tensor, k: int, batch: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The ``k`` nearest neighbours of every point within its event, self included.

    CPU tensors use one :class:`scipy.spatial.cKDTree` per event, CUDA tensors
    :func:`knn_cdist` (see the module docstring).

    Args:
        x: point coordinates (any float dtype; detached).
        k: neighbours per point (>= 1), the point itself counted.
        batch: event index of every point (default: one event).

    Returns:
        ``(index, mask)``: global row indices, nearest first, and ``False`` where an event
        has fewer than ``k`` points (those columns hold the row's own index).

    Shapes:
        ``x [N, S]``, ``batch [N]`` -> ``index [N, k]`` int64, ``mask [N, k]`` bool.
    """
    batch = _check(x, k, batch)
    if x.device.type != "cpu":
        return knn_cdist(x, k, batch)
    n_all = x.shape[0]
    index = torch.empty(n_all, k, dtype=torch.long)
    mask = torch.empty(n_all, k, dtype=torch.bool)
    if n_all == 0:
        return index, mask
    order, counts = _events(batch)
    xs = x.detach().to(torch.float64).numpy()
    start = 0
    for n in counts:
        rows = order[start:start + n]
        start += n
        kk = min(n, k)
        _, nb = cKDTree(xs[rows.numpy()]).query(xs[rows.numpy()], k=kk, workers=1)
        local, m = _pad(torch.from_numpy(np.asarray(nb, dtype=np.int64).reshape(n, kk)), n, k)
        index[rows] = rows[local]
        mask[rows] = m
    return index, mask


@torch.no_grad()
def knn_cdist(x: Tensor, k: int, batch: Tensor | None = None, *,
              chunk: int = DEFAULT_CHUNK) -> tuple[Tensor, Tensor]:
    """Brute-force :func:`knn` with ``torch.cdist`` + ``topk``, ``chunk`` queries at a time.

    The CUDA backend of :func:`knn`; works on any device. Memory per step: ``chunk x n``
    distances, ``n`` the size of the event.

    Args:
        x: point coordinates (detached).
        k: neighbours per point (>= 1), the point itself counted.
        batch: event index of every point (default: one event).
        chunk: queries per distance block (default :data:`DEFAULT_CHUNK`).

    Returns / Shapes: as :func:`knn`, on the device of ``x``.
    """
    batch = _check(x, k, batch)
    if chunk < 1:
        raise ConfigError(f"knn_cdist needs chunk >= 1, got chunk={chunk}")
    n_all, dev = x.shape[0], x.device
    index = torch.empty(n_all, k, dtype=torch.long, device=dev)
    mask = torch.empty(n_all, k, dtype=torch.bool, device=dev)
    if n_all == 0:
        return index, mask
    order, counts = _events(batch)
    x = x.detach()
    start = 0
    for n in counts:
        rows = order[start:start + n]
        start += n
        xe = x[rows]
        kk = min(n, k)
        local = torch.empty(n, kk, dtype=torch.long, device=dev)
        kc = min(n, k + RERANK_MARGIN)
        for q in range(0, n, chunk):
            xq = xe[q:q + chunk]
            # candidates by the fast matrix-product distances, then exact re-ranking
            cand = torch.topk(torch.cdist(xq, xe), kc, dim=1, largest=False).indices
            d2 = (xe[cand] - xq[:, None, :]).square().sum(-1)
            best = torch.topk(d2, kk, dim=1, largest=False, sorted=True).indices
            local[q:q + chunk] = torch.gather(cand, 1, best)
        local, m = _pad(local, n, k)
        index[rows] = rows[local]
        mask[rows] = m
    return index, mask
