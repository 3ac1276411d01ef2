"""Integer voxel coordinates: packing into sortable keys, lookup by sorting, down-sampling.

Coordinates are int64 tensors ``[V, 4]`` with columns ``(batch, i, j, k)``. Spatial
columns are in units of the finest voxel at every stride (the torchsparse convention): a
voxel of tensor stride ``s`` has coordinates that are multiples of ``s`` and covers
``[i, i + s)``. Coordinates must lie in ``[0, 2**16)`` and the batch index in
``[0, 2**15)``; :func:`pack` maps a coordinate row to one int64 key that preserves the
lexicographic order, so set membership is a ``searchsorted`` on sorted keys - no dense
grid and no hash table, and the same code runs on CPU and CUDA.
"""

from __future__ import annotations

import torch
from torch import Tensor

from caloreco.errors import InvalidDataError

#: Bits per spatial column in a packed key.
SPATIAL_BITS = 16
#: Exclusive upper bound of a spatial coordinate.
SPATIAL_LIMIT = 1 << SPATIAL_BITS
#: Exclusive upper bound of the batch index (keeps keys positive).
BATCH_LIMIT = 1 << (63 - 3 * SPATIAL_BITS)


def check_coords(coords: Tensor, name: str = "coords") -> None:
    """Raise :class:`InvalidDataError` unless ``coords`` is a valid ``[V, 4]`` int64 table."""
    if coords.dim() != 2 or coords.shape[1] != 4:
        raise InvalidDataError(f"{name} must have shape [V, 4] (batch, i, j, k), got "
                               f"{tuple(coords.shape)}")
    if coords.dtype != torch.int64:
        raise InvalidDataError(f"{name} must be int64, got {coords.dtype}")
    if coords.numel():
        lo = coords.min(0).values
        hi = coords.max(0).values
        if bool((lo < 0).any()) or int(hi[1:].max()) >= SPATIAL_LIMIT or int(hi[0]) >= BATCH_LIMIT:
            raise InvalidDataError(
                f"{name} out of range: batch must lie in [0, {BATCH_LIMIT}) and i, j, k in "
                f"[0, {SPATIAL_LIMIT}); got minimum {lo.tolist()} and maximum {hi.tolist()}")


def pack(coords: Tensor) -> Tensor:
    """Keys ``((b * L + i) * L + j) * L + k`` with ``L = 2**16``, int64 ``[...]``.

    Rows with a spatial coordinate outside ``[0, L)`` get key -1 (matching nothing).
    """
    b, i, j, k = coords.unbind(-1)
    key = (((b << SPATIAL_BITS) | i) << SPATIAL_BITS | j) << SPATIAL_BITS | k
    spatial = coords[..., 1:]
    outside = ((spatial < 0) | (spatial >= SPATIAL_LIMIT)).any(-1)
    return torch.where(outside, torch.full_like(key, -1), key)


def unpack(keys: Tensor) -> Tensor:
    """Inverse of :func:`pack` for valid keys: int64 ``[..., 4]`` rows ``(b, i, j, k)``."""
    mask = SPATIAL_LIMIT - 1
    return torch.stack([keys >> (3 * SPATIAL_BITS), (keys >> (2 * SPATIAL_BITS)) & mask,
                        (keys >> SPATIAL_BITS) & mask, keys & mask], -1)


class SortedKeys:
    """Sorted keys of a coordinate set, answering "which row holds this coordinate?".

    Args:
        coords: int64 ``[V, 4]`` without duplicate rows.

    ``lookup(query)`` returns, for int64 query coordinates ``[..., 4]``, the row index in
    ``coords`` or ``V`` (one past the end, the sentinel of the gather-based convolution)
    where the coordinate is absent.
    """

    def __init__(self, coords: Tensor) -> None:
        self.n = coords.shape[0]
        keys = pack(coords)
        self.keys, self.order = torch.sort(keys)

    def lookup(self, query: Tensor) -> Tensor:
        return self._search(pack(query))

    def lookup_offsets(self, coords: Tensor, deltas: Tensor) -> Tensor:
        """Rows of ``coords + delta`` for every row and spatial offset, int64 ``[N, K]``.

        Keys are linear in the columns, ``key(c + d) = key(c) + key(d)``, while every
        column stays inside ``[0, 2**16)``; then one addition replaces re-packing ``N K``
        coordinates. Rows within ``max |d|`` of a grid edge (or outside it), where a column
        could leave the range and carry into the next, are looked up by :meth:`lookup`.
        """
        reach = int(deltas.abs().max()) if deltas.numel() else 0
        dk = (deltas[:, 0] * SPATIAL_LIMIT + deltas[:, 1]) * SPATIAL_LIMIT + deltas[:, 2]
        spatial = coords[:, 1:]
        edge = ((spatial < reach) | (spatial >= SPATIAL_LIMIT - reach)).any(1)
        out = self._search(pack(coords)[:, None] + dk[None])
        rows = torch.nonzero(edge).squeeze(1)
        if rows.numel():
            full = torch.zeros(rows.shape[0], deltas.shape[0], 4, dtype=torch.int64,
                               device=coords.device)
            full[..., 1:] = deltas[None]
            out[rows] = self.lookup(coords[rows][:, None, :] + full)
        return out

    def _search(self, q: Tensor) -> Tensor:
        if self.n == 0:
            return torch.zeros(q.shape, dtype=torch.int64, device=q.device)
        pos = torch.searchsorted(self.keys, q).clamp_(max=self.n - 1)
        found = self.keys[pos] == q
        return torch.where(found, self.order[pos], torch.full_like(pos, self.n))


def downsample(coords: Tensor, stride: int) -> tuple[Tensor, Tensor]:
    """Coordinates of the voxels of size ``stride`` that contain ``coords``.

    Returns:
        ``(coarse, inverse)``: the unique coarse coordinates ``floor(c / stride) * stride``
        (sorted by key) and, for each input row, the row of its coarse voxel.
    """
    coarse = coords.clone()
    coarse[:, 1:] = torch.div(coords[:, 1:], stride, rounding_mode="floor") * stride
    keys = pack(coarse)
    uniq, inverse = torch.unique(keys, sorted=True, return_inverse=True)
    first = torch.full((uniq.shape[0],), coords.shape[0], dtype=torch.int64, device=coords.device)
    first.scatter_reduce_(0, inverse, torch.arange(coords.shape[0], device=coords.device),
                          reduce="amin")
    return coarse[first], inverse
