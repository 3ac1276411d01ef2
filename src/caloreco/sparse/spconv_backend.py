"""Optional accelerated backend: the same convolution computed by ``spconv`` (CUDA).

:class:`SpconvConv3d` has the interface of :class:`caloreco.sparse.Conv3d` (submanifold and
strided convolutions, weights in caloreco's ``[k^3, C_in, C_out]`` layout, input and output
:class:`~caloreco.sparse.SparseTensor` on the coordinate manager's sites and row order), so a
layer can be swapped and checked against the default backend.

Use it on CUDA. spconv 2.3.8's CPU build is "for debugging only": its forward results are
wrong with more than one thread and its backward crashes (``../shared/dependency-notes.md``);
on CPU it serves only as a one-thread benchmark reference. It does not export to ONNX or
TorchScript. Transposed convolutions are not adapted (spconv needs the indices of the
matching forward layer).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from caloreco.errors import ConfigError, MissingDependencyError
from caloreco.sparse.coords import SortedKeys
from caloreco.sparse.tensor import SparseTensor


def spconv_available() -> bool:
    """Whether ``spconv.pytorch`` imports."""
    try:
        import spconv.pytorch  # noqa: F401
    except ImportError:
        return False
    return True


def _spconv():  # type: ignore[no-untyped-def]
    try:
        import spconv.pytorch as sp
    except ImportError as exc:
        raise MissingDependencyError("the spconv backend needs spconv: pip install spconv-cu120 "
                                     "(CUDA) or spconv (CPU, one thread, benchmark only)") from exc
    return sp


class SpconvConv3d(nn.Module):
    """A caloreco sparse convolution executed by spconv (submanifold or strided).

    Args:
        in_channels, out_channels, kernel_size, stride: as :class:`caloreco.sparse.Conv3d`
            (padding ``(k - 1) // 2``, output sites = the coarse voxels holding an input).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 stride: int = 1) -> None:
        super().__init__()
        sp = _spconv()
        self.kernel_size, self.stride = kernel_size, stride
        pad = (kernel_size - 1) // 2
        if stride == 1:
            if kernel_size % 2 == 0:
                raise ConfigError("spconv submanifold convolutions need an odd kernel size")
            self.conv = sp.SubMConv3d(in_channels, out_channels, kernel_size, bias=False)
        else:
            self.conv = sp.SparseConv3d(in_channels, out_channels, kernel_size, stride,
                                        padding=pad, bias=False)

    def load_caloreco_weight(self, weight: Tensor) -> None:
        """Copy a caloreco ``[k^3, C_in, C_out]`` weight into spconv's ``[C_out, k, k, k, C_in]``."""
        k = self.kernel_size
        w = weight.detach().reshape(k, k, k, weight.shape[1], weight.shape[2]).permute(4, 0, 1, 2, 3)
        with torch.no_grad():
            self.conv.weight.copy_(w.contiguous())

    def forward(self, x: SparseTensor) -> SparseTensor:
        sp = _spconv()
        s = x.stride
        coords = x.coords
        idx = coords.clone()
        idx[:, 1:] = torch.div(coords[:, 1:], s, rounding_mode="floor")
        margin = self.kernel_size + self.stride
        shape = (idx[:, 1:].max(0).values + margin).tolist()
        st = sp.SparseConvTensor(x.feats, idx.int().contiguous(), shape, int(idx[:, 0].max()) + 1)
        out = self.conv(st)
        if self.stride == 1:  # submanifold: spconv keeps the input rows
            return x.replace(out.features)
        stride_out = s * self.stride
        mgr = x.manager
        mgr.down(s, self.kernel_size, self.stride)  # our output sites and row order
        ours = mgr.coords(stride_out)
        theirs = out.indices.long()
        theirs[:, 1:] *= stride_out
        rows = SortedKeys(theirs).lookup(ours)
        feats = torch.cat([out.features, out.features.new_zeros(1, out.features.shape[1])])[rows]
        return SparseTensor(feats, stride_out, mgr)
