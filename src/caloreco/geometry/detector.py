"""The interface every calorimeter implements, used by the simulation and the readers.

A detector is a :class:`~caloreco.geometry.layers.LayerStack` (longitudinal material) plus
a :class:`~caloreco.geometry.cells.CellTable` (transverse segmentation) and the rules that
map a point on a layer to a cell. The simulation only talks to this interface, so the
HGCAL-like endcap and the HCAL-like barrel share every shower model.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from functools import cached_property

import numpy as np

from caloreco.geometry.cells import CellTable
from caloreco.geometry.layers import LayerStack


class Detector(ABC):
    """A sampling calorimeter: layers, cells, point-to-cell lookup and noise."""

    #: short name stored with events (e.g. "hgcal", "hcal-barrel")
    name: str = ""

    @property
    @abstractmethod
    def layers(self) -> LayerStack:
        """The longitudinal structure."""

    @abstractmethod
    def build_cells(self) -> CellTable:
        """Materialise every cell (called once, then cached in :attr:`cells`)."""

    @cached_property
    def cells(self) -> CellTable:
        """All cells, sorted by id."""
        return self.build_cells()

    @abstractmethod
    def cell_ids(self, x: np.ndarray, y: np.ndarray, z: np.ndarray, layer: np.ndarray) -> np.ndarray:
        """Candidate cell id of each point on 1-based ``layer`` (not checked for existence)."""

    @abstractmethod
    def surface_distance(self, vertex: np.ndarray, direction: np.ndarray, layer_index: np.ndarray) -> np.ndarray:
        """Path parameter s such that ``vertex + s * direction`` lies on the layer surface.

        ``layer_index`` is 0-based; ``direction`` are unit vectors. Negative or NaN where the
        line never reaches the surface.
        """

    @abstractmethod
    def path_factor(self, vertex: np.ndarray, direction: np.ndarray) -> np.ndarray:
        """1/cos of the angle between each direction and the layer normal (material scale)."""

    @abstractmethod
    def noise_mip(self, rows: np.ndarray) -> np.ndarray:
        """Noise sigma of the cells at ``rows`` in MIP units."""

    def lookup(self, x: np.ndarray, y: np.ndarray, z: np.ndarray, layer: np.ndarray) -> np.ndarray:
        """Row in :attr:`cells` of the cell containing each point, -1 outside every cell."""
        return self.cells.index_of(self.cell_ids(x, y, z, layer))

    def mip_gev(self, rows: np.ndarray) -> np.ndarray:
        """EM-scale energy of one MIP in the cells at ``rows`` [GeV]."""
        return self.layers.mip_gev[self.cells.layer[rows].astype(np.int64) - 1]

    def crossing(self, vertex: np.ndarray, direction: np.ndarray, layer_index: np.ndarray) -> np.ndarray:
        """Point where each line crosses the 0-based layer surface, shape (S, 3)."""
        s = self.surface_distance(vertex, direction, layer_index)
        return vertex + s[:, None] * direction

    @staticmethod
    def transverse_basis(direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Two unit vectors perpendicular to each direction (for lateral shower spread)."""
        ref = np.where(np.abs(direction[:, 2:3]) < 0.9, [[0.0, 0.0, 1.0]], [[1.0, 0.0, 0.0]])
        u = np.cross(direction, ref)
        u /= np.linalg.norm(u, axis=1, keepdims=True)
        v = np.cross(direction, u)
        return u, v
