"""Tests of caloreco.geometry.plot: layer maps of a small HGCAL sector and of HB depths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.figure import Figure

from caloreco.errors import ConfigError
from caloreco.geometry import CellType, HCalBarrel, HGCalConfig, HGCalEndcap
from caloreco.geometry.plot import plot_layer, save_layer_plot

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def sector() -> HGCalEndcap:
    return HGCalEndcap(HGCalConfig(phi_min=0.0, phi_max=0.3))


def test_png_for_a_mixed_hgcal_layer(sector: HGCalEndcap, tmp_path: Path) -> None:
    out = save_layer_plot(sector, 40, tmp_path / "maps" / "hgcal_40.png")
    assert out.read_bytes()[:8] == PNG_MAGIC
    assert [p.name for p in out.parent.iterdir()] == ["hgcal_40.png"]  # no temporary file left


def test_png_for_an_hcal_depth(tmp_path: Path) -> None:
    out = save_layer_plot(HCalBarrel(), 2, tmp_path / "hb_depth2.png")
    assert out.read_bytes()[:8] == PNG_MAGIC


def test_one_collection_per_cell_type(sector: HGCalEndcap) -> None:
    fig = plot_layer(sector, 40)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    polys = [c for c in ax.collections if isinstance(c, PolyCollection)]
    rows = sector.cells.layer_rows(40)
    types = np.unique(sector.cells.type[rows])
    assert len(polys) == len(types) == 4
    assert sum(len(p.get_paths()) for p in polys) == len(rows)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(lab.startswith("scintillator") for lab in labels)
    # hexagons have 6 corners and the area of their cell
    fine = polys[list(types).index(CellType.SI_FINE)].get_paths()[0].vertices[:6]
    x, y = fine[:, 0], fine[:, 1]
    area = 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))
    assert area == pytest.approx(0.563, rel=1e-3)


def test_into_given_axes_with_edges(sector: HGCalEndcap, tmp_path: Path) -> None:
    fig = Figure()
    ax = fig.add_subplot()
    assert plot_layer(HCalBarrel(), 1, ax=ax, show_edges=True, cache_dir=tmp_path) is fig
    lines = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert len(lines) == 1 and len(lines[0].get_segments()) > 4000  # ~4 undirected edges per tower
    fig2 = plot_layer(sector, 30, show_edges=True, cache_dir=tmp_path)
    assert any(isinstance(c, LineCollection) for c in fig2.axes[0].collections)


def test_bad_layer(sector: HGCalEndcap) -> None:
    with pytest.raises(ConfigError, match="layer must be in 1..47"):
        plot_layer(sector, 48)
    with pytest.raises(ConfigError, match="layer must be in 1..4"):
        plot_layer(HCalBarrel(), 0)
