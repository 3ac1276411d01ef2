"""The neighbour contrastive loss against a brute-force reference, event by event."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from caloreco.errors import ConfigError, InvalidDataError
from caloreco.losses.contrastive import contrastive_loss, neighbour_pairs


def _reference(x, object_id, positions, batch, k, margin):
    """Loop over events and signal hits: full distance sort in the detector, then the two
    per-event means, then the means over events that have pairs."""
    x, oid, pos, batch = (t.detach().double().numpy() if t.is_floating_point() else t.numpy()
                          for t in (x, object_id, positions, batch))
    same_ev, other_ev = [], []
    for b in np.unique(batch):
        sig = np.flatnonzero((batch == b) & (oid >= 0))
        same, other = [], []
        for i in sig:
            d_det = np.linalg.norm(pos[sig] - pos[i], axis=1)
            d_det[sig == i] = np.inf
            for j in sig[np.argsort(d_det, kind="stable")[:min(k, len(sig) - 1)]]:
                d = np.linalg.norm(x[i] - x[j])
                (same if oid[i] == oid[j] else other).append(
                    d * d if oid[i] == oid[j] else max(0.0, margin - d) ** 2)
        if same:
            same_ev.append(np.mean(same))
        if other:
            other_ev.append(np.mean(other))
    return (np.mean(same_ev) if same_ev else 0.0), (np.mean(other_ev) if other_ev else 0.0)


def _event_data(seed: int, n: int = 300):
    g = torch.Generator().manual_seed(seed)
    positions = torch.rand(n, 3, generator=g, dtype=torch.float64) * 20  # distinct: no ties
    object_id = torch.randint(-1, 5, (n,), generator=g)
    batch = torch.randint(0, 3, (n,), generator=g) * 7  # unsorted, arbitrary labels
    x = torch.randn(n, 4, generator=g, dtype=torch.float64) * 0.6
    return x, object_id, positions, batch


@pytest.mark.parametrize("k, margin", [(1, 1.0), (6, 1.0), (16, 0.5)])
def test_contrastive_loss_matches_brute_force(k, margin):
    x, object_id, positions, batch = _event_data(k)
    got = contrastive_loss(x, object_id, positions, batch, k=k, margin=margin)
    want_same, want_other = _reference(x, object_id, positions, batch, k, margin)
    assert float(got["contrast_same"]) == pytest.approx(want_same, rel=1e-9)
    assert float(got["contrast_other"]) == pytest.approx(want_other, rel=1e-9)
    assert want_same > 0 and want_other > 0  # both kinds of pairs exist in the data


def test_events_count_alike_and_noise_takes_no_part():
    x, object_id, positions, batch = _event_data(3)
    per_event = [contrastive_loss(x[batch == b], object_id[batch == b], positions[batch == b],
                                  k=4) for b in batch.unique()]
    got = contrastive_loss(x, object_id, positions, batch, k=4)
    for name in ("contrast_same", "contrast_other"):
        assert float(got[name]) == pytest.approx(
            float(torch.stack([p[name] for p in per_event]).mean()), rel=1e-12)
    # moving noise hits anywhere (clustering space and detector) changes nothing
    noise = object_id < 0
    x2, pos2 = x.clone(), positions.clone()
    x2[noise] += 100.0
    pos2[noise] = positions[~noise][:1] + 1e-3 * torch.arange(int(noise.sum()))[:, None]
    moved = contrastive_loss(x2, object_id, pos2, batch, k=4)
    for name in got:
        assert float(moved[name]) == pytest.approx(float(got[name]), rel=1e-12)


def test_pairs_stay_within_events_and_exclude_the_hit_itself():
    x, object_id, positions, batch = _event_data(5)
    i, j = neighbour_pairs(positions, object_id, batch, k=5)
    assert len(i) == len(j) > 0
    assert (batch[i] == batch[j]).all() and (i != j).all()
    assert (object_id[i] >= 0).all() and (object_id[j] >= 0).all()
    # every signal hit has min(k, n_signal_in_event - 1) partners
    counts = torch.bincount(i, minlength=len(batch))
    for b in batch.unique():
        sig = (batch == b) & (object_id >= 0)
        assert (counts[sig] == min(5, int(sig.sum()) - 1)).all()


def test_gradient_and_limits():
    x = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.3, 0.0], [5.0, 5.0]], requires_grad=True)
    object_id = torch.tensor([0, 1, 0, -1])
    positions = torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [0.5, 0.0]])
    terms = contrastive_loss(x, object_id, positions, k=2, margin=1.0)
    (terms["contrast_same"] + terms["contrast_other"]).backward()
    assert torch.isfinite(x.grad).all()  # coincident different-object hits: finite gradient
    assert x.grad[3].abs().sum() == 0  # noise: no gradient
    # pairs beyond the margin cost nothing; one object only: no different-object pairs
    far = contrastive_loss(torch.tensor([[0.0], [2.0]]), torch.tensor([0, 1]),
                           torch.tensor([[0.0], [1.0]]), k=1, margin=1.0)
    assert float(far["contrast_other"]) == 0 and float(far["contrast_same"]) == 0
    alone = contrastive_loss(torch.tensor([[0.0], [0.5]]), torch.tensor([2, 2]),
                             torch.tensor([[0.0], [1.0]]), k=3)
    assert float(alone["contrast_same"]) == pytest.approx(0.25)
    assert float(alone["contrast_other"]) == 0
    empty = contrastive_loss(torch.zeros(0, 3, requires_grad=True),
                             torch.zeros(0, dtype=torch.long), torch.zeros(0, 3))
    assert all(float(v.detach()) == 0 and v.requires_grad for v in empty.values())


def test_errors_name_the_argument():
    x, oid, pos = torch.zeros(3, 2), torch.zeros(3, dtype=torch.long), torch.zeros(3, 2)
    with pytest.raises(ConfigError, match="k >= 1"):
        contrastive_loss(x, oid, pos, k=0)
    with pytest.raises(ConfigError, match="margin"):
        contrastive_loss(x, oid, pos, margin=float("nan"))
    with pytest.raises(InvalidDataError, match=r"object_id must have shape \[3\]"):
        contrastive_loss(x, oid[:2], pos)
    with pytest.raises(InvalidDataError, match=r"positions must have shape \[3, P\]"):
        contrastive_loss(x, oid, pos[:2])
    with pytest.raises(InvalidDataError, match=r"x must have shape \[N, D\]"):
        contrastive_loss(x[:, 0], oid, pos)
