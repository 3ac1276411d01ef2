"""Neighbour contrastive loss: the clustering space of hits that are neighbours in the detector.

The object condensation loss acts through each shower's condensation point: a hit is
pulled towards its own point and pushed from the points of other showers, in proportion to
the charges ``q_i q_alpha`` (small for the low-beta hits of a shower's fringe). Two
neighbouring showers whose hits interleave in the detector can therefore keep overlapping
domains in the clustering space at little cost, and the inference merges them. This term
acts on the hit pairs that decide a merge: each signal hit ``i`` and its ``k`` nearest
signal hits ``j`` of the same event in the detector ``positions`` (not in the learned
space; the pairs are fixed, the distances carry the gradient). With
``d_ij = ||x_i - x_j||`` in the clustering space and margin ``m``, the contrastive loss of
Hadsell, Chopra and LeCun (CVPR 2006, "Dimensionality reduction by learning an invariant
mapping") splits into

.. math::
    L^{same}_e = \\langle d_{ij}^2 \\rangle_{(i,j) \\in S_e}, \\qquad
    L^{other}_e = \\langle \\max(0, m - d_{ij})^2 \\rangle_{(i,j) \\in O_e}

with ``S_e`` / ``O_e`` the neighbour pairs of event ``e`` whose hits belong to the same /
to different truth objects; each is averaged over the events that have such pairs. Noise
hits take no part (their place is decided by ``beta`` and the signal head). It is a
supervised metric-learning objective in the spirit of the contrastive metric learning of
Marriott-Clarke et al. (arXiv 2603.23356), which separates overlapping showers better than
object condensation with the same backbone; here it is an optional term added to the
condensation loss (``caloreco train --loss-weight contrast=W``), so that the condensation
inference still applies.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from caloreco.errors import ConfigError, InvalidDataError
from caloreco.models.knn import knn

#: names of the two terms in the returned dict
TERMS = ("contrast_same", "contrast_other")


def check_contrast(k: int, margin: float) -> None:
    """Raise :class:`ConfigError` for a bad number of neighbours or margin."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"the contrastive term needs k >= 1 neighbours per hit, got {k!r}")
    if not (margin > 0 and math.isfinite(margin)):
        raise ConfigError(f"the contrastive margin must be a finite number > 0, got {margin}")


def _event_mean(values: Tensor, event: Tensor, n_events: int) -> Tensor:
    """Mean over the events with entries of each event's mean of ``values``."""
    if values.numel() == 0:
        return values.sum() * 0.0
    total = torch.zeros(n_events, dtype=values.dtype, device=values.device)
    total = total.index_add(0, event, values)
    count = torch.bincount(event, minlength=n_events)
    has = count > 0
    return (total[has] / count[has].to(values.dtype)).mean()


def neighbour_pairs(positions: Tensor, object_id: Tensor, batch: Tensor | None, k: int,
                    noise_id: int = -1) -> tuple[Tensor, Tensor]:
    """The pairs ``(i, j)`` of the module docstring: each signal hit and its ``k`` nearest
    signal hits of its event in ``positions`` (fewer where the event has fewer), without
    the hit itself. Global row indices, int64, on the device of ``positions``."""
    sig = torch.nonzero(object_id > noise_id).squeeze(1)
    empty = torch.zeros(0, dtype=torch.long, device=positions.device)
    if sig.numel() < 2:
        return empty, empty
    sub_batch = None if batch is None else batch[sig]
    index, mask = knn(positions[sig].detach().float(), k + 1, sub_batch)
    rows = torch.arange(sig.numel(), device=index.device).unsqueeze(1).expand_as(index)
    keep = mask & (index != rows)
    return sig[rows[keep]], sig[index[keep]]


def contrastive_loss(x: Tensor, object_id: Tensor, positions: Tensor,
                     batch: Tensor | None = None, *, k: int = 16, margin: float = 1.0,
                     noise_id: int = -1) -> dict[str, Tensor]:
    """``contrast_same`` (:math:`L^{same}`) and ``contrast_other`` (:math:`L^{other}`) of
    the module docstring; each is 0 (with a gradient path) where no event has such pairs.

    Args:
        x: clustering coordinates.
        object_id: truth object of each hit (``<= noise_id``: noise).
        positions: detector positions that define the neighbours (e.g. the projected
            positions of :meth:`caloreco.models.encoding.HitEncoding.projected_positions`).
        batch: event of each hit (None: one event).
        k: neighbours per signal hit (>= 1).
        margin: ``m`` (> 0), in clustering-space units.

    Shapes:
        x ``[N, D]``, object_id ``[N]`` int, positions ``[N, P]``, batch ``[N]`` int.
    """
    check_contrast(k, margin)
    if x.dim() != 2:
        raise InvalidDataError(f"contrastive loss: x must have shape [N, D], got {list(x.shape)}")
    n = x.shape[0]
    for name, t in (("object_id", object_id), ("batch", batch)):
        if t is not None and t.shape != (n,):
            raise InvalidDataError(f"contrastive loss: {name} must have shape [{n}], got "
                                   f"{list(t.shape)}")
    if positions.dim() != 2 or positions.shape[0] != n:
        raise InvalidDataError(f"contrastive loss: positions must have shape [{n}, P], got "
                               f"{list(positions.shape)}")
    i, j = neighbour_pairs(positions, object_id, batch, k, noise_id)
    event = (torch.zeros_like(i) if batch is None
             else torch.unique(batch, return_inverse=True)[1][i])
    n_events = 1 if batch is None or n == 0 else int(torch.unique(batch).numel())
    d2 = (x[i] - x[j]).square().sum(1)
    same = object_id[i] == object_id[j]
    # sqrt has an infinite gradient at 0: a clamp keeps coincident different-object pairs finite
    d_other = d2[~same].clamp_min(1e-12).sqrt()
    zero = x.sum() * 0.0
    return {"contrast_same": _event_mean(d2[same], event[same], n_events) + zero,
            "contrast_other": _event_mean((margin - d_other).clamp_min(0).square(),
                                          event[~same], n_events) + zero}
