"""Grounding reward: format part + IoU part (SPEC section 4).

    score = format + iou,   0 <= score <= 0.75 + 1 + 0.3 ln(max(n_true, 1))

- format (0..0.75): 0.25 for exactly one non-empty ``<think>`` block, 0.25 for exactly one non-empty
  ``<answer>`` block, 0.25 when that answer (``parsing.sole_answer``) holds exactly one fenced
  ```` ```json ```` block that reads as a box list (``parsing.readable_json_fence``).
- iou (0..1 + 0.3 ln n_true): ``boxes.reference_iou_score`` on the boxes of the sole answer block, converted
  to original-image pixels as ``extra_info`` says (``coords.CoordSettings``). Several answer blocks, or one
  inside ``<think>``, earn no IoU.
"""

from __future__ import annotations

from typing import Any, Optional

from mars.rewards import boxes, coords, parsing
from mars.rewards.parsing import Box
from mars.rewards.safety import never_raise, warn_once

FORMAT_PART = 0.25
GROUNDING_KEYS = ("score", "format", "iou", "coord_error", "error")


def grounding_format_score(text: str) -> float:
    """0.25 per rule met: one non-empty think block, one non-empty answer block, one readable json fence in it."""
    score = FORMAT_PART * parsing.has_single_nonempty_block(text, "think")
    score += FORMAT_PART * parsing.has_single_nonempty_block(text, "answer")
    answer = parsing.sole_answer(text)
    if answer is not None and parsing.readable_json_fence(answer):
        score += FORMAT_PART
    return score


def parse_ground_truth_boxes(ground_truth: Any) -> Optional[list[Box]]:
    """True boxes from a list of boxes, a JSON string of one, or ``<answer>[[...]]</answer>``; None if invalid.

    Unlike predictions, ground truth is strict: one malformed entry makes the whole ground truth invalid.
    """
    value = parsing.to_plain(ground_truth)
    if isinstance(value, (str, bytes)):
        text = parsing.as_text(value)
        inner = parsing.answer_block(text)
        ok, value = parsing.load_json((inner if inner is not None else text).strip())
        if not ok:
            return None
    entries = parsing.entries_from_json(value)
    if entries is None or any(entry is None for entry in entries):
        return None
    return entries


def answer_box_entries(text: str) -> Optional[list[parsing.BoxEntry]]:
    """Box entries of the sole answer block (None without one, or with no box in it). The evaluation reads
    boxes through this function too, so that reward and evaluation agree on what an answer says."""
    answer = parsing.sole_answer(text)
    return None if answer is None else parsing.parse_box_entries(answer)


@never_raise(GROUNDING_KEYS)
def grounding_score(solution_str: Any, ground_truth: Any, extra_info: Any = None) -> dict[str, float]:
    """Grounding reward as a verl result dict ``{"score", "format", "iou", "coord_error", "error"}``.

    ``coord_error`` is 1.0 when ``extra_info`` asks for a coordinate conversion that cannot be done (unknown
    format or missing ``image_size``; boxes are then compared as written). ``error`` is 1.0 when the ground
    truth is unreadable (the IoU part is then 0) or something unexpected failed (score 0). Never raises.
    """
    text = parsing.as_text(solution_str)
    format_part = grounding_format_score(text)
    settings = coords.CoordSettings.from_extra_info(extra_info)
    coord_error = float(settings.scale() is None)
    true_boxes = parse_ground_truth_boxes(ground_truth)
    if true_boxes is None:
        warn_once("grounding ground truth", "unreadable grounding ground truth: %.200r", ground_truth)
        return {"score": format_part, "format": format_part, "coord_error": coord_error, "error": 1.0}
    entries = answer_box_entries(text)
    if entries is None:  # nothing parseable: no credit, even when there are no true boxes
        iou_part = 0.0
    else:
        # Only the boxes that can enter the matching are converted; all entries count for the penalty.
        matchable = parsing.valid_boxes(entries)[: boxes.MAX_MATCHED_BOXES]
        predicted, _ = coords.to_original_pixels(matchable, settings)
        iou_part = boxes.reference_iou_score(predicted, len(entries), true_boxes)
    return {
        "score": format_part + iou_part,
        "format": format_part,
        "iou": iou_part,
        "coord_error": coord_error,
    }


def grounding_reward(solution_str: Any, ground_truth: Any, extra_info: Any = None) -> float:
    """``grounding_score(...)["score"]`` as a plain float."""
    return grounding_score(solution_str, ground_truth, extra_info)["score"]


def max_grounding_score(n_true: int) -> float:
    """Upper bound of the grounding score for ``n_true`` true boxes: 0.75 + 1 + 0.3 ln(max(n_true, 1))."""
    return 3 * FORMAT_PART + boxes.max_iou_score(n_true)
