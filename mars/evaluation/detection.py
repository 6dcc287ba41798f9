"""Detection metrics for grounding: precision, recall and F1 under one-to-one matching.

The reference-compatible accuracy looks only at the IoU summed over true boxes, so extra boxes cost nothing
and a constant dense grid, the same for every image, passes most LLVIP images. Here every predicted entry
counts: a true positive is a matched pair (the Hungarian matching of the mean IoU, one predicted box per true
box) whose IoU is strictly above the threshold; every other predicted entry -- duplicates, extra boxes,
malformed entries -- is a false positive, every other true box a false negative. Counts are summed over the
whole file (micro-averaged), so an image with many boxes weighs more.
"""

from __future__ import annotations

from typing import Sequence


def f1_score(true_positives: int, n_pred: int, n_true: int) -> float:
    """2 TP / (n_pred + n_true), in percent; 100 when there is nothing to find and nothing was predicted."""
    total = n_pred + n_true
    return 100.0 * 2 * true_positives / total if total else 100.0


def detection_counts(matched: Sequence[Sequence[float]], threshold: float) -> int:
    """True positives over all samples: matched pairs with IoU above ``threshold``."""
    return sum(iou > threshold for sample in matched for iou in sample)


def detection_metrics(
    matched: Sequence[Sequence[float]], n_pred: int, n_true: int, threshold: float, thresholds: Sequence[float]
) -> dict[str, float]:
    """``precision``, ``recall``, ``f1`` at ``threshold`` and ``f1_50_95`` (mean F1 over ``thresholds``), in
    percent. ``matched`` holds each sample's matched-pair IoUs; ``n_pred`` and ``n_true`` are file totals."""
    hits = detection_counts(matched, threshold)
    return {
        "precision": 100.0 * hits / n_pred if n_pred else (100.0 if not n_true else 0.0),
        "recall": 100.0 * hits / n_true if n_true else 100.0,
        "f1": f1_score(hits, n_pred, n_true),
        "f1_50_95": sum(f1_score(detection_counts(matched, t), n_pred, n_true) for t in thresholds) / len(thresholds),
    }
