"""kNN within events: cKDTree (CPU) and chunked cdist paths against brute force."""

from __future__ import annotations

import pytest
import torch

from caloreco.errors import ConfigError, InvalidDataError
from caloreco.models.knn import knn, knn_cdist


def _data(sizes: list[int], dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    batch = torch.cat([torch.full((n,), b) for b, n in enumerate(sizes)])
    perm = torch.randperm(len(batch), generator=g)  # events interleaved: batch not sorted
    return torch.randn(len(batch), dim, generator=g), batch[perm]


def _brute(x: torch.Tensor, k: int, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference: dense float64 distances, other events at +inf, padding = self."""
    x = x.double()
    d = torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist")
    d[batch[:, None] != batch[None, :]] = float("inf")
    dist, idx = torch.topk(d, k, dim=1, largest=False)
    mask = torch.isfinite(dist)
    idx[~mask] = torch.arange(len(x))[:, None].expand_as(idx)[~mask]
    return idx, mask


@pytest.mark.parametrize("k", [1, 5, 12])
def test_cpu_matches_brute_force(k):
    x, batch = _data([30, 7, 50, 1], 4, seed=k)  # events of 7 and 1 points: fewer than k
    idx, mask = knn(x, k, batch)
    ref_idx, ref_mask = _brute(x, k, batch)
    assert idx.dtype == torch.long and idx.shape == (len(x), k) and mask.dtype == torch.bool
    torch.testing.assert_close(mask, ref_mask)
    torch.testing.assert_close(idx, ref_idx)
    assert bool((idx[:, 0] == torch.arange(len(x))).all())  # self first
    assert bool((batch[idx] == batch[:, None]).all())  # never across events


def test_chunked_cdist_matches_brute_force_on_cpu():
    x, batch = _data([40, 3, 25], 3, seed=7)
    k = 6
    ref_idx, ref_mask = _brute(x, k, batch)
    for chunk in (1, 7, 4096):
        idx, mask = knn_cdist(x, k, batch, chunk=chunk)
        torch.testing.assert_close(mask, ref_mask)
        # cdist goes through a matrix product: compare distances (robust to near-ties)
        dist = (x[:, None] - x[idx]).norm(dim=-1)
        ref = (x[:, None] - x[ref_idx]).norm(dim=-1)
        torch.testing.assert_close(dist, ref, atol=1e-5, rtol=1e-5)
        assert bool((batch[idx] == batch[:, None]).all())


def test_default_batch_empty_input_and_errors():
    x = torch.randn(20, 2)
    idx, mask = knn(x, 3)
    torch.testing.assert_close(idx, _brute(x, 3, torch.zeros(20, dtype=torch.long))[0])
    assert bool(mask.all())
    idx, mask = knn(torch.zeros(0, 4), 5, torch.zeros(0, dtype=torch.long))
    assert idx.shape == (0, 5) and mask.shape == (0, 5)
    with pytest.raises(ConfigError, match="k >= 1"):
        knn(x, 0)
    with pytest.raises(InvalidDataError, match="batch of shape"):
        knn(x, 3, torch.zeros(5, dtype=torch.long))
    with pytest.raises(InvalidDataError, match="non-finite"):
        knn(torch.full((4, 2), float("nan")), 2)


def test_indices_carry_no_gradient():
    x = torch.randn(10, 3, requires_grad=True)
    idx, _ = knn(x, 4)
    assert not idx.requires_grad


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    x, batch = _data([300, 20, 500], 4, seed=3)
    k = 40
    idx, mask = knn(x.cuda(), k, batch.cuda())
    assert idx.is_cuda and mask.is_cuda
    ref_idx, ref_mask = knn(x, k, batch)
    torch.testing.assert_close(mask.cpu(), ref_mask)
    dist = (x[:, None] - x[idx.cpu()]).norm(dim=-1)
    ref = (x[:, None] - x[ref_idx]).norm(dim=-1)
    torch.testing.assert_close(dist, ref, atol=1e-5, rtol=1e-5)
