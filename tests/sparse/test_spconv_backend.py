"""The optional spconv backend against the default backend (skipped without spconv).

On CPU, spconv is only correct with one thread and its backward crashes, so the CPU check
is forward-only with one thread; on CUDA forward and backward are compared.
"""

from __future__ import annotations

import pytest
import torch

from caloreco.sparse import Conv3d, CoordinateManager, SparseTensor
from caloreco.sparse.spconv_backend import SpconvConv3d, spconv_available

pytestmark = pytest.mark.skipif(not spconv_available(), reason="spconv is not installed")


def _sites(device: str) -> CoordinateManager:
    g = torch.Generator().manual_seed(0)
    pts = torch.randn(4000, 3, generator=g) * torch.tensor([8.0, 8.0, 6.0]) + 60
    coords = torch.cat([torch.randint(0, 2, (4000, 1), generator=g), pts.long()], 1)
    return CoordinateManager(torch.unique(coords, dim=0).to(device))


@pytest.mark.parametrize("kernel_size,stride", [(3, 1), (5, 1), (2, 2), (3, 2)])
def test_spconv_matches_default_backend_cpu(kernel_size, stride):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # spconv's CPU kernels are wrong with several threads
    try:
        mgr = _sites("cpu")
        feats = torch.randn(mgr.n_voxels(1), 8, generator=torch.Generator().manual_seed(1))
        ours = Conv3d(8, 16, kernel_size, stride)
        theirs = SpconvConv3d(8, 16, kernel_size, stride)
        theirs.load_caloreco_weight(ours.weight)
        x = SparseTensor(feats, 1, mgr)
        with torch.no_grad():
            a, b = ours(x), theirs(x)
        assert a.stride == b.stride
        torch.testing.assert_close(b.feats, a.feats, rtol=1e-4, atol=1e-4)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("kernel_size,stride", [(3, 1), (2, 2)])
def test_spconv_matches_default_backend_cuda(kernel_size, stride):
    mgr = _sites("cuda")
    feats = torch.randn(mgr.n_voxels(1), 8, device="cuda", requires_grad=True)
    ours = Conv3d(8, 16, kernel_size, stride).cuda()
    theirs = SpconvConv3d(8, 16, kernel_size, stride).cuda()
    theirs.load_caloreco_weight(ours.weight)
    x = SparseTensor(feats, 1, mgr)
    a, b = ours(x), theirs(x)
    torch.testing.assert_close(b.feats, a.feats, rtol=1e-4, atol=1e-4)
    g = torch.randn_like(a.feats)
    ga = torch.autograd.grad(a.feats, feats, g)[0]
    gb = torch.autograd.grad(b.feats, feats, g)[0]
    torch.testing.assert_close(gb, ga, rtol=1e-4, atol=1e-4)
