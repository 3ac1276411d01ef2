"""The sparse tensor: features on occupied voxels plus a shared coordinate manager."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from caloreco.errors import ConfigError
from caloreco.sparse.manager import CoordinateManager


@dataclass
class SparseTensor:
    """Features of the occupied voxels of a batch of events.

    Attributes:
        feats: float ``[V, C]``, one row per occupied voxel.
        stride: tensor stride ``s`` (1 after voxelisation, doubled by each stride-2
            convolution); voxel coordinates are multiples of ``s`` in units of the
            stride-1 voxel.
        manager: the :class:`CoordinateManager` that owns the coordinates ``[V, 4]``
            (int64 columns ``batch, i, j, k``; row order = ``feats`` row order) and the
            kernel maps. Tensors of one input share it; all tensors are on one device.
    """

    feats: Tensor
    stride: int
    manager: CoordinateManager

    @property
    def coords(self) -> Tensor:
        """int64 ``[V, 4]`` coordinates ``(batch, i, j, k)`` of the rows of ``feats``."""
        return self.manager.coords(self.stride)

    def replace(self, feats: Tensor) -> "SparseTensor":
        """The same sites with new features."""
        return SparseTensor(feats, self.stride, self.manager)


def cat(tensors: list[SparseTensor]) -> SparseTensor:
    """Concatenate features of tensors on the same sites (channel axis)."""
    import torch

    first = tensors[0]
    for t in tensors[1:]:
        if t.stride != first.stride or t.manager is not first.manager:
            raise ConfigError("sparse cat needs tensors on the same sites (same stride and "
                              f"coordinate manager); got strides {[x.stride for x in tensors]}")
    return first.replace(torch.cat([t.feats for t in tensors], 1))
