"""Voxelisation and trilinear devoxelisation."""

from __future__ import annotations

import pytest
import torch

from caloreco.errors import CalorecoError
from caloreco.sparse import SparseTensor, to_points, to_voxels, voxelize
from caloreco.sparse.functional import point_to_voxel


def test_voxelize_groups_points_and_averages():
    pts = torch.tensor([[1.2, 1.3, 0.5], [1.9, 1.1, 0.2], [5.5, 1.0, 0.5], [1.5, 1.5, 0.5]])
    batch = torch.tensor([0, 0, 0, 1])
    mgr, p2v = voxelize(pts, batch)
    coords = mgr.coords(1)
    assert coords.tolist() == [[0, 1, 1, 0], [0, 5, 1, 0], [1, 1, 1, 0]]
    assert p2v.tolist() == [0, 0, 1, 2]  # same voxel and event -> same row; other event apart
    feats = torch.tensor([[1.0], [3.0], [5.0], [7.0]])
    assert point_to_voxel(feats, p2v, 3).squeeze(1).tolist() == [2.0, 5.0, 7.0]


def test_interpolation_reproduces_linear_fields():
    """Trilinear interpolation is exact for a linear function of the voxel centres when all
    8 corners exist, and its weights always sum to one."""
    g = torch.Generator().manual_seed(0)
    grid = torch.stack(torch.meshgrid(*[torch.arange(4.0)] * 3, indexing="ij"), -1).reshape(-1, 3)
    pts_grid = grid + 0.5  # one point at each voxel centre: all voxels occupied
    inner = torch.rand(50, 3, generator=g) * 3 + 0.5  # between centres, inside the grid
    pts = torch.cat([pts_grid, inner])
    mgr, _ = voxelize(pts, torch.zeros(len(pts), dtype=torch.long))
    centres = mgr.coords(1)[:, 1:].double() + 0.5
    field = centres @ torch.tensor([[0.3], [-1.2], [2.0]], dtype=torch.float64) + 0.7
    x = SparseTensor(field.float(), 1, mgr)
    got = to_points(x).squeeze(1).double()
    want = pts.double() @ torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64) + 0.7
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    _, w = mgr.interpolation(1)
    torch.testing.assert_close(w.sum(1), torch.ones(len(pts)))


def test_interpolation_with_missing_corners_and_coarser_strides():
    pts = torch.tensor([[10.2, 10.7, 3.5], [40.0, 40.0, 3.5], [10.9, 11.2, 4.4]])
    mgr, p2v = voxelize(pts, torch.zeros(3, dtype=torch.long))
    x = SparseTensor(point_to_voxel(torch.tensor([[1.0], [2.0], [3.0]]), p2v, 3), 1, mgr)
    # the isolated point only has its own voxel: it gets exactly its value back
    assert to_points(x)[1].item() == pytest.approx(2.0)
    # nearest mode reads the containing voxel
    assert to_points(x, nearest=True).squeeze(1).tolist() == [1.0, 2.0, 3.0]
    # at stride 4 the points fall into coarser voxels; round trip of constants is exact
    mgr.down(1, 2, 2)
    mgr.down(2, 2, 2)
    coarse = to_voxels(torch.ones(3, 1), SparseTensor(torch.zeros(mgr.n_voxels(4), 1), 4, mgr))
    torch.testing.assert_close(to_points(coarse), torch.ones(3, 1))


def test_voxelize_rejects_bad_points():
    with pytest.raises(CalorecoError, match="outside the voxel grid"):
        voxelize(torch.tensor([[-1.0, 0.0, 0.0]]), torch.zeros(1, dtype=torch.long))
    with pytest.raises(CalorecoError, match="non-finite"):
        voxelize(torch.tensor([[float("nan"), 0.0, 0.0]]), torch.zeros(1, dtype=torch.long))
    with pytest.raises(CalorecoError, match=r"\[N, 3\]"):
        voxelize(torch.zeros(4, 2), torch.zeros(4, dtype=torch.long))


@pytest.mark.parametrize("stride", [1, 2, 4])
def test_interpolation_corners_match_explicit_lookup(stride):
    """Corner rows from the additive-key lookup equal a per-corner search of the voxel
    coordinates, for points near the grid origin (corners at -1) and inside it, two events."""
    g = torch.Generator().manual_seed(3)
    pts = torch.rand(300, 3, generator=g) * 12
    batch = torch.randint(0, 2, (300,), generator=g)
    mgr, _ = voxelize(pts, batch)
    s = 1
    while s < stride:  # the coarser voxels exist once the down-sampling maps are built
        mgr.down(s, 2, 2)
        s *= 2
    idx, w = mgr.interpolation(stride)
    coords = mgr.coords(stride)
    table = {tuple(r): i for i, r in enumerate(coords.tolist())}
    lo = torch.floor(pts / stride - 0.5).long() * stride
    for p in range(len(pts)):
        for c, (a, b, d) in enumerate([(a, b, d) for a in (0, 1) for b in (0, 1) for d in (0, 1)]):
            key = (int(batch[p]), *(lo[p] + torch.tensor([a, b, d]) * stride).tolist())
            assert idx[p, c].item() == table.get(key, len(coords))
    assert (idx == len(coords)).any()  # some corners are absent
    torch.testing.assert_close(w.sum(1), torch.ones(len(pts)))
