"""Object condensation loss (Kieseler 2020, https://arxiv.org/abs/2002.03605).

Every hit ``i`` predicts a condensation likelihood ``beta_i`` in (0, 1) and coordinates
``x_i`` in a learned clustering space. Its charge is

.. math::

    q_i = \\operatorname{arctanh}^2(\\beta_i) + q_{min}

(``beta`` clamped to ``<= 1 - 1e-4`` first, so that ``q`` stays finite). The condensation
point ``alpha_k`` of object ``k`` is its hit of highest ``beta`` (the first hit in input order
on ties, as ``torch.argmax``). With ``M_k`` the hits of object ``k``, ``E_k`` all hits of the
event of ``k`` and ``w_i`` the hit weights (1 without weights), each object has

.. math::

    V^{att}_k = \\frac{1}{|M_k|} \\sum_{i \\in M_k} w_i q_i q_{\\alpha_k}
                \\lVert x_i - x_{\\alpha_k} \\rVert^2

    V^{rep}_k = \\frac{1}{|E_k \\setminus M_k|} \\sum_{i \\in E_k \\setminus M_k}
                w_i q_i q_{\\alpha_k} \\max(0, 1 - \\lVert x_i - x_{\\alpha_k} \\rVert)

    L^{coward}_k = 1 - \\beta_{\\alpha_k}

(``E_k \\ M_k`` holds the other objects' hits *and* the noise hits of the same event; hits
of other events never interact), and the noise hits ``n`` of an event give
``L^{noise} = s_b mean_n beta_n``. Per event (``norm="event"``, the default) the object
terms are averaged over the event's objects; each term is then averaged over the events
that have it (events without objects give only a noise term, events without noise no noise
term). ``norm="object"`` instead averages the object terms over all objects of the batch
and the noise term over all noise hits of the batch.

``repulsion="groups"`` changes only the normalisation of ``V^rep``: the hits of
``E_k \\ M_k`` are grouped by object, the event's noise hits forming one more group, and
each group ``g`` counts by its mean,

.. math::

    V^{rep}_k = \\frac{1}{|G_k|} \\sum_{g \\in G_k} \\frac{1}{|g|} \\sum_{i \\in g}
                w_i q_i q_{\\alpha_k} \\max(0, 1 - \\lVert x_i - x_{\\alpha_k} \\rVert)

(``G_k``: the groups of ``k``'s event other than ``k``). With the default ``"hits"`` a
neighbouring object repels ``k`` in proportion to its share of the event's hits, so a small
shower next to a large one is barely pushed away (~50 of ~10k hits) and condenses into
it; with ``"groups"`` every neighbour counts alike, as the attraction (a mean over the
object's own hits) does.

``positions`` and ``r_local`` (``repulsion="hits"`` only) restrict the repulsion to the
detector neighbourhood of each condensation point: ``E_k \\ M_k`` becomes the hits of
``E_k \\ M_k`` within ``r_local`` of ``alpha_k`` in ``positions`` (e.g. the projected
positions of :meth:`caloreco.models.encoding.HitEncoding.projected_positions`), for the sum
and for its normalisation. It is the training-side counterpart of the locality cut of the
inference (:func:`caloreco.clustering.condensation.condensation_clustering`): showers
farther apart than the cut never share a cluster, so the repulsion is spent on the
neighbours that can, instead of being diluted over the whole event (~10k hits).

``pair_margin`` adds a fifth term aimed at merges, the **condensation-point repulsion**:
with ``P_e`` the ordered pairs ``(k, l)``, ``k != l``, of objects of event ``e`` (with
``positions``/``r_local``: only the pairs whose condensation points lie within ``r_local`` of
each other in ``positions``) and margin ``m``,

.. math::

    V^{pair}_e = \\frac{1}{|P_e|} \\sum_{(k, l) \\in P_e}
                 \\max(0, m - \\lVert x_{\\alpha_k} - x_{\\alpha_l} \\rVert)

averaged over the events that have pairs (``norm="event"``) or over all pairs of the batch
(``norm="object"``). In ``V^rep`` the point of a neighbour is one of the ~10^2-10^4 hits of
``E_k \\ M_k``, so two neighbouring showers whose points sit together in the clustering
space cost almost nothing, yet the inference then suppresses one point under the other
and the two showers come out as one cluster (a merge). ``V^pair`` counts each such pair
alike. It has no charge factor, so that it moves the points apart rather than lowering
their ``beta``; it is 0 for an event with fewer than two objects.

For one event with ``weights=None`` this reproduces
``object_condensation.pytorch.losses.condensation_loss`` (package ``object-condensation``
1.1.0, used by the GNN tracking of Lieret & DeZoort, arXiv 2309.16754): per-object means
over the object's hits (attractive) and over all other hits of the event (repulsive), then
a mean over objects. Its per-hit ``weights`` enter the same way here: ``w_i`` multiplies the
potential of hit ``i`` (the hit, not the condensation point) while the normalisation
stays the hit count, so weights scale the terms rather than re-weighting a mean. The
package leaves the coward and noise terms unweighted; ``weight_beta=True`` weights the
coward mean over objects by the object weight ``W_k = mean_{i in M_k} w_i`` (for weights
that depend only on the hit's truth cluster, e.g. its energy, ``W_k`` is that weight).
The noise term is never weighted.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from caloreco.errors import ConfigError, InvalidDataError
from caloreco.utils.checks import check_beta_x

#: ``beta`` is clamped to at most this before ``arctanh`` (``q <= arctanh(1 - 1e-4)^2 +
#: q_min ~ 24.4 + q_min``), so that a saturated sigmoid gives finite charges and gradients.
BETA_MAX = 1.0 - 1e-4
#: guard of the per-object normalisations, as in ``object-condensation`` (an object that
#: fills its whole event has no repulsive hits and gets ``V^rep = 0 / 1e-9 = 0``).
_EPS = 1e-9
_NORMS = ("event", "object")
#: normalisations of the repulsive potential (see the module docstring)
REPULSIONS = ("hits", "groups")
TERMS = ("attractive", "repulsive", "coward", "noise")
#: the optional condensation-point repulsion (``pair_margin``; see the module docstring)
PAIR_TERM = "pair"


def _check_options(q_min: float, s_b: float, norm: str, repulsion: str = "hits") -> None:
    """Raise :class:`ConfigError` for a bad ``q_min``, ``s_b``, ``norm`` or ``repulsion``."""
    if repulsion not in REPULSIONS:
        raise ConfigError(f"repulsion must be one of {list(REPULSIONS)}, got {repulsion!r}")
    if not q_min > 0:
        raise ConfigError(f"q_min must be > 0, got {q_min}")
    if not s_b >= 0:
        raise ConfigError(f"s_b must be >= 0, got {s_b}")
    if norm not in _NORMS:
        raise ConfigError(f"norm must be one of {list(_NORMS)}, got {norm!r}")


def _check_local(positions: Tensor | None, r_local: float | None, repulsion: str) -> None:
    """Raise :class:`ConfigError` for an inconsistent local-repulsion setting."""
    if (positions is None) != (r_local is None):
        raise ConfigError("positions and r_local go together: give both (local repulsion) or "
                          "neither")
    if r_local is not None:
        if not (r_local > 0 and r_local < float("inf")):
            raise ConfigError(f"r_local must be a finite number > 0 [cm], got {r_local}")
        if repulsion != "hits":
            raise ConfigError(f"r_local (local repulsion) needs repulsion='hits', got "
                              f"{repulsion!r}")


def _check_pair_margin(pair_margin: float | None) -> None:
    """Raise :class:`ConfigError` for a bad margin of the condensation-point repulsion."""
    if pair_margin is not None and not (pair_margin > 0 and pair_margin < float("inf")):
        raise ConfigError(f"pair_margin must be a finite number > 0, got {pair_margin}")


def _check_inputs(beta: Tensor, x: Tensor, object_id: Tensor, batch: Tensor | None,
                  weights: Tensor | None) -> None:
    """Raise :class:`InvalidDataError` for inconsistent shapes or dtypes."""
    n = check_beta_x(beta, x)
    if not beta.is_floating_point() or not x.is_floating_point():
        raise InvalidDataError(f"beta and x must be floating point, got {beta.dtype} and "
                               f"{x.dtype}")
    named = {"object_id": object_id, "batch": batch, "weights": weights}
    for name, t in named.items():
        if t is not None and (t.dim() != 1 or t.shape[0] != n):
            raise InvalidDataError(f"{name} must have shape [N] with N = len(beta) = {n}, "
                                   f"got {list(t.shape)}")
    for name in ("object_id", "batch"):
        t = named[name]
        if t is not None and (t.is_floating_point() or t.is_complex() or t.dtype == torch.bool):
            raise InvalidDataError(f"{name} must be an integer tensor, got {t.dtype}")


def _per_event_mean(values: Tensor, event: Tensor, n_events: int,
                    weight: Tensor | None = None) -> Tensor:
    """Mean over the events that have entries of the per-event (weighted) mean of ``values``."""
    w = torch.ones_like(values) if weight is None else weight.to(values.dtype)
    num = values.new_zeros(n_events).index_add(0, event, values * w)
    den = values.new_zeros(n_events).index_add(0, event, w)
    present = torch.zeros(n_events, dtype=torch.bool, device=values.device)
    present[event] = True
    return (num[present] / den[present].clamp(min=torch.finfo(den.dtype).tiny)).mean()


def condensation_loss(beta: Tensor, x: Tensor, object_id: Tensor, batch: Tensor | None = None,
                      *, weights: Tensor | None = None, q_min: float = 0.1, s_b: float = 1.0,
                      noise_id: int = -1, norm: str = "event",
                      weight_beta: bool = False, repulsion: str = "hits",
                      positions: Tensor | None = None,
                      r_local: float | None = None,
                      pair_margin: float | None = None) -> dict[str, Tensor]:
    """Object condensation loss terms of a batch of events (see the module docstring).

    Objects are ``(event, object_id)`` pairs: the same id in two events names two objects,
    so ids may be per event or global. Everything is vectorised; memory is linear in
    ``N * K_max * D`` (each hit meets only the condensation points of its own event, held
    in a padded ``[B, K_max]`` table).

    Args:
        beta: condensation likelihood per hit, in (0, 1) (e.g. a sigmoid output).
        x: clustering coordinates per hit.
        object_id: truth object per hit; ``object_id <= noise_id`` marks noise.
        batch: event index per hit (any integers, need not be sorted); None = one event.
        weights: per-hit weights ``w_i`` multiplying the hit's attractive and repulsive
            potentials (default 1); e.g. a weight derived from the energy of the hit's
            truth cluster. Must be finite and >= 0 (not checked, to avoid a device sync).
        q_min: minimal charge ``q_min > 0`` (default 0.1).
        s_b: scale of the noise term (default 1).
        noise_id: hits with ``object_id <= noise_id`` are noise (default -1: negative ids),
            the ``noise_threshold`` of ``object-condensation``.
        norm: ``"event"`` (mean over objects per event, then over events; default) or
            ``"object"`` (mean over all objects / noise hits of the batch).
        weight_beta: weight the coward mean over objects by ``W_k``, the mean hit weight
            of object ``k`` (only with ``weights``; default False, as the reference).
        repulsion: ``"hits"`` (mean over all other hits of the event; default, as the
            reference) or ``"groups"`` (mean over the other objects and the noise of the
            event of their mean potential).
        positions: ``[N, P]`` detector positions per hit [cm], with ``r_local``.
        r_local: with ``positions``: only hits within ``r_local`` of the condensation point
            repel it (sum and normalisation; see the module docstring); None: all.
        pair_margin: margin ``m > 0`` of the condensation-point repulsion ``pair`` (with
            ``positions``/``r_local``, between the points within ``r_local`` of each other
            only); None (default): no such term.

    Returns:
        Scalar tensors ``attractive``, ``repulsive``, ``coward``, ``noise`` (already times
        ``s_b``), with ``pair_margin`` also ``pair``, and ``loss``, their plain sum. A term
        without entries (no objects, no noise, no hits) is an exact 0 that stays attached
        to the graph.

    Shapes:
        beta ``[N]``, x ``[N, D]``, object_id ``[N]`` int, batch ``[N]`` int, weights ``[N]``.

    Raises:
        ConfigError: ``q_min <= 0``, ``s_b < 0``, an unknown ``norm`` or ``repulsion``, a
            bad ``r_local`` or ``pair_margin``, only one of ``positions`` and ``r_local``, or
            ``r_local`` with ``repulsion="groups"``.
        InvalidDataError: shapes or dtypes that do not match ``beta``.
    """
    _check_options(q_min, s_b, norm, repulsion)
    _check_local(positions, r_local, repulsion)
    _check_pair_margin(pair_margin)
    _check_inputs(beta, x, object_id, batch, weights)
    if positions is not None and (positions.dim() != 2 or positions.shape[0] != beta.shape[0]):
        raise InvalidDataError(f"positions must have shape [N, P] with N = len(beta) = "
                               f"{beta.shape[0]}, got {list(positions.shape)}")
    device = beta.device
    n = beta.shape[0]
    zero = beta.sum() * 0.0 + x.sum() * 0.0  # attached to the graph of beta and x
    pair_terms = {} if pair_margin is None else {PAIR_TERM: zero}
    if n == 0:
        return {"attractive": zero, "repulsive": zero, "coward": zero, "noise": zero,
                **pair_terms, "loss": zero}

    object_id = object_id.to(device=device, dtype=torch.int64)
    if batch is None:
        event = torch.zeros(n, dtype=torch.int64, device=device)
        n_events = 1
    else:
        _, event = torch.unique(batch.to(device=device, dtype=torch.int64), return_inverse=True)
        n_events = int(event.max()) + 1
    w = None if weights is None else weights.to(device=device, dtype=beta.dtype)
    noise = object_id <= noise_id
    q = torch.arctanh(beta.clamp(max=BETA_MAX)) ** 2 + q_min

    # -- noise term ------------------------------------------------------------------
    n_noise = int(noise.sum())
    if n_noise == 0:
        l_noise = zero
    elif norm == "event":
        l_noise = s_b * _per_event_mean(beta[noise], event[noise], n_events)
    else:
        l_noise = s_b * beta[noise].mean()

    if n_noise == n:  # no objects
        return {"attractive": zero, "repulsive": zero, "coward": zero, "noise": l_noise,
                **pair_terms, "loss": l_noise + zero}

    # -- objects: dense index k over (event, object_id), sorted by event then id -------
    hit_idx = torch.nonzero(~noise).squeeze(1)
    oid = object_id[hit_idx] - (noise_id + 1)  # >= 0
    stride = int(oid.max()) + 1
    if stride * n_events < 2**62:
        key = event[hit_idx] * stride + oid
        _, obj_of = torch.unique(key, return_inverse=True)
        n_obj = int(obj_of.max()) + 1
        obj_event = torch.zeros(n_obj, dtype=torch.int64, device=device)
        obj_event[obj_of] = event[hit_idx]
    else:  # huge global ids: lexicographic unique over (event, id) rows
        uniq, obj_of = torch.unique(torch.stack([event[hit_idx], oid], 1), dim=0,
                                    return_inverse=True)
        n_obj = uniq.shape[0]
        obj_event = uniq[:, 0]
    obj = torch.full((n,), -1, dtype=torch.int64, device=device)
    obj[hit_idx] = obj_of

    # condensation point: highest beta, first hit on ties (no gradient through indices)
    with torch.no_grad():
        b = beta[hit_idx]
        b_max = torch.full((n_obj,), -torch.inf, dtype=beta.dtype, device=device)
        b_max = b_max.scatter_reduce(0, obj_of, b, reduce="amax")
        is_max = b == b_max[obj_of]
        alpha = torch.full((n_obj,), n, dtype=torch.int64, device=device)
        alpha = alpha.scatter_reduce(0, obj_of[is_max], hit_idx[is_max], reduce="amin")

    # padded per-event object table [B, K_max] (-1 = padding)
    obj_count = torch.bincount(obj_event, minlength=n_events)
    k_max = int(obj_count.max())
    first = torch.cumsum(obj_count, 0) - obj_count
    local = torch.arange(n_obj, device=device) - first[obj_event]
    table = torch.full((n_events, k_max), -1, dtype=torch.int64, device=device)
    table[obj_event, local] = torch.arange(n_obj, device=device)

    objs = table[event]                      # [N, K_max] objects of each hit's event
    valid = objs >= 0
    objs_safe = objs.clamp(min=0)
    member = (objs == obj[:, None]) & valid  # hit i belongs to object objs[i, j]
    a = alpha[objs_safe]                     # [N, K_max] condensation point hit index
    d2 = (x[:, None, :] - x[a]).square().sum(-1)
    pos = d2 > 0                             # sqrt without an infinite gradient at 0
    dist = torch.where(pos, torch.where(pos, d2, torch.ones_like(d2)).sqrt(),
                       torch.zeros_like(d2))
    qq = q[:, None] * q[a]
    if w is not None:
        qq = qq * w[:, None]
    v_att_ik = torch.where(member, qq * d2, torch.zeros_like(d2))
    repels = valid & ~member
    if positions is not None:  # only the condensation point's detector neighbourhood
        p = positions.to(device=device, dtype=x.dtype)
        repels &= (p[:, None, :] - p[a]).square().sum(-1) <= float(r_local) ** 2
    v_rep_ik = torch.where(repels, qq * torch.relu(1.0 - dist), torch.zeros_like(d2))

    n_k = torch.bincount(obj_of, minlength=n_obj).to(beta.dtype)
    if repulsion == "groups":  # each hit weighs 1 / (hits of its group: object or noise)
        n_noise_e = torch.bincount(event[noise], minlength=n_events).to(beta.dtype)
        group_size = torch.where(noise, n_noise_e[event], n_k[obj.clamp(min=0)])
        v_rep_ik = v_rep_ik / group_size[:, None]
    # per-object sums over hits (column sums, scattered by object index)
    flat = objs_safe.reshape(-1)
    v_att_k = beta.new_zeros(n_obj).index_add(0, flat, v_att_ik.reshape(-1))
    v_rep_k = beta.new_zeros(n_obj).index_add(0, flat, v_rep_ik.reshape(-1))
    v_att_k = v_att_k / (n_k + _EPS)
    if repulsion == "groups":
        n_groups = obj_count.to(beta.dtype) + (n_noise_e > 0).to(beta.dtype)
        v_rep_k = v_rep_k / (n_groups[obj_event] - 1 + _EPS)
    elif positions is not None:
        n_near = beta.new_zeros(n_obj).index_add(0, flat, repels.reshape(-1).to(beta.dtype))
        v_rep_k = v_rep_k / (n_near + _EPS)
    else:
        n_event = torch.bincount(event, minlength=n_events).to(beta.dtype)
        v_rep_k = v_rep_k / (n_event[obj_event] - n_k + _EPS)
    coward_k = 1.0 - beta[alpha]
    w_k = None
    if weight_beta and w is not None:
        w_k = beta.new_zeros(n_obj).index_add(0, obj_of, w[hit_idx]) / n_k

    if norm == "event":
        att = _per_event_mean(v_att_k, obj_event, n_events)
        rep = _per_event_mean(v_rep_k, obj_event, n_events)
        coward = _per_event_mean(coward_k, obj_event, n_events, w_k)
    else:
        att = v_att_k.mean()
        rep = v_rep_k.mean()
        if w_k is None:
            coward = coward_k.mean()
        else:
            coward = (coward_k * w_k).sum() / w_k.sum().clamp(min=_EPS)
    terms = {"attractive": att, "repulsive": rep, "coward": coward, "noise": l_noise,
             "loss": att + rep + coward + l_noise}
    if pair_margin is not None:
        p = None if positions is None else positions.to(device=device, dtype=x.dtype)
        terms[PAIR_TERM] = _pair_repulsion(x, alpha, table, float(pair_margin), norm, p,
                                           r_local) + zero
        terms["loss"] = terms["loss"] + terms[PAIR_TERM]
    return terms


def _pair_repulsion(x: Tensor, alpha: Tensor, table: Tensor, margin: float, norm: str,
                    positions: Tensor | None, r_local: float | None) -> Tensor:
    """``V^pair`` (module docstring) from the padded per-event object table ``[B, K_max]``."""
    valid = table >= 0
    a = alpha[table.clamp(min=0)]                     # [B, K_max] point hit index
    xa = x[a]                                         # [B, K_max, D]
    pairs = valid[:, :, None] & valid[:, None, :]
    k_max = table.shape[1]
    pairs &= ~torch.eye(k_max, dtype=torch.bool, device=x.device)
    if positions is not None:
        pa = positions[a]
        pairs &= (pa[:, :, None, :] - pa[:, None, :, :]).square().sum(-1) <= float(r_local) ** 2
    d2 = (xa[:, :, None, :] - xa[:, None, :, :]).square().sum(-1)
    pos = d2 > 0                                      # sqrt without an infinite gradient at 0
    dist = torch.where(pos, torch.where(pos, d2, torch.ones_like(d2)).sqrt(),
                       torch.zeros_like(d2))
    hinge = torch.where(pairs, torch.relu(margin - dist), torch.zeros_like(d2))
    count = pairs.sum((1, 2)).to(x.dtype)             # [B]
    if norm == "object":
        return hinge.sum() / count.sum().clamp(min=1.0)
    present = count > 0
    if not bool(present.any()):
        return hinge.sum() * 0.0
    return (hinge.sum((1, 2))[present] / count[present]).mean()


class CondensationLoss(nn.Module):
    """Weighted object condensation loss (Kieseler 2020, arXiv 2002.03605).

    .. math::

        L = c_{att} V^{att} + c_{rep} V^{rep} + c_\\beta L^{coward} + c_{noise} L^{noise}
            + c_{pair} V^{pair}

    with the terms of :func:`condensation_loss` (``L^noise`` already includes ``s_b``;
    ``V^pair`` is computed only for ``c_pair > 0``).

    Args:
        q_min: minimal charge (default 0.1).
        s_b: scale of the noise term inside :func:`condensation_loss` (default 1).
        attractive: weight ``c_att`` of the attractive potential (default 1).
        repulsive: weight ``c_rep`` of the repulsive potential (default 1).
        beta: weight ``c_beta`` of the coward term (default 1).
        noise: weight ``c_noise`` of the noise term (default 1).
        noise_id: hits with ``object_id <= noise_id`` are noise (default -1).
        norm: ``"event"`` or ``"object"`` normalisation (default ``"event"``).
        weight_beta: weight the coward term by the objects' mean hit weight (default False).
        repulsion: ``"hits"`` (default) or ``"groups"`` normalisation of the repulsive term.
        r_local: local repulsion radius [cm] (``repulsion="hits"``): forward then needs the
            hits' ``positions``; None (default): the whole event repels.
        pair: weight ``c_pair`` of the condensation-point repulsion (default 0: off).
        pair_margin: its margin ``m`` in the clustering space (default 1, the hinge of
            ``V^rep``).

    Shapes:
        forward(beta ``[N]``, x ``[N, D]``, object_id ``[N]``, batch ``[N]`` or None,
        weights ``[N]`` or None, positions ``[N, P]`` or None) -> dict of scalars ``loss``
        and the four terms (five with ``pair > 0``).
    """

    def __init__(self, *, q_min: float = 0.1, s_b: float = 1.0, attractive: float = 1.0,
                 repulsive: float = 1.0, beta: float = 1.0, noise: float = 1.0,
                 noise_id: int = -1, norm: str = "event", weight_beta: bool = False,
                 repulsion: str = "hits", r_local: float | None = None, pair: float = 0.0,
                 pair_margin: float = 1.0) -> None:
        super().__init__()
        _check_options(q_min, s_b, norm, repulsion)
        if r_local is not None:
            _check_local(torch.zeros(0, 1), r_local, repulsion)
        _check_pair_margin(pair_margin)
        coefficients = {"attractive": attractive, "repulsive": repulsive, "coward": beta,
                        "noise": noise, PAIR_TERM: pair}
        for name, value in coefficients.items():
            if not value >= 0:
                raise ConfigError(f"the weight of the {name} term must be >= 0, got {value}")
        self.q_min = q_min
        self.s_b = s_b
        self.coefficients = coefficients
        self.noise_id = noise_id
        self.norm = norm
        self.weight_beta = weight_beta
        self.repulsion = repulsion
        self.r_local = r_local
        self.pair_margin = pair_margin

    def forward(self, beta: Tensor, x: Tensor, object_id: Tensor, batch: Tensor | None = None,
                weights: Tensor | None = None, positions: Tensor | None = None
                ) -> dict[str, Tensor]:
        """The weighted total ``loss`` and the unweighted terms."""
        if self.r_local is not None and positions is None:
            raise ConfigError(f"the local repulsion (r_local = {self.r_local} cm) needs the "
                              f"hits' positions")
        terms = condensation_loss(beta, x, object_id, batch, weights=weights, q_min=self.q_min,
                                  s_b=self.s_b, noise_id=self.noise_id, norm=self.norm,
                                  weight_beta=self.weight_beta, repulsion=self.repulsion,
                                  positions=positions if self.r_local is not None else None,
                                  r_local=self.r_local,
                                  pair_margin=self.pair_margin if self.coefficients[PAIR_TERM] > 0
                                  else None)
        terms["loss"] = sum((c * terms[name] for name, c in self.coefficients.items()
                             if name in terms), start=terms["loss"] * 0.0)
        return terms

    def extra_repr(self) -> str:
        c = self.coefficients
        return (f"q_min={self.q_min}, s_b={self.s_b}, attractive={c['attractive']}, "
                f"repulsive={c['repulsive']}, beta={c['coward']}, noise={c['noise']}, "
                f"norm={self.norm!r}, weight_beta={self.weight_beta}, "
                f"repulsion={self.repulsion!r}, r_local={self.r_local}, pair={c[PAIR_TERM]}, "
                f"pair_margin={self.pair_margin}")
