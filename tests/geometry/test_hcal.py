"""Tests of caloreco.geometry.hcal: the CMS-HB-like barrel (72 x 30 towers x 4 depths)."""

from __future__ import annotations

import numpy as np
import pytest

from caloreco.errors import ConfigError
from caloreco.geometry import CellType, HCalBarrel, HCalBarrelConfig
from caloreco.geometry.hcal import decode_tower_id, encode_tower_id

DETA, DPHI = 0.087, 2 * np.pi / 72


@pytest.fixture(scope="module")
def hb() -> HCalBarrel:
    return HCalBarrel()


def points_at(det: HCalBarrel, eta: np.ndarray, phi: np.ndarray, depth: np.ndarray) -> tuple[np.ndarray, ...]:
    """(x, y, z) at (eta, phi) on the cylinder of each depth."""
    r = det.layers.position[np.asarray(depth) - 1]
    return r * np.cos(phi), r * np.sin(phi), r * np.sinh(eta)


def test_tower_counts(hb: HCalBarrel) -> None:
    c = hb.cells
    assert len(c) == 72 * 30 * 4
    assert (c.type == CellType.HCAL_TOWER).all()
    assert np.bincount(c.layer).tolist() == [0, 2160, 2160, 2160, 2160]
    depth, ieta, iphi = decode_tower_id(c.cell_id)
    assert sorted(np.unique(ieta).tolist()) == list(range(-15, 0)) + list(range(1, 16))
    assert np.unique(iphi).tolist() == list(range(1, 73))
    np.testing.assert_array_equal(depth, c.layer)
    np.testing.assert_array_equal(encode_tower_id(depth, ieta, iphi), c.cell_id)
    assert len(np.unique(c.cell_id)) == len(c)


def test_cell_centres_and_areas(hb: HCalBarrel) -> None:
    c = hb.cells
    r = np.hypot(c.x, c.y)
    np.testing.assert_allclose(r, hb.layers.position[c.layer - 1], rtol=1e-6)
    eta = np.arcsinh(c.z / r)
    assert np.abs(eta).max() == pytest.approx(14.5 * DETA, rel=1e-5)
    # the towers of one depth tile its cylinder |z| < r sinh(15 deta) exactly
    for d in range(1, 5):
        R = hb.layers.position[d - 1]
        total = c.area[c.layer == d].astype(np.float64).sum()
        assert total == pytest.approx(2 * np.pi * R * 2 * R * np.sinh(15 * DETA), rel=1e-5)


def test_lookup_at_tower_centres(hb: HCalBarrel) -> None:
    c = hb.cells
    rows = hb.lookup(c.x, c.y, c.z, c.layer)
    np.testing.assert_array_equal(rows, np.arange(len(c)))
    # towers are projective: the same direction at another radius gives the same tower
    rows = hb.lookup(1.7 * c.x, 1.7 * c.y, 1.7 * c.z, c.layer)
    np.testing.assert_array_equal(rows, np.arange(len(c)))


def test_eta_and_phi_edges(hb: HCalBarrel) -> None:
    eps = 1e-7
    k = np.arange(1, 15)
    depth = np.full(len(k), 2)
    for sign in (1, -1):
        for offset, expected in ((-eps, k), (eps, k + 1)):
            ids = hb.cell_ids(*points_at(hb, sign * (k * DETA + offset), np.full(len(k), 0.3), depth), depth)
            assert (decode_tower_id(ids)[1] == sign * expected).all()
    # eta = 0 boundary between ieta -1 and +1; phi = 0 boundary between iphi 72 and 1
    ids = hb.cell_ids(*points_at(hb, np.array([-eps, eps]), np.array([-eps, eps]), np.array([1, 1])), np.array([1, 1]))
    _, ieta, iphi = decode_tower_id(ids)
    assert ieta.tolist() == [-1, 1] and iphi.tolist() == [72, 1]
    phi = np.array([DPHI - eps, DPHI + eps, np.pi - eps, np.pi + eps])
    ids = hb.cell_ids(*points_at(hb, np.full(4, 0.5), phi, np.full(4, 3)), np.full(4, 3))
    assert decode_tower_id(ids)[2].tolist() == [1, 2, 36, 37]


