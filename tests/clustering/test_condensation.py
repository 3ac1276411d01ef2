"""Tests of object condensation inference against a plain Python reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import caloreco.clustering.condensation as cc
from caloreco.clustering.condensation import cluster_summary, condensation_clustering
from caloreco.errors import ConfigError, InvalidDataError


def _within(x: np.ndarray, j: int, c: int, t_d: float, pos: np.ndarray | None,
            r_max: float | None) -> bool:
    """Hit j within t_d of c in the clustering space (and r_max in ``pos`` if given)."""
    inside = bool(np.sum((x[j] - x[c]) ** 2) <= np.float32(t_d) ** 2)
    if pos is not None:
        inside &= bool(np.sum((pos[j] - pos[c]) ** 2) <= np.float32(r_max) ** 2)
    return inside


def _reference_clustering(beta: np.ndarray, x: np.ndarray, batch: np.ndarray,
                          t_beta: float, t_d: float, pos: np.ndarray | None = None,
                          r_max: float | None = None) -> np.ndarray:
    """The greedy algorithm hit by hit, one event at a time."""
    out = np.full(len(beta), -1, dtype=np.int64)
    for e in np.unique(batch):
        hits = np.flatnonzero(batch == e)
        k = 0
        for c in sorted(hits.tolist(), key=lambda i: (-beta[i], i)):
            if beta[c] <= t_beta:
                break
            if out[c] != -1:
                continue
            for j in hits:
                if out[j] == -1 and _within(x, j, c, t_d, pos, r_max):
                    out[j] = k
            k += 1
    return out


def _reference_nearest(beta: np.ndarray, x: np.ndarray, batch: np.ndarray,
                       t_beta: float, t_d: float, pos: np.ndarray | None = None,
                       r_max: float | None = None) -> np.ndarray:
    """The same points as :func:`_reference_clustering`; each hit to its nearest point
    within t_d (the earlier point on equal distances)."""
    first = _reference_clustering(beta, x, batch, t_beta, t_d, pos, r_max)
    out = np.full(len(beta), -1, dtype=np.int64)
    for e in np.unique(batch):
        hits = np.flatnonzero(batch == e)
        points = sorted((i for i in hits if beta[i] > t_beta and first[i] != -1
                         and not any(first[i] == first[j] and (-beta[j], j) < (-beta[i], i)
                                     for j in hits)), key=lambda i: (-beta[i], i))
        for j in hits:
            d2 = [float(np.sum((x[j] - x[c]) ** 2)) for c in points]
            inside = [k for k, c in enumerate(points) if _within(x, j, c, t_d, pos, r_max)]
            if inside:
                out[j] = min(inside, key=lambda k: (d2[k], k))
    return out


def _random(seed: int, n: int, n_events: int, dim: int = 3
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    beta = torch.randint(0, 12, (n,), generator=g).float() / 12  # many ties
    x = torch.rand(n, dim, generator=g) * 3
    batch = torch.randint(0, n_events, (n,), generator=g)
    return beta, x, batch


@pytest.mark.parametrize("seed", range(6))
def test_matches_reference(seed: int) -> None:
    beta, x, batch = _random(seed, 300, 1 + seed % 3)
    for t_beta, t_d in [(0.1, 0.7), (0.5, 0.3), (0.05, 1.5)]:
        got = condensation_clustering(beta, x, batch, t_beta=t_beta, t_d=t_d)
        ref = _reference_clustering(beta.numpy(), x.numpy(), batch.numpy(), t_beta, t_d)
        np.testing.assert_array_equal(got.numpy(), ref)


@pytest.mark.parametrize("seed", range(4))
def test_nearest_matches_reference(seed: int) -> None:
    beta, x, batch = _random(seed, 300, 1 + seed % 3)
    for t_beta, t_d in [(0.1, 0.7), (0.5, 0.3), (0.05, 1.5)]:
        got = condensation_clustering(beta, x, batch, t_beta=t_beta, t_d=t_d, assign="nearest")
        ref = _reference_nearest(beta.numpy(), x.numpy(), batch.numpy(), t_beta, t_d)
        np.testing.assert_array_equal(got.numpy(), ref)
        first = condensation_clustering(beta, x, batch, t_beta=t_beta, t_d=t_d)
        # the same hits are clustered, only the choice among points within t_d differs
        np.testing.assert_array_equal(got.numpy() >= 0, first.numpy() >= 0)


def test_nearest_hand_example() -> None:
    # points at 0 (beta 0.9) and 1.0 (beta 0.8), t_d 0.7: the hit at 0.6 is within t_d of
    # both; "first" gives it to the higher-beta point, "nearest" to the closer one; the hit
    # at 0.5 is equally near both and goes to the earlier point
    beta = torch.tensor([0.9, 0.8, 0.05, 0.05])
    x = torch.tensor([[0.0], [1.0], [0.6], [0.5]])
    assert condensation_clustering(beta, x, t_d=0.7).tolist() == [0, 1, 0, 0]
    assert condensation_clustering(beta, x, t_d=0.7, assign="nearest").tolist() == [0, 1, 1, 0]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("assign", ["first", "nearest"])
def test_locality_cut_matches_reference(seed: int, assign: str) -> None:
    beta, x, batch = _random(seed, 300, 1 + seed % 3)
    pos = torch.rand(300, 2, generator=torch.Generator().manual_seed(100 + seed)) * 10
    reference = _reference_clustering if assign == "first" else _reference_nearest
    for t_beta, t_d, r_max in [(0.1, 0.7, 3.0), (0.5, 0.3, 6.0), (0.05, 1.5, 2.0)]:
        got = condensation_clustering(beta, x, batch, t_beta=t_beta, t_d=t_d, assign=assign,
                                      positions=pos, r_max=r_max)
        ref = reference(beta.numpy(), x.numpy(), batch.numpy(), t_beta, t_d, pos.numpy(), r_max)
        np.testing.assert_array_equal(got.numpy(), ref)
        plain = condensation_clustering(beta, x, batch, t_beta=t_beta, t_d=t_d, assign=assign)
        assert (got != plain).any()  # the cut changes the result on these inputs
    # a cut wider than every distance changes nothing
    wide = condensation_clustering(beta, x, batch, assign=assign, positions=pos, r_max=100.0)
    np.testing.assert_array_equal(wide.numpy(),
                                  condensation_clustering(beta, x, batch, assign=assign).numpy())


def test_locality_cut_in_small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cc, "_BLOCK_ELEMENTS", 64)  # wide-event and chunked paths
    beta, x, batch = _random(11, 400, 3, dim=2)
    pos = torch.rand(400, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 8
    for assign, reference in [("first", _reference_clustering), ("nearest", _reference_nearest)]:
        got = condensation_clustering(beta, x, batch, t_beta=0.1, t_d=0.4, assign=assign,
                                      positions=pos, r_max=3.0)
        ref = reference(beta.numpy(), x.numpy(), batch.numpy(), 0.1, 0.4, pos.numpy(), 3.0)
        np.testing.assert_array_equal(got.numpy(), ref)


def test_locality_cut_hand_example() -> None:
    # two showers the network put at the same place of the clustering space, 30 cm apart in
    # the detector: without the cut one cluster, with r_max 10 cm two; a hit 12 cm from
    # both points belongs to neither
    beta = torch.tensor([0.9, 0.8, 0.05, 0.05, 0.05])
    x = torch.tensor([[0.0], [0.1], [0.05], [0.05], [0.0]])
    pos = torch.tensor([[0.0, 0.0], [30.0, 0.0], [2.0, 0.0], [29.0, 0.0], [15.0, 0.0]])
    assert condensation_clustering(beta, x, t_d=0.7).tolist() == [0, 0, 0, 0, 0]
    assert condensation_clustering(beta, x, t_d=0.7, positions=pos,
                                   r_max=10.0).tolist() == [0, 1, 0, 1, -1]


def test_matches_reference_in_small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cc, "_BLOCK_ELEMENTS", 64)  # many blocks and hit chunks
    beta, x, batch = _random(42, 400, 3, dim=2)
    got = condensation_clustering(beta, x, batch, t_beta=0.1, t_d=0.4)
    ref = _reference_clustering(beta.numpy(), x.numpy(), batch.numpy(), 0.1, 0.4)
    np.testing.assert_array_equal(got.numpy(), ref)


@pytest.mark.parametrize("precision", ["highest", "medium"])
def test_exact_on_the_boundary(precision: str) -> None:
    """Grid hits at exactly t_d, far from the origin: the matrix product alone would err."""
    g = torch.Generator().manual_seed(5)
    grid = torch.randint(0, 8, (300, 2), generator=g).float() * 0.5 + 1000.0
    beta = torch.randint(1, 6, (300,), generator=g).float() / 6
    batch = torch.randint(0, 2, (300,), generator=g)
    old = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision(precision)
    try:
        got = condensation_clustering(beta, grid, batch, t_beta=0.1, t_d=0.5)
    finally:
        torch.set_float32_matmul_precision(old)
    ref = _reference_clustering(beta.numpy(), grid.numpy(), batch.numpy(), 0.1, 0.5)
    np.testing.assert_array_equal(got.numpy(), ref)


def test_hand_example_and_id_order() -> None:
    beta = torch.tensor([0.3, 0.9, 0.05, 0.8, 0.2, 0.95])
    x = torch.tensor([[0.0], [0.5], [0.1], [5.0], [9.0], [5.3]])
    batch = torch.tensor([0, 0, 0, 1, 1, 1])
    got = condensation_clustering(beta, x, batch, t_beta=0.1, t_d=0.7)
    # event 0: hit 1 is the point, takes 0 and 2; event 1: hit 5 (0.95) then hit 4 (0.2)
    assert got.tolist() == [0, 0, 0, 0, 1, 0]
    # a candidate claimed by an earlier point is not a point, even if far from the rest
    beta = torch.tensor([0.9, 0.5, 0.4])
    x = torch.tensor([[0.0], [0.6], [1.2]])
    assert condensation_clustering(beta, x, t_d=0.7).tolist() == [0, 0, 1]


def test_noise_and_empty() -> None:
    assert condensation_clustering(torch.full((4,), 0.05), torch.rand(4, 2)).tolist() == [-1] * 4
    out = condensation_clustering(torch.zeros(0), torch.zeros(0, 3))
    assert out.shape == (0,) and out.dtype == torch.int64


def test_invalid_arguments() -> None:
    beta, x = torch.rand(5), torch.rand(5, 2)
    with pytest.raises(ConfigError, match="t_beta"):
        condensation_clustering(beta, x, t_beta=1.0)
    with pytest.raises(ConfigError, match="t_d"):
        condensation_clustering(beta, x, t_d=0.0)
    with pytest.raises(ConfigError, match="assign must be one of"):
        condensation_clustering(beta, x, assign="closest")
    with pytest.raises(InvalidDataError, match=r"x must have shape \[N, D\].*\[4, 2\]"):
        condensation_clustering(beta, torch.rand(4, 2))
    with pytest.raises(InvalidDataError, match="batch"):
        condensation_clustering(beta, x, torch.zeros(5))
    pos = torch.rand(5, 2)
    with pytest.raises(ConfigError, match="positions and r_max go together"):
        condensation_clustering(beta, x, positions=pos)
    with pytest.raises(ConfigError, match="positions and r_max go together"):
        condensation_clustering(beta, x, r_max=5.0)
    with pytest.raises(ConfigError, match="r_max must be a finite number > 0"):
        condensation_clustering(beta, x, positions=pos, r_max=0.0)
    with pytest.raises(InvalidDataError, match=r"positions must be a tensor of shape \[N, P\]"):
        condensation_clustering(beta, x, positions=torch.rand(4, 2), r_max=5.0)
    with pytest.raises(InvalidDataError, match="floating-point"):
        condensation_clustering(beta, x, positions=torch.ones(5, 2, dtype=torch.int64), r_max=5.0)
    pos[3, 1] = float("nan")
    with pytest.raises(InvalidDataError, match="positions of hit 3 are not finite"):
        condensation_clustering(beta, x, positions=pos, r_max=5.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.gpu
def test_cuda_matches_cpu() -> None:
    beta, x, batch = _random(3, 2000, 4)
    cpu = condensation_clustering(beta, x, batch)
    gpu = condensation_clustering(beta.cuda(), x.cuda(), batch.cuda())
    assert gpu.device.type == "cuda"
    np.testing.assert_array_equal(gpu.cpu().numpy(), cpu.numpy())
    cpu = condensation_clustering(beta, x, batch, assign="nearest")
    gpu = condensation_clustering(beta.cuda(), x.cuda(), batch.cuda(), assign="nearest")
    np.testing.assert_array_equal(gpu.cpu().numpy(), cpu.numpy())
    pos = torch.rand(2000, 3, generator=torch.Generator().manual_seed(4)) * 20
    for assign in ("first", "nearest"):
        cpu = condensation_clustering(beta, x, batch, assign=assign, positions=pos, r_max=5.0)
        gpu = condensation_clustering(beta.cuda(), x.cuda(), batch.cuda(), assign=assign,
                                      positions=pos.cuda(), r_max=5.0)
        np.testing.assert_array_equal(gpu.cpu().numpy(), cpu.numpy())


def test_cluster_summary() -> None:
    cid = torch.tensor([0, 0, -1, 1, 0, 0])
    energy = np.array([1.0, 3.0, 9.0, 2.0, 0.0, 0.0])
    x = np.array([0.0, 4.0, 100.0, 7.0, 1.0, 3.0])
    y = np.zeros(6)
    z = np.arange(6.0)
    batch = np.array([0, 0, 0, 0, 2, 2])
    s = cluster_summary(cid, energy, x, y, z, batch)
    assert s["event"].tolist() == [0, 0, 2]
    assert s["cluster"].tolist() == [0, 1, 0]
    np.testing.assert_allclose(s["energy"], [4.0, 2.0, 0.0])
    np.testing.assert_allclose(s["x"], [3.0, 7.0, 2.0])  # zero energy: plain mean
    np.testing.assert_allclose(s["z"], [0.75, 3.0, 4.5])
    assert s["n_hits"].tolist() == [2, 1, 2]
    empty = cluster_summary(np.full(3, -1), np.ones(3), np.ones(3), np.ones(3), np.ones(3))
    assert all(len(v) == 0 for v in empty.values())
    with pytest.raises(InvalidDataError, match="energy has 2 entries"):
        cluster_summary(cid, energy[:2], x, y, z)
    # energy head: the factor of each cluster's highest-beta hit (first on ties) times its sum
    beta = np.array([0.2, 0.9, 0.99, 0.5, 0.7, 0.7])
    factor = np.array([5.0, 1.5, 9.0, 2.0, 3.0, 4.0])
    corr = cluster_summary(cid, energy, x, y, z, batch, beta=beta, energy_factor=factor)
    np.testing.assert_allclose(corr["energy_corrected"], [6.0, 4.0, 0.0])
    assert "energy_corrected" not in s
    with pytest.raises(InvalidDataError, match="go together"):
        cluster_summary(cid, energy, x, y, z, beta=beta)


@pytest.mark.parametrize("block", [1 << 22, 64])
@pytest.mark.parametrize("local", [False, True])
def test_batched_assignment_equals_per_event(monkeypatch: pytest.MonkeyPatch, block: int,
                                             local: bool) -> None:
    """The CUDA assignment (all events at once) and the CPU one (event by event) agree,
    with and without the locality cut; run here on CPU tensors, so CI exercises the GPU
    algorithm too."""
    monkeypatch.setattr(cc, "_BLOCK_ELEMENTS", block)
    calls = []
    orig = cc._assign_per_event
    monkeypatch.setattr(cc, "_assign_per_event",
                        lambda out, hit_order, hit_end, points, near:
                        calls.append((out.clone(), hit_order, points, near)) or
                        orig(out, hit_order, hit_end, points, near))
    beta, x, batch = _random(7, 500, 4)
    pos = torch.rand(500, 2, generator=torch.Generator().manual_seed(8)) * 10 if local else None
    ref = condensation_clustering(beta, x, batch, t_beta=0.1, t_d=0.5, positions=pos,
                                  r_max=3.0 if local else None)
    out0, hit_order, points, near = calls[0]
    assert (near.gate is not None) == local
    _, event = torch.unique(batch, return_inverse=True)
    cc._assign(out0, x, event, hit_order, points, 0.5 ** 2, gate=near.gate)
    np.testing.assert_array_equal(out0.numpy(), ref.numpy())
    assert (ref >= 0).any() and (ref == -1).any()
