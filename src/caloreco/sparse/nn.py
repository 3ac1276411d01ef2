"""Sparse modules that hold weights: convolution, batch norm, activation, point-voxel fusion."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from caloreco.errors import ConfigError
from caloreco.sparse import functional as F
from caloreco.sparse.manager import CoordinateManager
from caloreco.sparse.tensor import SparseTensor


class Conv3d(nn.Module):
    """Sparse 3D convolution (submanifold, strided or transposed).

    * ``stride == 1``: submanifold - output sites are the input sites (Graham et al.,
      arXiv 1711.10275).
    * ``stride > 1``: output sites are the voxels of size ``s * stride`` that contain an
      input site; each reads inputs at ``o + (d - p) s``, ``d`` in ``[0, k)^3``,
      ``p = (k - 1) // 2`` - on those sites exactly ``torch.nn.functional.conv3d`` with
      padding ``p`` on the dense grid.
    * ``transposed=True`` (``stride > 1``): back onto the finer sites that the matching
      strided convolution started from, as ``conv_transpose3d`` with padding ``p``.

    Args:
        in_channels, out_channels: ``C_in``, ``C_out``.
        kernel_size: ``k`` (default 3).
        stride: convolution stride (default 1).
        transposed: transposed (up-sampling) convolution (needs ``stride > 1``).
        bias: add a learned bias (default False: convolutions here precede batch norm).
        algorithm: ``"auto"`` (default: ``"gemm"`` on CUDA, ``"scatter"`` elsewhere),
            ``"scatter"`` or ``"gemm"`` (:func:`caloreco.sparse.functional.sparse_conv`);
            settable after construction.

    Shapes:
        weight ``[k^3, C_in, C_out]``; input features ``[V_in, C_in]``, output ``[V_out, C_out]``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 stride: int = 1, *, transposed: bool = False, bias: bool = False,
                 algorithm: str = "auto") -> None:
        super().__init__()
        if stride < 1 or kernel_size < 1:
            raise ConfigError(f"kernel_size and stride must be >= 1, got {kernel_size}, {stride}")
        if transposed and stride == 1:
            raise ConfigError("a transposed sparse convolution needs stride > 1")
        if algorithm not in F.ALGORITHMS:
            raise ConfigError(f"algorithm must be one of {F.ALGORITHMS}, got '{algorithm}'")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.transposed = kernel_size, stride, transposed
        self.algorithm = algorithm
        volume = kernel_size ** 3
        self.weight = nn.Parameter(torch.empty(volume, in_channels, out_channels))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-uniform as ``torch.nn.Conv3d`` (fan-in = ``C_in k^3``)."""
        fan_in = self.in_channels * self.weight.shape[0]
        bound = 1.0 / math.sqrt(fan_in)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: SparseTensor) -> SparseTensor:
        if x.feats.shape[1] != self.in_channels:
            raise ConfigError(f"sparse Conv3d expects {self.in_channels} input channels, got "
                              f"{x.feats.shape[1]}")
        mgr = x.manager
        if self.stride == 1 and self.kernel_size == 1:
            out = x.feats @ self.weight[0]  # 1x1x1: a per-voxel linear map, no kernel map
            return SparseTensor(out if self.bias is None else out + self.bias, x.stride, mgr)
        if self.stride == 1:
            kmap, stride = mgr.submanifold(x.stride, self.kernel_size), x.stride
        elif not self.transposed:
            kmap, stride = mgr.down(x.stride, self.kernel_size, self.stride), x.stride * self.stride
        else:
            if x.stride % self.stride:
                raise ConfigError(f"cannot up-sample stride {x.stride} by {self.stride}")
            stride = x.stride // self.stride
            kmap = mgr.up(stride, self.kernel_size, self.stride)
        out = F.sparse_conv(x.feats, kmap, self.weight, algorithm=self.algorithm)
        if self.bias is not None:
            out = out + self.bias
        return SparseTensor(out, stride, mgr)

    def extra_repr(self) -> str:
        kind = "transposed, " if self.transposed else ""
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, {kind}algorithm={self.algorithm}")


class BatchNorm(nn.BatchNorm1d):
    """Batch norm over the voxels (rows) of a sparse tensor."""

    def forward(self, x: SparseTensor) -> SparseTensor:  # type: ignore[override]
        return x.replace(super().forward(x.feats))


class EventNorm(nn.Module):
    """Per-event normalisation of sparse features (:func:`~caloreco.sparse.functional.event_norm`)
    with a learned affine map; the same in training and inference.

    Reads checkpoints of :class:`BatchNorm` layers (their running statistics are ignored:
    batch norm trained one event per step normalises with exactly these per-event
    statistics).

    Args:
        num_features: ``C``.
        eps: added to the variance (default 1e-5, as batch norm).
    """

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_features, self.eps = num_features, eps
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[no-untyped-def]
        for key in ("running_mean", "running_var", "num_batches_tracked"):
            state_dict.pop(prefix + key, None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def normalise(self, x: Tensor, event: Tensor, events: Tensor) -> Tensor:
        return F.event_norm(x, event, events, self.weight, self.bias, self.eps)

    def forward(self, x: SparseTensor) -> SparseTensor:
        mgr = x.manager
        return x.replace(self.normalise(x.feats, mgr.voxel_event(x.stride), mgr.events()))

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"


class PointEventNorm(EventNorm):
    """:class:`EventNorm` over the points (hits) of each event: ``forward(z, manager)``."""

    def forward(self, z: Tensor, mgr: "CoordinateManager") -> Tensor:  # type: ignore[override]
        return self.normalise(z, mgr.point_event(), mgr.events())


class ReLU(nn.ReLU):
    """ReLU on the features of a sparse tensor."""

    def forward(self, x: SparseTensor) -> SparseTensor:  # type: ignore[override]
        return x.replace(super().forward(x.feats))


def to_voxels(point_feats: Tensor, like: SparseTensor) -> SparseTensor:
    """Average point features into the voxels of ``like`` (its stride and sites)."""
    idx = like.manager.point_voxel(like.stride)
    return like.replace(F.point_to_voxel(point_feats, idx, like.feats.shape[0]))


def to_points(x: SparseTensor, *, nearest: bool = False) -> Tensor:
    """Features at the points: trilinear over 8 voxel centres, or the containing voxel."""
    if nearest:
        idx = x.manager.point_voxel(x.stride)
        return x.feats[idx]
    index, weight = x.manager.interpolation(x.stride)
    return F.voxel_to_point(x.feats, index, weight)
