"""Evaluation of generated answers against ground truth (SPEC section 5): per-sample scores and reports.

Pure functions; reading the results file and the command line live in ``results.py`` and ``cli.py``.

Differences from the reference evaluator, on purpose: a prediction that cannot be parsed (no box at all for
grounding -- an explicit ``[]`` is a parsed answer with zero boxes -- or an empty answer for VQA) counts as a
failure and is reported as ``unparsed``; the reference skipped such samples, which inflated accuracy. The
reference's own number is reported beside ours as ``accuracy_reference`` (``reference.py``), and grounding
adds detection metrics that charge for extra boxes (``detection.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

from mars.evaluation import detection, reference
from mars.rewards import boxes, coords, parsing
from mars.rewards.parsing import Box
from mars.rewards.vqa import answer_is_correct, contains_phrase, normalise

GROUNDING = "grounding"
VQA = "vqa"
# COCO-style thresholds 0.50:0.05:0.95 for the averaged accuracy.
THRESHOLDS_50_95 = tuple(round(0.50 + 0.05 * step, 2) for step in range(10))
UNPARSED_NOTE = (
    "Unparsed predictions count as failures (score 0). The reference evaluator skipped grounding samples "
    "without an answer json fence, which inflated its accuracy; 'accuracy_reference' is its number, by its rules."
)
VQA_NOTE = (
    "Unparsed predictions count as failures (score 0). 'accuracy' matches the answer as the reference's VQA rule "
    "does, 'strict' as the training reward does, 'reference rules' is the reference evaluator's own number."
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
    """The answer the evaluation scores: the sole ``<answer>`` block (``parsing.sole_answer``, the reward's
    rule); with no answer block at all, the whole text minus any ``<think>`` and ``<perception>`` blocks; with
    several answer blocks, or one inside ``<think>``, nothing (unparsed)."""
    text = parsing.as_text(generated)
    answer = parsing.sole_answer(text)
    if answer is not None:
        return answer
    if parsing.tag_blocks(text, "answer"):
        return ""
    return parsing.strip_think_blocks(parsing.strip_blocks(text, "perception"))


@dataclass(frozen=True)
class GroundingSample:
    """One grounding sample: mean matched IoU in [0, 1] and whether any box could be parsed; for the
    detection metrics the matched pairs' IoUs and the numbers of predicted entries and true boxes; and the
    reference's IoU (None when the reference skips the sample)."""

    mean_iou: float
    parsed: bool
    matched: tuple[float, ...] = ()
    n_pred: int = 0
    n_true: int = 0
    reference_iou: Optional[float] = None


def grounding_sample(
    generated: str,
    true_boxes: Sequence[Box],
    settings: Optional[coords.CoordSettings] = None,
    reference_text: Optional[str] = None,
) -> GroundingSample:
    """Score one generated answer: Hungarian-matched IoU summed over true boxes / n_true.

    Unmatched true boxes count 0; no true and no predicted boxes counts 1; no true but some predicted counts
    0. An answer with no parseable box (only malformed entries, or no box container) is unparsed and
    scores 0. ``settings`` converts predicted boxes to original pixels (default: compared as written).
    ``reference_text`` is what the reference reads (the first generated text; default ``generated``).
    """
    text = generated if reference_text is None else reference_text
    reference_iou = reference.grounding_iou(text, true_boxes)
    entries = parsing.parse_box_entries(prediction_text(generated))
    predicted = parsing.valid_boxes(entries or [])
    base = {"n_true": len(true_boxes), "reference_iou": reference_iou}
    if entries is None or (entries and not predicted):
        return GroundingSample(mean_iou=0.0, parsed=False, n_pred=len(entries or []), **base)
    if not true_boxes:
        return GroundingSample(mean_iou=0.0 if entries else 1.0, parsed=True, n_pred=len(entries), **base)
    predicted, _ = coords.to_original_pixels(predicted[: boxes.MAX_MATCHED_BOXES], settings or coords.CoordSettings())
    matched = boxes.matched_ious(predicted, true_boxes)
    return GroundingSample(
        mean_iou=float(matched.sum() / len(true_boxes)),
        parsed=True,
        matched=tuple(float(iou) for iou in matched if iou > 0),
        n_pred=len(entries),
        **base,
    )


def reference_vqa_match(prediction: str, ground_truth: str) -> bool:
    """The reference evaluation rule, kept for comparability: after ``normalise`` (punctuation to spaces),
    the ground truth appears in the prediction as whole words, or the (non-empty) prediction appears in the
    ground truth as whole words."""
    predicted, truth = normalise(prediction), normalise(ground_truth)
    return bool(predicted) and (contains_phrase(predicted, truth) or contains_phrase(truth, predicted))


@dataclass(frozen=True)
class VqaSample:
    """One VQA sample: the reference-rule verdict on the answer, the strict reward-rule verdict, whether it
    parsed, and the reference evaluation's verdict (on the whole generation)."""

    correct: bool
    strict_correct: bool
    parsed: bool
    reference_correct: bool = False
    empty: bool = False  # no generated text at all


