"""Event data: the in-memory record, file formats and PyTorch datasets.

Layers: files -> schema (:mod:`caloreco.data.event`) -> readers/writers, one module per
format (:mod:`~caloreco.data.parquet`, :mod:`~caloreco.data.cmssw_ntuple`,
:mod:`~caloreco.data.edm4hep`) -> :mod:`~caloreco.data.dataset` for training.
"""

from caloreco.data.event import (
    CLUSTER_FIELDS,
    HIT_FIELDS,
    OPTIONAL_HIT_FIELDS,
    PARTICLE_FIELDS,
    ClusterType,
    Event,
)

__all__ = ["CLUSTER_FIELDS", "HIT_FIELDS", "OPTIONAL_HIT_FIELDS", "PARTICLE_FIELDS",
           "ClusterType", "Event"]
