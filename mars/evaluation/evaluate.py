"""Evaluation of generated answers against ground truth (SPEC section 5): per-sample scores and reports.

Pure functions; reading the results file and the command line live in ``results.py`` and ``cli.py``.

Differences from the reference evaluator, on purpose: a prediction that cannot be parsed (no box at all for
grounding -- an explicit ``[]`` is a parsed answer with zero boxes -- or an empty answer for VQA) counts as a
failure and is reported as ``unparsed``; the reference skipped such samples, which inflated accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

from mars.rewards import boxes, coords, parsing
from mars.rewards.parsing import Box
from mars.rewards.vqa import answer_is_correct, contains_phrase, normalise

GROUNDING = "grounding"
VQA = "vqa"
# COCO-style thresholds 0.50:0.05:0.95 for the averaged accuracy.
THRESHOLDS_50_95 = tuple(round(0.50 + 0.05 * step, 2) for step in range(10))
UNPARSED_NOTE = (
    "Unparsed predictions count as failures (score 0). The reference evaluator skipped them, "
    "which inflated its accuracy; 'accuracy_parsed_only' reproduces that number for comparison."
)


def generated_text(content: Any) -> str:
    """The generated text of a results item: a string, or a list of strings / ``{"text": ...}`` parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [part.get("text", "") if isinstance(part, dict) else part for part in content]
        return "\n".join(part for part in parts if isinstance(part, str))
    return ""


def prediction_text(generated: str) -> str:
    """The first ``<answer>`` block when there is one, else the whole text minus any ``<think>`` blocks."""
    text = parsing.as_text(generated)
    answer = parsing.answer_block(text)
    return answer if answer is not None else parsing.strip_think_blocks(text)


@dataclass(frozen=True)
class GroundingSample:
    """One grounding sample: mean matched IoU in [0, 1], and whether any box could be parsed."""

    mean_iou: float
    parsed: bool


def grounding_sample(
    generated: str, true_boxes: Sequence[Box], settings: Optional[coords.CoordSettings] = None
) -> GroundingSample:
    """Score one generated answer: Hungarian-matched IoU summed over true boxes / n_true.

    Unmatched true boxes count 0; no true and no predicted boxes counts 1; no true but some predicted counts
    0. An answer with no parseable box (only malformed entries, or no box container) is unparsed and
    scores 0. ``settings`` converts predicted boxes to original pixels (default: compared as written).
    """
    entries = parsing.parse_box_entries(prediction_text(generated))
    predicted = parsing.valid_boxes(entries or [])
    if entries is None or (entries and not predicted):
        return GroundingSample(mean_iou=0.0, parsed=False)
    if not true_boxes:
        return GroundingSample(mean_iou=0.0 if entries else 1.0, parsed=True)
    predicted, _ = coords.to_original_pixels(predicted[: boxes.MAX_MATCHED_BOXES], settings or coords.CoordSettings())
    return GroundingSample(mean_iou=boxes.mean_matched_iou(predicted, true_boxes), parsed=True)


def reference_vqa_match(prediction: str, ground_truth: str) -> bool:
    """The reference evaluation rule, kept for comparability: after ``normalise`` (punctuation to spaces),
    the ground truth appears in the prediction as whole words, or the (non-empty) prediction appears in the
    ground truth as whole words."""
    predicted, truth = normalise(prediction), normalise(ground_truth)
    return bool(predicted) and (contains_phrase(predicted, truth) or contains_phrase(truth, predicted))


@dataclass(frozen=True)
class VqaSample:
    """One VQA sample: the reference-rule verdict, the strict reward-rule verdict, and whether it parsed."""

    correct: bool
    strict_correct: bool
    parsed: bool


def vqa_sample(generated: str, ground_truth: str) -> VqaSample:
    """Score one generated answer; an empty answer is unparsed and wrong."""
    prediction = prediction_text(generated)
    return VqaSample(
        correct=reference_vqa_match(prediction, ground_truth),
        strict_correct=answer_is_correct(prediction, ground_truth),
        parsed=bool(normalise(prediction)),
    )


def percent(hits: int, total: int) -> float:
    """100 * hits / total, 0.0 for an empty set."""
    return 100.0 * hits / total if total else 0.0


def accuracy_above(ious: Sequence[float], threshold: float) -> float:
    """Percentage of samples whose mean IoU is strictly above ``threshold``."""
    return percent(sum(iou > threshold for iou in ious), len(ious))


def grounding_report(samples: Sequence[GroundingSample], threshold: float) -> dict[str, Any]:
    """Aggregate grounding report; accuracies in percent, ``mean_iou`` in [0, 1] (unparsed count as 0)."""
    ious = [sample.mean_iou for sample in samples]
    parsed_ious = [sample.mean_iou for sample in samples if sample.parsed]
    return {
        "task": GROUNDING,
        "threshold": threshold,
        "samples": len(samples),
        "unparsed": len(samples) - len(parsed_ious),
        "correct": sum(iou > threshold for iou in ious),
        "accuracy": accuracy_above(ious, threshold),
        "accuracy_at_50": accuracy_above(ious, 0.5),
        "accuracy_at_75": accuracy_above(ious, 0.75),
        "accuracy_50_95": sum(accuracy_above(ious, t) for t in THRESHOLDS_50_95) / len(THRESHOLDS_50_95),
        "mean_iou": sum(ious) / len(ious) if ious else 0.0,
        "accuracy_parsed_only": accuracy_above(parsed_ious, threshold),
        "note": UNPARSED_NOTE,
    }


def vqa_report(samples: Sequence[VqaSample], threshold: Optional[float] = None) -> dict[str, Any]:
    """Aggregate VQA report, accuracies in percent. ``accuracy`` uses the reference rule;
    ``accuracy_strict`` the stricter reward rule (``mars.rewards.vqa.answer_is_correct``)."""
    parsed = [sample for sample in samples if sample.parsed]
    correct = sum(sample.correct for sample in samples)
    return {
        "task": VQA,
        "threshold": threshold,
        "samples": len(samples),
        "unparsed": len(samples) - len(parsed),
        "correct": correct,
        "accuracy": percent(correct, len(samples)),
        "accuracy_strict": percent(sum(sample.strict_correct for sample in samples), len(samples)),
        "accuracy_parsed_only": percent(sum(sample.correct for sample in parsed), len(parsed)),
        "note": UNPARSED_NOTE,
    }


_ROW_LABELS = {
    "samples": "samples",
    "unparsed": "unparsed (counted as wrong)",
    "correct": "correct",
    "accuracy": "accuracy @ threshold (%)",
    "accuracy_at_50": "accuracy @ IoU > 0.50 (%)",
    "accuracy_at_75": "accuracy @ IoU > 0.75 (%)",
    "accuracy_50_95": "accuracy, mean 0.50:0.95 (%)",
    "mean_iou": "mean IoU",
    "accuracy_strict": "accuracy, strict reward rule (%)",
    "accuracy_parsed_only": "accuracy, parsed only (%)",
}


def format_report(report: dict[str, Any], source: str = "") -> str:
    """A two-column text table of the report, followed by the note on unparsed predictions."""
    title = f"MARS evaluation: {report['task']}"
    if report["task"] == GROUNDING:
        title += f", threshold {report['threshold']:g}"
    lines = [title + (f" -- {source}" if source else "")]
    for key, label in _ROW_LABELS.items():
        if key in report:
            value = report[key]
            shown = f"{value:.4f}" if key == "mean_iou" else f"{value:.2f}" if isinstance(value, float) else str(value)
            lines.append(f"  {label:<34} {shown:>10}")
    lines.append(report["note"])
    return "\n".join(lines)
