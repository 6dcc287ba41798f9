"""The reference release's evaluation rules (its ``evaluation/eval_qwen.py``), re-implemented to report its
number exactly as ``accuracy_reference`` -- the number to put beside published tables.

Rules, as the reference applies them to the first generated text of each results item:

Grounding
- skip rule: a sample without an ``<answer>`` block, or whose first answer block holds no ```` ```json ````
  fence, is skipped: it leaves both the numerator and the denominator;
- boxes: from the text between ```` ```json ```` and the next ```` ``` ````, the first notation of
  ``BOX_NOTATIONS`` that occurs at all gives every box (later notations are not read); numbers are plain
  digits, no sign, no exponent;
- IoU: per sample, boxes matched one-to-one by the Hungarian algorithm on IoU, summed over true boxes and
  divided by their number; no true and no predicted box -> 1, only one side empty -> 0. A fence with no
  usable box (a box of three numbers) stays in the denominator with IoU 0;
- accuracy: share of the counted samples whose IoU is strictly above the threshold.

VQA (no sample is ever skipped): the whole generation, ``<think>`` included, and the ground truth are
lower-cased and cleaned (``clean``); right when the cleaned ground truth occurs in the cleaned prediction
between word boundaries (``\\b``), or the cleaned prediction in the cleaned ground truth.

Where the reference would crash we give a number instead, and say so: no counted sample -> 0.0 (it divides by
zero); two boxes of zero area -> IoU 0 (it divides by zero); a ``content`` that is a plain string is the
generation (the reference would take its first character).
"""

from __future__ import annotations

import re
from typing import Any, Optional, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from mars.rewards import parsing

_INT, _DEC = r"(\d+)", r"(\d+\.\d+)"


def _notation(opening: str, closing: str, number: str, separators: Sequence[str]) -> re.Pattern:
    """A pattern of four numbers between ``opening`` and ``closing`` with the given separators between them."""
    body = number + "".join(separator + number for separator in separators)
    return re.compile(opening + body + closing)


_COMMA = r",\s*"
# The reference's box notations, in its order of preference.
BOX_NOTATIONS = (
    _notation(r"\(", r"\)", _INT, (_COMMA, r"\),\s*\(", _COMMA)),  # (x1, y1), (x2, y2)
    _notation(r"\[", r"\]", _DEC, (_COMMA,) * 3),  # [0.1, 0.2, 0.3, 0.4]
    _notation(r"\(", r"\)", _DEC, (",", r"\),\(", ",")),  # (0.1,0.2),(0.3,0.4)
    _notation(r"\(", r"\)", _DEC, (_COMMA,) * 3),  # (0.1, 0.2, 0.3, 0.4)
    _notation(r"\[", r"\]", _INT, (_COMMA,) * 3),  # [1, 2, 3, 4]
    _notation("<box>", "</box>", _INT, (r"\s+",) * 3),  # <box>1 2 3 4</box>
)


def generation(content: Any) -> str:
    """The text the reference reads: the first element of ``content`` (a plain string is used whole)."""
    first = content[0] if isinstance(content, list) and content else content
    if isinstance(first, dict):
        first = first.get("text", "")
    return first if isinstance(first, str) else ""


def json_fence_of_answer(text: str) -> Optional[str]:
    """The reference's skip rule: the json fence text of the first answer block, or None (sample skipped)."""
    answer = parsing.answer_block(text)
    if answer is None:
        return None
    start = answer.find(parsing.JSON_FENCE_OPEN)
    end = answer.find(parsing.FENCE_CLOSE, start + len(parsing.JSON_FENCE_OPEN)) if start >= 0 else -1
    return None if end < 0 else answer[start + len(parsing.JSON_FENCE_OPEN) : end]


def boxes_in(fence: str) -> list[list[float]]:
    """Every box of the first notation in ``BOX_NOTATIONS`` that occurs in the fence text."""
    for notation in BOX_NOTATIONS:
        found = notation.findall(fence)
        if found:
            return [[float(value) for value in numbers] for numbers in found]
    return []


