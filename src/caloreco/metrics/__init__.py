"""Clustering quality metrics: hit level, cluster level, energy response, summary.

- :mod:`~caloreco.metrics.segmentation` hit-level noise/signal mIoU (counts or energy)
  and the per-hit input checks
- :mod:`~caloreco.metrics.panoptic`     IoU > 0.5 cluster matching, SQ / RQ / PQ
  (Kirillov et al. 2019), efficiency and fake rate versus energy
- :mod:`~caloreco.metrics.response`     E_reco / E_true of matched clusters per truth type
- :mod:`~caloreco.metrics.failures`     why unmatched clusters fail: merged, split or lost
  truth clusters; fragment, noise or mixed predicted clusters
- :mod:`~caloreco.metrics.summary`      :class:`ClusteringEvaluator`, accumulating all of
  the above over events into one report dictionary, and :func:`evaluate_events`

Labels are per hit: truth-cluster index or predicted-cluster id, -1 for noise. Everything
is numpy; nothing is imported from torch.
"""

from caloreco.metrics.failures import FailureCounts, classify_failures, failure_modes
from caloreco.metrics.panoptic import (
    DEFAULT_ENERGY_BINS,
    MATCH_IOU,
    ClusterMatch,
    PanopticCounts,
    binned_fraction,
    efficiency_curve,
    fake_rate_curve,
    match_clusters,
    panoptic_quality,
)
from caloreco.metrics.response import (
    RESPONSE_REFERENCES,
    energy_response,
    matched_energies,
    response_stats,
)
from caloreco.metrics.segmentation import (
    CLASS_NAMES,
    SegmentationCounts,
    check_hit_inputs,
    hit_miou,
    segmentation_counts,
)
from caloreco.metrics.summary import ClusteringEvaluator, evaluate_events

__all__ = [
    "CLASS_NAMES",
    "DEFAULT_ENERGY_BINS",
    "MATCH_IOU",
    "RESPONSE_REFERENCES",
    "ClusterMatch",
    "ClusteringEvaluator",
    "FailureCounts",
    "PanopticCounts",
    "SegmentationCounts",
    "binned_fraction",
    "check_hit_inputs",
    "classify_failures",
    "efficiency_curve",
    "energy_response",
    "evaluate_events",
    "failure_modes",
    "fake_rate_curve",
    "hit_miou",
    "match_clusters",
    "matched_energies",
    "panoptic_quality",
    "response_stats",
    "segmentation_counts",
]
