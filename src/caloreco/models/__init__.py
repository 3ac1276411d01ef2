"""Clustering networks: SPVCNN (:mod:`~caloreco.models.spvcnn`), the hit encoding they read
(:mod:`~caloreco.models.encoding`) and the name registry (:mod:`~caloreco.models.registry`)."""
