"""Clustering of hits into showers, one algorithm per module.

- :mod:`caloreco.clustering.condensation`      inference of object condensation networks:
  greedy condensation-point clustering in the learned space, per-cluster summaries
- :mod:`caloreco.clustering.model_clustering`  a trained network + condensation, from events
  to per-hit cluster ids (shared by ``cluster``, ``evaluate``, demo, benchmarks)
- :mod:`caloreco.clustering.clue`              CLUE per layer (CMS imaging algorithm)
- :mod:`caloreco.clustering.clue3d`            CLUE3D-style linking of layer clusters
- :mod:`caloreco.clustering.pf`                CMS ParticleFlow clustering
- :mod:`caloreco.clustering.containment`       how much of each truth cluster one predicted
  cluster keeps (containment, purity, splitting)

Nothing is imported here; import the module you need.
"""
