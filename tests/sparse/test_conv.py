"""Sparse convolutions against torch.nn.functional.conv3d on the equivalent dense grid."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as TF

from caloreco.sparse import Conv3d, CoordinateManager, SparseTensor
from caloreco.sparse.functional import sparse_conv
from caloreco.sparse.kernel_map import kernel_offsets

GRID = 11
BATCH = 2


def random_sites(seed: int, density: float = 0.2, stride: int = 1) -> torch.Tensor:
    """Unique int64 [V, 4] coordinates (batch, i, j, k), multiples of ``stride``."""
    g = torch.Generator().manual_seed(seed)
    n = GRID // stride
    occ = torch.rand(BATCH, n, n, n, generator=g) < density
    coords = torch.nonzero(occ)
    coords[:, 1:] *= stride
    return coords + torch.tensor([0, 3, 3, 3]) * stride  # away from 0, exercising offsets


def to_dense(feats: torch.Tensor, coords: torch.Tensor, stride: int, size: int) -> torch.Tensor:
    dense = feats.new_zeros(BATCH, feats.shape[1], size, size, size)
    b, i, j, k = coords.T
    dense[b, :, i // stride, j // stride, k // stride] = feats
    return dense


def dense_weight(weight: torch.Tensor, k: int) -> torch.Tensor:
    """[K, Cin, Cout] -> conv3d layout [Cout, Cin, k, k, k]."""
    return weight.permute(2, 1, 0).reshape(weight.shape[2], weight.shape[1], k, k, k)


def at_sites(dense: torch.Tensor, coords: torch.Tensor, stride: int, shift: int = 0) -> torch.Tensor:
    b, i, j, k = coords.T
    return dense[b, :, i // stride + shift, j // stride + shift, k // stride + shift]


def _compare(out_sparse, out_dense, inputs_sparse, inputs_dense, seed):
    """Forward and backward equal; float64 tests the algorithm to 1e-12, float32 the
    round-off (a weight gradient sums ~100 products of O(1) numbers: ~1e-5 absolute)."""
    g = torch.Generator().manual_seed(seed + 99)
    grad = torch.randn(out_sparse.shape, generator=g, dtype=out_sparse.dtype)
    tol = 1e-12 if out_sparse.dtype == torch.float64 else 5e-5
    torch.testing.assert_close(out_sparse, out_dense, rtol=tol, atol=tol)
    gs = torch.autograd.grad(out_sparse, inputs_sparse, grad)
    gd = torch.autograd.grad(out_dense, inputs_dense, grad)
    for a, b in zip(gs, gd):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)


@pytest.mark.parametrize("kernel_size", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("algorithm", ["gemm", "scatter"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_submanifold_matches_dense(kernel_size, algorithm, dtype):
    coords = random_sites(kernel_size)
    mgr = CoordinateManager(coords)
    g = torch.Generator().manual_seed(1)
    feats = torch.randn(len(coords), 3, generator=g, dtype=dtype, requires_grad=True)
    conv = Conv3d(3, 4, kernel_size, algorithm=algorithm).to(dtype)
    out = conv(SparseTensor(feats, 1, mgr)).feats

    pad = (kernel_size - 1) // 2
    size = GRID + 8
    dfeats = feats.detach().clone().requires_grad_(True)
    wd = conv.weight.detach().clone().requires_grad_(True)
    dense = to_dense(dfeats, coords, 1, size)
    dense = TF.pad(dense, (pad, kernel_size - 1 - pad) * 3)
    ref = at_sites(TF.conv3d(dense, dense_weight(wd, kernel_size)), coords, 1)
    _compare(out, ref, (feats, conv.weight), (dfeats, wd), kernel_size)


@pytest.mark.parametrize("kernel_size,stride", [(2, 2), (3, 2), (3, 3), (4, 2), (2, 3)])
@pytest.mark.parametrize("in_stride", [1, 2])
def test_strided_matches_dense(kernel_size, stride, in_stride):
    base = random_sites(10 * kernel_size + stride, density=0.3)
    mgr = CoordinateManager(base)
    if in_stride == 2:  # start from a coarser tensor reached by a stride-2 convolution
        mgr.down(1, 2, 2)
    coords = mgr.coords(in_stride)
    g = torch.Generator().manual_seed(2)
    feats = torch.randn(len(coords), 3, generator=g, dtype=torch.float64, requires_grad=True)
    conv = Conv3d(3, 5, kernel_size, stride).double()
    y = conv(SparseTensor(feats, in_stride, mgr))
    assert y.stride == in_stride * stride
    out_coords = y.coords
    assert torch.equal(torch.unique(out_coords, dim=0), out_coords)

    pad = (kernel_size - 1) // 2
    size = GRID + 8
    dfeats = feats.detach().clone().requires_grad_(True)
    wd = conv.weight.detach().clone().requires_grad_(True)
    dense = to_dense(dfeats, coords, in_stride, size)
    dense = TF.pad(dense, (pad, kernel_size + stride) * 3)
    ref_full = TF.conv3d(dense, dense_weight(wd, kernel_size), stride=stride)
    ref = at_sites(ref_full, out_coords, in_stride * stride)
    _compare(y.feats, ref, (feats, conv.weight), (dfeats, wd), kernel_size)
    # the output sites are exactly the coarse voxels holding an input site
    expect = coords.clone()
    expect[:, 1:] = coords[:, 1:] // (in_stride * stride) * (in_stride * stride)
    assert torch.equal(torch.unique(expect, dim=0), torch.unique(out_coords, dim=0))


@pytest.mark.parametrize("kernel_size,stride", [(2, 2), (3, 2), (4, 2), (3, 3)])
@pytest.mark.parametrize("algorithm", ["gemm", "scatter"])
def test_transposed_matches_dense(kernel_size, stride, algorithm):
    fine = random_sites(kernel_size * 7 + stride, density=0.3)
    mgr = CoordinateManager(fine)
    mgr.down(1, kernel_size, stride)
    coarse = mgr.coords(stride)
    g = torch.Generator().manual_seed(3)
    feats = torch.randn(len(coarse), 4, generator=g, dtype=torch.float64, requires_grad=True)
    conv = Conv3d(4, 3, kernel_size, stride, transposed=True, algorithm=algorithm).double()
    y = conv(SparseTensor(feats, stride, mgr))
    assert y.stride == 1 and y.feats.shape == (len(fine), 3)

    pad = (kernel_size - 1) // 2
    size = GRID + 8
    dfeats = feats.detach().clone().requires_grad_(True)
    wd = conv.weight.detach().clone().requires_grad_(True)
    dense = to_dense(dfeats, coarse, stride, size)
    w_t = wd.permute(1, 2, 0).reshape(4, 3, kernel_size, kernel_size, kernel_size)
    ref_full = TF.conv_transpose3d(dense, w_t, stride=stride)
    ref = at_sites(ref_full, fine, 1, shift=pad)
    _compare(y.feats, ref, (feats, conv.weight), (dfeats, wd), kernel_size)


def test_algorithms_agree_on_clustered_sites():
    """gemm and scatter give the same result (and gradients) on a realistic pattern."""
    g = torch.Generator().manual_seed(5)
    pts = torch.randn(3000, 3, generator=g) * torch.tensor([6.0, 6.0, 10.0]) + 40
    coords = torch.unique(torch.cat([torch.zeros(3000, 1, dtype=torch.long), pts.long()], 1), dim=0)
    mgr = CoordinateManager(coords)
    feats = torch.randn(len(coords), 8, generator=g)
    w = torch.randn(27, 8, 6, generator=g)
    kmap = mgr.submanifold(1, 3)
    a = sparse_conv(feats, kmap, w, algorithm="gemm")
    b = sparse_conv(feats, kmap, w, algorithm="scatter")
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_kernel_maps_are_cached_and_shared():
    coords = random_sites(7)
    mgr = CoordinateManager(coords)
    first = mgr.submanifold(1, 3)
    assert mgr.submanifold(1, 3).nbr is first.nbr
    down = mgr.down(1, 2, 2)
    assert mgr.down(1, 2, 2).nbr is down.nbr
    assert mgr.up(1, 2, 2).parent is not None
    names = list(mgr.tensors())
    assert names == ["subm_s1_k3.nbr", "down_s1_k2_c2.nbr", "up_s1_k2_c2.parent"]


def test_frozen_manager_reproduces_output():
    coords = random_sites(8)
    mgr = CoordinateManager(coords)
    conv_a, conv_b = Conv3d(2, 3), Conv3d(3, 3, 2, 2)
    feats = torch.randn(len(coords), 2)
    out = conv_b(conv_a(SparseTensor(feats, 1, mgr)))
    frozen = CoordinateManager.from_tensors(mgr.tensors())
    again = conv_b(conv_a(SparseTensor(feats, 1, frozen)))
    torch.testing.assert_close(out.feats, again.feats)
    with pytest.raises(Exception, match="frozen"):
        Conv3d(3, 3, 5)(SparseTensor(out.feats, 2, frozen))


def test_kernel_offsets_follow_conv3d_weight_order():
    offs = kernel_offsets(3)
    assert offs.shape == (27, 3)
    assert offs[0].tolist() == [-1, -1, -1] and offs[1].tolist() == [-1, -1, 0]
    assert offs[13].tolist() == [0, 0, 0]
    assert kernel_offsets(2).tolist()[1] == [0, 0, 1]


def test_bad_inputs_are_reported():
    from caloreco.errors import CalorecoError

    with pytest.raises(CalorecoError, match=r"shape \[V, 4\]"):
        CoordinateManager(torch.zeros(3, 3, dtype=torch.long))
    with pytest.raises(CalorecoError, match="out of range"):
        CoordinateManager(torch.tensor([[0, -1, 0, 0]]))
    with pytest.raises(CalorecoError, match="input channels"):
        Conv3d(4, 2)(SparseTensor(torch.zeros(1, 3), 1, CoordinateManager(torch.zeros(1, 4, dtype=torch.long))))
    with pytest.raises(CalorecoError, match="stride > 1"):
        Conv3d(2, 2, transposed=True)


@pytest.mark.parametrize("shift", [0, 2, 65530])
def test_offset_lookup_matches_full_lookup_at_grid_edges(shift):
    """The additive-key fast path and the re-packing fallback (near 0 and 2**16) agree."""
    from caloreco.sparse.coords import SortedKeys

    coords = random_sites(11, density=0.4)
    coords[:, 1:] += shift - 3
    coords = coords[(coords[:, 1:] < 2 ** 16).all(1)]
    keys = SortedKeys(coords)
    offs = kernel_offsets(5) * 2
    fast = keys.lookup_offsets(coords, offs)
    full = torch.zeros(len(coords), len(offs), 4, dtype=torch.long)
    full[..., 1:] = offs
    torch.testing.assert_close(fast, keys.lookup(coords[:, None, :] + full))
    assert (fast < len(coords)).any() and (fast == len(coords)).any()
