"""Helix propagation to the calorimeter face against analytic expectations."""

from __future__ import annotations

import numpy as np
import pytest

from caloreco.errors import ConfigError
from caloreco.generators.propagation import (
    B_FIELD_T,
    GEV_PER_T_M,
    Surface,
    calorimeter_surface,
    curvature,
    propagate,
)
from caloreco.geometry.hcal import HCalBarrel
from caloreco.geometry.hgcal import HGCalEndcap

R_HB = 177.7  # cm, HB inner radius (HCalBarrelConfig.r_inner)
BARREL = Surface("cylinder", radius=R_HB, half_length=1000.0)


def _angle(a: float, b: float) -> float:
    """a - b wrapped into (-pi, pi]."""
    return float(np.angle(np.exp(1j * (a - b))))


def _one(pt: float, q: float, *, pz: float = 0.0, phi0: float = 0.0, vertex=(0.0, 0.0, 0.0),
         surface: Surface = BARREL, b: float = B_FIELD_T):
    return propagate([pt * np.cos(phi0)], [pt * np.sin(phi0)], [pz], np.array([vertex], float), [q],
                     surface, b_field=b)


@pytest.mark.parametrize("pt", [1.05, 2.0, 10.0, 100.0, 1e4])
@pytest.mark.parametrize("q", [1, -1])
def test_barrel_deflection_matches_asin_formula(pt: float, q: int) -> None:
    """From the origin: impact azimuth phi0 - q asin(0.3 B r / (2 pT)), direction turned twice that."""
    phi0 = 0.7
    r = _one(pt, q, pz=0.5 * pt, phi0=phi0)
    assert r.reached[0] and not r.looper[0]
    x, y, z = r.position[0]
    assert np.hypot(x, y) == pytest.approx(R_HB, rel=1e-12)
    dphi = np.arcsin(GEV_PER_T_M * B_FIELD_T * (R_HB / 100.0) / (2.0 * pt))
    assert _angle(np.arctan2(y, x), phi0 - q * dphi) == pytest.approx(0.0, abs=1e-12)
    d = r.direction[0]
    assert _angle(np.arctan2(d[1], d[0]), phi0 - 2 * q * dphi) == pytest.approx(0.0, abs=1e-12)
    # arc length s = 2 rho asin(r / (2 rho)); z advances by s pz / pT
    rho = pt / (GEV_PER_T_M * B_FIELD_T) * 100.0
    s = 2 * rho * np.arcsin(R_HB / (2 * rho))
    assert z == pytest.approx(0.5 * s, rel=1e-10)
    assert r.path_length[0] == pytest.approx(s * np.sqrt(1.25), rel=1e-10)
    np.testing.assert_allclose(np.linalg.norm(d), 1.0)
    assert d[2] == pytest.approx(0.5 / np.sqrt(1.25))  # p_z is conserved


def test_loopers_below_the_threshold_pt() -> None:
    """Tracks need p_T > 0.3 B r / 2 = 1.0122 GeV to reach r = 1.777 m at 3.8 T."""
    threshold = GEV_PER_T_M * B_FIELD_T * (R_HB / 100.0) / 2.0
    assert threshold == pytest.approx(1.0122, abs=1e-4)
    r = propagate([1.0, 0.999 * threshold, 1.001 * threshold, 0.5], [0, 0, 0, 0], [0, 0, 0, 0],
                  np.zeros((4, 3)), [1, -1, 1, 0], BARREL)
    np.testing.assert_array_equal(r.looper, [True, True, False, False])
    np.testing.assert_array_equal(r.reached, [False, False, True, True])
    assert np.isnan(r.position[0]).all()
    # just above the threshold the track arrives after almost half a turn, nearly tangentially
    d = r.direction[2]
    assert np.arctan2(d[1], d[0]) == pytest.approx(-2 * np.arcsin(1 / 1.001), abs=1e-9)
    assert abs(np.dot(d[:2], r.position[2, :2] / R_HB)) < 0.1


