"""Detector geometry: cells, layers and material, neighbour graphs.

- :mod:`~caloreco.geometry.cells`      cell types and the sorted cell table (Parquet I/O)
- :mod:`~caloreco.geometry.layers`     longitudinal layer stack with X0 / lambda_I per slab
- :mod:`~caloreco.geometry.detector`   the interface the simulation uses
- :mod:`~caloreco.geometry.hexgrid`    analytic hexagonal lattices
- :mod:`~caloreco.geometry.hgcal`      HGCAL-like endcap
- :mod:`~caloreco.geometry.hcal`       HCAL-like barrel
- :mod:`~caloreco.geometry.neighbours` neighbour graph (cached on disk)
- :mod:`~caloreco.geometry.plot`       layer maps
"""

from caloreco.geometry.cells import CellTable, CellType
from caloreco.geometry.detector import Detector
from caloreco.geometry.hcal import HCalBarrel, HCalBarrelConfig
from caloreco.geometry.hgcal import HGCalConfig, HGCalEndcap
from caloreco.geometry.layers import LayerStack
from caloreco.geometry.neighbours import neighbour_graph

__all__ = ["CellTable", "CellType", "Detector", "HCalBarrel", "HCalBarrelConfig", "HGCalConfig", "HGCalEndcap",
           "LayerStack", "neighbour_graph"]
