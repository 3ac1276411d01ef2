"""int8 storage of shipped checkpoints: error bound per group, size, model outputs, errors."""

from __future__ import annotations

import pytest
import torch

from caloreco.errors import InputFileError
from caloreco.models.encoding import HitEncoding
from caloreco.models.registry import build_model
from caloreco.training.checkpoint import (INT8_GROUP, Checkpoint, dequantize_int8,
                                          load_checkpoint, quantize_int8, save_checkpoint)


def test_quantize_int8_keeps_every_value_within_half_a_step_of_its_group() -> None:
    g = torch.Generator().manual_seed(3)
    t = torch.randn(7, 13, 5, generator=g) * torch.logspace(-4, 1, 5)  # scales differ 1e5x
    entry = quantize_int8(t)
    back = dequantize_int8(entry)
    assert back.shape == t.shape and back.dtype == torch.float32
    flat = t.reshape(-1)
    pad = (-flat.numel()) % INT8_GROUP
    groups = torch.cat([flat, flat.new_zeros(pad)]).view(-1, INT8_GROUP)
    step = groups.abs().amax(1) / 127.0  # the bound, computed independently of the entry
    err = (back.reshape(-1) - flat).abs()
    bound = torch.repeat_interleave(step, INT8_GROUP)[:flat.numel()] / 2
    assert bool((err <= bound * (1 + 1e-6) + 1e-12).all())
    assert entry["q"].dtype == torch.int8 and int(entry["q"].abs().max()) == 127


def test_quantize_int8_zero_group() -> None:
    t = torch.zeros(3, INT8_GROUP)
    t[2, 0] = 1.5
    back = dequantize_int8(quantize_int8(t))
    assert torch.equal(back[:2], t[:2]) and float(back[2, 0]) == pytest.approx(1.5)


def _spvcnn_ckpt() -> Checkpoint:
    enc = HitEncoding()
    torch.manual_seed(0)
    model = build_model("spvcnn", {"in_features": enc.n_features, "cr": 0.25})
    return Checkpoint("spvcnn", model.config.to_dict(), enc.to_dict(), model.state_dict())


def test_int8_checkpoint_is_smaller_and_keeps_the_network_output(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ckpt = _spvcnn_ckpt()
    half = save_checkpoint(ckpt, tmp_path / "half.pt", half=True)
    int8 = save_checkpoint(ckpt, tmp_path / "int8.pt", int8=True)
    assert int8.stat().st_size < 0.6 * half.stat().st_size
    ref_model, enc = load_checkpoint(half).build()
    got_model, _ = load_checkpoint(int8).build()
    g = torch.Generator().manual_seed(1)
    n = 400
    pts = torch.rand(n, 3, generator=g) * torch.tensor([40.0, 40.0, 30.0])
    feats = torch.randn(n, enc.n_features, generator=g)
    batch = torch.zeros(n, dtype=torch.long)
    with torch.no_grad():
        ref = ref_model(feats, pts, batch)
        got = got_model(feats, pts, batch)
    for r, o in zip(ref[:2], got[:2]):  # clustering coordinates and beta
        rel = float((o - r).norm() / r.norm())
        # measured 0.02 on this untrained network (every layer adds its rounding); a wrong
        # scale, group order or shape gives O(1)
        assert rel < 0.04, rel


def test_malformed_int8_entry_is_a_clear_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ckpt = _spvcnn_ckpt()
    path = save_checkpoint(ckpt, tmp_path / "int8.pt", int8=True)
    raw = torch.load(path, weights_only=True)
    name = next(iter(raw["quantized"]))
    raw["quantized"][name]["scale"] = raw["quantized"][name]["scale"][:1].expand(3)
    torch.save(raw, tmp_path / "bad.pt")
    with pytest.raises(InputFileError, match=name):
        load_checkpoint(tmp_path / "bad.pt")
