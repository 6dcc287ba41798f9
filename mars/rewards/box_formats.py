"""Box notations read from text that is not a JSON box list, with a cap on how many are read.

One scan, left to right, finds every notation the reference release reads (its evaluator's
``(x1,y1),(x2,y2)``, ``(x1, y1, x2, y2)``, ``[x1, y1, x2, y2]`` and ``<box>x1 y1 x2 y2</box>``; its reward's
``'bbox_2d'`` keys and quoted lists ``'[x1, y1, x2, y2]'``) and those we read beyond it (signs, exponents,
integers and decimals mixed, ``"bbox"`` keys). Each candidate becomes four number strings, or None when a
``bbox_2d`` key holds something that is not four numbers (a malformed entry: it still counts as a prediction).

Every branch starts with a literal character, so the regex engine skips ahead to the next ``[ ( < " '``
quickly, and no branch has nested repeats: the scan is linear in the text.
"""

from __future__ import annotations

import re
from typing import Optional

# A number as models write it; no nested repeats, so matching is linear.
NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_N = rf"\s*({NUMBER})\s*"
# "bbox_2d": [...] / 'bbox_2d': '[...]' -- the bounded class keeps each attempt short.
_KEYED = r"""(?:bbox_2d|bbox)["']\s*:\s*["']?\[([^\[\]]{0,256})\]"""
# Every branch starts with a literal character: the regex engine then skips to the next candidate with a
# fast character-set search instead of trying every branch at every position.
_CANDIDATE = re.compile(
    rf'"{_KEYED}'
    rf"|'{_KEYED}"
    rf"|\[{_N},{_N},{_N},{_N}\]"
    rf"|\({_N},{_N},{_N},{_N}\)"
    rf"|\({_N},{_N}\)\s*,?\s*\({_N},{_N}\)"
    rf"|<box>{_N}[\s,]{_N}[\s,]{_N}[\s,]{_N}</box>"
)
_KEYED_GROUPS = (1, 2)
_NUMBER_ONLY = re.compile(rf"\s*({NUMBER})\s*")
# Characters that close a candidate; past the limits, the rest of the text is counted by these (an upper
# bound, which is all the over-prediction penalty needs: it is capped long before).
_CLOSERS = ("]", ")", "</box>")

NumberStrings = Optional[tuple[str, str, str, str]]


def _keyed_numbers(inside: str) -> NumberStrings:
    """The four number strings inside a ``bbox_2d`` key's brackets, or None when it holds anything else."""
    parts = inside.split(",")
    if len(parts) != 4:
        return None
    matches = [_NUMBER_ONLY.fullmatch(part) for part in parts]
    if any(match is None for match in matches):
        return None
    return tuple(match.group(1) for match in matches)  # type: ignore[return-value]


def find_box_candidates(text: str, limit: int, scan_chars: int) -> tuple[list[NumberStrings], int]:
    """``(candidates, uncounted)``: the box candidates among the first ``scan_chars`` characters, at most
    ``limit`` of them, in text order; and how many more the text may hold after that point (counted cheaply
    by closing characters, not read), so that megabytes of boxes or brackets cost milliseconds."""
    found: list[NumberStrings] = []
    for match in _CANDIDATE.finditer(text, 0, scan_chars):
        if len(found) == limit:
            return found, _count_closers(text, match.start())
        keyed = next((match.group(g) for g in _KEYED_GROUPS if match.group(g) is not None), None)
        if keyed is not None:
            found.append(_keyed_numbers(keyed))
        else:
            found.append(tuple(group for group in match.groups()[2:] if group is not None))  # type: ignore[arg-type]
    return found, _count_closers(text, scan_chars) if len(text) > scan_chars else 0


def _count_closers(text: str, start: int) -> int:
    return sum(text.count(closer, start) for closer in _CLOSERS)


def repair_quotes(text: str) -> str:
    """The reference reward's repair of single-quoted JSON: ``'bbox_2d'`` keys and ``'[...]'`` quoted lists."""
    return text.replace("'bbox_2d'", '"bbox_2d"').replace("'bbox'", '"bbox"').replace("'[", "[").replace("]'", "]")
