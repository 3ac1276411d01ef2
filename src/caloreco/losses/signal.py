"""Signal/noise classification of hits: the loss of a network's signal head.

Condensation clustering leaves hits far from every condensation point unassigned, and beta
cannot tell the signal hits among them from noise (both sit at beta ~ 0). A separate head
predicts :math:`s_i = P(\\text{hit } i \\text{ belongs to a shower})`, trained by the binary
cross-entropy against the truth (``object_id >= 0``), averaged over the hits of each event
and then over events (each event counts alike, like the condensation loss):

.. math::
    L_S = \\Big\\langle -\\big\\langle y_i \\log s_i + (1 - y_i) \\log(1 - s_i)
          \\big\\rangle_{i \\in b} \\Big\\rangle_b ,\\qquad y_i = [\\mathrm{object}_i \\ge 0].

The clustering attaches a left-over hit only when :math:`s_i \\ge t_s`
(:func:`caloreco.clustering.attach.attach_leftovers`), so that fringes of showers are
recovered while noise near a shower stays noise: the semantic (noise vs signal) part of
the panoptic result, which mIoU scores.
"""

from __future__ import annotations

import torch
from torch import Tensor

from caloreco.errors import InvalidDataError

#: Probabilities are clipped to [EPS, 1 - EPS] inside the logarithms.
EPS = 1e-6


def signal_loss(signal: Tensor, object_id: Tensor, batch: Tensor | None = None) -> Tensor:
    """:math:`L_S` of the module docstring (a scalar; 0 without hits).

    Shapes:
        signal float ``[N]`` in (0, 1), object_id int ``[N]`` (< 0 noise), batch int ``[N]``
        (event of each hit; None: one event).
    """
    n = signal.shape[0]
    if signal.dim() != 1:
        raise InvalidDataError(f"signal loss: signal must have shape [N], got {list(signal.shape)}")
    if object_id.shape != (n,):
        raise InvalidDataError(f"signal loss: object_id must have shape [{n}] like the "
                               f"signal, got {list(object_id.shape)}")
    if batch is not None and batch.shape != (n,):
        raise InvalidDataError(f"signal loss: batch must have shape [{n}], got "
                               f"{list(batch.shape)}")
    if n == 0:
        return signal.sum() * 0.0
    s = signal.float().clamp(EPS, 1.0 - EPS)
    y = (object_id >= 0).to(s.dtype)
    per_hit = -(y * torch.log(s) + (1.0 - y) * torch.log1p(-s))
    if batch is None:
        return per_hit.mean()
    event = torch.unique(batch, return_inverse=True)[1]
    n_events = int(event.max()) + 1
    total = torch.zeros(n_events, dtype=s.dtype, device=s.device).index_add_(0, event, per_hit)
    count = torch.bincount(event, minlength=n_events).to(s.dtype)
    return (total / count).mean()
