"""Physics validation: jets, missing transverse momentum and neutral hadrons from clusters.

- :mod:`caloreco.physics.targets`    per-hit clustering targets: dominant particle, PF clusters,
  merged showers
- :mod:`caloreco.physics.clusters`   clusters of any method as massless four-vectors
- :mod:`caloreco.physics.stats`      robust response / resolution estimators
- :mod:`caloreco.physics.jets`       anti-kt jets (fastjet) on clusters and generator particles,
  matching, jet energy response and resolution
- :mod:`caloreco.physics.met`        hadronic recoil in Z -> mu mu + jets
- :mod:`caloreco.physics.neutral`    neutral-hadron energy response and resolution
- :mod:`caloreco.physics.analysis`   events -> clustering methods -> the tables above
- :mod:`caloreco.physics.report`     markdown / JSON tables and mplhep plots

Nothing is imported here; import the module you need.
"""
