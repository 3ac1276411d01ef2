"""Hit-level segmentation quality: mean IoU of the noise and signal classes.

Every hit has a truth label ``t`` (truth-cluster index, -1 for noise) and a predicted label
``p`` (predicted-cluster id, -1 for noise). At hit level only the *class* matters:
signal when the label is >= 0, noise when it is -1. For each class c (0 = noise,
1 = signal)

.. math::
    \\mathrm{IoU}_c = \\frac{w(P_c \\cap T_c)}{w(P_c \\cup T_c)}, \\qquad
    \\mathrm{mIoU} = \\frac{1}{|C'|} \\sum_{c \\in C'} \\mathrm{IoU}_c

with :math:`P_c` / :math:`T_c` the hits predicted / truly in class c, :math:`w` the hit count
(unweighted) or the sum of hit energies (energy-weighted), and :math:`C'` the classes with a
non-zero union (a class absent from both truth and prediction is skipped; an event with no
hits, or only zero-energy hits when weighted, has mIoU NaN).

Over a data set the intersections and unions are summed before dividing
(:class:`SegmentationCounts` adds with ``+``), so large events weigh more than in a mean of
per-event values.

This module also holds the input checks shared by the cluster-level metrics
(:func:`check_hit_inputs`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from caloreco.errors import InvalidDataError

#: Hit classes, in the order of the per-class arrays.
CLASS_NAMES: tuple[str, str] = ("noise", "signal")


def _location(event: int | None) -> str:
    return f" (event {event})" if event is not None else ""


def check_labels(labels: object, name: str, *, event: int | None = None) -> np.ndarray:
    """``labels`` as a 1-D integer array with values >= -1.

    Raises:
        InvalidDataError: naming ``name`` if the array is not 1-D, not of an integer dtype or
            holds a value below -1.
    """
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise InvalidDataError(f"{name} must be a one-dimensional array of per-hit labels, "
                               f"got shape {arr.shape}", event=event)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise InvalidDataError(f"{name} must hold integer labels (cluster index, -1 for "
                               f"noise), got dtype {arr.dtype}; cast with .astype(int) if the "
                               f"values are whole numbers", event=event)
    if len(arr) and arr.min() < -1:
        i = int(np.argmin(arr))
        raise InvalidDataError(f"{name} labels must be >= -1 (-1 marks noise), got {arr[i]} "
                               f"at hit {i}", event=event)
    return arr.astype(np.int64, copy=False)


def check_energy(energy: object, name: str, n: int, *, event: int | None = None,
                 what: str = "hit") -> np.ndarray:
    """``energy`` as a 1-D float64 array of ``n`` finite, non-negative values.

    Raises:
        InvalidDataError: naming ``name`` for a wrong shape or length, a non-finite or a
            negative value.
    """
    arr = np.asarray(energy)
    if arr.ndim != 1 or len(arr) != n:
        raise InvalidDataError(f"{name} must be a one-dimensional array of {n} {what} "
                               f"energies, got shape {arr.shape}", event=event)
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise InvalidDataError(f"{name} must hold numbers, got dtype {arr.dtype}", event=event)
    arr = arr.astype(np.float64, copy=False)
    bad = ~np.isfinite(arr) | (arr < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InvalidDataError(f"{name} must be finite and >= 0, got {int(bad.sum())} bad "
                               f"value(s), first {arr[i]} at {what} {i}", event=event)
    return arr


def check_hit_inputs(truth: object, pred: object, energy: object | None = None, *,
                     event: int | None = None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Validate per-hit ``truth``, ``pred`` and optional ``energy`` arrays of one event.

    Returns:
        ``(truth, pred, energy)`` as int64, int64 and float64 (or None) arrays.

    Raises:
        InvalidDataError: naming the argument for non-integer or < -1 labels, unequal lengths,
            non-finite or negative energies.
    """
    t = check_labels(truth, "truth", event=event)
    p = check_labels(pred, "pred", event=event)
    if len(p) != len(t):
        raise InvalidDataError(f"pred has {len(p)} hits but truth has {len(t)}; they must "
                               f"have one label per hit", event=event)
    e = None if energy is None else check_energy(energy, "energy", len(t), event=event)
    return t, p, e


@dataclass
class SegmentationCounts:
    """Per-class intersections and unions (class order :data:`CLASS_NAMES`), summable.

    Shapes:
        ``intersection``, ``union``: (2,) hit counts or energy sums [GeV].
    """

    intersection: np.ndarray = field(default_factory=lambda: np.zeros(2))
    union: np.ndarray = field(default_factory=lambda: np.zeros(2))

    def __add__(self, other: SegmentationCounts) -> SegmentationCounts:
        return SegmentationCounts(self.intersection + other.intersection,
                                  self.union + other.union)

    @property
    def iou(self) -> np.ndarray:
        """(2,) IoU per class; NaN for a class absent from truth and prediction."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.union > 0, self.intersection / self.union, np.nan)

    @property
    def miou(self) -> float:
        """Mean IoU over the classes present; NaN if none is."""
        iou = self.iou
        present = ~np.isnan(iou)
        return float(iou[present].mean()) if present.any() else float("nan")


def segmentation_counts(truth: object, pred: object, energy: object | None = None, *,
                        event: int | None = None) -> SegmentationCounts:
    """Intersections and unions of the noise/signal classes of one event.

    Args:
        truth: (N,) truth labels, -1 for noise.
        pred: (N,) predicted labels, -1 for noise.
        energy: (N,) hit energies [GeV] to weight hits with; None (default) counts hits.
        event: event id for error messages.

    Shapes:
        N hits; the result holds (2,) arrays.
    """
    t, p, e = check_hit_inputs(truth, pred, energy, event=event)
    w = np.ones(len(t)) if e is None else e
    ts, ps = (t >= 0).astype(np.int64), (p >= 0).astype(np.int64)
    # 2x2 confusion matrix in one bincount: row = truth class, column = predicted class
    conf = np.bincount(2 * ts + ps, weights=w, minlength=4).reshape(2, 2)
    inter = np.diag(conf).copy()
    union = conf.sum(axis=0) + conf.sum(axis=1) - inter
    return SegmentationCounts(inter, union)


def hit_miou(truth: object, pred: object, energy: object | None = None, *,
             event: int | None = None) -> float:
    """mIoU of the noise/signal classes of one event (energy-weighted if ``energy`` given)."""
    return segmentation_counts(truth, pred, energy, event=event).miou

