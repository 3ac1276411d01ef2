"""Clustering of hits into showers, one algorithm per module.

- :mod:`caloreco.clustering.condensation`  inference of object condensation networks:
  greedy condensation-point clustering in the learned space, per-cluster summaries
- :mod:`caloreco.clustering.clue`          CLUE density-based clustering (baseline)
- :mod:`caloreco.clustering.pf`            particle-flow style topological clustering
  (baseline)

Nothing is imported here; import the module you need.
"""
