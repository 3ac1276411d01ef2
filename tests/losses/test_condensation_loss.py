"""Tests of the object condensation loss against ``object-condensation`` and by hand."""

from __future__ import annotations

import math

import pytest
import torch

from caloreco.errors import ConfigError, InvalidDataError
from caloreco.losses import CondensationLoss, condensation_loss

TERMS = ("attractive", "repulsive", "coward", "noise")


def _event(n: int, n_obj: int, seed: int, dim: int = 3,
           dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, ...]:
    """Random event: beta, x, object_id in [-1, n_obj) (-1 noise), weights."""
    g = torch.Generator().manual_seed(seed)
    beta = torch.rand(n, generator=g, dtype=dtype) * 0.98 + 0.01
    x = torch.randn(n, dim, generator=g, dtype=dtype)
    oid = torch.randint(-1, n_obj, (n,), generator=g)
    oid[0] = 0  # at least one object
    w = torch.rand(n, generator=g, dtype=dtype) + 0.5
    return beta, x, oid, w


@pytest.mark.parametrize("n,n_obj", [(4, 2), (30, 4), (250, 12)])
@pytest.mark.parametrize("weighted", [False, True])
def test_matches_object_condensation(n: int, n_obj: int, weighted: bool) -> None:
    ref = pytest.importorskip("object_condensation.pytorch.losses")
    for seed in range(3):
        beta, x, oid, w = _event(n, n_obj, seed)
        oid[1] = -1  # at least one noise hit
        weights = w if weighted else None
        ours = condensation_loss(beta, x, oid, weights=weights, q_min=0.3)
        theirs = ref.condensation_loss(beta=beta, x=x, object_id=oid + 1, weights=weights,
                                       q_min=0.3, noise_threshold=0)
        for term in TERMS:
            torch.testing.assert_close(ours[term], theirs[term], rtol=1e-5, atol=1e-8,
                                       msg=f"{term}, n={n}, seed={seed}")


def test_matches_object_condensation_float32() -> None:
    ref = pytest.importorskip("object_condensation.pytorch.losses")
    beta, x, oid, _ = _event(400, 10, 7, dtype=torch.float32)
    ours = condensation_loss(beta, x, oid)
    theirs = ref.condensation_loss(beta=beta, x=x, object_id=oid + 1, q_min=0.1,
                                   noise_threshold=0)
    for term in TERMS:
        torch.testing.assert_close(ours[term], theirs[term], rtol=1e-4, atol=1e-6)


def test_batch_is_mean_of_events() -> None:
    events = [_event(n, k, seed) for n, k, seed in [(10, 2, 1), (40, 5, 2), (25, 3, 3)]]
    for e in events:
        e[2][1] = -1
    singles = [condensation_loss(b, x, o, weights=w) for b, x, o, w in events]
    beta, x, oid, w = (torch.cat(t) for t in zip(*events))
    batch = torch.cat([torch.full((len(e[0]),), i) for i, e in enumerate(events)])
    batched = condensation_loss(beta, x, oid, batch, weights=w)
    for term in (*TERMS, "loss"):
        expected = torch.stack([s[term] for s in singles]).mean()
        torch.testing.assert_close(batched[term], expected, rtol=1e-10, atol=0)
    # hit order, event labels and per-event vs global ids do not matter
    perm = torch.randperm(len(beta), generator=torch.Generator().manual_seed(0))
    shuffled = condensation_loss(beta[perm], x[perm], oid[perm], batch[perm] * 7 + 3,
                                 weights=w[perm])
    global_ids = torch.where(oid >= 0, oid + 100 * batch, -1)
    relabelled = condensation_loss(beta, x, global_ids, batch, weights=w)
    for term in TERMS:
        torch.testing.assert_close(shuffled[term], batched[term])
        torch.testing.assert_close(relabelled[term], batched[term])


def test_event_without_objects_or_noise() -> None:
    b1, x1, o1, _ = _event(12, 3, 4)
    o1[1] = -1
    b2, x2 = torch.tensor([0.3, 0.6]).double(), torch.zeros(2, 3).double()
    o2 = torch.tensor([-1, -1])  # event 1: noise only
    b3, x3, o3, _ = _event(6, 2, 5)
    o3.clamp_(min=0)  # event 2: no noise
    beta, x, oid = torch.cat([b1, b2, b3]), torch.cat([x1, x2, x3]), torch.cat([o1, o2, o3])
    batch = torch.tensor([0] * 12 + [1] * 2 + [2] * 6)
    out = condensation_loss(beta, x, oid, batch)
    s1, s3 = condensation_loss(b1, x1, o1), condensation_loss(b3, x3, o3)
    for term in ("attractive", "repulsive", "coward"):
        torch.testing.assert_close(out[term], (s1[term] + s3[term]) / 2)
    torch.testing.assert_close(out["noise"], (s1["noise"] + b2.mean()) / 2)
    assert s3["noise"] == 0


