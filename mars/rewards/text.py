"""Text normalisation for answer matching: Unicode folding and word tokens.

A Cyrillic "е" inside "Yеs", a fullwidth "Ｄ" or a zero-width space changes what a plain string comparison
sees; both a wrong answer dressed as a right one (a negation word spelt with a look-alike letter escapes the
negation rule) and a right answer scored wrong follow. ``fold`` removes that freedom before any matching.
"""

from __future__ import annotations

import re
import unicodedata

# Cyrillic and Greek letters drawn like Latin ones (the Unicode confusables that matter for short English
# answers); NFKC leaves them alone because they are different letters, not compatibility forms.
_LOOK_ALIKES = {
    "А": "A", "В": "B", "Е": "E", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P", "С": "C", "Т": "T",
    "Х": "X", "У": "Y", "І": "I", "Ј": "J", "Ѕ": "S", "Ү": "Y", "Һ": "H", "Ԁ": "D", "Ԛ": "Q", "Ԝ": "W",
    "а": "a", "е": "e", "о": "o", "р": "p", "с": "c", "у": "y", "х": "x", "і": "i", "ј": "j", "ѕ": "s",
    "ԁ": "d", "ԛ": "q", "ԝ": "w", "һ": "h", "ӏ": "l", "ү": "y",
    "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M", "Ν": "N", "Ο": "O",
    "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X", "ο": "o", "α": "a", "ι": "i", "κ": "k", "ν": "v", "ρ": "p",
    "υ": "u", "ϲ": "c", "ϳ": "j", "ı": "i",
}
# Invisible format characters (soft hyphen, zero-width spaces and joiners, direction marks, BOM) split or
# disguise words without showing; they are dropped.
_INVISIBLE = "\u00ad\u180e\u200b\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2060\u2061\u2062\u2063\u2064\ufeff"
_TABLE = str.maketrans({**_LOOK_ALIKES, **dict.fromkeys(_INVISIBLE, None)})
# Punctuation (anything that is neither a word character nor space) and underscores become spaces.
_PUNCTUATION = re.compile(r"[^\w\s]|_")


def fold(text: str) -> str:
    """NFKC, then look-alike Cyrillic/Greek letters mapped to Latin and invisible characters dropped.

    NFKC runs first (it turns fullwidth and mathematical letters into plain ones) and again after the map, in
    case dropping an invisible character joined a base letter and a combining mark."""
    folded = unicodedata.normalize("NFKC", text).translate(_TABLE)
    return unicodedata.normalize("NFKC", folded)


def normalise(text: str) -> str:
    """Folded, lower-case, punctuation to spaces, whitespace collapsed: ``"(A) Yеs!"`` -> ``"a yes"``."""
    return " ".join(_PUNCTUATION.sub(" ", fold(text).lower()).split())


def contains_phrase(haystack: str, needle: str) -> bool:
    """True when the normalised words of ``needle`` occur as a contiguous whole-word run in ``haystack``.

    Both arguments must already be normalised (single spaces); padding with spaces makes ``find`` match
    whole words only, in linear time.
    """
    return bool(needle) and f" {needle} " in f" {haystack} "


def phrase_starts(words: list[str], phrase: list[str]) -> list[int]:
    """Indices where ``phrase`` occurs as a contiguous run of ``words`` (both normalised word lists)."""
    size = len(phrase)
    if not size:
        return []
    return [i for i in range(len(words) - size + 1) if words[i] == phrase[0] and words[i : i + size] == phrase]