def vqa_sample(
    generated: str, ground_truth: str, reference_text: Optional[str] = None, reference_truth: Optional[str] = None
) -> VqaSample:
    """Score one generated answer; an empty answer is unparsed and wrong. The reference verdict reads
    ``reference_text`` (default ``generated``) against ``reference_truth`` (default ``ground_truth``)."""
    prediction = prediction_text(generated)
    return VqaSample(
        correct=reference_vqa_match(prediction, ground_truth),
        strict_correct=answer_is_correct(prediction, ground_truth),
        parsed=bool(normalise(prediction)),
        reference_correct=reference.vqa_correct(
            generated if reference_text is None else reference_text,
            ground_truth if reference_truth is None else reference_truth,
        ),
        empty=not generated.strip(),
    )


def percent(hits: int, total: int) -> float:
    """100 * hits / total, 0.0 for an empty set."""
    return 100.0 * hits / total if total else 0.0


def accuracy_above(ious: Sequence[float], threshold: float) -> float:
    """Percentage of samples whose mean IoU is strictly above ``threshold``."""
    return percent(sum(iou > threshold for iou in ious), len(ious))


EMPTY_NOTE = "No samples: nothing to score (every rate is left out, not 0 or 100)."


def empty_report(task: str, threshold: Optional[float]) -> dict[str, Any]:
    """The report of an empty results file: 0 samples, no rates."""
    return {"task": task, "threshold": threshold, "samples": 0, "note": EMPTY_NOTE}


def grounding_report(samples: Sequence[GroundingSample], threshold: float) -> dict[str, Any]:
    """Aggregate grounding report; accuracies in percent, ``mean_iou`` in [0, 1] (unparsed count as 0)."""
    if not samples:
        return empty_report(GROUNDING, threshold)
    ious = [sample.mean_iou for sample in samples]
    counted = [sample.reference_iou for sample in samples if sample.reference_iou is not None]
    detection_part = detection.detection_metrics(
        [sample.matched for sample in samples],
        sum(sample.n_pred for sample in samples),
        sum(sample.n_true for sample in samples),
        threshold,
        THRESHOLDS_50_95,
    )
    return {
        "task": GROUNDING,
        "threshold": threshold,
        "samples": len(samples),
        "unparsed": sum(not sample.parsed for sample in samples),
        "correct": sum(iou > threshold for iou in ious),
        "accuracy": accuracy_above(ious, threshold),
        "accuracy_at_50": accuracy_above(ious, 0.5),
        "accuracy_at_75": accuracy_above(ious, 0.75),
        "accuracy_50_95": sum(accuracy_above(ious, t) for t in THRESHOLDS_50_95) / len(THRESHOLDS_50_95),
        "mean_iou": sum(ious) / len(ious) if ious else 0.0,
        **detection_part,
        "accuracy_reference": accuracy_above(counted, threshold),
        "mean_iou_reference": sum(counted) / len(counted) if counted else 0.0,
        "reference_skipped": len(samples) - len(counted),
        "note": UNPARSED_NOTE,
    }


def vqa_report(samples: Sequence[VqaSample], threshold: Optional[float] = None) -> dict[str, Any]:
    """Aggregate VQA report, accuracies in percent. ``accuracy`` uses the reference rule;
    ``accuracy_strict`` the stricter reward rule (``mars.rewards.vqa.answer_is_correct``)."""
    if not samples:
        return empty_report(VQA, threshold)
    parsed = [sample for sample in samples if sample.parsed]
    empty_counted = sum(sample.empty and sample.reference_correct for sample in samples)
    correct = sum(sample.correct for sample in samples)
    return {
        "task": VQA,
        "threshold": threshold,
        "samples": len(samples),
        "unparsed": len(samples) - len(parsed),
        "correct": correct,
        "accuracy": percent(correct, len(samples)),
        "accuracy_strict": percent(sum(sample.strict_correct for sample in samples), len(samples)),
        "accuracy_reference": percent(sum(sample.reference_correct for sample in samples), len(samples)),
        "reference_empty_counted_correct": empty_counted,
        "note": VQA_NOTE + (EMPTY_GENERATION_NOTE.format(n=empty_counted) if empty_counted else ""),
    }


EMPTY_GENERATION_NOTE = (
    " The reference rules count an empty generation as correct (its pattern for an empty prediction, \\b\\b, matches "
    "any ground truth with a word; a generation that is not text crashes the reference): {n} such item(s) are in "
    "'reference rules' here, none in 'accuracy'."
)

_ROW_LABELS = {
    "samples": "samples",
    "unparsed": "unparsed (counted as wrong)",
    "correct": "correct",
    "accuracy": "accuracy @ threshold (%)",
    "accuracy_at_50": "accuracy @ IoU > 0.50 (%)",
    "accuracy_at_75": "accuracy @ IoU > 0.75 (%)",
    "accuracy_50_95": "accuracy, mean 0.50:0.95 (%)",
    "mean_iou": "mean IoU",
    "precision": "precision @ threshold (%)",
    "recall": "recall @ threshold (%)",
    "f1": "F1 @ threshold (%)",
    "f1_50_95": "F1, mean 0.50:0.95 (%)",
    "accuracy_strict": "accuracy, strict reward rule (%)",
    "accuracy_reference": "accuracy, reference rules (%)",
    "mean_iou_reference": "mean IoU, reference rules",
    "reference_skipped": "skipped by the reference rules",
    "reference_empty_counted_correct": "empty, correct by reference rules",
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
            shown = f"{value:.4f}" if key.startswith("mean_iou") else f"{value:.2f}" if isinstance(value, float) else str(value)
            lines.append(f"  {label:<34} {shown:>10}")
    lines.append(report["note"])
    return "\n".join(lines)