def test_hand_computed_three_hits() -> None:
    beta = torch.tensor([0.8, 0.5, 0.2], dtype=torch.float64)
    x = torch.tensor([[0.0, 0.0], [0.6, 0.0], [0.0, 0.5]], dtype=torch.float64)
    oid = torch.tensor([0, 0, -1])
    q = [math.atanh(b) ** 2 + 0.1 for b in (0.8, 0.5, 0.2)]
    out = condensation_loss(beta, x, oid, q_min=0.1, s_b=2.0)
    assert out["attractive"].item() == pytest.approx(q[1] * q[0] * 0.36 / 2)
    assert out["repulsive"].item() == pytest.approx(q[2] * q[0] * (1 - 0.5) / 1)
    assert out["coward"].item() == pytest.approx(0.2)
    assert out["noise"].item() == pytest.approx(2.0 * 0.2)
    assert out["loss"].item() == pytest.approx(sum(out[t].item() for t in TERMS))
    # weights multiply the hit's potentials; the normalisation stays the hit count
    w = torch.tensor([1.0, 3.0, 0.5], dtype=torch.float64)
    out_w = condensation_loss(beta, x, oid, weights=w, q_min=0.1)
    assert out_w["attractive"].item() == pytest.approx(3.0 * q[1] * q[0] * 0.36 / 2)
    assert out_w["repulsive"].item() == pytest.approx(0.5 * q[2] * q[0] * 0.5)


def test_weight_beta_and_object_norm() -> None:
    beta = torch.tensor([0.9, 0.1, 0.6, 0.3, 0.5], dtype=torch.float64)
    x = torch.zeros(5, 2, dtype=torch.float64)
    oid = torch.tensor([0, 0, 1, 0, 0])
    batch = torch.tensor([0, 0, 0, 1, 1])
    w = torch.tensor([2.0, 2.0, 1.0, 4.0, 4.0], dtype=torch.float64)
    # event 0: objects (0.9, W=2), (0.6, W=1); event 1: object (0.5, W=4)
    out = condensation_loss(beta, x, oid, batch, weights=w, weight_beta=True)
    expected = ((2 * 0.1 + 1 * 0.4) / 3 + 0.5) / 2
    assert out["coward"].item() == pytest.approx(expected)
    out = condensation_loss(beta, x, oid, batch, norm="object")
    assert out["coward"].item() == pytest.approx((0.1 + 0.4 + 0.5) / 3)
    out = condensation_loss(beta, x, oid, batch, weights=w, weight_beta=True, norm="object")
    assert out["coward"].item() == pytest.approx((2 * 0.1 + 1 * 0.4 + 4 * 0.5) / 7)


def test_gradients_finite_with_ties_and_coincident_hits() -> None:
    beta = torch.tensor([0.7, 0.7, 0.4, 0.2, 0.9999999], dtype=torch.float64,
                        requires_grad=True)
    x = torch.tensor([[0.0, 0.0], [0.3, 0.1], [0.0, 0.0], [0.0, 0.0], [0.2, 0.2]],
                     dtype=torch.float64, requires_grad=True)
    oid = torch.tensor([0, 0, 1, -1, 1])
    out = CondensationLoss()(beta, x, oid)
    out["loss"].backward()
    assert torch.isfinite(out["loss"])
    assert torch.isfinite(beta.grad).all() and torch.isfinite(x.grad).all()


def test_gradcheck() -> None:
    beta, x, oid, w = _event(12, 3, 11, dim=2)
    beta.requires_grad_(True)
    x.requires_grad_(True)

    def f(b: torch.Tensor, xx: torch.Tensor) -> torch.Tensor:
        return condensation_loss(b, xx, oid, weights=w)["loss"]

    assert torch.autograd.gradcheck(f, (beta, x))