def test_displaced_vertex_lies_on_the_helix_circle() -> None:
    vertex = (12.0, -20.0, 3.0)
    pt, q, phi0 = 1.5, 1, 2.0
    r = _one(pt, q, pz=1.0, phi0=phi0, vertex=vertex)
    assert r.reached[0]
    kappa = curvature(np.array([pt]), np.array([q]))[0]
    centre = np.array([vertex[0] + np.sin(phi0) / kappa, vertex[1] - np.cos(phi0) / kappa])
    p = r.position[0]
    assert np.hypot(*(p[:2] - centre)) == pytest.approx(1 / abs(kappa), rel=1e-10)
    assert np.hypot(p[0], p[1]) == pytest.approx(R_HB, rel=1e-12)
    # the direction is tangent to the circle
    assert np.dot(r.direction[0, :2], p[:2] - centre) == pytest.approx(0.0, abs=1e-9)


def test_neutral_and_zero_field_go_straight() -> None:
    vertex = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    r = propagate([1.0, 0.3], [1.0, 0.4], [2.0, 0.0], vertex, [0, 1], BARREL, b_field=0.0)
    for i, p in enumerate(([1.0, 1.0, 2.0], [0.3, 0.4, 0.0])):
        d = np.asarray(p) / np.linalg.norm(p)
        np.testing.assert_allclose(r.direction[i], d, atol=1e-12)
        s = np.dot(r.position[i] - vertex[i], d)
        np.testing.assert_allclose(r.position[i], vertex[i] + s * d, atol=1e-9)
        assert np.hypot(*r.position[i, :2]) == pytest.approx(R_HB)


def test_barrel_acceptance_in_z() -> None:
    surf = Surface("cylinder", radius=R_HB, half_length=300.0)
    r = propagate([5.0, 5.0], [0.0, 0.0], [5.0, 50.0], np.zeros((2, 3)), [0, 0], surf)
    np.testing.assert_array_equal(r.reached, [True, False])
    assert not r.looper.any()


def test_endcap_disc() -> None:
    disc = Surface("disc", z=319.8, r_min=30.0, r_max=150.0)
    pt, pz, q = 2.0, 10.0, -1
    r = _one(pt, q, pz=pz, phi0=0.3, surface=disc)
    assert r.reached[0]
    assert r.position[0, 2] == pytest.approx(319.8)
    s = 319.8 * pt / pz  # transverse path length to the plane
    kappa = curvature(np.array([pt]), np.array([q]))[0]
    d = r.direction[0]
    assert _angle(np.arctan2(d[1], d[0]), 0.3 - kappa * s) == pytest.approx(0.0, abs=1e-12)
    chord = 2 * np.sin(kappa * s / 2) / kappa
    assert np.hypot(*r.position[0, :2]) == pytest.approx(abs(chord), rel=1e-10)
    # backwards, too central, and spiralling particles do not reach the +z endcap
    r = propagate([1.0, 10.0, 0.05], [0, 0, 0], [-5.0, 1.0, 0.5], np.zeros((3, 3)), [1, 0, 1], disc)
    np.testing.assert_array_equal(r.reached, [False, False, False])
    np.testing.assert_array_equal(r.looper, [False, False, True])


def test_surfaces_of_the_detectors() -> None:
    hb = calorimeter_surface(HCalBarrel())
    assert hb.kind == "cylinder" and hb.radius == pytest.approx(177.7)
    assert hb.half_length == pytest.approx(177.7 * np.sinh(15 * 0.087))
    he = calorimeter_surface(HGCalEndcap())
    assert he.kind == "disc" and he.z == pytest.approx(319.8)
    assert he.r_min == pytest.approx(319.8 / np.sinh(3.0)) and he.r_max == pytest.approx(319.8 / np.sinh(1.5))
    with pytest.raises(ConfigError):
        Surface("sphere")
    with pytest.raises(ConfigError):
        Surface("cylinder", radius=0.0)