def test_outside_acceptance_gives_minus_one(hb: HCalBarrel) -> None:
    eta = np.array([1.31, -1.31, 2.0, -3.0, 1.30])
    depth = np.full(len(eta), 4)
    rows = hb.lookup(*points_at(hb, eta, np.full(len(eta), 1.0), depth), depth)
    assert rows[:4].tolist() == [-1] * 4 and rows[4] >= 0  # acceptance edge is 15 x 0.087 = 1.305
    # the beam axis, and depths that do not exist
    assert hb.cell_ids(np.zeros(1), np.zeros(1), np.ones(1), np.ones(1)).tolist() == [-1]
    x, y, z = points_at(hb, np.array([0.2, 0.2]), np.array([0.1, 0.1]), np.array([1, 1]))
    assert hb.lookup(x, y, z, np.array([0, 5])).tolist() == [-1, -1]


def test_material_is_plausible(hb: HCalBarrel) -> None:
    L = hb.layers
    assert len(L) == 4 and L.section == ("HB",) * 4
    assert (np.diff(L.position) > 0).all() and 177.7 < L.position[0] and L.position[-1] < 287.65
    assert L.x0[0] == pytest.approx(25.8, abs=0.2)  # ECAL barrel crystals in front of depth 1
    assert L.lambda_i[1:].sum() == pytest.approx(5.82, rel=1e-3)  # HB at eta = 0 (CMS JINST 3 S08004)
    assert 6.5 < L.lambda_i.sum() < 7.5  # with the ECAL (~1.1 lambda_I)
    assert L.lambda_i[3] > L.lambda_i[2] > L.lambda_i[1]  # depths grow in thickness
    assert ((L.mip_gev > 0.1) & (L.mip_gev < 1.0)).all()
    assert ((L.moliere_cm > 1.5) & (L.moliere_cm < 2.5)).all()
    assert ((L.lambda_cm > 16.4) & (L.lambda_cm < 25.0)).all()  # brass lambda_I diluted by the gaps


def test_noise_matches_zero_suppression_thresholds(hb: HCalBarrel) -> None:
    rows = np.array([hb.cells.layer_rows(d)[0] for d in range(1, 5)])
    noise_gev = hb.noise_mip(rows) * hb.mip_gev(rows)
    np.testing.assert_allclose(3.0 * noise_gev, [0.1, 0.2, 0.3, 0.3], rtol=1e-6)
    np.testing.assert_allclose(hb.noise_gev(rows), noise_gev, rtol=1e-6)


def test_surface_distance_and_path_factor(hb: HCalBarrel) -> None:
    eta = np.array([0.0, 0.5, -1.2])
    phi = np.array([0.3, 2.0, -1.0])
    theta = 2 * np.arctan(np.exp(-eta))
    d = np.column_stack([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)])
    v = np.zeros_like(d)
    for li in range(4):
        p = hb.crossing(v, d, np.full(3, li))
        np.testing.assert_allclose(np.hypot(p[:, 0], p[:, 1]), hb.layers.position[li], rtol=1e-9)
    np.testing.assert_allclose(hb.path_factor(v, d), np.cosh(eta), rtol=1e-9)
    # a displaced vertex: still on the cylinder, and no crossing for a line along z
    v2 = np.array([[10.0, -5.0, 3.0], [0.0, 0.0, 0.0]])
    d2 = np.array([d[1], [0.0, 0.0, 1.0]])
    s = hb.surface_distance(v2, d2, np.array([2, 2]))
    p = v2[0] + s[0] * d2[0]
    assert np.hypot(p[0], p[1]) == pytest.approx(hb.layers.position[2])
    assert np.isnan(s[1])
    assert hb.path_factor(v2, d2)[1] == pytest.approx(1e3)


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match="zs_threshold_gev"):
        HCalBarrelConfig(zs_threshold_gev=(0.1, 0.2))
    with pytest.raises(ConfigError, match="layer_depth"):
        HCalBarrelConfig(layer_depth=(1, 2, 3))
    with pytest.raises(ConfigError, match="r_outer"):
        HCalBarrel(HCalBarrelConfig(r_inner=177.7, r_outer=230.0))
