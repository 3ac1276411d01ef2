"""Why clusters fail to match: each unmatched truth and predicted cluster by failure mode.

PQ says how many clusters fail the IoU > 0.5 matching (:mod:`caloreco.metrics.panoptic`);
this module says how. With :math:`w` the energy (or hit-count) sum, as in the IoU:

an unmatched truth cluster T (a false negative) is

- **lost** when most of it is predicted as noise, :math:`w(T \\cap \\text{noise}) > w(T)/2`;
- **merged** when one predicted cluster P holds most of it, :math:`w(P \\cap T) > w(T)/2`,
  and the match fails only because P also holds much else (other showers, noise);
- **split** otherwise: its deposit is shared among several predicted clusters (and noise)
  with none holding half;

an unmatched predicted cluster P (a false positive) is

- **noise** when most of it is truth noise, :math:`w(P \\cap \\text{noise}) > w(P)/2`;
- **fragment** when most of it comes from one truth cluster T, :math:`w(P \\cap T) > w(P)/2`
  (a piece of a split shower);
- **mixed** otherwise.

Truth clusters ignored by ``min_truth_energy`` and the predicted clusters matched to them
are left out, as in the PQ counts, so ``merged + split + lost`` equals FN and
``noise + fragment + mixed`` equals FP of :class:`~caloreco.metrics.panoptic.PanopticCounts`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from caloreco.metrics.panoptic import ClusterMatch, match_clusters
from caloreco.metrics.segmentation import check_hit_inputs

#: Failure modes of unmatched truth clusters and of unmatched predicted clusters.
TRUTH_MODES = ("merged", "split", "lost")
PRED_MODES = ("fragment", "noise", "mixed")


@dataclass(frozen=True)
class FailureCounts:
    """Truth and predicted clusters per outcome; add with ``+``."""

    truth_matched: int = 0
    merged: int = 0
    split: int = 0
    lost: int = 0
    pred_matched: int = 0
    fragment: int = 0
    noise: int = 0
    mixed: int = 0

    def __add__(self, other: FailureCounts) -> FailureCounts:
        return FailureCounts(*(getattr(self, f.name) + getattr(other, f.name)
                               for f in fields(self)))

    def as_dict(self) -> dict[str, dict[str, int | float]]:
        """``{"truth": {matched, merged, split, lost, *_fraction}, "pred": {...}}``; the
        fractions are of all (non-ignored) truth or predicted clusters, NaN if there are none."""
        d = asdict(self)
        out: dict[str, dict[str, int | float]] = {}
        for side, modes in (("truth", TRUTH_MODES), ("pred", PRED_MODES)):
            counts = {"matched": d[f"{side}_matched"], **{m: d[m] for m in modes}}
            total = sum(counts.values())
            out[side] = {**counts, **{f"{k}_fraction": (v / total if total else float("nan"))
                                      for k, v in counts.items()}}
        return out


def failure_modes(truth: object, pred: object, energy: object | None = None, *,
                  weighted: bool = True, min_truth_energy: float = 0.0,
                  truth_energy: object | None = None, event: int | None = None) -> FailureCounts:
    """Classify the clusters of one event (see the module docstring).

    Args: as :func:`~caloreco.metrics.panoptic.match_clusters`.

    Raises:
        InvalidDataError, ConfigError: as :func:`~caloreco.metrics.panoptic.match_clusters`.
    """
    match = match_clusters(truth, pred, energy, weighted=weighted,
                           min_truth_energy=min_truth_energy, truth_energy=truth_energy,
                           event=event)
    return classify_failures(match, truth, pred, energy, event=event)


def classify_failures(match: ClusterMatch, truth: object, pred: object,
                      energy: object | None = None, *, event: int | None = None) -> FailureCounts:
    """:func:`failure_modes` from the ``match`` of the same labels (as made by
    :func:`~caloreco.metrics.panoptic.match_clusters`), without matching again."""
    t, p, e = check_hit_inputs(truth, pred, energy, event=event)
    w = e if (match.weighted and e is not None) else np.ones(len(t))
    # compact indices, as in the match (np.unique of the labels >= 0)
    t_idx = np.full(len(t), -1, dtype=np.int64)
    p_idx = np.full(len(p), -1, dtype=np.int64)
    t_idx[t >= 0] = np.searchsorted(match.truth_ids, t[t >= 0])
    p_idx[p >= 0] = np.searchsorted(match.pred_ids, p[p >= 0])
    n_t, n_p = len(match.truth_ids), len(match.pred_ids)
    t_area = np.bincount(t_idx[t_idx >= 0], w[t_idx >= 0], minlength=n_t)
    p_area = np.bincount(p_idx[p_idx >= 0], w[p_idx >= 0], minlength=n_p)
    # the largest overlap of each cluster with one cluster of the other side (-1 = noise
    # is a column/row of its own, shifted to 0)
    both = np.stack([p_idx + 1, t_idx + 1], axis=1)
    keys, inv = np.unique(both, axis=0, return_inverse=True)
    inter = np.bincount(inv.reshape(-1), w, minlength=len(keys))
    pk, tk = keys[:, 0] - 1, keys[:, 1] - 1
    t_noise = np.zeros(n_t)  # w(T ∩ predicted noise)
    t_best = np.zeros(n_t)  # max_P w(P ∩ T)
    p_noise = np.zeros(n_p)  # w(P ∩ truth noise)
    p_best = np.zeros(n_p)  # max_T w(P ∩ T)
    sel = (tk >= 0) & (pk < 0)
    t_noise[tk[sel]] = inter[sel]
    sel = (tk >= 0) & (pk >= 0)
    np.maximum.at(t_best, tk[sel], inter[sel])
    np.maximum.at(p_best, pk[sel], inter[sel])
    sel = (pk >= 0) & (tk < 0)
    p_noise[pk[sel]] = inter[sel]

    fn = ~match.truth_matched & ~match.truth_ignored
    lost = fn & (t_noise > 0.5 * t_area)
    merged = fn & ~lost & (t_best > 0.5 * t_area)
    fp = ~match.pred_matched
    noise = fp & (p_noise > 0.5 * p_area)
    fragment = fp & ~noise & (p_best > 0.5 * p_area)
    return FailureCounts(
        truth_matched=int(match.pair_kept.sum()), merged=int(merged.sum()),
        split=int((fn & ~lost & ~merged).sum()), lost=int(lost.sum()),
        pred_matched=int((match.pred_matched & ~match.pred_ignored).sum()),
        fragment=int(fragment.sum()), noise=int(noise.sum()),
        mixed=int((fp & ~noise & ~fragment).sum()))
