"""The HCAL barrel hit encoding and the encoding registry (stored kinds, old checkpoints)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from caloreco.errors import ConfigError, InvalidDataError
from caloreco.geometry.hcal import HCalBarrel, decode_tower_id
from caloreco.models.encoding import HitEncoding, encoding_from_dict, make_encoding
from caloreco.models.hcal_encoding import HcalEncoding
from caloreco.training.checkpoint import Checkpoint, load_checkpoint, save_checkpoint


@pytest.fixture(scope="module")
def barrel_cells() -> dict[str, np.ndarray]:
    """Every HB cell as a hit (centre, depth), 1 GeV at the prompt time."""
    c = HCalBarrel().cells
    r = np.sqrt(c.x.astype(np.float64) ** 2 + c.y ** 2 + c.z ** 2)
    return {"energy": np.ones(len(c.cell_id), np.float32), "x": c.x, "y": c.y, "z": c.z,
            "layer": c.layer.astype(np.int16), "time": (r / 29.9792458).astype(np.float32),
            "cell_id": c.cell_id}


def test_every_tower_is_its_own_voxel_and_neighbours_are_adjacent(barrel_cells) -> None:
    enc = HcalEncoding()
    p = enc.points(barrel_cells)
    v = np.floor(p).astype(np.int64)
    depth, ieta, iphi = decode_tower_id(barrel_cells["cell_id"])
    np.testing.assert_array_equal(v[:, 0], np.where(ieta > 0, ieta + 14, ieta + 15))
    np.testing.assert_array_equal(v[:, 1], iphi - 1)
    np.testing.assert_array_equal(v[:, 2], depth - 1)
    # tower centres sit in the middle of their voxels (no rounding at a voxel edge)
    np.testing.assert_allclose(p - v, 0.5, atol=1e-3)
    assert len(np.unique(v, axis=0)) == len(v) == 4 * 30 * 72


def test_phi_cut_is_at_phi_origin(barrel_cells) -> None:
    _, _, iphi = decode_tower_id(barrel_cells["cell_id"])
    j = np.floor(HcalEncoding().points(barrel_cells)[:, 1])
    assert j[iphi == 72].min() == 71 and j[iphi == 1].max() == 0  # not voxel neighbours
    shifted = np.floor(HcalEncoding(phi_origin=math.pi).points(barrel_cells)[:, 1])
    assert (shifted[iphi == 1] - shifted[iphi == 72] == 1).all()  # adjacent with the cut elsewhere
    assert shifted.min() == 0 and shifted.max() == 71


def test_features(barrel_cells) -> None:
    enc = HcalEncoding()
    f = enc.features(barrel_cells)
    assert f.shape == (len(barrel_cells["x"]), enc.n_features) and f.dtype == np.float32
    assert np.isfinite(f).all() and np.abs(f).max() <= 1.0 + 1e-6
    phi = np.arctan2(barrel_cells["y"], barrel_cells["x"])
    np.testing.assert_allclose(f[:, 2], np.cos(phi), atol=1e-6)
    np.testing.assert_allclose(f[:, 3], np.sin(phi), atol=1e-6)
    np.testing.assert_allclose(f[:, 4], (barrel_cells["layer"] - 1) / 3.0)
    np.testing.assert_allclose(f[:, 5], 0.0, atol=1e-5)  # prompt hits
    assert f[:, 1].min() == pytest.approx(-14.5 / 15, abs=1e-5)
    np.testing.assert_allclose(f[:, 0], np.log(10.0) / 3.0, rtol=1e-6)  # 1 GeV


def test_bad_hits_raise(barrel_cells) -> None:
    enc = HcalEncoding()
    hits = {k: v[:3].copy() for k, v in barrel_cells.items()}
    hits["time"][1] = np.nan
    with pytest.raises(InvalidDataError, match="time"):
        enc.features(hits)
    with pytest.raises(InvalidDataError, match="layer"):
        enc.points({k: v for k, v in barrel_cells.items() if k != "layer"})
    with pytest.raises(InvalidDataError, match="below the voxel grid"):
        HcalEncoding(eta_origin=0.0).points(barrel_cells)
    with pytest.raises(ConfigError):
        HcalEncoding(voxel_phi=0.0)


def test_registry_and_stored_kinds() -> None:
    assert isinstance(encoding_from_dict({}), HitEncoding)  # TrainConfig default, old files
    old = {"voxel_cm": 0.8, "origin_cm": -300.0, "layers_per_voxel": 1.0, "endcap_gap": 128}
    assert encoding_from_dict(old) == HitEncoding(voxel_cm=0.8)
    for enc in (HitEncoding(), HcalEncoding(voxel_eta=0.174)):
        assert encoding_from_dict(enc.to_dict()) == enc
    assert HitEncoding().to_dict()["kind"] == "hgcal" and HcalEncoding().to_dict()["kind"] == "hcal"
    assert HitEncoding(**HitEncoding().to_dict()) == HitEncoding()  # direct rebuild still works
    assert make_encoding("hcal").n_features == 7
    with pytest.raises(ConfigError, match="unknown hit encoding 'ecal'.*hcal"):
        encoding_from_dict({"kind": "ecal"})
    with pytest.raises(ConfigError, match="bad options"):
        make_encoding("hcal", voxel_cm=0.7)
    with pytest.raises(ConfigError, match="encoding_from_dict"):
        HitEncoding(kind="hcal")


@pytest.mark.parametrize("stored", [{}, {"voxel_cm": 0.7, "origin_cm": -300.0,
                                         "layers_per_voxel": 1.0, "endcap_gap": 128},
                                    HcalEncoding().to_dict()])
def test_checkpoint_rebuilds_the_stored_encoding(tmp_path, stored, barrel_cells) -> None:
    from caloreco.models.registry import build_model

    enc = encoding_from_dict(stored)
    model = build_model("spvcnn", {"in_features": enc.n_features, "cr": 0.125})
    path = save_checkpoint(Checkpoint("spvcnn", model.config.to_dict(), stored,
                                      model.state_dict()), tmp_path / "m.pt")
    net, rebuilt = load_checkpoint(path).build()
    assert type(rebuilt) is type(enc) and rebuilt == enc
    if isinstance(enc, HcalEncoding):
        hits = {k: v[:200] for k, v in barrel_cells.items()}
        with torch.no_grad():
            coords, beta = net(torch.from_numpy(rebuilt.features(hits)),
                               torch.from_numpy(rebuilt.points(hits)),
                               torch.zeros(200, dtype=torch.int64))[:2]
        assert coords.shape[0] == beta.shape[0] == 200


def test_projected_positions_lie_on_the_inner_cylinder(barrel_cells) -> None:
    enc = HcalEncoding()
    raw = enc.projected_positions(barrel_cells)
    assert raw.shape == (len(barrel_cells["x"]), 3) and raw.dtype == np.float32
    p = raw.astype(np.float64)
    np.testing.assert_allclose(np.hypot(p[:, 0], p[:, 1]), 177.7, rtol=1e-6)
    # the depths of one tower project onto one point (one line of flight)
    depth, ieta, iphi = decode_tower_id(barrel_cells["cell_id"])
    tower = (ieta + 100) * 100 + iphi
    for t in np.unique(tower)[:50]:
        pts = p[tower == t]
        assert len(pts) == 4 and np.ptp(pts, axis=0).max() < 1e-3
    # neighbouring towers in phi: r_in * 2 pi / 72 apart (~15.5 cm)
    a = p[(ieta == 1) & (iphi == 1) & (depth == 1)][0]
    b = p[(ieta == 1) & (iphi == 2) & (depth == 1)][0]
    assert np.linalg.norm(a - b) == pytest.approx(2 * 177.7 * math.sin(math.pi / 72), rel=1e-4)
    on_axis = {k: v[:1].copy() for k, v in barrel_cells.items()}
    on_axis["x"][:] = 0.0
    on_axis["y"][:] = 0.0
    with pytest.raises(InvalidDataError, match="beam axis"):
        enc.projected_positions(on_axis)
