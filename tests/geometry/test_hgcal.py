"""Tests of caloreco.geometry.hgcal on a 0.3 rad sector, and the check against CMS cells.

The reference is the CMSSW cell table ``../shared/data/hgcal-geometry-cee/
hgcal_CEE_cells_near_axis.csv`` (CMS HGCAL CE-E cells decoded from a CMSSW DetId table,
github.com/OzAmram/HGCalShowers commit 44da038; test reference only).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.spatial import cKDTree

from caloreco.geometry import CellTable, CellType, HGCalConfig, HGCalEndcap
from caloreco.geometry.hgcal import LATTICE_COARSE, LATTICE_FINE, LATTICE_SCINT, decode_cell_id, encode_cell_id

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
CMS_CELLS = SHARED / "data" / "hgcal-geometry-cee" / "hgcal_CEE_cells_near_axis.csv"

PHI_MIN, PHI_MAX = 0.0, 0.3


@pytest.fixture(scope="module")
def sector() -> HGCalEndcap:
    det = HGCalEndcap(HGCalConfig(phi_min=PHI_MIN, phi_max=PHI_MAX))
    det.cells
    return det


def pitch_of(area: np.ndarray) -> np.ndarray:
    """Hexagon-equivalent pitch sqrt(2 A / sqrt 3) of a cell of area A."""
    return np.sqrt(2.0 * area.astype(np.float64) / np.sqrt(3.0))


def median_nn(x: np.ndarray, y: np.ndarray, layer: np.ndarray) -> float:
    """Median distance from each cell to its nearest neighbour in the same layer."""
    out = []
    for lay in np.unique(layer):
        m = layer == lay
        if m.sum() < 2:
            continue
        xy = np.column_stack([x[m], y[m]]).astype(np.float64)
        d, _ = cKDTree(xy).query(xy, k=2)
        out.append(d[:, 1])
    return float(np.median(np.concatenate(out)))


# ---------------------------------------------------------------------------- layers
def test_layer_counts_and_sections(sector: HGCalEndcap) -> None:
    L = sector.layers
    assert len(L) == 47
    assert L.section.count("CE-E") == 26 and L.section.count("CE-H") == 21
    assert L.section[:26] == ("CE-E",) * 26  # CE-E first


def test_z_strictly_increasing(sector: HGCalEndcap) -> None:
    z = sector.layers.position
    assert (np.diff(z) > 0).all()
    assert 315 < z[0] < 325 and 490 < z[-1] < 520  # CMS HGCAL: |z| ~ 3.2-5.2 m


def test_material_budget(sector: HGCalEndcap) -> None:
    L = sector.layers
    assert 25.0 < L.x0[:26].sum() < 30.0  # HGCAL TDR: 27.7 X0
    assert L.lambda_i[:26].sum() == pytest.approx(1.5, abs=0.1)  # HGCAL TDR: 1.5 lambda_I
    assert L.lambda_i[26:].sum() == pytest.approx(8.5, abs=0.3)  # HGCAL TDR: 8.5 lambda_I
    for arr in (L.x0, L.lambda_i, L.mip_gev, L.moliere_cm, L.lambda_cm):
        assert (arr > 0).all()


# ---------------------------------------------------------------------------- cells
def test_acceptance_of_cell_centres(sector: HGCalEndcap) -> None:
    c = sector.cells
    r = np.hypot(c.x, c.y).astype(np.float64)
    eta = np.arcsinh(c.z.astype(np.float64) / r)
    assert eta.min() > 1.5 and eta.max() <= 3.0 + 1e-4
    phi = np.arctan2(c.y, c.x)
    assert phi.min() >= PHI_MIN - 1e-6 and phi.max() < PHI_MAX + 1e-6


def test_cell_areas_and_types(sector: HGCalEndcap) -> None:
    c = sector.cells
    assert set(np.unique(c.type)) == {CellType.SI_FINE, CellType.SI_COARSE_THIN, CellType.SI_COARSE_THICK,
                                      CellType.SCINTILLATOR}
    fine = c.area[c.type == CellType.SI_FINE]
    coarse = c.area[(c.type == CellType.SI_COARSE_THIN) | (c.type == CellType.SI_COARSE_THICK)]
    np.testing.assert_allclose(fine, 0.56, rtol=0.01)  # sqrt(3)/2 * 0.806^2 = 0.563 cm^2
    np.testing.assert_allclose(coarse, 1.27, rtol=0.01)  # sqrt(3)/2 * 1.209^2 = 1.266 cm^2
    tiles = c.area[c.type == CellType.SCINTILLATOR]
    assert 4.0 < tiles.min() and tiles.max() < 30.0  # SiPM-on-tile: ~4-30 cm^2
    # scintillator only in the 13 coarse CE-H layers
    assert np.unique(c.layer[c.type == CellType.SCINTILLATOR]).tolist() == list(range(35, 48))


def test_ids_unique_and_decode_round_trip(sector: HGCalEndcap) -> None:
    c = sector.cells
    assert len(np.unique(c.cell_id)) == len(c)
    assert (np.diff(c.cell_id) > 0).all()  # sorted
    layer, lattice, a, b = decode_cell_id(c.cell_id)
    np.testing.assert_array_equal(encode_cell_id(layer, lattice, a, b), c.cell_id)
    np.testing.assert_array_equal(layer, c.layer)
    expected = np.select([c.type == CellType.SI_FINE, c.type == CellType.SCINTILLATOR],
                         [LATTICE_FINE, LATTICE_SCINT], LATTICE_COARSE)
    np.testing.assert_array_equal(lattice, expected)


def _border_distance(det: HGCalEndcap) -> np.ndarray:
    """Distance of each cell centre from the nearest fine/coarse or silicon/scintillator border."""
    c = det.cells
    r = np.hypot(c.x, c.y).astype(np.float64)
    out = np.full(len(c), np.inf)
    for lay in np.unique(c.layer):
        m = c.layer == lay
        R = det._region_radii(int(lay))
        borders = [R["r_fine"]] + ([R["r_scint"]] if R["r_scint"] < R["r_max"] else [])
        out[m] = np.min(np.abs(r[m][:, None] - np.array(borders)[None, :]), axis=1)
    return out


def test_lookup_of_cell_centres_away_from_borders(sector: HGCalEndcap) -> None:
    c = sector.cells
    rows = sector.lookup(c.x.astype(np.float64), c.y.astype(np.float64), c.z, c.layer.astype(np.int64))
    far = _border_distance(sector) > 3.0  # one coarse pitch plus a tile half-size
    assert far.mean() > 0.9
    np.testing.assert_array_equal(rows[far], np.flatnonzero(far))


def test_lookup_of_every_cell_centre_returns_that_cell(sector: HGCalEndcap) -> None:
    c = sector.cells
    rows = sector.lookup(c.x.astype(np.float64), c.y.astype(np.float64), c.z, c.layer.astype(np.int64))
    np.testing.assert_array_equal(rows, np.arange(len(c)))


def _random_points(det: HGCalEndcap, n: int, seed: int) -> tuple[np.ndarray, ...]:
    """Uniform points in (r, phi) inside the sector acceptance of random layers."""
    rng = np.random.default_rng(seed)
    layer = rng.integers(1, len(det.layers) + 1, n)
    z = det.layers.position[layer - 1]
    cfg = det.config
    r_lo, r_hi = z / np.sinh(cfg.eta_max), z / np.sinh(cfg.eta_min)
    r = np.sqrt(rng.uniform(r_lo**2, r_hi**2))
    phi = rng.uniform(PHI_MIN + 0.02, PHI_MAX - 0.02, n)
    return r * np.cos(phi), r * np.sin(phi), z, layer, r, r_lo, r_hi


def test_lookup_of_random_points(sector: HGCalEndcap) -> None:
    x, y, z, layer, *_ = _random_points(sector, 200_000, seed=3)
    rows = sector.lookup(x, y, z, layer)
    found = rows >= 0
    assert found.mean() > 0.97
    c = sector.cells
    rf = rows[found]
    np.testing.assert_array_equal(c.layer[rf], layer[found])
    dist = np.hypot(c.x[rf] - x[found], c.y[rf] - y[found])
    # inside its own hexagon/tile, except in the thin strip along a sensor border that no
    # lattice covers, where the nearest border cell (within one coarse pitch) is taken
    inside = dist < pitch_of(c.area[rf])
    assert inside.mean() > 0.999
    assert (dist < np.maximum(pitch_of(c.area[rf]), sector.config.pitch_coarse)).all()
    # cell_ids agrees with lookup
    ids = sector.cell_ids(x, y, z, layer)
    np.testing.assert_array_equal(ids[found], c.cell_id[rf])
    assert (ids[~found] == -1).all()


def test_no_holes_inside_the_acceptance(sector: HGCalEndcap) -> None:
    x, y, z, layer, r, r_lo, r_hi = _random_points(sector, 200_000, seed=4)
    inner = (r > r_lo + 1.0) & (r < r_hi - 3.0)  # away from the acceptance edges
    rows = sector.lookup(x[inner], y[inner], z[inner], layer[inner])
    assert (rows >= 0).all()


def test_points_outside_acceptance_give_minus_one(sector: HGCalEndcap) -> None:
    n_layers = len(sector.layers)
    layer = np.arange(1, n_layers + 1)
    z = sector.layers.position
    phi = 0.15
    for eta in (1.35, 3.2):  # below eta_min, above eta_max
        r = z / np.sinh(eta)
        assert (sector.lookup(r * np.cos(phi), r * np.sin(phi), z, layer) == -1).all()
    # outside the sector in phi, and on layers that do not exist
    r = z / np.sinh(2.0)
    assert (sector.lookup(r * np.cos(1.5), r * np.sin(1.5), z, layer) == -1).all()
    x1, y1 = r[:2] * np.cos(phi), r[:2] * np.sin(phi)
    assert (sector.lookup(x1, y1, z[:2], np.array([0, n_layers + 1])) == -1).all()


def test_full_phi_coverage_has_the_negative_x_axis() -> None:
    """Cells centred on phi = pi (y = 0, x < 0) exist when the endcap covers the full ring."""
    det = HGCalEndcap(HGCalConfig(eta_min=2.8, eta_max=3.0))  # a thin full-phi ring keeps this cheap
    z = det.layers.position
    r = z / np.sinh(2.9)
    ok = (r < 49.0) | (r > 52.5)  # keep clear of the IndexError below (tile ring 0 starts at 50 cm)
    rows = det.lookup(-r[ok], np.zeros(ok.sum()), z[ok], np.arange(1, len(z) + 1)[ok])
    assert (rows >= 0).all()


def test_lookup_without_scintillator_cells() -> None:
    det = HGCalEndcap(HGCalConfig(phi_min=PHI_MIN, phi_max=PHI_MAX, ce_h_eta_scint=1.5))
    assert (det.cells.type != CellType.SCINTILLATOR).all()
    phi, r = -np.pi + 0.01, 50.5  # maps to (ring 0, phi bin 0) of the missing tile lattice
    rows = det.lookup(np.array([r * np.cos(phi)]), np.array([r * np.sin(phi)]), None, np.array([40]))
    assert rows.tolist() == [-1]


def test_parquet_round_trip(sector: HGCalEndcap, tmp_path: Path) -> None:
    path = sector.cells.save_parquet(tmp_path / "cells.parquet", metadata={"detector": "hgcal"})
    back = CellTable.load_parquet(path)
    for k, v in sector.cells.columns().items():
        np.testing.assert_array_equal(getattr(back, k), v)
        assert getattr(back, k).dtype == v.dtype


# ---------------------------------------------------------------------------- the CMS check
@pytest.mark.skipif(not CMS_CELLS.exists(), reason=f"CMS reference cells not found at {CMS_CELLS}")
def test_cell_spacing_matches_cmssw(sector: HGCalEndcap) -> None:
    """Median nearest-neighbour distance of fine and coarse silicon cells equals CMSSW's within 1%.

    CMS: per layer, fine (si_type 0) and coarse (si_type 1, 2) cells separately, x_cm/y_cm
    (0.806 and 1.209 cm). Ours: the same statistic over the CE-E layers of the sector.
    """
    cms = np.genfromtxt(CMS_CELLS, delimiter=",", names=True)
    c = sector.cells
    ce_e = c.layer <= 26
    for name, cms_sel, our_sel in (
            ("fine", cms["si_type"] == 0, ce_e & (c.type == CellType.SI_FINE)),
            ("coarse", cms["si_type"] > 0,
             ce_e & ((c.type == CellType.SI_COARSE_THIN) | (c.type == CellType.SI_COARSE_THICK)))):
        ref = median_nn(cms["x_cm"][cms_sel], cms["y_cm"][cms_sel], cms["layer"][cms_sel])
        ours = median_nn(c.x[our_sel], c.y[our_sel], c.layer[our_sel])
        assert ours == pytest.approx(ref, rel=0.01), name
