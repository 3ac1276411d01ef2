"""Training of the clustering networks: data (:mod:`~caloreco.training.data`), the loop
(:mod:`~caloreco.training.trainer`) and checkpoints (:mod:`~caloreco.training.checkpoint`)."""
