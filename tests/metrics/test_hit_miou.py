"""Tests of the hit-level noise/signal mIoU and of the per-hit input checks."""

from __future__ import annotations

import numpy as np
import pytest

from caloreco.errors import InvalidDataError
from caloreco.metrics import SegmentationCounts, check_hit_inputs, hit_miou, segmentation_counts

TRUTH = np.array([0, 0, 0, 1, 1, -1, -1])
PRED = np.array([5, 5, -1, 7, 7, 7, -1])
ENERGY = np.array([1.0, 2.0, 3.0, 1.0, 1.0, 1.0, 1.0])


def test_hand_computed_counts_and_energy() -> None:
    # signal: truth {0..4}, pred {0,1,3,4,5} -> 4 / 6; noise: truth {5,6}, pred {2,6} -> 1 / 3
    counts = segmentation_counts(TRUTH, PRED)
    np.testing.assert_allclose(counts.iou, [1 / 3, 2 / 3])
    assert hit_miou(TRUTH, PRED) == pytest.approx(0.5)
    # energy: signal 5 / 9, noise 1 / 5
    weighted = segmentation_counts(TRUTH, PRED, ENERGY)
    np.testing.assert_allclose(weighted.intersection, [1.0, 5.0])
    np.testing.assert_allclose(weighted.union, [5.0, 9.0])
    assert hit_miou(TRUTH, PRED, ENERGY) == pytest.approx((1 / 5 + 5 / 9) / 2)


def test_perfect_and_all_noise_predictions() -> None:
    assert hit_miou(TRUTH, TRUTH) == 1.0
    assert hit_miou(TRUTH, TRUTH + 10 * (TRUTH >= 0), ENERGY) == 1.0  # ids need not agree
    all_noise = np.full(len(TRUTH), -1)
    # signal IoU 0, noise IoU 2 / 7
    assert hit_miou(TRUTH, all_noise) == pytest.approx((0 + 2 / 7) / 2)


def test_absent_class_is_skipped_and_empty_event_is_nan() -> None:
    signal_only = np.array([0, 0, 1])
    assert hit_miou(signal_only, signal_only) == 1.0  # noise absent from both: mean of one
    assert np.isnan(segmentation_counts(signal_only, signal_only).iou[0])
    assert np.isnan(hit_miou(np.zeros(0, int), np.zeros(0, int)))


def test_dataset_accumulation_sums_counts() -> None:
    a = segmentation_counts(TRUTH, PRED)
    b = segmentation_counts(np.array([0, 0]), np.array([0, 0]))
    total = a + b
    assert total.miou == pytest.approx((1 / 3 + 6 / 8) / 2)  # not the mean of event mIoUs
    assert (SegmentationCounts() + a).miou == a.miou


@pytest.mark.parametrize("truth, pred, energy, match", [
    (TRUTH.astype(float), PRED, None, "truth must hold integer labels"),
    (TRUTH, PRED - 2, None, r"pred labels must be >= -1 \(-1 marks noise\), got -3 at hit 2"),
    (TRUTH, PRED[:-1], None, "pred has 6 hits but truth has 7"),
    (TRUTH, PRED, ENERGY[:-1], "energy must be a one-dimensional array of 7"),
    (TRUTH, PRED, np.where(TRUTH == 1, np.nan, 1.0), "energy must be finite and >= 0"),
    (TRUTH, PRED, -ENERGY, "energy must be finite and >= 0"),
    (TRUTH[None], PRED, None, "truth must be a one-dimensional"),
])
def test_bad_inputs_name_the_argument(truth: np.ndarray, pred: np.ndarray,
                                      energy: np.ndarray | None, match: str) -> None:
    with pytest.raises(InvalidDataError, match=match) as info:
        check_hit_inputs(truth, pred, energy, event=12)
    assert "event: 12" in str(info.value)
