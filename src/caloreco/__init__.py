"""caloreco: machine-learning reconstruction for high-granularity calorimeters.

The package follows the data flow of a reconstruction chain:

- ``caloreco.geometry``   detector description: cells, layers, material, neighbour graph
- ``caloreco.simulation`` fast shower simulation with per-hit truth, digitisation
- ``caloreco.data``       the event record, Parquet shards, readers of CMS/EDM4hep files,
                          PyTorch datasets
- ``caloreco.display``    event displays and validation plots
- ``caloreco.cli``        the ``caloreco`` command line, a thin layer over the library

Nothing heavy is imported here; import the sub-package you need.
"""

__version__ = "0.1.0"
