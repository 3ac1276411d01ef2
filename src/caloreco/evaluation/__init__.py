"""Side-by-side evaluation of clustering methods on the same events.

- :mod:`caloreco.evaluation.methods`  the :class:`Method` interface and its implementations
  (condensation networks, CLUE3D, PF, truth), :func:`make_methods` by name
- :mod:`caloreco.evaluation.report`   :func:`evaluate`: timing, metrics, threshold scans,
  plots and the Markdown / JSON report

Nothing heavy is imported here; import the module you need.
"""
