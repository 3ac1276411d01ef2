"""Neighbour graph over the cells of a detector, cached on disk.

Edges join cell rows of ``detector.cells`` (directed, both directions present, no self
loops, sorted by source then target):

(a) **in-layer**: cells ``i`` and ``j`` of one layer are neighbours when their centres are
    closer than ``factor * max(p_i, p_j)``, with ``p = sqrt(2 A / sqrt(3))`` the
    hexagon-equivalent pitch of a cell of area ``A`` (the centre distance of neighbouring
    hexagons). With the default ``factor = 1.5``:

    - a silicon hexagon has exactly its 6 touching cells (at ``p``; the next shell is at
      ``sqrt(3) p = 1.73 p``);
    - a square-ish scintillator tile of side ``s`` (``p = 1.075 s``, threshold 1.61 s) has 8:
      4 sharing an edge (at ``s``) and 4 sharing a corner (at ``sqrt(2) s``; next at ``2 s``),
      the "corner cells" convention of CMS PF clustering (``useCornerCells``);
    - across the fine/coarse and silicon/scintillator borders the larger cell sets the
      distance, so a border cell reaches every cell of the other kind within 1.5 of its
      pitch (a coarse hexagon ~8 fine ones, a border tile 10-30 silicon cells). The larger
      pitch, rather than the mean, also bridges the narrow holes that the HGCAL-like
      layout leaves between regions (up to about one tile ring), so the layer stays
      connected across its borders.

    Detectors whose cells are not flat (x, y) cells provide
    ``neighbour_frame(rows) -> (coords (n, k), pitch (n,))``: the barrel HCAL returns
    ``(cos phi, sin phi, eta)`` where towers are squares, so each tower has 8 neighbours.

(b) **between layers**: every cell is joined to the cell nearest in transverse position
    (x, y, or the neighbour frame) in the next layer and in the previous one, as in the
    DESY HGCAL geometry extraction for graph networks; both directions are added.

The graph depends only on the geometry, so it is cached as ``.npz`` in ``cache_dir``
(default ``$CALORECO_CACHE`` or ``~/.cache/caloreco``) under a key hashed from the detector
class, its configuration, the cell table and the rule; the file is written atomically and a
corrupt file is rebuilt with a warning.

Shapes: E edges; returns ``int64[2, E]`` (row 0 source, row 1 target).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import warnings
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from caloreco.errors import ConfigError
from caloreco.geometry.detector import Detector
from caloreco.utils.atomic import atomic_path

#: default distance factor of the in-layer rule (see the module docstring)
NEIGHBOUR_FACTOR = 1.5
#: cells are grouped by pitch in bins of this ratio for the radius searches (speed only)
_PITCH_BIN = 1.3
#: bump when the rule changes so that old cache files are not reused
_RULE_VERSION = 2
_SQRT3 = float(np.sqrt(3.0))


def default_cache_dir() -> Path:
    """``$CALORECO_CACHE`` if set, else ``~/.cache/caloreco``."""
    env = os.environ.get("CALORECO_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "caloreco"


def neighbour_graph(detector: Detector, *, cache_dir: str | os.PathLike[str] | None = None,
                    factor: float = NEIGHBOUR_FACTOR, use_cache: bool = True) -> np.ndarray:
    """Edge index ``int64[2, E]`` over the rows of ``detector.cells`` (see the module docstring).

    Args:
        detector: any :class:`~caloreco.geometry.detector.Detector`.
        cache_dir: folder of the cache files (default :func:`default_cache_dir`).
        factor: distance factor of the in-layer rule (default 1.5).
        use_cache: read and write the on-disk cache (default True).
    """
    if not 1.0 < factor < _SQRT3:
        raise ConfigError(f"factor must lie in (1, sqrt(3)) so that hexagons get 6 neighbours, got {factor}")
    n = len(detector.cells)
    if not use_cache:
        return build_neighbour_graph(detector, factor=factor)
    path = Path(cache_dir if cache_dir is not None else default_cache_dir()) / cache_name(detector, factor)
    if path.exists():
        edges = _load(path, n)
        if edges is not None:
            return edges
    edges = build_neighbour_graph(detector, factor=factor)
    try:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:  # a file object: np.savez would append ".npz" to a path
                idx_dtype = np.int32 if n < 2**31 else np.int64
                np.savez(fh, edges=edges.astype(idx_dtype), n_cells=np.int64(n))
    except OSError as exc:  # a read-only or full cache folder must not stop the computation
        warnings.warn(f"cannot write the neighbour-graph cache {path} ({exc}); continuing without it",
                      RuntimeWarning, stacklevel=2)
    return edges


def cache_name(detector: Detector, factor: float = NEIGHBOUR_FACTOR) -> str:
    """File name of the cache entry: detector name and a hash of what the graph depends on.

    The hash covers the class, ``dataclasses.asdict(detector.config)`` (or its repr), the
    number of cells, the bytes of the cell ids, centres and areas, ``factor`` and the rule
    version.
    """
    cls = type(detector)
    cfg = getattr(detector, "config", None)
    is_dc = dataclasses.is_dataclass(cfg) and not isinstance(cfg, type)
    cfg_text = repr(dataclasses.asdict(cfg)) if is_dc else repr(cfg)  # type: ignore[arg-type]
    cells = detector.cells
    h = hashlib.sha256()
    h.update(f"{cls.__module__}.{cls.__qualname__}|{cfg_text}|{len(cells)}|{factor!r}|{_RULE_VERSION}".encode())
    for col in (cells.cell_id, cells.x, cells.y, cells.z, cells.area):
        h.update(np.ascontiguousarray(col).tobytes())
    name = (detector.name or cls.__name__).replace("/", "_")
    return f"neighbours-{name}-{h.hexdigest()[:20]}.npz"


def _load(path: Path, n: int) -> np.ndarray | None:
    """The cached edges, or None (with a warning) when the file is unreadable or inconsistent."""
    try:
        with np.load(path, allow_pickle=False) as data:
            edges = np.asarray(data["edges"])
            n_file = int(data["n_cells"])
        if edges.ndim != 2 or edges.shape[0] != 2 or n_file != n:
            raise ValueError(f"shape {edges.shape} for {n_file} cells")
        if edges.size and (edges.min() < 0 or edges.max() >= n):
            raise ValueError("cell index out of range")
        return edges.astype(np.int64)
    except Exception as exc:  # zipfile, OSError, KeyError, ValueError ... all mean: rebuild
        warnings.warn(f"neighbour-graph cache {path} is unreadable ({type(exc).__name__}: {exc}); rebuilding it",
                      RuntimeWarning, stacklevel=3)
        return None


def _frame(detector: Detector, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Transverse coordinates and hexagon-equivalent pitch of the cells at ``rows``."""
    hook = getattr(detector, "neighbour_frame", None)
    if hook is not None:
        coords, pitch = hook(rows)
        return np.asarray(coords, dtype=np.float64), np.asarray(pitch, dtype=np.float64)
    c = detector.cells
    coords = np.column_stack([c.x[rows], c.y[rows]]).astype(np.float64)
    return coords, np.sqrt(2.0 * c.area[rows].astype(np.float64) / _SQRT3)


