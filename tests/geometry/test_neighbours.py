"""Tests of caloreco.geometry.neighbours on a 0.3 rad HGCAL sector and the HB barrel."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from caloreco.errors import ConfigError
from caloreco.geometry import CellType, HCalBarrel, HGCalConfig, HGCalEndcap, neighbour_graph
from caloreco.geometry.hcal import decode_tower_id
from caloreco.geometry.neighbours import cache_name

PHI_MIN, PHI_MAX = 0.0, 0.3
SILICON = (CellType.SI_FINE, CellType.SI_COARSE_THIN, CellType.SI_COARSE_THICK)


@pytest.fixture(scope="module")
def sector() -> HGCalEndcap:
    det = HGCalEndcap(HGCalConfig(phi_min=PHI_MIN, phi_max=PHI_MAX))
    det.cells
    return det


@pytest.fixture(scope="module")
def edges(sector: HGCalEndcap, tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    return neighbour_graph(sector, cache_dir=tmp_path_factory.mktemp("cache"))


def in_layer_degree(det: HGCalEndcap | HCalBarrel, e: np.ndarray) -> np.ndarray:
    c = det.cells
    same = c.layer[e[0]] == c.layer[e[1]]
    return np.bincount(e[0][same], minlength=len(c))


def bulk(det: HGCalEndcap, margin: float) -> np.ndarray:
    """Cells at least ``margin`` cm away from every region border and the sector edges."""
    c = det.cells
    r = np.hypot(c.x, c.y).astype(np.float64)
    phi = np.arctan2(c.y, c.x).astype(np.float64)
    ok = (r * np.minimum(phi - PHI_MIN, PHI_MAX - phi)) > margin
    for lay in np.unique(c.layer):
        m = c.layer == lay
        R = det._region_radii(int(lay))
        borders = np.array([R["r_min"], R["r_fine"], R["r_scint"], R["r_max"]])
        ok[m] &= np.min(np.abs(r[m][:, None] - borders[None, :]), axis=1) > margin
    return ok


def test_format(edges: np.ndarray, sector: HGCalEndcap) -> None:
    n = len(sector.cells)
    assert edges.dtype == np.int64 and edges.ndim == 2 and edges.shape[0] == 2
    assert edges.min() >= 0 and edges.max() < n
    key = edges[0] * n + edges[1]
    assert (np.diff(key) > 0).all()  # sorted by (source, target), no duplicates
    assert (edges[0] != edges[1]).all()  # no self loops


def test_symmetric(edges: np.ndarray, sector: HGCalEndcap) -> None:
    n = len(sector.cells)
    np.testing.assert_array_equal(np.sort(edges[1] * n + edges[0]), edges[0] * n + edges[1])


def test_bulk_hexagons_have_six_and_tiles_eight_in_layer_neighbours(edges: np.ndarray, sector: HGCalEndcap) -> None:
    c = sector.cells
    deg = in_layer_degree(sector, edges)
    inner = bulk(sector, margin=6.0)
    si = inner & np.isin(c.type, SILICON)
    tiles = inner & (c.type == CellType.SCINTILLATOR)
    assert si.sum() > 50_000 and tiles.sum() > 500
    assert (deg[si] == 6).all()
    assert (deg[tiles] == 8).all()


def test_in_layer_edges_join_touching_cells(edges: np.ndarray, sector: HGCalEndcap) -> None:
    c = sector.cells
    same = c.layer[edges[0]] == c.layer[edges[1]]
    a, b = edges[0][same], edges[1][same]
    d = np.hypot(c.x[a] - c.x[b], c.y[a] - c.y[b])
    pitch = np.sqrt(2 * c.area.astype(np.float64) / np.sqrt(3))
    assert (d < 1.5 * np.maximum(pitch[a], pitch[b])).all()
    fine = (c.type[a] == CellType.SI_FINE) & (c.type[b] == CellType.SI_FINE)
    np.testing.assert_allclose(d[fine], 0.806, rtol=1e-4)  # the 6 touching fine hexagons only


def test_every_cell_links_to_adjacent_layers(edges: np.ndarray, sector: HGCalEndcap) -> None:
    c = sector.cells
    n_layers = len(sector.layers)
    la, lb = c.layer[edges[0]].astype(np.int64), c.layer[edges[1]].astype(np.int64)
    assert set(np.unique(np.abs(la - lb)).tolist()) == {0, 1}
    up = np.zeros(len(c), dtype=bool)
    down = np.zeros(len(c), dtype=bool)
    up[edges[0][lb == la + 1]] = True
    down[edges[0][lb == la - 1]] = True
    np.testing.assert_array_equal(up, c.layer < n_layers)
    np.testing.assert_array_equal(down, c.layer > 1)


def test_inter_layer_edge_goes_to_the_nearest_cell(edges: np.ndarray, sector: HGCalEndcap) -> None:
    c = sector.cells
    src, dst = edges
    sel = np.flatnonzero(c.layer[src] == 10)
    sel = sel[c.layer[dst[sel]] == 11]
    nxt = c.layer_rows(11)
    # brute force for 200 cells of layer 10: their nearest cell in layer 11 must be a target
    for row in np.unique(src[sel])[::max(1, len(np.unique(src[sel])) // 200)]:
        d = np.hypot(c.x[nxt] - c.x[row], c.y[nxt] - c.y[row])
        assert nxt[np.argmin(d)] in dst[sel][src[sel] == row]


def test_borders_connect(edges: np.ndarray, sector: HGCalEndcap) -> None:
    c = sector.cells
    same = c.layer[edges[0]] == c.layer[edges[1]]
    ta, tb = c.type[edges[0][same]], c.type[edges[1][same]]
    si_scint = np.isin(ta, SILICON) & (tb == CellType.SCINTILLATOR)
    fine_coarse = (ta == CellType.SI_FINE) & np.isin(tb, SILICON[1:])
    assert si_scint.sum() > 100 and fine_coarse.sum() > 100
    # every tile of the innermost ring of each mixed layer touches silicon
    dst = edges[1][same][si_scint]
    for lay in range(35, 48):
        tiles = np.flatnonzero((c.layer == lay) & (c.type == CellType.SCINTILLATOR))
        r = np.hypot(c.x[tiles], c.y[tiles])
        first_ring = tiles[r < r.min() + 0.1]
        assert np.isin(first_ring, dst).all(), lay


def test_hcal_towers_have_eight_neighbours_and_link_depths(tmp_path: Path) -> None:
    hb = HCalBarrel()
    e = neighbour_graph(hb, cache_dir=tmp_path)
    c = hb.cells
    depth, ieta, iphi = decode_tower_id(c.cell_id)
    deg = in_layer_degree(hb, e)
    assert (deg[np.abs(ieta) < 15] == 8).all()  # phi wraps around, eta = 0 is crossed
    assert (deg[np.abs(ieta) == 15] == 5).all()
    across = c.layer[e[0]] != c.layer[e[1]]
    a, b = e[0][across], e[1][across]
    np.testing.assert_array_equal(ieta[a], ieta[b])  # same tower in the next depth
    np.testing.assert_array_equal(iphi[a], iphi[b])


def test_cache_hit_is_identical_and_faster(sector: HGCalEndcap, tmp_path: Path) -> None:
    t0 = time.perf_counter()
    first = neighbour_graph(sector, cache_dir=tmp_path)
    t_build = time.perf_counter() - t0
    files = list(tmp_path.glob("*.npz"))
    assert [f.name for f in files] == [cache_name(sector)]
    t0 = time.perf_counter()
    second = neighbour_graph(sector, cache_dir=tmp_path)
    t_load = time.perf_counter() - t0
    np.testing.assert_array_equal(first, second)
    assert second.dtype == np.int64
    assert t_load < t_build
    # a different configuration gets its own entry
    other = HGCalEndcap(HGCalConfig(phi_min=PHI_MIN, phi_max=0.1))
    assert cache_name(other) != cache_name(sector)


def test_cache_dir_from_environment(sector: HGCalEndcap, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALORECO_CACHE", str(tmp_path / "env"))
    hb = HCalBarrel()
    neighbour_graph(hb)
    assert (tmp_path / "env" / cache_name(hb)).exists()


def test_corrupt_cache_is_rebuilt(tmp_path: Path) -> None:
    hb = HCalBarrel()
    good = neighbour_graph(hb, cache_dir=tmp_path)
    path = tmp_path / cache_name(hb)
    for garbage in (b"not a zip file", path.read_bytes()[:200]):
        path.write_bytes(garbage)
        with pytest.warns(RuntimeWarning, match="rebuilding"):
            again = neighbour_graph(hb, cache_dir=tmp_path)
        np.testing.assert_array_equal(again, good)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the rebuilt file reads cleanly
            np.testing.assert_array_equal(neighbour_graph(hb, cache_dir=tmp_path), good)
    # a valid file for another geometry (wrong cell count) is rejected too
    np.savez(path, edges=np.zeros((2, 3), dtype=np.int32), n_cells=np.int64(7))
    with pytest.warns(RuntimeWarning, match="rebuilding"):
        np.testing.assert_array_equal(neighbour_graph(hb, cache_dir=tmp_path), good)


def test_no_cache_and_bad_factor(tmp_path: Path) -> None:
    hb = HCalBarrel()
    e = neighbour_graph(hb, cache_dir=tmp_path, use_cache=False)
    assert not list(tmp_path.iterdir())
    assert e.shape[1] > 0
    with pytest.raises(ConfigError, match="factor"):
        neighbour_graph(hb, factor=2.0, use_cache=False)


def test_unwritable_cache_warns_and_still_returns(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    hb = HCalBarrel()
    with pytest.warns(RuntimeWarning, match="cannot write"):
        e = neighbour_graph(hb, cache_dir=blocker / "cache")
    np.testing.assert_array_equal(e, neighbour_graph(hb, use_cache=False))