def test_degenerate_inputs() -> None:
    # only noise: finite, object terms zero, gradient flows
    beta = torch.tensor([0.2, 0.4], requires_grad=True)
    out = condensation_loss(beta, torch.zeros(2, 3), torch.tensor([-1, -5]))
    assert out["attractive"] == 0 and out["coward"] == 0
    assert out["noise"].item() == pytest.approx(0.3)
    out["loss"].backward()
    assert torch.isfinite(beta.grad).all()
    # no noise, one-hit objects: attractive 0, noise 0
    beta = torch.tensor([0.5, 0.6, 0.7])
    x = torch.tensor([[0.0], [0.5], [3.0]])
    out = condensation_loss(beta, x, torch.tensor([0, 1, 2]))
    assert out["attractive"] == 0 and out["noise"] == 0
    assert all(torch.isfinite(v) for v in out.values())
    # empty input: zeros attached to the graph
    beta = torch.zeros(0, requires_grad=True)
    out = condensation_loss(beta, torch.zeros(0, 3), torch.zeros(0, dtype=torch.int64))
    assert out["loss"] == 0
    out["loss"].backward()


def test_invalid_arguments() -> None:
    beta, x, oid = torch.rand(4), torch.rand(4, 2), torch.zeros(4, dtype=torch.int64)
    with pytest.raises(InvalidDataError, match=r"x must have shape \[N, D\].*\[5, 2\]"):
        condensation_loss(beta, torch.rand(5, 2), oid)
    with pytest.raises(InvalidDataError, match="object_id"):
        condensation_loss(beta, x, oid[:3])
    with pytest.raises(InvalidDataError, match="batch"):
        condensation_loss(beta, x, oid, torch.zeros(3, dtype=torch.int64))
    with pytest.raises(InvalidDataError, match="weights"):
        condensation_loss(beta, x, oid, weights=torch.ones(2))
    with pytest.raises(InvalidDataError, match="object_id must be an integer"):
        condensation_loss(beta, x, oid.float())
    with pytest.raises(ConfigError, match="q_min"):
        condensation_loss(beta, x, oid, q_min=0.0)
    with pytest.raises(ConfigError, match="norm"):
        condensation_loss(beta, x, oid, norm="hits")
    with pytest.raises(ConfigError, match="repulsive"):
        CondensationLoss(repulsive=-1.0)


def test_module_weights_terms() -> None:
    beta, x, oid, w = _event(30, 4, 2)
    terms = condensation_loss(beta, x, oid, weights=w, q_min=0.2, s_b=0.5)
    module = CondensationLoss(q_min=0.2, s_b=0.5, attractive=2.0, repulsive=0.5, beta=3.0,
                              noise=0.0)
    out = module(beta, x, oid, weights=w)
    expected = (2 * terms["attractive"] + 0.5 * terms["repulsive"] + 3 * terms["coward"])
    torch.testing.assert_close(out["loss"], expected)
    for term in TERMS:
        torch.testing.assert_close(out[term], terms[term])
    assert "q_min=0.2" in repr(module)


def _groups_reference(beta, x, oid, w, q_min=0.1):
    """V^rep with repulsion="groups", object by object in plain Python (one event)."""
    q = torch.arctanh(beta.clamp(max=1 - 1e-4)) ** 2 + q_min
    objects = sorted(set(oid[oid >= 0].tolist()))
    groups = {k: (oid == k).nonzero().flatten().tolist() for k in objects}
    if (oid < 0).any():
        groups["noise"] = (oid < 0).nonzero().flatten().tolist()
    terms = []
    for k in objects:
        members = groups[k]
        a = max(members, key=lambda i: (float(beta[i]), -i))
        others = [g for name, g in groups.items() if name != k]
        means = [sum(float(w[i] * q[i] * q[a] * torch.relu(1 - torch.linalg.norm(x[i] - x[a])))
                     for i in g) / len(g) for g in others]
        terms.append(sum(means) / len(others) if others else 0.0)
    return sum(terms) / len(terms)


@pytest.mark.parametrize("seed", range(4))
def test_group_repulsion_matches_reference(seed: int) -> None:
    beta, x, oid, w = _event(60, 5, seed)
    x = x * 0.5  # many pairs inside the hinge
    for with_noise in (True, False):
        o = oid.clone() if with_noise else oid.clamp(min=0)
        out = condensation_loss(beta, x, o, weights=w, repulsion="groups")
        ref = _groups_reference(beta, x, o, w)
        assert out["repulsive"].item() == pytest.approx(ref, rel=1e-9)
        # only the repulsive term changes
        hits = condensation_loss(beta, x, o, weights=w)
        for term in ("attractive", "coward", "noise"):
            torch.testing.assert_close(out[term], hits[term])


