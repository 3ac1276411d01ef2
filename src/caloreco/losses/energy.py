"""Energy regression at the condensation points (object condensation's payload loss).

Kieseler (arXiv 2002.03605, eq. 7) trains per-object properties on every hit of the object,
weighted by :math:`\\xi_i = \\mathrm{arctanh}^2(\\beta_i)`, so that the high-beta hits - the
condensation point whose prediction is read at inference - learn them best. Here the
property is an energy-correction factor :math:`f_i` per hit, with the target of object k

.. math::
    f^*_k = \\frac{E^\\mathrm{gen}_k}{\\sum_{i \\in k} E_i}
    \\quad\\text{clipped to } [F_{min}, F_{max}],

the factor that turns the object's summed hit energy into its generated energy (sampling
fraction, e/h and leakage together). The loss is

.. math::
    L_E = \\Big\\langle \\Big\\langle
          \\frac{\\sum_{i \\in k} \\xi_i \\, ((f_i - f^*_k) / f^*_k)^2}{\\sum_{i \\in k} \\xi_i}
          \\Big\\rangle_{k \\in b} \\Big\\rangle_b ,
    \\qquad \\xi_i = \\mathrm{arctanh}^2(\\beta_i) + q_{min},

a relative squared error averaged over the objects of each event, then over events; noise
hits do not take part. :math:`\\xi` is detached (the energy target does not move beta) and
floored at ``q_min`` so that every hit of an object learns. At inference a cluster's
energy is :math:`f_{cp} \\sum_{i \\in P} E_i` with :math:`f_{cp}` the factor of its
condensation point (:func:`caloreco.clustering.condensation.cluster_summary`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from caloreco.errors import InvalidDataError

#: Range of the target factors (objects that deposit almost nothing, such as a muon that
#: leaves 1 % of its energy, would otherwise ask for factors of 100).
F_MIN, F_MAX = 0.1, 10.0
#: Largest beta used in arctanh (as in the condensation loss).
_BETA_MAX = 1.0 - 1e-4


def energy_targets(truth_cluster: np.ndarray, energy: np.ndarray,
                   generated: np.ndarray) -> np.ndarray:
    """float32 ``[N]`` target factor :math:`f^*_k` of each hit's truth cluster, 0 for noise.

    Args:
        truth_cluster: int ``[N]`` truth cluster per hit (-1 noise), indexing ``generated``.
        energy: ``[N]`` hit energies [GeV].
        generated: ``[K]`` generated energy per truth cluster [GeV].
    """
    truth = np.asarray(truth_cluster, np.int64)
    out = np.zeros(len(truth), np.float32)
    sig = truth >= 0
    if not sig.any():
        return out
    if int(truth[sig].max()) >= len(generated):
        raise InvalidDataError(f"truth cluster {int(truth[sig].max())} has no generated "
                               f"energy (the event lists {len(generated)} clusters)")
    deposited = np.bincount(truth[sig], weights=np.asarray(energy, np.float64)[sig],
                            minlength=len(generated))
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(deposited > 0, np.asarray(generated, np.float64) / deposited, 1.0)
    out[sig] = np.clip(factor, F_MIN, F_MAX)[truth[sig]]
    return out


def energy_loss(factor: Tensor, beta: Tensor, object_id: Tensor, target: Tensor,
                batch: Tensor | None = None, *, q_min: float = 0.1) -> Tensor:
    """:math:`L_E` of the module docstring (a scalar; 0 without objects).

    Shapes:
        factor, beta, target ``[N]`` (target: :func:`energy_targets`, > 0 on object hits),
        object_id int ``[N]`` (< 0 noise), batch int ``[N]`` (None: one event).
    """
    n = factor.shape[0]
    for name, t in (("beta", beta), ("object_id", object_id), ("target", target)):
        if t.shape != (n,):
            raise InvalidDataError(f"energy loss: {name} must have shape [{n}] like the "
                                   f"factors, got {list(t.shape)}")
    sig = object_id >= 0
    zero = factor.sum() * 0.0
    if not bool(sig.any()):
        return zero
    if not bool((target[sig] > 0).all()):
        raise InvalidDataError("energy loss: the target factor must be > 0 on every object "
                               "hit (energy_targets of events with generated energies)")
    event = (torch.zeros(n, dtype=torch.int64, device=factor.device) if batch is None
             else torch.unique(batch, return_inverse=True)[1])
    idx = torch.nonzero(sig).squeeze(1)
    stride = int(object_id[idx].max()) + 1
    _, obj = torch.unique(event[idx] * stride + object_id[idx], return_inverse=True)
    n_obj = int(obj.max()) + 1
    xi = (torch.arctanh(beta[idx].detach().clamp(max=_BETA_MAX)) ** 2 + q_min).to(factor.dtype)
    rel = (factor[idx] - target[idx]) / target[idx]
    num = factor.new_zeros(n_obj).index_add(0, obj, xi * rel.square())
    den = factor.new_zeros(n_obj).index_add(0, obj, xi)
    per_obj = num / den
    obj_event = torch.zeros(n_obj, dtype=torch.int64, device=factor.device)
    obj_event[obj] = event[idx]
    n_ev = int(obj_event.max()) + 1
    per_event = factor.new_zeros(n_ev).index_add(0, obj_event, per_obj)
    count = torch.bincount(obj_event, minlength=n_ev).to(factor.dtype)
    has = count > 0
    return (per_event[has] / count[has]).mean()


__all__ = ["F_MAX", "F_MIN", "energy_loss", "energy_targets"]
