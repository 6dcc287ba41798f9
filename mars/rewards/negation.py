"""Rejected answers: "not A", "A is wrong", "definitely not (A)", "not yes", "not white".

An answer that names the ground truth only to reject it is wrong. A mention is rejected when

- one of the NEGATION_WINDOW words before it is a negation ("not", "never", "nor", "n't" ...), or the word
  right before it is "no" ("no white car"; further away "no" is too often an answer of its own);
- or the words after it reject it: a rejecting word ("wrong", "incorrect", "false" ...) after at most
  MAX_COPULAS linking words ("A is wrong", "A (wrong)"), or a negation after at least one linking word
  ("A is not correct", "A isn't"). A bare "not" right after a mention is not a rejection: option texts
  such as "A. not the same" start that way.

Words are normalised (``text.normalise``), so "isn't" reads as "isn t" and "don't" as "don t".
"""

from __future__ import annotations

from mars.rewards.text import normalise

NEGATION_WINDOW = 3
MAX_COPULAS = 3
NEGATIONS = frozenset(
    "not never neither nor cannot t nt isnt dont doesnt didnt cant wont wasnt arent without except excluding "
    "instead rather".split()
)
# "isn", "wasn" ... are the first halves of "isn't", "wasn't": a link and a negation at once.
NEGATED_LINKS = frozenset("isn wasn aren weren doesn don didn".split())
LINKS = frozenset("is are was were be s seems looks would definitely clearly certainly surely probably".split())
REJECTIONS = frozenset("wrong incorrect false excluded eliminated impossible unlikely rejected".split())
# Characters of context read on each side of an option letter (enough for a few words).
_LETTER_CONTEXT_CHARS = 80


def is_rejected(words: list[str], start: int, end: int) -> bool:
    """True when the mention ``words[start:end]`` is rejected by the words around it (rules above)."""
    before = words[max(0, start - NEGATION_WINDOW) : start]
    if NEGATIONS.intersection(before) or (before and before[-1] == "no"):
        return True
    return _rejected_after(words[end : end + MAX_COPULAS + 1])


def _rejected_after(after: list[str]) -> bool:
    links = 0
    for word in after:
        if word in REJECTIONS or word in NEGATED_LINKS or (links and word in NEGATIONS):
            return True
        if word not in LINKS:
            return False
        links += 1
    return False


def letter_is_rejected(text: str, start: int, end: int) -> bool:
    """True when the option letter at ``text[start:end]`` (a folded answer) is rejected by its context."""
    before = normalise(text[max(0, start - _LETTER_CONTEXT_CHARS) : start]).split()
    after = normalise(text[end : end + _LETTER_CONTEXT_CHARS]).split()
    words = before + ["?"] + after
    return is_rejected(words, len(before), len(before) + 1)
