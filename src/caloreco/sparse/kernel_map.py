"""Kernel maps: which input voxel feeds which output voxel through which kernel offset.

A kernel of size ``k`` has ``K = k**3`` offsets ``(dx, dy, dz) - p`` with ``d`` in
``[0, k)`` and ``p = (k - 1) // 2``, enumerated with the last axis fastest - the order of
the flattened weight of :func:`torch.nn.functional.conv3d`. For input tensor stride ``s``
an output voxel ``o`` reads the input voxel at ``o + offset * s``.

Two equivalent layouts are kept, both free of scatter operations at run time:

* ``nbr`` (output-stationary), int64 ``[N_out, K]``: row of the input voxel at each offset,
  or ``N_in`` where there is none (a zero row appended to the features absorbs it);
* ``parent`` (single-source), int64 ``[N_out]``: ``row * K + offset`` of the only input
  voxel, for maps where every output has exactly one input - the transposed convolution
  with kernel size 2 and stride 2 (windows that tile the grid).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import product

import torch
from torch import Tensor

from caloreco.errors import ConfigError
from caloreco.sparse.coords import SortedKeys, downsample


def kernel_offsets(kernel_size: int, device: torch.device | str | None = None) -> Tensor:
    """int64 ``[k**3, 3]`` offsets ``d - (k - 1) // 2`` in conv3d weight order."""
    if kernel_size < 1:
        raise ConfigError(f"kernel_size must be >= 1, got {kernel_size}")
    pad = (kernel_size - 1) // 2
    rng = range(-pad, kernel_size - pad)
    return torch.tensor(list(product(rng, rng, rng)), dtype=torch.int64, device=device)


@dataclass(frozen=True)
class KernelMap:
    """Connections of one convolution; exactly one of ``nbr`` and ``parent`` is set.

    Attributes:
        nbr: int64 ``[N_out, K]`` input rows (``N_in`` = no input) or None.
        parent: int64 ``[N_out]`` with ``input_row * K + offset`` or None.
        volume: ``K``, the number of kernel offsets.
        identity: the offset that maps every output to the input of the same row (the
            centre of an odd submanifold kernel), or None.
    """

    nbr: Tensor | None
    parent: Tensor | None
    volume: int
    identity: int | None = None  # offset whose map is the identity (submanifold centre)
    _pairs: list = field(default_factory=list, compare=False, repr=False)
    _present: list = field(default_factory=list, compare=False, repr=False)

    @property
    def n_out(self) -> int:
        return int((self.nbr if self.nbr is not None else self.parent).shape[0])

    def pairs(self, n_in: int) -> list[tuple[Tensor, Tensor]]:
        """Per offset, the ``(input_rows, output_rows)`` pairs (for gather-scatter), cached."""
        if not self._pairs:
            self._pairs.extend(self._find_pairs(n_in))
        return self._pairs

    def present(self, n_in: int) -> Tensor:
        """Positions in ``nbr.reshape(-1)`` of the existing connections (``< n_in``), cached:
        the rows whose gradient the gather-GEMM backward keeps."""
        assert self.nbr is not None
        if not self._present:
            self._present.append(torch.nonzero(self.nbr.reshape(-1) < n_in).squeeze(1))
        return self._present[0]

    def _find_pairs(self, n_in: int) -> list[tuple[Tensor, Tensor]]:
        if self.nbr is not None:
            out = []
            for k in range(self.volume):
                col = self.nbr[:, k]
                rows = torch.nonzero(col < n_in).squeeze(1)
                out.append((col[rows], rows))
            return out
        assert self.parent is not None
        src, off = self.parent // self.volume, self.parent % self.volume
        out = []
        for k in range(self.volume):
            rows = torch.nonzero(off == k).squeeze(1)
            out.append((src[rows], rows))
        return out


def submanifold_map(coords: Tensor, keys: SortedKeys, stride: int, kernel_size: int) -> KernelMap:
    """Map of a submanifold convolution: output sites are the input sites.

    For odd kernels only half of the offsets are searched: if ``b = a + d`` then ``a =
    b - d``, so the mirrored column is filled by inverting the found pairs.
    """
    n = coords.shape[0]
    offs = kernel_offsets(kernel_size, coords.device) * stride
    vol = offs.shape[0]
    if kernel_size % 2 == 0:
        return KernelMap(keys.lookup_offsets(coords, offs), None, vol)
    half = vol // 2
    found = keys.lookup_offsets(coords, offs[:half])  # [n, half]
    mirror = torch.full(((n + 1) * half,), n, dtype=torch.int64, device=coords.device)
    rows = torch.arange(n, device=coords.device).unsqueeze(1).expand(n, half)
    cols = torch.arange(half, device=coords.device).unsqueeze(0).expand(n, half)
    mirror[found * half + cols] = rows  # absent pairs all land in the spare row n
    mirror = mirror.view(n + 1, half)[:n].flip(1)
    centre = torch.arange(n, device=coords.device).unsqueeze(1)
    return KernelMap(torch.cat([found, centre, mirror], 1), None, vol, identity=half)


def strided_maps(coords: Tensor, keys: SortedKeys, stride: int, kernel_size: int,
                 conv_stride: int) -> tuple[Tensor, KernelMap, KernelMap]:
    """Maps of a strided convolution and of its transpose.

    Output sites are the coarse voxels ``floor(c / (s * conv_stride)) * s * conv_stride``
    of the inputs. Returns ``(coarse_coords, down, up)``: ``down`` maps the fine input
    (``coords``, stride ``s``) to the coarse output; ``up`` maps the coarse tensor back
    onto the fine sites (transposed convolution, same weight offsets).
    """
    coarse, inverse = downsample(coords, stride * conv_stride)
    vol = kernel_size ** 3
    n_fine, n_coarse = coords.shape[0], coarse.shape[0]
    if kernel_size == conv_stride and (kernel_size - 1) // 2 == 0:
        # Windows [o, o + k) tile the grid (k = stride = 2): each fine voxel feeds exactly
        # one coarse voxel, found without any search.
        rel = torch.div(coords[:, 1:] - coarse[inverse, 1:], stride, rounding_mode="floor")
        code = (rel[:, 0] * kernel_size + rel[:, 1]) * kernel_size + rel[:, 2]
        nbr = torch.full((n_coarse * vol,), n_fine, dtype=torch.int64, device=coords.device)
        nbr[inverse * vol + code] = torch.arange(n_fine, device=coords.device)
        return coarse, KernelMap(nbr.view(n_coarse, vol), None, vol), \
            KernelMap(None, inverse * vol + code, vol)
    offs = kernel_offsets(kernel_size, coords.device) * stride
    down = keys.lookup_offsets(coarse, offs)
    up = SortedKeys(coarse).lookup_offsets(coords, -offs)
    return coarse, KernelMap(down, None, vol), KernelMap(up, None, vol)
