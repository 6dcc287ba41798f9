"""Reading and checking a RESULTS.json file: a list of ``{"content": [generated text], "ground_truth": GT}``.

Every problem raises ``ResultsError`` with a message naming the file, the item index and what to do, so the
command line can print it and exit with status 2 instead of showing a traceback.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from mars.rewards.grounding import parse_ground_truth_boxes
from mars.rewards.parsing import Box
from mars.rewards.vqa import ground_truth_answer, normalise


class ResultsError(ValueError):
    """A results file that cannot be evaluated; the message says where and what to do."""


def load_results(path: Path) -> list[dict[str, Any]]:
    """The items of a results file, checked to be a JSON list of objects with content and ground_truth."""
    if not path.is_file():
        raise ResultsError(f"{path}: no such file; pass the RESULTS.json written by evaluation/qwen_inference.sh")
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as error:
        raise ResultsError(f"{path}: not valid JSON ({error}); regenerate it or fix the file") from None
    if not isinstance(items, list):
        raise ResultsError(
            f"{path}: expected a JSON list of {{\"content\": [...], \"ground_truth\": ...}} items, "
            f"got {type(items).__name__}"
        )
    for index, item in enumerate(items):
        check_item(path, index, item)
    return items


def check_item(path: Path, index: int, item: Any) -> None:
    """Raise ``ResultsError`` unless the item is an object with a usable ``content`` and a ``ground_truth``."""
    where = f"{path}: item {index}"
    if not isinstance(item, dict):
        raise ResultsError(f"{where} is a {type(item).__name__}, expected an object with content and ground_truth")
    missing = [key for key in ("content", "ground_truth") if key not in item]
    if missing:
        raise ResultsError(f"{where} has no {' or '.join(missing)}; every item needs both keys")
    content = item["content"]
    if not isinstance(content, (str, list)):
        raise ResultsError(f"{where}: content must be a string or a list of strings, got {type(content).__name__}")


def grounding_truth(path: Path, index: int, ground_truth: Any) -> list[Box]:
    """The true boxes of one item, or ``ResultsError`` naming it (not boxes, or a box no prediction can match)."""
    true_boxes = parse_ground_truth_boxes(ground_truth)
    if true_boxes is None:
        raise ResultsError(
            f"{path}: item {index}: ground_truth {str(ground_truth)[:120]!r} is not a list of [x1, y1, x2, y2] "
            "boxes; fix that item (or evaluate with task 'vqa' if this is a VQA file)"
        )
    for k, box in enumerate(true_boxes):
        x1, y1, x2, y2 = (float(v) for v in box)
        if not all(math.isfinite(v) for v in (x1, y1, x2, y2)) or x2 <= x1 or y2 <= y1:
            raise ResultsError(
                f"{path}: item {index}: true box {k} {[x1, y1, x2, y2]} is empty or inverted (needs x1 < x2 and "
                "y1 < y2): no prediction can match it; fix that item"
            )
    return true_boxes


def vqa_truth(path: Path, index: int, ground_truth: Any) -> str:
    """The ground-truth answer of one item, or ``ResultsError`` naming it when it is empty, not text or a number,
    or a boolean or NaN (which would become the answers "True" or "nan")."""
    value = ground_truth[0] if isinstance(ground_truth, list) and len(ground_truth) == 1 else ground_truth
    if isinstance(value, bool) or (isinstance(value, float) and not math.isfinite(value)):
        raise ResultsError(
            f"{path}: item {index}: ground_truth {value!r} is not an answer; write the answer text (e.g. \"yes\")"
        )
    answer = ground_truth_answer(ground_truth)
    if not normalise(answer):
        raise ResultsError(
            f"{path}: item {index}: ground_truth {str(ground_truth)[:120]!r} has no answer text; fix that item "
            "(or evaluate with task 'grounding' if this is a grounding file)"
        )
    return answer

