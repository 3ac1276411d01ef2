"""Per-event normalisation: statistics per event, batch independence, BatchNorm checkpoints."""

from __future__ import annotations

import torch

from caloreco.sparse import EventNorm
from caloreco.sparse.functional import event_norm


def test_each_event_is_normalised_on_its_own():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(50, 3, generator=g) * 4 + 10
    b = torch.randn(30, 3, generator=g) * 0.1 - 2
    x = torch.cat([a, b])
    event = torch.cat([torch.zeros(50), torch.ones(30)]).long()
    y = event_norm(x, event, torch.arange(2))
    for part in (y[:50], y[50:]):
        torch.testing.assert_close(part.mean(0), torch.zeros(3), atol=1e-5, rtol=0)
        # var / (var + eps): 1e-3 below one for the narrow event (var 0.01, eps 1e-5)
        torch.testing.assert_close(part.var(0, unbiased=False), torch.ones(3), atol=2e-3, rtol=0)
    # identical to batch norm in training mode applied to one event at a time
    bn = torch.nn.BatchNorm1d(3).train()
    torch.testing.assert_close(y[:50], bn(a), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(y[50:], bn(b), atol=1e-5, rtol=1e-5)


def test_loads_batchnorm_checkpoints():
    bn = torch.nn.BatchNorm1d(4)
    with torch.no_grad():
        bn.weight.uniform_()
        bn.bias.uniform_()
    norm = EventNorm(4)
    norm.load_state_dict(bn.state_dict())  # running statistics are dropped, not an error
    torch.testing.assert_close(norm.weight, bn.weight)
    torch.testing.assert_close(norm.bias, bn.bias)
