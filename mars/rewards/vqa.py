"""VQA reward: format part + accuracy (SPEC section 4).

    score = format + accuracy,   format in {0, 0.25, 0.5},  accuracy in {0, 1},  0 <= score <= 1.5

The accuracy rules deliberately differ from the reference, whose substring tests in both directions gave
full marks to an empty or one-letter answer, and which raised when the answer block was missing.
``answer_is_correct`` documents the rules.
"""

from __future__ import annotations

import re
from typing import Any

from mars.rewards import parsing
from mars.rewards.safety import never_raise

FORMAT_PART = 0.25
VQA_KEYS = ("score", "format", "accuracy", "error")
YES_NO_OPPOSITE = {"yes": "no", "no": "yes"}

# Punctuation (anything that is neither a word character nor space) and underscores become spaces.
_PUNCTUATION = re.compile(r"[^\w\s]|_")
# A capital letter standing alone (not inside a word or a contraction like "I'm"), except the pronoun "I"
# when a lower-case word follows ("I think B" names only B). Lower-case "a" is the article, never an option.
_OPTION_LETTER = re.compile(r"(?<![A-Za-z0-9'’])(?!I\s+[a-z])([A-Z])(?![A-Za-z0-9'’])")


def normalise(text: str) -> str:
    """Lower-case, punctuation to spaces, whitespace collapsed: ``"(A) Yes!"`` -> ``"a yes"``."""
    return " ".join(_PUNCTUATION.sub(" ", text.lower()).split())


def contains_phrase(haystack: str, needle: str) -> bool:
    """True when the normalised words of ``needle`` occur as a contiguous whole-word run in ``haystack``.

    Both arguments must already be normalised (single spaces); padding with spaces makes ``find`` match
    whole words only, in linear time.
    """
    return bool(needle) and f" {needle} " in f" {haystack} "


def option_letters(text: str) -> set[str]:
    """Distinct option letters an answer names: "A", "(A)", "A.", "A. not the same", "Option A",
    "The answer is A" all give {"A"}; "A or B" gives {"A", "B"}."""
    return set(_OPTION_LETTER.findall(text))


def ground_truth_answer(ground_truth: Any) -> str:
    """The ground-truth answer text: a string, optionally wrapped in ``<answer>..</answer>``; numbers are
    written out; anything else is ''."""
    value = parsing.to_plain(ground_truth)
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    text = parsing.as_text(value)
    inner = parsing.answer_block(text)
    return (inner if inner is not None else text).strip()


def _choice_letter(ground_truth: str) -> str:
    """The option letter when the ground truth is a single letter A-Z (any case), else ''."""
    return ground_truth.upper() if len(ground_truth) == 1 and ground_truth.isascii() and ground_truth.isalpha() else ""


def answer_is_correct(answer: str, ground_truth: str) -> bool:
    """Strict VQA accuracy, applied in order:

    1. an answer that normalises to nothing is wrong (so is a ground truth that normalises to nothing);
    2. an exact match after normalisation is right;
    3. choice-letter ground truth (one letter A-Z): right when the answer names exactly one distinct
       option letter (``option_letters``, read from the original text) and it is the ground truth;
    4. yes/no ground truth: right when the answer has the word as a whole word and not its opposite;
    5. otherwise: right when the ground truth's words appear as a contiguous whole-word run in the answer.
    """
    answer_norm, truth_norm = normalise(answer), normalise(ground_truth)
    if not answer_norm or not truth_norm:
        return False
    if answer_norm == truth_norm:
        return True
    letter = _choice_letter(ground_truth.strip())
    if letter:
        return option_letters(answer) == {letter}
    if truth_norm in YES_NO_OPPOSITE:
        return contains_phrase(answer_norm, truth_norm) and not contains_phrase(
            answer_norm, YES_NO_OPPOSITE[truth_norm]
        )
    return contains_phrase(answer_norm, truth_norm)


def vqa_format_score(text: str) -> float:
    """0.25 for exactly one non-empty think block + 0.25 for exactly one non-empty answer block."""
    return FORMAT_PART * (
        parsing.has_single_nonempty_block(text, "think") + parsing.has_single_nonempty_block(text, "answer")
    )


@never_raise(VQA_KEYS)
def vqa_score(solution_str: Any, ground_truth: Any, extra_info: Any = None) -> dict[str, float]:
    """VQA reward as a verl result dict ``{"score", "format", "accuracy", "error"}``; never raises.

    The answer is the first ``<answer>`` block; without one the answer is empty (accuracy 0).
    """
    text = parsing.as_text(solution_str)
    format_part = vqa_format_score(text)
    answer = parsing.answer_block(text) or ""
    accuracy = float(answer_is_correct(answer, ground_truth_answer(ground_truth)))
    return {"score": format_part + accuracy, "format": format_part, "accuracy": accuracy}


def vqa_reward(solution_str: Any, ground_truth: Any, extra_info: Any = None) -> float:
    """``vqa_score(...)["score"]`` as a plain float."""
    return vqa_score(solution_str, ground_truth, extra_info)["score"]
