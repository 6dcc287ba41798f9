"""IoU matrix, Hungarian matching and the reference IoU score."""

import math

import numpy as np
import pytest

from mars.rewards import boxes


def test_iou_matrix_known_values():
    ious = boxes.iou_matrix([(0, 0, 10, 10), (5, 0, 15, 10)], [(0, 0, 10, 10), (100, 100, 110, 110)])
    assert ious.shape == (2, 2)
    assert ious[0, 0] == pytest.approx(1.0)
    assert ious[1, 0] == pytest.approx(50 / 150)
    assert ious[0, 1] == 0.0 and ious[1, 1] == 0.0


def test_degenerate_and_reversed_boxes_overlap_nothing():
    ious = boxes.iou_matrix([(5, 5, 5, 5), (10, 10, 0, 0)], [(5, 5, 5, 5), (0, 0, 10, 10)])
    assert np.all(ious == 0.0)


def test_empty_inputs_give_empty_matrix():
    assert boxes.iou_matrix([], [(0, 0, 1, 1)]).shape == (0, 1)


def test_matching_beats_greedy_when_greedy_is_wrong():
    true = [(0, 0, 10, 10), (2, 0, 12, 10)]
    predicted = [(0.5, 0, 10.5, 10), (0, 0, 6, 10)]
    ious = boxes.iou_matrix(predicted, true)
    greedy = ious[0, 0] + ious[1, 1]  # the best pair first (0.905), then what is left (0.333)
    optimal = ious[0, 1] + ious[1, 0]  # 0.739 + 0.6
    assert optimal > greedy
    matched = boxes.matched_ious(predicted, true)
    assert matched.sum() == pytest.approx(optimal)
    assert sorted(matched) == pytest.approx(sorted([ious[0, 1], ious[1, 0]]))


def test_mean_matched_iou_edge_cases():
    assert boxes.mean_matched_iou([], []) == 1.0
    assert boxes.mean_matched_iou([(0, 0, 1, 1)], []) == 0.0
    assert boxes.mean_matched_iou([], [(0, 0, 1, 1)]) == 0.0
    assert boxes.mean_matched_iou([(0, 0, 10, 10)], [(0, 0, 10, 10), (20, 20, 30, 30)]) == pytest.approx(0.5)


def test_reference_score_single_box_threshold():
    true = [(0, 0, 10, 10)]
    assert boxes.reference_iou_score([(0, 0, 10, 10)], 1, true) == pytest.approx(1.0)
    assert boxes.reference_iou_score([(0, 0, 10, 4)], 1, true) == pytest.approx(0.4)
    assert boxes.reference_iou_score([(0, 0, 10, 3)], 1, true) == 0.0  # IoU 0.3 is not above 0.3


def test_reference_score_many_boxes_bonus_and_penalty():
    true = [(0, 0, 10, 10), (20, 0, 30, 10), (40, 0, 50, 10)]
    exact = boxes.reference_iou_score(true, 3, true)
    assert exact == pytest.approx(1 + 0.3 * math.log(3))
    # Two surplus boxes (one malformed, counted only through n_pred): penalty 0.5 * 2 / 3.
    with_surplus = boxes.reference_iou_score(true + [(100, 100, 110, 110)], 5, true)
    assert with_surplus == pytest.approx(exact - 0.5 * 2 / 3)
    # The penalty is capped at the largest IoU part (the reference's cap of 1 left crowded images some credit
    # under a grid) and the score floored at 0.
    assert boxes.reference_iou_score([], 1000, true) == 0.0
    assert boxes.over_prediction_penalty(1000, 3) == pytest.approx(boxes.max_iou_score(3))
    assert boxes.over_prediction_penalty(1000, 1) == 1.0  # one true box: the reference's cap


def test_reference_score_without_true_boxes():
    assert boxes.reference_iou_score([], 0, []) == 1.0
    assert boxes.reference_iou_score([], 1, []) == 0.0  # one malformed prediction is still a prediction


def test_matching_caps_number_of_boxes():
    true = [(0, 0, 10, 10)]
    junk = [(1000, 1000, 1001, 1001)] * boxes.MAX_MATCHED_BOXES
    # The only correct box comes after the cap, so it never enters the matching.
    assert boxes.matched_ious(junk + [(0, 0, 10, 10)], true)[0] == 0.0
