"""Maps of one detector layer: every cell drawn as its polygon, coloured by cell type.

- silicon cells: regular hexagons of the lattice (pointy-topped: vertices at 30 + 60 k deg,
  circumradius ``p / sqrt(3)`` for pitch ``p = sqrt(2 A / sqrt(3))``), in (x, y) [cm];
- scintillator tiles: annular sectors ``[r_c / sqrt(g), r_c sqrt(g)] x [phi_c -+ dphi / 2]``
  with ``g = 1 + dphi`` (the HGCAL tile rings), in (x, y) [cm];
- barrel HCAL towers: deta x dphi squares in the (eta, phi) plane.

All cells go into one :class:`matplotlib.collections.PolyCollection` built from an
``(N, V, 2)`` vertex array, so a full HGCAL layer (~80k cells) renders in about a second.
Figures are :class:`matplotlib.figure.Figure` objects (no pyplot state).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from caloreco.errors import ConfigError
from caloreco.geometry.cells import CellType
from caloreco.geometry.detector import Detector
from caloreco.geometry.hcal import HCalBarrel
from caloreco.geometry.hgcal import HGCalEndcap
from caloreco.utils.atomic import atomic_path

#: colour and legend label of each cell type
TYPE_STYLE: dict[CellType, tuple[str, str]] = {
    CellType.SI_FINE: ("#1f77b4", "Si fine (120 um)"),
    CellType.SI_COARSE_THIN: ("#ff7f0e", "Si coarse (200 um)"),
    CellType.SI_COARSE_THICK: ("#2ca02c", "Si coarse (300 um)"),
    CellType.SCINTILLATOR: ("#9467bd", "scintillator tile"),
    CellType.HCAL_TOWER: ("#8c564b", "HCAL tower"),
}
_SQRT3 = float(np.sqrt(3.0))
_ARC_POINTS = 3  # vertices per arc of a tile (its curvature is ~1 degree: 3 are plenty)


def _hexagons(x: np.ndarray, y: np.ndarray, area: np.ndarray) -> np.ndarray:
    """Vertices ``(N, 6, 2)`` of the hexagons of area ``area`` centred at (x, y)."""
    circum = np.sqrt(2.0 * area / _SQRT3) / _SQRT3
    ang = np.deg2rad(30.0 + 60.0 * np.arange(6))
    return np.stack([x[:, None] + circum[:, None] * np.cos(ang), y[:, None] + circum[:, None] * np.sin(ang)], axis=-1)


def _tiles(x: np.ndarray, y: np.ndarray, dphi: float) -> np.ndarray:
    """Vertices ``(N, 2 * _ARC_POINTS, 2)`` of (r, phi) tiles of angular size ``dphi``."""
    rc, phic = np.hypot(x, y), np.arctan2(y, x)
    g = np.sqrt(1.0 + dphi)
    t = np.linspace(-0.5, 0.5, _ARC_POINTS) * dphi
    phi = np.concatenate([phic[:, None] + t, phic[:, None] - t], axis=1)  # inner arc out, outer arc back
    r = np.concatenate([np.repeat((rc / g)[:, None], _ARC_POINTS, 1), np.repeat((rc * g)[:, None], _ARC_POINTS, 1)], 1)
    return np.stack([r * np.cos(phi), r * np.sin(phi)], axis=-1)


def _squares(u: np.ndarray, v: np.ndarray, du: float, dv: float) -> np.ndarray:
    """Vertices ``(N, 4, 2)`` of du x dv rectangles centred at (u, v)."""
    su = np.array([-0.5, 0.5, 0.5, -0.5]) * du
    sv = np.array([-0.5, -0.5, 0.5, 0.5]) * dv
    return np.stack([u[:, None] + su, v[:, None] + sv], axis=-1)


def _plane(detector: Detector, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, str, str]:
    """Plot coordinates of the cell centres and the axis labels."""
    c = detector.cells
    x, y, z = (c.x[rows].astype(np.float64), c.y[rows].astype(np.float64), c.z[rows].astype(np.float64))
    if isinstance(detector, HCalBarrel):
        rho = np.hypot(x, y)
        return np.arcsinh(z / rho), np.mod(np.arctan2(y, x), 2 * np.pi), "eta", "phi [rad]"
    return x, y, "x [cm]", "y [cm]"


def _polygons(detector: Detector, rows: np.ndarray, types: np.ndarray) -> list[np.ndarray]:
    """One vertex array per cell type present (in the order of ``np.unique(types)``)."""
    c = detector.cells
    u, v, _, _ = _plane(detector, rows)
    out = []
    for t in np.unique(types):
        sel = types == t
        if t == CellType.HCAL_TOWER and isinstance(detector, HCalBarrel):
            out.append(_squares(u[sel], v[sel], detector.config.deta, detector.config.dphi))
        elif t == CellType.SCINTILLATOR:
            dphi = (np.deg2rad(detector.config.scint_dphi_deg) if isinstance(detector, HGCalEndcap)
                    else np.sqrt(c.area[rows][sel].astype(np.float64)) / np.hypot(u[sel], v[sel]))
            out.append(_tiles(u[sel], v[sel], float(np.median(dphi))))
        else:
            out.append(_hexagons(u[sel], v[sel], c.area[rows][sel].astype(np.float64)))
    return out


def plot_layer(detector: Detector, layer: int, *, ax: Axes | None = None, show_edges: bool = False,
               cache_dir: str | os.PathLike[str] | None = None) -> Figure:
    """Draw every cell of the 1-based ``layer`` coloured by :class:`CellType`, with a legend.

    Args:
        detector: the geometry.
        layer: 1-based layer (HGCAL) or depth (HCAL barrel).
        ax: axes to draw into (default: a new 8 x 8 inch figure with one axes).
        show_edges: overlay the in-layer edges of
            :func:`~caloreco.geometry.neighbours.neighbour_graph` (built or read from the cache).
        cache_dir: cache folder for the neighbour graph (default: its own default).

    Returns:
        The figure holding ``ax``.
    """
    n_layers = len(detector.layers)
    if not 1 <= int(layer) <= n_layers:
        raise ConfigError(f"layer must be in 1..{n_layers} for {detector.name or type(detector).__name__}, got {layer}")
    layer = int(layer)
    barrel = isinstance(detector, HCalBarrel)
    if ax is None:
        fig = Figure(figsize=(6, 10) if barrel else (10, 8), layout="constrained")
        ax = fig.add_subplot()
    else:
        fig = ax.get_figure()  # type: ignore[assignment]
    c = detector.cells
    rows = c.layer_rows(layer)
    types = c.type[rows]
    u, v, xlabel, ylabel = _plane(detector, rows)
    handles = []
    for t, verts in zip(np.unique(types), _polygons(detector, rows, types)):
        colour, label = TYPE_STYLE[CellType(int(t))]
        lw = 0.3 if len(rows) < 20000 else 0.1
        ax.add_collection(PolyCollection(verts, facecolors=colour, edgecolors="white", linewidths=lw))
        handles.append(Patch(facecolor=colour, edgecolor="white", label=f"{label}: {len(verts)}"))
    if show_edges:
        from caloreco.geometry.neighbours import neighbour_graph

        edges = neighbour_graph(detector, cache_dir=cache_dir)
        local = np.full(len(c), -1, dtype=np.int64)
        local[rows] = np.arange(len(rows))
        a, b = local[edges[0]], local[edges[1]]
        keep = (a >= 0) & (b >= 0) & (edges[0] < edges[1])
        seg = np.stack([np.column_stack([u[a[keep]], v[a[keep]]]), np.column_stack([u[b[keep]], v[b[keep]]])], axis=1)
        if barrel:  # drop the segments that wrap around phi = 0
            seg = seg[np.abs(seg[:, 0, 1] - seg[:, 1, 1]) < np.pi]
        ax.add_collection(LineCollection(seg, colors="black", linewidths=0.3, alpha=0.6))
        handles.append(Patch(facecolor="none", edgecolor="black", label=f"neighbour edges: {len(seg)}"))
    ax.autoscale_view()
    ax.set_aspect("equal")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    section = detector.layers.section[layer - 1]
    where = "depth" if barrel else "layer"
    ax.set_title(f"{detector.name or type(detector).__name__} {where} {layer} ({section}): {len(rows)} cells")
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    return fig


def save_layer_plot(detector: Detector, layer: int, path: str | os.PathLike[str], *, dpi: int = 150,
                    show_edges: bool = False) -> Path:
    """Write :func:`plot_layer` to a PNG atomically (temporary file, then rename)."""
    fig = plot_layer(detector, layer, show_edges=show_edges)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return path
