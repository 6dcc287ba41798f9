"""Box geometry: IoU matrix, optimal one-to-one matching (evaluation), and the grounding reward's IoU part.

Boxes are ``[x1, y1, x2, y2]`` with x1 < x2 and y1 < y2. A box with x2 <= x1 or y2 <= y1 has zero area and
overlaps nothing (it is not silently reordered: a reversed box is a wrong answer).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from mars.rewards.parsing import COORD_LIMIT, MAX_BOX_ENTRIES, Box

# At most this many predicted (and true) boxes enter the matching; the full count still drives the
# over-prediction penalty. Matching is O(n^3); 1000 x 11 takes about a millisecond. The parser reads no more
# entries than this anyway.
MAX_MATCHED_BOXES = MAX_BOX_ENTRIES
# A matched pair earns its IoU only above this value (reference reward rule).
IOU_CREDIT_THRESHOLD = 0.3
# Over-prediction penalty: PENALTY_RATE per surplus box relative to the number of true boxes, capped at the
# largest IoU part (the reference capped it at 1, less than the 1 + 0.3 ln n a crowded image can pay, so a
# dense grid kept part of its credit there).
PENALTY_RATE = 0.5
# Bonus for scenes with many people: the matched mean is scaled by 1 + COUNT_BONUS * ln(n_true).
COUNT_BONUS = 0.3


def as_box_array(boxes: Sequence[Box]) -> np.ndarray:
    """Boxes as a float64 array of shape (n, 4), clipped to +-COORD_LIMIT, NaN replaced by 0."""
    array = np.asarray(list(boxes), dtype=np.float64).reshape(-1, 4)
    return np.clip(np.nan_to_num(array, nan=0.0), -COORD_LIMIT, COORD_LIMIT)


def iou_matrix(predicted: Sequence[Box], true: Sequence[Box]) -> np.ndarray:
    """IoU of every predicted box with every true box, shape (n_pred, n_true), each value in [0, 1].

    IoU = area(P & T) / area(P | T); 0 when the union is empty (two degenerate boxes).
    """
    pred, gt = as_box_array(predicted), as_box_array(true)
    if len(pred) == 0 or len(gt) == 0:
        return np.zeros((len(pred), len(gt)))
    p, t = pred[:, None, :], gt[None, :, :]
    overlap_w = np.clip(np.minimum(p[..., 2], t[..., 2]) - np.maximum(p[..., 0], t[..., 0]), 0.0, None)
    overlap_h = np.clip(np.minimum(p[..., 3], t[..., 3]) - np.maximum(p[..., 1], t[..., 1]), 0.0, None)
    intersection = overlap_w * overlap_h
    union = _areas(pred)[:, None] + _areas(gt)[None, :] - intersection
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, intersection / np.where(union > 0, union, 1.0), 0.0)
    return np.clip(np.nan_to_num(iou, nan=0.0, posinf=0.0, neginf=0.0), 0.0, 1.0)


def _areas(boxes: np.ndarray) -> np.ndarray:
    return np.clip(boxes[:, 2] - boxes[:, 0], 0.0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0.0, None)


def matched_ious(predicted: Sequence[Box], true: Sequence[Box]) -> np.ndarray:
    """For each true box, the IoU of the predicted box it is matched with (0 when unmatched), shape (n_true,).

    The matching is one-to-one and maximises the summed IoU (Hungarian algorithm). Only the first
    MAX_MATCHED_BOXES of each side take part; later true boxes stay unmatched.
    """
    true = list(true)
    result = np.zeros(len(true))
    ious = iou_matrix(list(predicted)[:MAX_MATCHED_BOXES], true[:MAX_MATCHED_BOXES])
    if ious.size == 0:
        return result
    rows, cols = linear_sum_assignment(ious, maximize=True)
    result[cols] = ious[rows, cols]
    return result


def mean_matched_iou(predicted: Sequence[Box], true: Sequence[Box]) -> float:
    """Evaluation IoU of one sample, in [0, 1]: matched IoUs summed over true boxes / n_true.

    No true and no predicted boxes -> 1.0; no true boxes but some predicted -> 0.0.
    """
    if not true:
        return 0.0 if predicted else 1.0
    return float(matched_ious(predicted, true).sum() / len(true))


def credited_ious(predicted: Sequence[Box], true: Sequence[Box]) -> np.ndarray:
    """The IoU the reward credits to each true box, shape (n_true,), each 0 or above IOU_CREDIT_THRESHOLD.

    Each predicted box may earn only against the true box it overlaps most (the first on ties), and only
    when that IoU is above IOU_CREDIT_THRESHOLD; each true box keeps the best prediction credited to it.
    Hence copies of one box earn once, however many overlapping true boxes they touch, and adding any box
    can raise the credit only by being the best box for some true box (issue 10, item 11). Where every
    prediction is nearest its own true box this equals the reference's Hungarian matching.
    """
    result = np.zeros(len(true))
    ious = iou_matrix(list(predicted)[:MAX_MATCHED_BOXES], list(true)[:MAX_MATCHED_BOXES])
    if ious.size == 0:
        return result
    nearest = ious.argmax(axis=1)
    value = ious[np.arange(len(nearest)), nearest]
    credited = value > IOU_CREDIT_THRESHOLD
    np.maximum.at(result, nearest[credited], value[credited])
    return result


def over_prediction_penalty(n_pred: int, n_true: int) -> float:
    """min(PENALTY_RATE * (n_pred - n_true) / n_true, max_iou_score(n_true)) when n_pred > n_true > 0, else 0."""
    if n_true <= 0 or n_pred <= n_true:
        return 0.0
    return min(PENALTY_RATE * (n_pred - n_true) / n_true, max_iou_score(n_true))


def max_iou_score(n_true: int) -> float:
    """Upper bound of ``reference_iou_score``: 1 + COUNT_BONUS * ln(max(n_true, 1))."""
    return 1.0 + COUNT_BONUS * math.log(max(n_true, 1))


def reference_iou_score(predicted: Sequence[Box], n_pred: int, true: Sequence[Box]) -> float:
    """The IoU part of the grounding reward, in [0, max_iou_score(len(true))].

    score = sum(credited_ious) / n_true * (1 + 0.3 ln n_true)
            - min(0.5 (n_pred - n_true) / n_true, 1 + 0.3 ln n_true)     (only when n_pred > n_true)
    floored at 0. ``predicted`` holds the valid boxes; ``n_pred`` counts every predicted entry, malformed
    ones included, so junk entries are penalised without being matchable. No true and no predicted boxes
    -> 1.0; no true boxes but some predicted -> 0.0. The reference's formula, with two changes: the credit
    rule of ``credited_ious`` and the penalty cap.
    """
    n_true = len(true)
    if n_true == 0:
        return 0.0 if n_pred > 0 else 1.0
    credited = float(credited_ious(predicted, true).sum())
    score = credited / n_true * max_iou_score(n_true) - over_prediction_penalty(n_pred, n_true)
    return max(0.0, score)
