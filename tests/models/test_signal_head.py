"""The signal head of SPVCNN and GravNet: output order, range, and that it leaves the
clustering outputs of a trained network untouched."""

from __future__ import annotations

import pytest
import torch

from caloreco.errors import ConfigError
from caloreco.models.registry import build_model, named_outputs, output_names


def _event(n: int, features: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    pts = torch.rand(n, 3, generator=g) * torch.tensor([40.0, 40.0, 30.0]) + 100.0
    return torch.randn(n, features, generator=g), pts, torch.zeros(n, dtype=torch.long)


@pytest.mark.parametrize("name,opts", [("spvcnn", {"cr": 0.125}), ("gravnet", {"k": 8})])
def test_signal_head_adds_an_output_and_leaves_coords_and_beta(name: str, opts: dict) -> None:
    torch.manual_seed(0)
    plain = build_model(name, {"in_features": 7, **opts}).eval()
    both = build_model(name, {"in_features": 7, **opts, "energy_head": True,
                              "signal_head": True}).eval()
    assert output_names(plain) == ("coords", "beta")
    assert output_names(both) == ("coords", "beta", "energy_factor", "signal")
    signal_only = build_model(name, {"in_features": 7, **opts, "signal_head": True})
    assert output_names(signal_only) == ("coords", "beta", "signal")
    # the trained network's weights, a fresh head: coords and beta do not move
    result = signal_only.load_state_dict(plain.state_dict(), strict=False)
    assert result.unexpected_keys == [] and all(k.startswith("signal_mlp.")
                                                for k in result.missing_keys)
    signal_only.eval()
    feats, pts, batch = _event(300, 7, 1)
    with torch.no_grad():
        ref = named_outputs(plain, plain(feats, pts, batch))
        out = named_outputs(signal_only, signal_only(feats, pts, batch))
    torch.testing.assert_close(out["coords"], ref["coords"], rtol=0, atol=0)
    torch.testing.assert_close(out["beta"], ref["beta"], rtol=0, atol=0)
    s = out["signal"]
    assert s.shape == (300,) and bool(((s > 0) & (s < 1)).all())
    # the head learns: its gradient reaches its own weights
    signal_only.train()
    named_outputs(signal_only, signal_only(feats, pts, batch))["signal"].sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0
               for n, p in signal_only.named_parameters() if n.startswith("signal_mlp."))
    with pytest.raises(ConfigError, match="returned 2 outputs, its configuration names 3"):
        named_outputs(signal_only, (ref["coords"], ref["beta"]))


def test_gravnet_signal_head_on_an_empty_event() -> None:
    model = build_model("gravnet", {"in_features": 7, "k": 8, "signal_head": True}).eval()
    with torch.no_grad():
        out = named_outputs(model, model(torch.zeros(0, 7), torch.zeros(0, 3),
                                         torch.zeros(0, dtype=torch.long)))
    assert out["signal"].shape == (0,) and out["coords"].shape == (0, 5)
