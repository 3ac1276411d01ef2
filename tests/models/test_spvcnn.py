"""SPVCNN: shapes, batching, algorithm equivalence, gradients, configuration errors."""

from __future__ import annotations

import pytest
import torch

from caloreco.errors import ConfigError
from caloreco.models.registry import build_model, model_classes
from caloreco.models.spvcnn import SPVCNN, SPVCNNConfig


def _event(n: int, seed: int, offset: float = 100.0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    pts = torch.rand(n, 3, generator=g) * torch.tensor([60.0, 60.0, 40.0]) + offset
    pts[: n // 4] = pts[n // 4: 2 * (n // 4)] + 0.05  # a quarter of the hits share voxels
    return torch.randn(n, 6, generator=g), pts


def test_widths_follow_channel_ratio():
    assert SPVCNNConfig(in_features=6).widths == (16, 16, 32, 64, 128, 128, 64, 48, 48)
    assert SPVCNNConfig(in_features=6, cr=1.0).widths == (32, 32, 64, 128, 256, 256, 128, 96, 96)
    with pytest.raises(ConfigError, match="9 channel counts"):
        SPVCNNConfig(in_features=6, widths=(8, 8))


def test_outputs_and_gradients():
    torch.manual_seed(0)
    model = SPVCNN(SPVCNNConfig(in_features=6, cr=0.25, coord_dim=4, energy_head=True))
    feats, pts = _event(400, 1)
    coords, beta, energy = model(feats, pts, torch.zeros(400, dtype=torch.long))
    assert coords.shape == (400, 4) and beta.shape == (400,) and energy.shape == (400,)
    assert bool(((beta > 0) & (beta < 1)).all()) and bool((energy > 0).all())
    (coords.square().sum() + beta.sum() + energy.sum()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_batched_events_equal_single_events():
    """Voxel keys carry the event index, so kernels never mix events: in eval mode an event
    gives the same output alone or in a batch."""
    torch.manual_seed(1)
    model = SPVCNN(SPVCNNConfig(in_features=6, cr=0.25)).eval()
    a, b = _event(300, 2), _event(500, 3, offset=102.0)
    with torch.no_grad():
        xa, ba = model(a[0], a[1], torch.zeros(300, dtype=torch.long))
        xb, bb = model(b[0], b[1], torch.zeros(500, dtype=torch.long))
        batch = torch.cat([torch.zeros(300), torch.ones(500)]).long()
        x, beta = model(torch.cat([a[0], b[0]]), torch.cat([a[1], b[1]]), batch)
    torch.testing.assert_close(x, torch.cat([xa, xb]), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(beta, torch.cat([ba, bb]), rtol=1e-4, atol=1e-5)


def test_gemm_and_scatter_networks_agree():
    torch.manual_seed(2)
    model = SPVCNN(SPVCNNConfig(in_features=6, cr=0.25)).eval()
    feats, pts = _event(350, 4)
    batch = torch.zeros(350, dtype=torch.long)
    with torch.no_grad():
        ref = model(feats, pts, batch)
        for m in model.modules():
            if hasattr(m, "algorithm"):
                m.algorithm = "gemm"
        got = model(feats, pts, batch)
    for r, g in zip(ref, got):
        torch.testing.assert_close(r, g, rtol=1e-4, atol=1e-5)


def test_bfloat16_autocast_runs():
    model = SPVCNN(SPVCNNConfig(in_features=6, cr=0.25))
    feats, pts = _event(200, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        coords, beta = model(feats, pts, torch.zeros(200, dtype=torch.long))
    assert torch.isfinite(coords.float()).all() and torch.isfinite(beta.float()).all()


def test_registry_and_bad_inputs():
    cls, cfg = model_classes("spvcnn")
    assert cls is SPVCNN and cfg is SPVCNNConfig
    with pytest.raises(ConfigError, match="unknown model 'nope'"):
        model_classes("nope")
    with pytest.raises(ConfigError, match="bad configuration"):
        build_model("spvcnn", {"in_features": 4, "depth": 3})
    model = build_model("spvcnn", {"in_features": 6, "cr": 0.25})
    with pytest.raises(ConfigError, match=r"features \[N, 6\]"):
        model(torch.zeros(5, 3), torch.zeros(5, 3), torch.zeros(5, dtype=torch.long))
