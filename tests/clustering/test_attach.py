"""Attachment of left-over hits against a brute-force reference, chunking, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import caloreco.clustering.attach as attach_mod
from caloreco.clustering.attach import attach_leftovers, check_attach
from caloreco.errors import ConfigError, InvalidDataError


def reference(cid: np.ndarray, xyz: np.ndarray, event: np.ndarray, radius: float,
              passes: int, candidates: np.ndarray | None = None) -> np.ndarray:
    """Hit by hit: nearest assigned hit of the same event within radius, lowest index on
    ties; with ``candidates`` only those unassigned hits are attached."""
    out = cid.copy()
    for _ in range(passes):
        prev = out.copy()
        todo = prev < 0 if candidates is None else (prev < 0) & candidates
        for i in np.flatnonzero(todo):
            cand = np.flatnonzero((prev >= 0) & (event == event[i]))
            if cand.size == 0:
                continue
            d2 = ((xyz[cand] - xyz[i]) ** 2).sum(1)
            ok = d2 <= radius ** 2
            if ok.any():
                best = cand[ok][d2[ok] == d2[ok].min()].min()
                out[i] = prev[best]
    return out


def _case(seed: int, n: int = 600, events: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    # clumps (showers) plus uniform noise, on a 0.5 cm lattice so that exact ties occur
    centres = rng.uniform(-30, 30, (8, 3))
    xyz = np.concatenate([centres[rng.integers(0, 8, n // 2)] + rng.normal(0, 3, (n // 2, 3)),
                          rng.uniform(-40, 40, (n - n // 2, 3))])
    xyz = np.round(xyz * 2) / 2
    cid = np.where(rng.random(n) < 0.4, rng.integers(0, 6, n), -1)
    event = rng.integers(0, events, n) * 7 - 3  # arbitrary, unsorted event labels
    return cid.astype(np.int64), xyz, event.astype(np.int64)


@pytest.mark.parametrize("seed,radius,passes", [(0, 3.0, 1), (1, 3.0, 3), (2, 1.0, 2), (3, 8.0, 2)])
def test_attach_matches_the_hit_by_hit_reference(seed: int, radius: float, passes: int) -> None:
    cid, xyz, event = _case(seed)
    got = attach_leftovers(torch.from_numpy(cid), torch.from_numpy(xyz), torch.from_numpy(event),
                           radius=radius, passes=passes)
    want = reference(cid, xyz, event, radius, passes)
    np.testing.assert_array_equal(got.numpy(), want)
    assert (want >= 0).sum() > (cid >= 0).sum()  # the case does attach hits


@pytest.mark.parametrize("seed,radius,passes", [(6, 3.0, 3), (7, 8.0, 2)])
def test_attach_only_candidates_matches_the_reference(seed: int, radius: float,
                                                      passes: int) -> None:
    """With a candidate mask (a signal head's verdict), only candidates are attached, and a
    non-candidate never passes a cluster on to a hit beyond it."""
    cid, xyz, event = _case(seed)
    cand = np.random.default_rng(seed + 100).random(len(cid)) < 0.5
    got = attach_leftovers(torch.from_numpy(cid), torch.from_numpy(xyz), torch.from_numpy(event),
                           radius=radius, passes=passes, candidates=torch.from_numpy(cand))
    want = reference(cid, xyz, event, radius, passes, cand)
    np.testing.assert_array_equal(got.numpy(), want)
    grown = (want >= 0) & (cid < 0)
    assert grown.any() and not (grown & ~cand).any()
    everyone = reference(cid, xyz, event, radius, passes)
    assert ((everyone >= 0) & ~cand & (cid < 0)).any()  # the mask did hold hits back
    # a chain along x: clustered hit, non-candidate 2 cm on, candidate 4 cm on
    chain = attach_leftovers(torch.tensor([0, -1, -1]),
                             torch.tensor([[0.0, 0, 0], [2.0, 0, 0], [4.0, 0, 0]]), None,
                             radius=2.5, passes=3, candidates=torch.tensor([True, False, True]))
    assert chain.tolist() == [0, -1, -1]
    with pytest.raises(InvalidDataError, match="candidates must be a bool mask"):
        attach_leftovers(torch.tensor([0, -1]), torch.zeros(2, 3), None, radius=1.0,
                         candidates=torch.ones(2))
    with pytest.raises(InvalidDataError, match="candidates must be a bool mask of shape \\[2\\]"):
        attach_leftovers(torch.tensor([0, -1]), torch.zeros(2, 3), None, radius=1.0,
                         candidates=torch.ones(3, dtype=torch.bool))


def test_attach_in_small_chunks_is_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    cid, xyz, event = _case(5, n=800, events=2)
    full = attach_leftovers(torch.from_numpy(cid), torch.from_numpy(xyz), torch.from_numpy(event),
                            radius=6.0, passes=2)
    monkeypatch.setattr(attach_mod, "_PAIR_CHUNK", 37)
    small = attach_leftovers(torch.from_numpy(cid), torch.from_numpy(xyz),
                             torch.from_numpy(event), radius=6.0, passes=2)
    np.testing.assert_array_equal(small.numpy(), full.numpy())
    monkeypatch.setattr(attach_mod, "_QUERY_BLOCK", 5)  # unassigned hits in blocks of 5
    blocks = attach_leftovers(torch.from_numpy(cid), torch.from_numpy(xyz),
                              torch.from_numpy(event), radius=6.0, passes=2)
    np.testing.assert_array_equal(blocks.numpy(), full.numpy())
    assert torch.equal(full, small)
    np.testing.assert_array_equal(full.numpy(), reference(cid, xyz, event, 6.0, 2))


def test_attach_never_crosses_events_and_keeps_assigned_hits() -> None:
    xyz = torch.tensor([[0.0, 0, 0], [0.5, 0, 0], [0.2, 0, 0], [9.0, 0, 0]])
    cid = torch.tensor([4, -1, -1, -1])
    batch = torch.tensor([0, 0, 1, 0])
    got = attach_leftovers(cid, xyz, batch, radius=1.0, passes=3)
    assert got.tolist() == [4, 4, -1, -1]  # hit 2 is near but in another event; hit 3 far
    assert attach_leftovers(cid, xyz, None, radius=1.0).tolist() == [4, 4, 4, -1]


def test_attach_edge_cases_and_errors() -> None:
    empty = attach_leftovers(torch.zeros(0, dtype=torch.long), torch.zeros(0, 3), None, radius=2.0)
    assert empty.shape == (0,)
    none = torch.full((3,), -1)
    assert torch.equal(attach_leftovers(none, torch.zeros(3, 3), None, radius=2.0), none)
    with pytest.raises(ConfigError, match="radius"):
        check_attach(0.0, 1)
    with pytest.raises(ConfigError, match="passes"):
        check_attach(2.0, 0)
    assert check_attach(None, 0) is None
    with pytest.raises(InvalidDataError, match=r"\[2, 3\]"):
        attach_leftovers(torch.tensor([0, -1]), torch.zeros(2, 2), None, radius=1.0)
    with pytest.raises(InvalidDataError, match="non-finite"):
        attach_leftovers(torch.tensor([0, -1]), torch.tensor([[0.0, 0, 0], [np.nan, 0, 0]]),
                         None, radius=1.0)
    # hits 30 000 cubes apart: the fine stage (3x as many cubes) does not fit in the key
    # and is skipped, the result is the same; 70 000 apart: too wide for the radius
    far = torch.tensor([[0.0, 0, 0], [0.5, 0, 0], [1.2, 0, 0], [30000.0, 0, 0],
                        [30000.4, 0, 0]], dtype=torch.float64)
    cid = torch.tensor([0, -1, -1, 1, -1])
    got = attach_leftovers(cid, far, None, radius=1.0, passes=2)
    assert got.tolist() == reference(cid.numpy(), far.numpy(), np.zeros(5, np.int64), 1.0,
                                     2).tolist() == [0, 0, 0, 1, 1]
    with pytest.raises(InvalidDataError, match="span more than 65534 cubes of 1.0 cm"):
        attach_leftovers(cid, far * 3, None, radius=1.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.gpu
def test_attach_cuda_matches_cpu() -> None:
    cid, xyz, event = _case(7, n=3000, events=4)
    args = (torch.from_numpy(cid), torch.from_numpy(xyz).float(), torch.from_numpy(event))
    cpu = attach_leftovers(*args, radius=4.0, passes=3)
    gpu = attach_leftovers(*(a.cuda() for a in args), radius=4.0, passes=3)
    assert gpu.device.type == "cuda"
    np.testing.assert_array_equal(gpu.cpu().numpy(), cpu.numpy())
    cand = torch.from_numpy(np.random.default_rng(8).random(len(cid)) < 0.5)
    cpu = attach_leftovers(*args, radius=4.0, passes=3, candidates=cand)
    gpu = attach_leftovers(*(a.cuda() for a in args), radius=4.0, passes=3,
                           candidates=cand.cuda())
    np.testing.assert_array_equal(gpu.cpu().numpy(), cpu.numpy())
