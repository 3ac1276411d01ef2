"""Energy regression at the condensation points: targets and loss against a per-object loop."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from caloreco.errors import InvalidDataError
from caloreco.losses.energy import F_MAX, energy_loss, energy_targets


def test_energy_targets_are_generated_over_deposited_and_clipped():
    truth = np.array([0, 0, 1, -1, 2, 1])
    energy = np.array([1.0, 3.0, 2.0, 5.0, 0.001, 2.0])
    generated = np.array([8.0, 2.0, 1.0])  # 8/4 = 2, 2/4 = 0.5, 1/0.001 -> clipped
    got = energy_targets(truth, energy, generated)
    np.testing.assert_allclose(got, [2.0, 2.0, 0.5, 0.0, F_MAX, 0.5])
    with pytest.raises(InvalidDataError, match="no generated energy"):
        energy_targets(np.array([0, 3]), np.ones(2), np.ones(2))


def _reference(factor, beta, obj, target, batch, q_min):
    per_event = {}
    for b in sorted(set(batch.tolist())):
        vals = []
        for k in sorted(set(obj[batch == b].tolist()) - {-1}):
            m = (batch == b) & (obj == k)
            xi = np.arctanh(np.minimum(beta[m], 1 - 1e-4)) ** 2 + q_min
            rel = (factor[m] - target[m]) / target[m]
            vals.append((xi * rel ** 2).sum() / xi.sum())
        if vals:
            per_event[b] = np.mean(vals)
    return np.mean(list(per_event.values()))


def test_energy_loss_matches_per_object_reference_and_trains_only_the_factor():
    g = np.random.default_rng(0)
    n = 40
    batch = np.repeat([0, 1, 2], [15, 15, 10])
    obj = g.integers(-1, 3, n)
    obj[batch == 2] = -1  # an event of noise only: no objects, left out of the mean
    target = np.where(obj >= 0, g.uniform(0.5, 2.0, n), 0.0)
    factor = g.uniform(0.3, 3.0, n)
    beta = g.uniform(0.0, 0.99, n)
    want = _reference(factor, beta, obj, target, batch, 0.1)
    f = torch.tensor(factor, requires_grad=True)
    b = torch.tensor(beta, requires_grad=True)
    got = energy_loss(f, b, torch.tensor(obj), torch.tensor(target), torch.tensor(batch))
    assert math.isclose(float(got), want, rel_tol=1e-9)
    got.backward()
    assert b.grad is None or float(b.grad.abs().sum()) == 0.0  # xi is detached
    assert float(f.grad[obj < 0].abs().sum()) == 0.0 and float(f.grad.abs().sum()) > 0
    # the exact factors give zero loss
    exact = energy_loss(torch.tensor(target), torch.tensor(beta), torch.tensor(obj),
                        torch.tensor(target), torch.tensor(batch))
    assert float(exact) == 0.0


def test_energy_loss_without_objects_and_bad_inputs():
    z = energy_loss(torch.ones(3, requires_grad=True), torch.zeros(3), torch.full((3,), -1),
                    torch.zeros(3))
    assert float(z) == 0.0 and z.requires_grad
    with pytest.raises(InvalidDataError, match="shape"):
        energy_loss(torch.ones(3), torch.zeros(2), torch.zeros(3, dtype=torch.long), torch.ones(3))
    with pytest.raises(InvalidDataError, match="> 0"):
        energy_loss(torch.ones(2), torch.zeros(2), torch.zeros(2, dtype=torch.long), torch.zeros(2))
