"""GravNet: shapes, differentiable distance weights, per-event independence, tiny events."""

from __future__ import annotations

import pytest
import torch

from caloreco.errors import ConfigError
from caloreco.models.gravnet import (GravNetConfig, GravNetConv, GravNetModel, global_exchange,
                                     segment_reduce)


def _event(n: int, seed: int, f: int = 11) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, f, generator=g), torch.rand(n, 3, generator=g) * 50


def _zeros(n: int) -> torch.Tensor:
    return torch.zeros(n, dtype=torch.long)


def test_config_round_trip_and_errors():
    cfg = GravNetConfig(in_features=11, k=8, energy_head=True)
    assert GravNetConfig(**cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="k must be an integer >= 1"):
        GravNetConfig(in_features=11, k=0)
    model = GravNetModel(GravNetConfig(in_features=11))
    with pytest.raises(ConfigError, match=r"features \[N, 11\]"):
        model(torch.zeros(5, 6), torch.zeros(5, 3), _zeros(5))


def test_segment_ops_per_event():
    x = torch.tensor([[1.0], [5.0], [2.0], [-3.0]])
    batch = torch.tensor([1, 0, 1, 1])
    torch.testing.assert_close(segment_reduce(x, batch, 2, "mean"), torch.tensor([[5.0], [0.0]]))
    torch.testing.assert_close(segment_reduce(x, batch, 2, "amin"), torch.tensor([[5.0], [-3.0]]))
    out = global_exchange(x, batch)
    assert out.shape == (4, 4)
    torch.testing.assert_close(out[0], torch.tensor([1.0, 0.0, -3.0, 2.0]))
    torch.testing.assert_close(out[1], torch.tensor([5.0, 5.0, 5.0, 5.0]))


def test_outputs_and_gradients():
    torch.manual_seed(0)
    model = GravNetModel(GravNetConfig(in_features=11, k=10, coord_dim=3, energy_head=True))
    feats, pts = _event(200, 1)
    coords, beta, energy = model(feats, pts, _zeros(200))
    assert coords.shape == (200, 3) and beta.shape == (200,) and energy.shape == (200,)
    assert bool(((beta > 0) & (beta < 1)).all()) and bool((energy > 0).all())
    (coords.square().sum() + beta.sum() + energy.sum()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []  # includes every block's conv.lin_s: the space is trained


def test_space_projection_gets_gradient_only_through_the_weights():
    """s is used for the neighbour search (no gradient) and the weights exp(-10 d^2): the
    gradient of W_s must be non-zero and match finite differences (float64, step small
    enough that no neighbour changes)."""
    torch.manual_seed(1)
    conv = GravNetConv(6, 8, space_dimensions=4, propagate_dimensions=5, k=7).double()
    x, batch = torch.randn(50, 6, dtype=torch.float64), _zeros(50)
    conv(x, batch).sum().backward()
    grad = conv.lin_s.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    eps, w = 1e-6, conv.lin_s.weight
    with torch.no_grad():
        for i, j in ((0, 0), (2, 3), (3, 5)):
            w[i, j] += eps
            up = conv(x, batch).sum().item()
            w[i, j] -= 2 * eps
            down = conv(x, batch).sum().item()
            w[i, j] += eps
            assert abs((up - down) / (2 * eps) - grad[i, j].item()) < 1e-5 * max(1.0, abs(grad[i, j].item()))


def test_batched_events_equal_single_events():
    torch.manual_seed(2)
    model = GravNetModel(GravNetConfig(in_features=11, k=12)).eval()
    a, b = _event(150, 3), _event(90, 4)
    with torch.no_grad():
        xa, ba = model(a[0], a[1], _zeros(150))
        xb, bb = model(b[0], b[1], _zeros(90))
        # interleave the two events: batch need not be sorted
        perm = torch.randperm(240, generator=torch.Generator().manual_seed(5))
        feats, pts = torch.cat([a[0], b[0]])[perm], torch.cat([a[1], b[1]])[perm]
        batch = torch.cat([_zeros(150), torch.ones(90, dtype=torch.long)])[perm]
        x, beta = model(feats, pts, batch)
    torch.testing.assert_close(x, torch.cat([xa, xb])[perm], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(beta, torch.cat([ba, bb])[perm], rtol=1e-4, atol=1e-5)


def test_small_k_and_events_smaller_than_k():
    torch.manual_seed(3)
    for k in (1, 2):
        model = GravNetModel(GravNetConfig(in_features=11, n_blocks=2, k=k))
        coords, beta = model(*_event(30, 6), _zeros(30))
        assert coords.shape == (30, 5) and bool(torch.isfinite(coords).all())
    model = GravNetModel(GravNetConfig(in_features=11, k=40))
    feats, pts = _event(12, 7)
    batch = torch.tensor([0] * 5 + [1] * 3 + [2] * 4)  # every event smaller than k
    coords, beta = model(feats, pts, batch)
    assert bool(torch.isfinite(coords).all()) and bool(((beta > 0) & (beta < 1)).all())
    coords.sum().backward()
    model.eval()
    with torch.no_grad():
        alone = model(feats[5:8], pts[5:8], _zeros(3))[0]
        torch.testing.assert_close(model(feats, pts, batch)[0][5:8], alone)
        empty = model(torch.zeros(0, 11), torch.zeros(0, 3), _zeros(0))
    assert empty[0].shape == (0, 5) and empty[1].shape == (0,)


def test_runtime_sanity_11k_hits():
    """One forward of the default model on an 11k-hit event completes (time not asserted)."""
    torch.manual_seed(4)
    model = GravNetModel(GravNetConfig(in_features=11)).eval()
    feats, pts = _event(11_000, 8)
    with torch.no_grad():
        coords, beta = model(feats, pts, _zeros(11_000))
    assert coords.shape == (11_000, 5) and bool(torch.isfinite(coords).all())