def test_group_repulsion_counts_a_small_neighbour_like_a_large_one() -> None:
    # object 0 (one hit) with a neighbour at distance 0.5 and a far object (no hinge);
    # event "small": the neighbour has 2 hits, the far object 20; event "large": swapped
    def event(n_near: int, n_far: int) -> tuple[torch.Tensor, ...]:
        x = torch.tensor([[0.0]] + [[0.5]] * n_near + [[5.0]] * n_far, dtype=torch.float64)
        oid = torch.tensor([0] + [1] * n_near + [2] * n_far)
        beta = torch.full((len(oid),), 0.5, dtype=torch.float64)
        beta[0] = 0.9
        return beta, x, oid

    small, large = event(2, 20), event(20, 2)
    groups = [condensation_loss(*e, repulsion="groups")["repulsive"].item() for e in (small, large)]
    hits = [condensation_loss(*e)["repulsive"].item() for e in (small, large)]
    assert groups[0] == pytest.approx(groups[1])  # every neighbour counts alike
    assert hits[1] > 5 * hits[0]  # by share of hits: the large neighbour repels ~10x more
    with pytest.raises(ConfigError, match="repulsion must be one of"):
        condensation_loss(*small, repulsion="local")


def test_group_repulsion_batches_as_mean_of_events() -> None:
    events = [_event(n, k, seed) for n, k, seed in [(10, 2, 1), (40, 5, 2), (25, 3, 3)]]
    singles = [condensation_loss(b, x, o, weights=w, repulsion="groups") for b, x, o, w in events]
    beta, x, oid, w = (torch.cat(t) for t in zip(*events))
    batch = torch.cat([torch.full((len(e[0]),), i) for i, e in enumerate(events)])
    out = condensation_loss(beta, x, oid, batch, weights=w, repulsion="groups")
    for term in TERMS:
        torch.testing.assert_close(out[term], torch.stack([s[term] for s in singles]).mean())


def _local_reference(beta, x, oid, w, pos, r_local, q_min=0.1):
    """V^rep with local repulsion, object by object in plain Python (one event)."""
    q = torch.arctanh(beta.clamp(max=1 - 1e-4)) ** 2 + q_min
    objects = sorted(set(oid[oid >= 0].tolist()))
    terms = []
    for k in objects:
        members = (oid == k).nonzero().flatten().tolist()
        a = max(members, key=lambda i: (float(beta[i]), -i))
        near = [i for i in range(len(oid)) if int(oid[i]) != k
                and float(torch.linalg.norm(pos[i] - pos[a])) <= r_local]
        total = sum(float(w[i] * q[i] * q[a] * torch.relu(1 - torch.linalg.norm(x[i] - x[a])))
                    for i in near)
        terms.append(total / len(near) if near else 0.0)
    return sum(terms) / len(terms)


