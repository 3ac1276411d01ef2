"""GravNet: a graph network on a learned space (Qasim, Kieseler, Iiyama, Pierini,
"Learning representations of irregular particle-detector geometry with
distance-weighted graph networks", Eur. Phys. J. C 79 (2019) 608, arXiv 1902.07987).

:class:`GravNetConv` is the GravNet layer (as ``torch_geometric.nn.GravNetConv``, with
the neighbour search of :mod:`caloreco.models.knn` instead of ``torch-cluster``).
:class:`GravNetModel` is the paper's clustering model, as used with object condensation
in HGCalML / torch_cmspepr: input normalisation, then per block a global exchange, three
dense layers, a GravNet layer and normalisation (per event, :class:`caloreco.sparse.EventNorm`,
instead of batch norm, whose running averages do not describe single events - see
:mod:`caloreco.models.spvcnn`); the outputs of all blocks are concatenated
and dense layers predict per hit a point in the clustering space and a condensation
score ``beta`` (Kieseler, arXiv 2002.03605), optionally an energy-correction factor.

Hits of different events never interact: the neighbour search and the global exchange are
done per event (``batch``), so in eval mode an event gives the same output alone or in a
batch. The model is eager-only (the neighbour search runs in scipy on CPU): it has no
``prepare``/``run`` split for export.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from caloreco.errors import ConfigError, InvalidDataError
from caloreco.models.knn import knn
from caloreco.sparse.nn import EventNorm

#: Distance scale of the GravNet edge weights ``exp(-DISTANCE_SCALE * d^2)``: the learned
#: space is a linear map of tanh-activated / batch-normed features (order one), and the
#: factor 10 of the reference code spreads the weights over that range.
DISTANCE_SCALE = 10.0
#: Dense layers (tanh) per block before the GravNet layer (paper: three of 64 nodes).
N_BLOCK_DENSE = 3
#: Widths of the ReLU dense layers after the block outputs are concatenated.
HEAD_WIDTHS = (128, 64)


@dataclass(frozen=True)
class GravNetConfig:
    """Hyper-parameters of :class:`GravNetModel` (defaults: the paper's clustering model).

    Args:
        in_features: per-hit input features ``F``.
        n_blocks: GravNet blocks (default 4).
        k: neighbours per hit in the learned space, the hit itself counted (default 40).
        space_dim: dimension ``S`` of the learned space (default 4).
        propagate_dim: features ``F_LR`` sent along the edges (default 22).
        filters: output features ``F_OUT`` of each GravNet layer (default 48).
        dense: width of the dense layers inside a block (default 64).
        coord_dim: clustering-space dimension ``D`` (default 5).
        energy_head: also predict a per-hit energy-correction factor.
        signal_head: also predict a per-hit signal probability (shower, not noise) from its
            own MLP on the head's last hidden layer (trainable alone: ``signal_mlp``).
    """

    in_features: int
    n_blocks: int = 4
    k: int = 40
    space_dim: int = 4
    propagate_dim: int = 22
    filters: int = 48
    dense: int = 64
    coord_dim: int = 5
    energy_head: bool = False
    signal_head: bool = False

    def __post_init__(self) -> None:
        for name in ("in_features", "n_blocks", "k", "space_dim", "propagate_dim", "filters",
                     "dense", "coord_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"GravNetConfig.{name} must be an integer >= 1, got {value!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def _n_events(batch: Tensor) -> int:
    return int(batch.max()) + 1 if batch.numel() else 0


def segment_reduce(x: Tensor, batch: Tensor, n_events: int, reduce: str) -> Tensor:
    """Reduce the rows of each event: ``reduce`` in ``"mean"``, ``"amin"``, ``"amax"``.

    Differentiable (``scatter_reduce``); events without rows give zeros.

    Shapes:
        ``x [N, C]``, ``batch [N]`` -> ``[B, C]``, B = ``n_events``.
    """
    out = x.new_zeros(n_events, x.shape[1])
    return out.scatter_reduce(0, batch[:, None].expand_as(x), x, reduce=reduce,
                              include_self=False)


def global_exchange(x: Tensor, batch: Tensor) -> Tensor:
    """Append to every hit the mean, minimum and maximum of its event's features.

    ``out_i = [x_i, mean_{j in e(i)} x_j, min_{j in e(i)} x_j, max_{j in e(i)} x_j]``
    (element-wise over features; HGCalML's ``GlobalExchange``).

    Shapes:
        ``x [N, C]``, ``batch [N]`` -> ``[N, 4 C]``.
    """
    b = _n_events(batch)
    stats = torch.cat([segment_reduce(x, batch, b, r) for r in ("mean", "amin", "amax")], dim=1)
    return torch.cat([x, stats[batch]], dim=1)


class GravNetConv(nn.Module):
    r"""The GravNet layer (arXiv 1902.07987, section 3; PyG's ``GravNetConv``).

    Every hit is projected to a learned space and to features to propagate,

    .. math::
        s_i = W_s x_i + b_s, \qquad h_i = W_h x_i + b_h,

    connected to its ``k`` nearest hits :math:`\mathcal{N}(i)` in ``s`` within its event
    (itself included, as in PyG), and receives their features weighted by distance,

    .. math::
        w_{ij} = \exp(-10\, \lVert s_i - s_j \rVert^2), \qquad
        m_i = \Big[\operatorname{mean}_{j \in \mathcal{N}(i)} w_{ij} h_j,\;
                   \max_{j \in \mathcal{N}(i)} w_{ij} h_j\Big],

    .. math::
        x'_i = W_o [x_i, m_i] + b_o.

    The neighbour indices are not differentiable, but :math:`w_{ij}` is computed in torch
    from the gathered :math:`s_j`, so the loss trains the space projection :math:`W_s`
    through the weights. Events with fewer than ``k`` hits use all their hits (padding
    columns are masked out of the mean and the max).

    Args:
        in_channels: input features ``F_in``.
        out_channels: output features ``F_OUT`` (paper: 48).
        space_dimensions: dimension ``S`` of the learned space (paper: 4).
        propagate_dimensions: propagated features ``F_LR`` (paper: 22).
        k: neighbours per hit, itself included (paper: 40).

    Shapes:
        ``forward(x [N, F_in], batch [N])`` -> ``[N, F_OUT]``.
    """

    def __init__(self, in_channels: int, out_channels: int, space_dimensions: int,
                 propagate_dimensions: int, k: int) -> None:
        super().__init__()
        self.k = k
        self.lin_s = nn.Linear(in_channels, space_dimensions)
        self.lin_h = nn.Linear(in_channels, propagate_dimensions)
        self.lin_out = nn.Linear(in_channels + 2 * propagate_dimensions, out_channels)

    def forward(self, x: Tensor, batch: Tensor) -> Tensor:
        s = self.lin_s(x)
        h = self.lin_h(x)
        index, mask = knn(s.detach(), self.k, batch)  # [N, k] each
        d2 = (s[:, None, :] - s[index]).square().sum(-1)  # [N, k], differentiable in s
        w = torch.exp(-DISTANCE_SCALE * d2)
        if bool(mask.all()):  # every event has >= k hits: no padding to mask
            msg = w[..., None] * h[index]  # [N, k, F_LR]
            mean, top = msg.mean(1), msg.amax(1)
        else:
            msg = w.masked_fill(~mask, 0.0)[..., None] * h[index]
            mean = msg.sum(1) / mask.sum(1, keepdim=True).to(msg.dtype)
            top = msg.masked_fill(~mask[..., None], float("-inf")).amax(1)  # self is valid
        return self.lin_out(torch.cat([x, mean, top], dim=1))

    def extra_repr(self) -> str:
        return f"k={self.k}"


class GravNetBlock(nn.Module):
    """Global exchange -> :data:`N_BLOCK_DENSE` x (dense, tanh) -> GravNet layer, tanh ->
    batch norm (one block of the paper's clustering model).

    Shapes:
        ``forward(x [N, C_in], batch [N])`` -> ``[N, filters]``.
    """

    def __init__(self, in_channels: int, config: GravNetConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = 4 * in_channels
        for _ in range(N_BLOCK_DENSE):
            layers += [nn.Linear(c, config.dense), nn.Tanh()]
            c = config.dense
        self.dense = nn.Sequential(*layers)
        self.conv = GravNetConv(c, config.filters, config.space_dim, config.propagate_dim,
                                config.k)
        self.norm = EventNorm(config.filters)

    def forward(self, x: Tensor, batch: Tensor, events: Tensor | None = None) -> Tensor:
        if events is None:
            events = torch.arange(int(batch.max()) + 1 if batch.numel() else 0, device=batch.device)
        x = self.dense(global_exchange(x, batch))
        return self.norm.normalise(torch.tanh(self.conv(x, batch)), batch, events)


class GravNetModel(nn.Module):
    """The GravNet clustering model with an object-condensation head.

    ``x_0 = norm(feats)``; ``x_b = block_b(x_{b-1})`` for b = 1..n_blocks;
    ``z = MLP([x_1, ..., x_n])`` (ReLU layers :data:`HEAD_WIDTHS`); then a linear layer to
    ``coords`` (no activation), ``beta = sigmoid(.)`` and, with ``energy_head``,
    ``energy_factor = softplus(.)``; with ``signal_head``, ``signal = sigmoid(MLP(h))`` on
    the head's last hidden layer ``h``.

    Args:
        config: :class:`GravNetConfig`.

    Shapes (N hits, F features, D = ``coord_dim``):
        ``forward(feats [N, F], points [N, 3], batch [N])`` -> ``(coords [N, D],
        beta [N])``, plus ``energy_factor [N]`` with ``energy_head`` and then ``signal [N]``
        with ``signal_head`` (:func:`caloreco.models.registry.output_names`). ``points`` is
        accepted for the common model interface and ignored: GravNet reads positions from
        the features. ``batch`` is the event index of each hit (need not be sorted).
    """

    def __init__(self, config: GravNetConfig) -> None:
        super().__init__()
        self.config = config
        self.input_norm = EventNorm(config.in_features)
        self.blocks = nn.ModuleList(
            GravNetBlock(config.in_features if i == 0 else config.filters, config)
            for i in range(config.n_blocks))
        layers: list[nn.Module] = []
        c = config.n_blocks * config.filters
        for width in HEAD_WIDTHS:
            layers += [nn.Linear(c, width), nn.ReLU(True)]
            c = width
        n_out = config.coord_dim + 1 + int(config.energy_head)
        self.head = nn.Sequential(*layers, nn.Linear(c, n_out))
        self.signal_mlp = (nn.Sequential(nn.Linear(c, c), nn.ReLU(True), nn.Linear(c, 1))
                           if config.signal_head else None)

    def forward(self, feats: Tensor, points: Tensor, batch: Tensor) -> tuple[Tensor, ...]:
        if feats.dim() != 2 or feats.shape[1] != self.config.in_features:
            raise ConfigError(f"GravNet expects features [N, {self.config.in_features}], got "
                              f"{tuple(feats.shape)}")
        if batch.shape != (feats.shape[0],):
            raise InvalidDataError(f"GravNet expects batch of shape [{feats.shape[0]}] (one "
                                   f"event index per hit), got {tuple(batch.shape)}")
        batch = batch.long()
        d = self.config.coord_dim
        hidden_width = self.head[-1].in_features
        if feats.shape[0] == 0:
            out = feats.new_zeros(0, d + 1 + int(self.config.energy_head))
            hidden = feats.new_zeros(0, hidden_width)
        else:
            events = torch.arange(int(batch.max()) + 1, device=batch.device)
            x = self.input_norm.normalise(feats, batch, events)
            outs = []
            for block in self.blocks:
                x = block(x, batch, events)
                outs.append(x)
            hidden = self.head[:-1](torch.cat(outs, dim=1))
            out = self.head[-1](hidden)
        result: tuple[Tensor, ...] = (out[:, :d], torch.sigmoid(out[:, d]))
        if self.config.energy_head:
            result += (nn.functional.softplus(out[:, d + 1]),)
        if self.signal_mlp is not None:
            result += (torch.sigmoid(self.signal_mlp(hidden).squeeze(1)),)
        return result