def iou_table(true_boxes: Sequence[Sequence[float]], predicted: Sequence[Sequence[float]]) -> np.ndarray:
    """The reference's IoU of every true box (rows) with every predicted box, signed areas and all: 0 where
    the overlap is negative on either axis. Element-wise float64 arithmetic in the reference's order, so the
    values are those of its pure-Python loop, bit for bit."""
    t = np.asarray(true_boxes, dtype=np.float64)[:, None, :]
    p = np.asarray(predicted, dtype=np.float64)[None, :, :]
    width = np.minimum(t[..., 2], p[..., 2]) - np.maximum(t[..., 0], p[..., 0])
    height = np.minimum(t[..., 3], p[..., 3]) - np.maximum(t[..., 1], p[..., 1])
    overlap = width * height
    union = (t[..., 2] - t[..., 0]) * (t[..., 3] - t[..., 1]) + (p[..., 2] - p[..., 0]) * (p[..., 3] - p[..., 1])
    union = union - overlap
    with np.errstate(divide="ignore", invalid="ignore"):
        ious = np.where(union != 0, overlap / np.where(union != 0, union, 1.0), 0.0)
    return np.where((width < 0) | (height < 0), 0.0, ious)


def sample_iou(true_boxes: Sequence[Sequence[float]], predicted: Sequence[Sequence[float]]) -> float:
    """The reference's per-sample IoU: Hungarian-matched sum over the true boxes / their number."""
    if not true_boxes or not predicted:
        return 1.0 if not true_boxes and not predicted else 0.0
    ious = iou_table(true_boxes, predicted)
    rows, cols = linear_sum_assignment(ious, maximize=True)
    return float(np.sum(ious[rows, cols])) / len(true_boxes)


def grounding_iou(text: str, true_boxes: Sequence[Sequence[float]]) -> Optional[float]:
    """The reference's IoU for one generated text, or None when the reference skips the sample."""
    fence = json_fence_of_answer(text)
    return None if fence is None else sample_iou(true_boxes, boxes_in(fence))


def _is_word(character: str) -> bool:
    return character.isalnum() or character == "_"


def _symbol(character: str) -> bool:
    """A character of the reference's symbol class: neither word, nor space, nor colon."""
    return not (_is_word(character) or character.isspace() or character == ":")


def _colons(text: str, after_non_word: bool) -> str:
    """Colons turned into spaces: those after a non-word (or at the start) and before a word character
    (``after_non_word``), or those after a word character and not before one."""
    out = list(text)
    for i, character in enumerate(text):
        if character != ":":
            continue
        word_before = i > 0 and _is_word(text[i - 1])
        word_after = i + 1 < len(text) and _is_word(text[i + 1])
        if (not word_before and word_after) if after_non_word else (word_before and not word_after):
            out[i] = " "
    return "".join(out)


def _symbol_runs(text: str) -> list[tuple[int, int]]:
    runs, i = [], 0
    while i < len(text):
        if _symbol(text[i]):
            j = i
            while j < len(text) and _symbol(text[j]):
                j += 1
            runs.append((i, j))
            i = j
        else:
            i += 1
    return runs


def _drop_symbols(text: str, leading: bool) -> str:
    """One of the reference's two symbol passes, over maximal runs of symbols.

    ``leading``: a run before a word character loses everything it can while starting after a non-word
    character -- all of it when a non-word (or the start) precedes it, all but its first symbol otherwise.
    Trailing: a run after a word character loses everything it can while not being followed by a word
    character -- all of it when no word character follows, all but its last symbol otherwise.
    """
    keep = [True] * len(text)
    for start, end in _symbol_runs(text):
        word_before = start > 0 and _is_word(text[start - 1])
        word_after = end < len(text) and _is_word(text[end])
        if leading and word_after:
            cut = (start + 1 if word_before else start, end)
        elif not leading and word_before:
            cut = (start, end - 1 if word_after else end)
        else:
            continue
        for i in range(*cut):
            keep[i] = False
    return "".join(character for character, kept in zip(text, keep) if kept)


def clean(text: str) -> str:
    """The reference's answer cleaning, in its order: hyphens to spaces, the two colon rules, the leading
    and trailing symbol passes, whitespace collapsed and stripped."""
    text = text.replace("-", " ")
    text = _colons(_colons(text, after_non_word=True), after_non_word=False)
    text = _drop_symbols(_drop_symbols(text, leading=True), leading=False)
    return " ".join(text.split())


def _bounded_in(needle: str, haystack: str) -> bool:
    return re.search(rf"\b{re.escape(needle)}\b", haystack, flags=re.IGNORECASE) is not None


def vqa_correct(text: str, ground_truth: str) -> bool:
    """The reference's VQA verdict on the whole generated text."""
    prediction, truth = clean(text.strip().lower()), clean(ground_truth.strip().lower())
    return _bounded_in(truth, prediction) or _bounded_in(prediction, truth)