@pytest.mark.parametrize("seed", range(4))
def test_local_repulsion_matches_reference(seed: int) -> None:
    beta, x, oid, w = _event(60, 5, seed)
    x = x * 0.5  # many pairs inside the hinge
    pos = torch.rand(60, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 20
    for r_local in (4.0, 9.0):
        out = condensation_loss(beta, x, oid, weights=w, positions=pos, r_local=r_local)
        ref = _local_reference(beta, x, oid, w, pos, r_local)
        assert out["repulsive"].item() == pytest.approx(ref, rel=1e-9)
        hits = condensation_loss(beta, x, oid, weights=w)
        assert out["repulsive"].item() != pytest.approx(hits["repulsive"].item())
        for term in ("attractive", "coward", "noise"):  # only the repulsion changes
            torch.testing.assert_close(out[term], hits[term])
    # a radius that holds the whole event is the plain normalisation
    wide = condensation_loss(beta, x, oid, weights=w, positions=pos, r_local=1e3)
    torch.testing.assert_close(wide["repulsive"], condensation_loss(beta, x, oid, weights=w)["repulsive"])


def test_local_repulsion_ignores_far_hits_and_batches_per_event() -> None:
    # object 0 with a neighbour 0.5 away in x and 2 cm away in the detector; 30 noise hits
    # outside the hinge and 50 cm away dilute the plain repulsion (1/31 of the neighbour's
    # potential) but not the local one (all of it)
    x = torch.tensor([[0.0], [0.5]] + [[5.0]] * 30, dtype=torch.float64)
    pos = torch.tensor([[0.0], [2.0]] + [[50.0]] * 30, dtype=torch.float64)
    oid = torch.tensor([0, 1] + [-1] * 30)
    beta = torch.full((32,), 0.5, dtype=torch.float64)
    local = condensation_loss(beta, x, oid, positions=pos, r_local=10.0)["repulsive"]
    plain = condensation_loss(beta, x, oid)["repulsive"]
    assert local.item() == pytest.approx(31 * plain.item())
    # batched: the mean of the events, positions never compared across events
    events = [_event(n, k, seed) for n, k, seed in [(10, 2, 1), (40, 5, 2)]]
    poss = [torch.rand(len(e[0]), 3, generator=torch.Generator().manual_seed(i),
                       dtype=torch.float64) * 10 for i, e in enumerate(events)]
    singles = [condensation_loss(b, xx, o, weights=ww, positions=p, r_local=6.0)
               for (b, xx, o, ww), p in zip(events, poss)]
    beta, x, oid, w = (torch.cat(t) for t in zip(*events))
    batch = torch.cat([torch.full((len(e[0]),), i) for i, e in enumerate(events)])
    out = condensation_loss(beta, x, oid, batch, weights=w, positions=torch.cat(poss), r_local=6.0)
    torch.testing.assert_close(out["repulsive"], torch.stack([s["repulsive"] for s in singles]).mean())


def test_local_repulsion_arguments() -> None:
    beta, x, oid, w = _event(20, 3, 0)
    pos = torch.rand(20, 2, dtype=torch.float64)
    with pytest.raises(ConfigError, match="positions and r_local go together"):
        condensation_loss(beta, x, oid, positions=pos)
    with pytest.raises(ConfigError, match="r_local must be a finite number > 0"):
        condensation_loss(beta, x, oid, positions=pos, r_local=0.0)
    with pytest.raises(ConfigError, match="needs repulsion='hits'"):
        condensation_loss(beta, x, oid, positions=pos, r_local=5.0, repulsion="groups")
    with pytest.raises(InvalidDataError, match=r"positions must have shape \[N, P\]"):
        condensation_loss(beta, x, oid, positions=pos[:5], r_local=5.0)
    module = CondensationLoss(r_local=5.0)
    assert "r_local=5.0" in repr(module)
    with pytest.raises(ConfigError, match="needs the hits' positions"):
        module(beta, x, oid)
    torch.testing.assert_close(module(beta, x, oid, positions=pos)["loss"],
                               condensation_loss(beta, x, oid, positions=pos, r_local=5.0)["loss"])
    with pytest.raises(ConfigError, match="needs repulsion='hits'"):
        CondensationLoss(r_local=5.0, repulsion="groups")


def _pair_reference(beta, x, oid, margin, pos=None, r_local=None):
    """V^pair, pair by pair in plain Python (one event)."""
    objects = sorted(set(oid[oid >= 0].tolist()))
    points = {k: max((oid == k).nonzero().flatten().tolist(), key=lambda i: (float(beta[i]), -i))
              for k in objects}
    hinges = []
    for k in objects:
        for m in objects:
            a, b = points[k], points[m]
            if k == m or (pos is not None and float(torch.linalg.norm(pos[a] - pos[b])) > r_local):
                continue
            hinges.append(max(0.0, margin - float(torch.linalg.norm(x[a] - x[b]))))
    return sum(hinges) / len(hinges) if hinges else 0.0


@pytest.mark.parametrize("seed", range(4))
def test_pair_repulsion_matches_reference(seed: int) -> None:
    beta, x, oid, w = _event(60, 7, seed)
    x = x * 0.4  # many points inside the margin
    pos = torch.rand(60, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 20
    plain = condensation_loss(beta, x, oid, weights=w)
    for margin in (0.5, 1.0, 2.0):
        out = condensation_loss(beta, x, oid, weights=w, pair_margin=margin)
        ref = _pair_reference(beta, x, oid, margin)
        assert ref > 0
        assert out["pair"].item() == pytest.approx(ref, rel=1e-9)
        for term in TERMS:  # the other terms are unchanged, the total gains the pair term
            torch.testing.assert_close(out[term], plain[term])
        torch.testing.assert_close(out["loss"], plain["loss"] + out["pair"])
        local = condensation_loss(beta, x, oid, weights=w, positions=pos, r_local=8.0,
                                  pair_margin=margin)
        ref = _pair_reference(beta, x, oid, margin, pos, 8.0)
        assert local["pair"].item() == pytest.approx(ref, rel=1e-9)
    assert "pair" not in plain


def test_pair_repulsion_batches_per_event_and_handles_lone_objects() -> None:
    events = [_event(n, k, seed) for n, k, seed in [(10, 3, 1), (40, 5, 2), (25, 4, 3)]]
    events = [(b, x * 0.3, o, w) for b, x, o, w in events]
    lone = (torch.full((5,), 0.5, dtype=torch.float64), torch.zeros(5, 3, dtype=torch.float64),
            torch.tensor([0, 0, 0, -1, -1]), torch.ones(5, dtype=torch.float64))
    events.append(lone)
    singles = [condensation_loss(b, x, o, weights=w, pair_margin=1.0)["pair"] for b, x, o, w in events]
    assert singles[-1].item() == 0.0  # one object: no pair
    beta, x, oid, w = (torch.cat(t) for t in zip(*events))
    batch = torch.cat([torch.full((len(e[0]),), i) for i, e in enumerate(events)])
    out = condensation_loss(beta, x, oid, batch, weights=w, pair_margin=1.0)
    # norm="event": the mean over the events that have pairs (not the lone-object one)
    torch.testing.assert_close(out["pair"], torch.stack(singles[:3]).mean())
    # norm="object": the mean over all pairs of the batch (points never pair across events)
    obj = condensation_loss(beta, x, oid, batch, weights=w, pair_margin=1.0, norm="object")
    sums, counts = 0.0, 0
    for b, xx, o, _ in events[:3]:
        k = len(set(o[o >= 0].tolist()))
        sums += _pair_reference(b, xx, o, 1.0) * k * (k - 1)
        counts += k * (k - 1)
    assert obj["pair"].item() == pytest.approx(sums / counts, rel=1e-9)


def test_pair_repulsion_pushes_points_apart_without_touching_beta() -> None:
    # two objects whose points coincide in x (a merge) and one far away
    x = torch.tensor([[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [0.2, 0.0], [5.0, 5.0]],
                     dtype=torch.float64, requires_grad=True)
    beta = torch.tensor([0.9, 0.5, 0.8, 0.4, 0.9], dtype=torch.float64, requires_grad=True)
    oid = torch.tensor([0, 0, 1, 1, 2])
    out = CondensationLoss(pair=2.0, attractive=0.0, repulsive=0.0, beta=0.0, noise=0.0)(
        beta, x, oid)
    # points 0 and 2 at distance 0.1: 2 of the 6 ordered pairs hinge at 0.9 each
    assert out["pair"].item() == pytest.approx(2 * 0.9 / 6)
    assert out["loss"].item() == pytest.approx(2.0 * out["pair"].item())
    out["loss"].backward()
    assert beta.grad is not None and torch.count_nonzero(beta.grad) == 0
    # the gradient moves the two points apart (descent increases their distance)
    step = x.detach() - 0.1 * x.grad
    assert float(torch.linalg.norm(step[0] - step[2])) > 0.1
    assert torch.count_nonzero(x.grad[[1, 3, 4]]) == 0  # only the points move


def test_pair_repulsion_arguments() -> None:
    beta, x, oid, _ = _event(20, 3, 0)
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ConfigError, match="pair_margin must be a finite number > 0"):
            condensation_loss(beta, x, oid, pair_margin=bad)
        with pytest.raises(ConfigError, match="pair_margin must be a finite number > 0"):
            CondensationLoss(pair=1.0, pair_margin=bad)
    assert "pair" not in CondensationLoss()(beta, x, oid)  # off by default, not computed
    module = CondensationLoss(pair=0.5, pair_margin=1.5)
    assert "pair=0.5" in repr(module) and "pair_margin=1.5" in repr(module)
    empty = condensation_loss(beta[:0], x[:0], oid[:0], pair_margin=1.0)
    noise = condensation_loss(beta, x, torch.full_like(oid, -1), pair_margin=1.0)
    assert empty["pair"].item() == 0.0 and noise["pair"].item() == 0.0
