"""VQA reward: format part + accuracy (SPEC section 4).

    score = format + accuracy,   format in {0, 0.25, 0.5},  accuracy in {0, 1},  0 <= score <= 1.5

The accuracy rules deliberately differ from the reference, whose substring tests in both directions gave
full marks to an empty or one-letter answer, and which raised when the answer block was missing.
``answer_is_correct`` documents the rules; ``negation`` the rejected-answer rule.
"""

from __future__ import annotations

import re
from typing import Any

from mars.rewards import parsing
from mars.rewards.negation import is_rejected, letter_is_rejected
from mars.rewards.safety import never_raise
from mars.rewards.text import contains_phrase, fold, normalise, phrase_starts

FORMAT_PART = 0.25
VQA_KEYS = ("score", "format", "accuracy", "error")
YES_NO_OPPOSITE = {"yes": "no", "no": "yes"}
# An answer longer than this is wrong: answers are a word or a sentence (the reasoning goes in <think>), and
# the bound keeps the per-call work small on megabytes of hostile text.
MAX_ANSWER_CHARS = 2000
# Open-ended answers: the ground truth must make up at least this share of the answer's content words, so a
# list of candidates ("red, white, blue, green") cannot contain the right one for free.
MIN_COVERAGE = 0.5
# Words that carry no content of their own; they do not count against the coverage bound.
FILLER_WORDS = frozenset(
    "a an the is are was were be been it its s this that these those there here i we you my our answer final "
    "think of in on at to with which what color colour image picture photo shown see can".split()
)
# An open-ended answer with one of these offers alternatives: a hedge, wrong unless it is the exact truth.
HEDGE_WORDS = frozenset({"or", "either"})
# A capital letter standing alone (not inside a word or a contraction like "I'm"), except the pronoun "I"
# when a lower-case word follows ("I think B" names only B). Lower-case "a" is the article, never an option.
# A quote counts as a word's edge only when it is not an apostrophe inside a word: 'D' and ‘D’ name D.
_OPTION_LETTER = re.compile(
    r"(?<![A-Za-z0-9])(?<![A-Za-z0-9]['’])(?!I\s+[a-z])([A-Z])(?![A-Za-z0-9])(?!['’][A-Za-z0-9])"
)


def option_letter_spans(text: str) -> list[tuple[str, int, int]]:
    """``(letter, start, end)`` of every option letter the (folded) text names, in order."""
    return [(match.group(1), match.start(), match.end()) for match in _OPTION_LETTER.finditer(text)]


def option_letters(text: str) -> set[str]:
    """Distinct option letters an answer names: "A", "(A)", "A.", "'A'", "A. not the same", "Option A",
    "The answer is A" all give {"A"}; "A or B" gives {"A", "B"}."""
    return {letter for letter, _, _ in option_letter_spans(fold(text))}


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


def alternatives(truth_norm: str) -> list[list[str]]:
    """The accepted answers of a normalised ground truth: "two or 2" -> [["two"], ["2"]] (nuScenes writes
    its alternatives that way); a ground truth without "or" is its own only alternative."""
    parts, current = [], []
    for word in truth_norm.split():
        if word == "or":
            parts.append(current)
            current = []
        else:
            current.append(word)
    parts.append(current)
    parts = [part for part in parts if part]
    return parts or [truth_norm.split()]


def _content_words(words: list[str]) -> list[str]:
    return [word for word in words if word not in FILLER_WORDS]


def phrase_is_answered(words: list[str], phrase: list[str]) -> bool:
    """An open-ended answer (normalised words) gives ``phrase``: the phrase occurs, no occurrence of it is
    rejected, the answer offers no alternatives, and the phrase covers >= MIN_COVERAGE of its content words."""
    starts = phrase_starts(words, phrase)
    if not starts or any(is_rejected(words, start, start + len(phrase)) for start in starts):
        return False
    if HEDGE_WORDS.intersection(words):
        return False
    content = _content_words(words)
    return len(_content_words(phrase) or phrase) >= MIN_COVERAGE * len(content)


def answer_is_correct(answer: str, ground_truth: str) -> bool:
    """Strict VQA accuracy, applied in order to the folded texts (``text.fold``):

    1. an answer that normalises to nothing, or longer than MAX_ANSWER_CHARS, is wrong (so is a ground
       truth that normalises to nothing);
    2. an exact match after normalisation is right;
    3. choice-letter ground truth (one letter A-Z): right when the answer names exactly one distinct
       option letter (``option_letters``), it is the ground truth, and it is not rejected ("not A",
       "A is wrong");
    4. yes/no ground truth: right when the answer has the word as a whole word, not its opposite, and does
       not reject it ("not yes");
    5. otherwise each "or"-separated alternative of the ground truth is tried ("two or 2"): right when one
       is answered (``phrase_is_answered``: present, not rejected, no hedge, enough coverage).
    """
    if len(answer) > MAX_ANSWER_CHARS:
        return False
    answer, ground_truth = fold(answer), fold(ground_truth)
    answer_norm, truth_norm = normalise(answer), normalise(ground_truth)
    if not answer_norm or not truth_norm:
        return False
    if answer_norm == truth_norm:
        return True
    letter = _choice_letter(ground_truth.strip())
    if letter:
        spans = option_letter_spans(answer)
        return {name for name, _, _ in spans} == {letter} and not any(
            letter_is_rejected(answer, start, end) for _, start, end in spans
        )
    words = answer_norm.split()
    if truth_norm in YES_NO_OPPOSITE:
        starts = phrase_starts(words, [truth_norm])
        return (
            bool(starts)
            and not contains_phrase(answer_norm, YES_NO_OPPOSITE[truth_norm])
            and not any(is_rejected(words, start, start + 1) for start in starts)
        )
    return any(phrase_is_answered(words, phrase) for phrase in alternatives(truth_norm))


def vqa_format_score(text: str) -> float:
    """0.25 for exactly one non-empty think block + 0.25 for exactly one non-empty answer block."""
    return FORMAT_PART * (
        parsing.has_single_nonempty_block(text, "think") + parsing.has_single_nonempty_block(text, "answer")
    )


@never_raise(VQA_KEYS)
def vqa_score(solution_str: Any, ground_truth: Any, extra_info: Any = None) -> dict[str, float]:
    """VQA reward as a verl result dict ``{"score", "format", "accuracy", "error"}``; never raises.

    The answer is the sole ``<answer>`` block (``parsing.sole_answer``); without one (none, several, or one
    inside ``<think>``) the answer is empty and earns no accuracy.
    """
    text = parsing.as_text(solution_str)
    format_part = vqa_format_score(text)
    answer = parsing.sole_answer(text) or ""
    accuracy = float(answer_is_correct(answer, ground_truth_answer(ground_truth)))
    return {"score": format_part + accuracy, "format": format_part, "accuracy": accuracy}


def vqa_reward(solution_str: Any, ground_truth: Any, extra_info: Any = None) -> float:
    """``vqa_score(...)["score"]`` as a plain float."""
    return vqa_score(solution_str, ground_truth, extra_info)["score"]