def _in_layer_pairs(coords: np.ndarray, pitch: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """Undirected in-layer pairs (local indices ``i``, ``j``), each pair once.

    A pair obeys ``d < factor max(p_i, p_j)``: it lies within ``factor p`` of its larger
    cell. Cells are grouped by pitch in bins of ratio ``_PITCH_BIN``; for each group G with
    largest pitch P_G, pairs inside G come from ``query_pairs(factor P_G)`` and pairs
    between G and the groups of smaller pitch from a dual-tree ``sparse_distance_matrix``
    at the same radius. Every candidate pair is thus seen exactly once, then filtered.
    """
    group = np.floor(np.log(pitch) / np.log(_PITCH_BIN)).astype(np.int64)
    out_i: list[np.ndarray] = []
    out_j: list[np.ndarray] = []
    for g in np.unique(group):
        inside = np.flatnonzero(group == g)
        below = np.flatnonzero(group < g)
        radius = factor * float(pitch[inside].max())
        tree = cKDTree(coords[inside], balanced_tree=False, compact_nodes=False)
        pairs = tree.query_pairs(radius, output_type="ndarray")
        out_i.append(inside[pairs[:, 0]])
        out_j.append(inside[pairs[:, 1]])
        if len(below):
            other = cKDTree(coords[below], balanced_tree=False, compact_nodes=False)
            cross = tree.sparse_distance_matrix(other, radius, output_type="ndarray")
            out_i.append(inside[cross["i"]])
            out_j.append(below[cross["j"]])
    i, j = np.concatenate(out_i), np.concatenate(out_j)
    d2 = ((coords[i] - coords[j]) ** 2).sum(axis=1)
    good = (d2 < (factor * np.maximum(pitch[i], pitch[j])) ** 2) & (i != j)
    return i[good], j[good]


def build_neighbour_graph(detector: Detector, *, factor: float = NEIGHBOUR_FACTOR) -> np.ndarray:
    """Build the edge index without the cache (one pass over the layers, vectorised within)."""
    cells = detector.cells
    n = len(cells)
    layer = np.asarray(cells.layer)
    order = np.argsort(layer, kind="stable")
    layers, starts = np.unique(layer[order], return_index=True)
    bounds = np.append(starts, n)
    und_src: list[np.ndarray] = []  # undirected edges (each once), global rows
    und_dst: list[np.ndarray] = []
    prev: tuple[np.ndarray, np.ndarray, cKDTree] | None = None
    for li in range(len(layers)):
        rows = order[bounds[li]:bounds[li + 1]]
        coords, pitch = _frame(detector, rows)
        i, j = _in_layer_pairs(coords, pitch, factor)
        und_src.append(rows[i])
        und_dst.append(rows[j])
        tree = cKDTree(coords, balanced_tree=False, compact_nodes=False)
        if prev is not None:  # nearest cell in the previous layer and vice versa
            p_rows, p_coords, p_tree = prev
            _, near_prev = p_tree.query(coords, k=1)  # for each cell here, its nearest there
            _, near_this = tree.query(p_coords, k=1)  # for each cell there, its nearest here
            # (p, near_this[p]) repeats (near_prev[t], t) when the two are mutual nearest
            fresh = near_prev[near_this] != np.arange(len(p_rows))
            und_src.append(np.concatenate([p_rows[near_prev], p_rows[fresh]]))
            und_dst.append(np.concatenate([rows, rows[near_this[fresh]]]))
        prev = (rows, coords, tree)
    if not und_src:
        return np.empty((2, 0), dtype=np.int64)
    s = np.concatenate(und_src).astype(np.int64)
    d = np.concatenate(und_dst).astype(np.int64)
    key = np.concatenate([s * n + d, d * n + s])
    del s, d
    key.sort()
    out = np.empty((2, len(key)), dtype=np.int64)
    np.floor_divide(key, n, out=out[0])
    np.remainder(key, n, out=out[1])
    return out
