"""Event generation for physics studies: Pythia 8 events, pileup, propagation in the field.

- :mod:`caloreco.generators.pythia`       Pythia 8 set-up per process, seeding, the event record
- :mod:`caloreco.generators.event`        a bunch crossing: hard scatter + Poisson pileup, vertices
- :mod:`caloreco.generators.propagation`  helices in the solenoid field to the calorimeter face
- :mod:`caloreco.generators.preset`       the ``pythia`` simulation preset (species mapping)
- :mod:`caloreco.generators.io`           generator-truth Parquet files beside the event shards

Nothing is imported here (Pythia is imported when events are generated); import the module
you need.
"""
