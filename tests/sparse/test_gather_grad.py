"""Gathers with contention-free gradients: same values and gradients as the plain ops."""

from __future__ import annotations

import torch

from caloreco.sparse.functional import _event_sum, event_norm, sparse_conv
from caloreco.sparse.gather_grad import event_broadcast, gather_padded
from caloreco.sparse.manager import CoordinateManager


def _sites(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    c = torch.randint(0, 6, (n, 3), generator=g)
    b = torch.randint(0, 2, (n, 1), generator=g)
    return torch.unique(torch.cat([b, c], 1), dim=0)


def test_gather_padded_gradient_matches_index_select():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(7, 3, dtype=torch.float64, generator=g, requires_grad=True)
    index = torch.tensor([0, 7, 3, 7, 7, 3, 6, 0, 7])  # 7 = absent (the zero row)
    present = torch.nonzero(index < 7).squeeze(1)
    out = gather_padded(feats, index, lambda: present)
    ref_feats = feats.detach().clone().requires_grad_()
    ref = torch.cat([ref_feats, ref_feats.new_zeros(1, 3)]).index_select(0, index)
    torch.testing.assert_close(out, ref)
    w = torch.randn(9, 3, dtype=torch.float64, generator=g)
    (out * w).sum().backward()
    (ref * w).sum().backward()
    torch.testing.assert_close(feats.grad, ref_feats.grad)
    assert torch.autograd.gradcheck(lambda f: gather_padded(f, index, lambda: present), (feats,))


def test_gather_padded_plain_without_gradient_and_no_present_call():
    def boom() -> torch.Tensor:
        raise AssertionError("present() must not be needed without a gradient")

    out = gather_padded(torch.ones(2, 2), torch.tensor([2, 1]), boom)
    assert out.tolist() == [[0.0, 0.0], [1.0, 1.0]]


def test_event_broadcast_gradient_is_the_per_event_sum():
    g = torch.Generator().manual_seed(1)
    stat = torch.randn(3, 4, dtype=torch.float64, generator=g, requires_grad=True)
    event = torch.tensor([0, 0, 2, 1, 2, 2, 0])
    assert torch.autograd.gradcheck(lambda s: event_broadcast(s, event, _event_sum), (stat,))
    grad = torch.randn(7, 4, dtype=torch.float64, generator=g)
    event_broadcast(stat, event, _event_sum).backward(grad)
    torch.testing.assert_close(stat.grad, torch.zeros(3, 4, dtype=torch.float64).index_add(0, event, grad))


def test_gemm_convolution_and_event_norm_gradients_unchanged():
    """The gather-GEMM convolution and the per-event norm (the training path on CUDA)
    give the gradients of the scatter convolution and of plain autograd."""
    coords = _sites(60, 2)
    mgr = CoordinateManager(coords)
    kmap = mgr.submanifold(1, 3)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(len(coords), 4, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(27, 4, 5, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: sparse_conv(a, kmap, b, algorithm="gemm"), (x, w))
    y_gemm = sparse_conv(x, kmap, w, algorithm="gemm")
    gx_gemm, gw_gemm = torch.autograd.grad(y_gemm.square().sum(), (x, w))
    y_sc = sparse_conv(x, kmap, w, algorithm="scatter")
    gx_sc, gw_sc = torch.autograd.grad(y_sc.square().sum(), (x, w))
    torch.testing.assert_close(gx_gemm, gx_sc)
    torch.testing.assert_close(gw_gemm, gw_sc)
    event = coords[:, 0].contiguous()
    events = torch.arange(2)
    assert torch.autograd.gradcheck(lambda a: event_norm(a, event, events), (x,))
