"""Text parsing for model outputs: tagged blocks, fenced json, and bounding boxes.

Everything here treats model text as hostile data: it is never evaluated as code, the amount of text looked
at is capped, and every scan is linear in the text length (``str.find`` loops and regexes whose repeats are
bounded), so a megabyte of adversarial text costs milliseconds, not minutes.
"""

from __future__ import annotations

import json
import math
from typing import Any, Optional, Sequence

from mars.rewards.box_formats import find_box_candidates, repair_quotes

# Text beyond this many characters is ignored. Real answers are a few kB; the cap only bounds hostile input
# (every scan is linear, so 2 M characters cost tens of milliseconds).
MAX_TEXT_CHARS = 2_000_000
# Coordinates are clipped to +-COORD_LIMIT so that areas (products of two differences) stay finite.
COORD_LIMIT = 1e7
# Ground truth nested deeper than this is not a box list; stops runaway recursion in ``to_plain``.
MAX_PLAIN_DEPTH = 8

Box = tuple[float, float, float, float]
# A parsed prediction entry: a valid box, or None for a malformed entry (it still counts as a prediction).
BoxEntry = Optional[Box]

JSON_FENCE_OPEN = "```json"
ANY_FENCE_OPEN = "```"
FENCE_CLOSE = "```"

# At most this many box entries of one answer are decoded; the rest are counted (as malformed entries, for the
# over-prediction penalty) but not read, so that 2 MB of tiny boxes cost milliseconds (issue 10, item 13).
MAX_BOX_ENTRIES = 1000
# Decoding JSON costs about a microsecond per value, so 2 MB of tiny boxes would take most of a second: longer
# answers are not decoded but read by the notation scanner (which stops at MAX_BOX_ENTRIES), and a longer
# fence is not a readable answer. 1000 typical entries take about 60 kB.
MAX_JSON_CHARS = 100_000
# The notation scanner looks for boxes in this many characters of an answer; boxes after them are counted by
# their closing brackets, not read.
MAX_SCAN_CHARS = 200_000


def to_plain(value: Any, depth: int = 0) -> Any:
    """Numpy arrays/scalars and tuples turned into plain lists and Python numbers, recursively.

    verl hands ground truth read from parquet as numpy object arrays of arrays; ``tolist`` alone leaves the
    inner arrays as numpy.
    """
    if depth > MAX_PLAIN_DEPTH:
        return None
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        value = value.tolist()  # numpy array -> list; numpy scalar -> Python number
    if isinstance(value, (list, tuple)):
        return [to_plain(item, depth + 1) for item in value]
    if isinstance(value, dict):
        return {key: to_plain(item, depth + 1) for key, item in value.items()}
    return value


def as_text(value: Any) -> str:
    """Model output or ground truth as a capped string; None, numbers and other junk become ''."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if not isinstance(value, str):
        return ""
    return value[:MAX_TEXT_CHARS]


def delimited_blocks(text: str, opening: str, closing: str) -> list[str]:
    """Contents of every closed ``opening ... closing`` block, left to right, non-overlapping.

    A ``str.find`` loop rather than a lazy regex: a lazy ``<tag>(.*?)</tag>`` rescans to the end of the text
    for every unclosed opening tag, which is quadratic on text made of many opening tags.
    """
    blocks, position = [], 0
    while True:
        start = text.find(opening, position)
        if start < 0:
            return blocks
        end = text.find(closing, start + len(opening))
        if end < 0:
            return blocks
        blocks.append(text[start + len(opening) : end])
        position = end + len(closing)


def tag_blocks(text: str, tag: str) -> list[str]:
    """Contents of every closed ``<tag>...</tag>`` block, left to right, non-overlapping."""
    return delimited_blocks(text, f"<{tag}>", f"</{tag}>")


def has_single_nonempty_block(text: str, tag: str) -> bool:
    """True when the text holds exactly one ``<tag>`` block and it is not blank (the format reward rule)."""
    blocks = tag_blocks(text, tag)
    return len(blocks) == 1 and bool(blocks[0].strip())


def answer_block(text: str) -> Optional[str]:
    """The first ``<answer>`` block's content, or None when there is none."""
    blocks = tag_blocks(text, "answer")
    return blocks[0] if blocks else None


def sole_answer(text: str) -> Optional[str]:
    """The answer of a model output: the content of its only ``<answer>`` block, or None.

    None when there is no answer block, several of them, or the only one lies inside a ``<think>`` block (an
    answer drafted in the reasoning is not the answer) or a ``<perception>`` block (SRPO's format: what the model
    saw is not its answer either). ``<think>`` blocks inside the answer are left out.
    """
    if len(tag_blocks(text, "answer")) != 1:
        return None
    outside = tag_blocks(strip_think_blocks(strip_blocks(text, "perception")), "answer")
    return outside[0] if len(outside) == 1 else None


def strip_blocks(text: str, tag: str) -> str:
    """The text with every closed ``<tag>...</tag>`` block removed. Linear in the text's length."""
    opening, closing = f"<{tag}>", f"</{tag}>"
    pieces, position = [], 0
    while True:
        start = text.find(opening, position)
        end = text.find(closing, start + len(opening)) if start >= 0 else -1
        if start < 0 or end < 0:
            pieces.append(text[position:])
            return "".join(pieces)
        pieces.append(text[position:start])
        position = end + len(closing)


def strip_think_blocks(text: str) -> str:
    """The text with every closed ``<think>...</think>`` block removed (reasoning is not the answer)."""
    return strip_blocks(text, "think")


def fenced_blocks(text: str, opening: str = JSON_FENCE_OPEN) -> list[str]:
    """Contents of fenced blocks that open with ``opening`` (default ```` ```json ````) and close with ```` ``` ````."""
    return delimited_blocks(text, opening, FENCE_CLOSE)


def load_json(text: str) -> tuple[bool, Any]:
    """``(ok, value)`` from ``json.loads``; deep nesting (RecursionError) and bad syntax give ``(False, None)``."""
    try:
        return True, json.loads(text)
    except (ValueError, RecursionError, TypeError):
        return False, None


def load_answer_json(text: str) -> tuple[bool, Any]:
    """``load_json``, and when that fails, again after the reference's repair of single quotes
    (``'bbox_2d'`` keys, ``'[...]'`` quoted lists), which it reads as boxes. Text over MAX_JSON_CHARS is not
    decoded: ``(False, None)``."""
    if len(text) > MAX_JSON_CHARS:
        return False, None
    ok, value = load_json(text)
    if ok:
        return ok, value
    repaired = repair_quotes(text)
    return load_json(repaired) if repaired != text else (False, None)


def _coordinate(value: Any) -> Optional[float]:
    """One coordinate as a float clipped to +-COORD_LIMIT; None for non-numbers, booleans, NaN and infinity."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # a Python int too large for a float: huge, with a known sign
        return COORD_LIMIT if value > 0 else -COORD_LIMIT
    if math.isnan(number) or math.isinf(number):
        return None
    return max(-COORD_LIMIT, min(COORD_LIMIT, number))


def box_from_numbers(values: Any) -> BoxEntry:
    """A box from a sequence of exactly four finite numbers, else None (malformed)."""
    if not isinstance(values, (list, tuple)) or len(values) != 4:
        return None
    coords = [_coordinate(v) for v in values]
    if any(c is None for c in coords):
        return None
    return (coords[0], coords[1], coords[2], coords[3])


def box_entry(item: Any) -> BoxEntry:
    """One prediction entry: a ``{"bbox_2d": [...]}`` / ``{"bbox": [...]}`` dict or a 4-number list."""
    if isinstance(item, dict):
        values = item.get("bbox_2d", item.get("bbox"))
        return box_from_numbers(values)
    return box_from_numbers(item)


def _is_flat_box(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 4 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
    )


def entries_from_json(value: Any) -> Optional[list[BoxEntry]]:
    """Box entries from a decoded JSON value; None when the value is not a box container at all.

    Accepted: a list of entries (dicts or 4-number lists), a single dict, or one flat ``[x1, y1, x2, y2]``.
    ``[]`` is a valid answer with zero boxes.
    """
    if isinstance(value, dict):
        return [box_entry(value)]
    if not isinstance(value, list):
        return None
    if _is_flat_box(value):
        return [box_from_numbers(value)]
    read = [box_entry(item) for item in value[:MAX_BOX_ENTRIES]]
    return read + [None] * (len(value) - len(read))


def entries_from_regex(text: str) -> Optional[list[BoxEntry]]:
    """Box entries in text order from every notation ``box_formats`` knows; None when there is none.

    Beyond ``MAX_BOX_ENTRIES`` candidates or ``MAX_SCAN_CHARS`` characters the rest are counted, not read
    (they stay as malformed entries).
    """
    candidates, uncounted = find_box_candidates(text, MAX_BOX_ENTRIES, MAX_SCAN_CHARS)
    entries = [None if numbers is None else _box_from_strings(numbers) for numbers in candidates]
    return entries + [None] * uncounted if entries else None


def _box_from_strings(numbers: Sequence[str]) -> BoxEntry:
    try:
        return box_from_numbers([float(number) for number in numbers])
    except ValueError:
        return None


def parse_box_entries(text: str) -> Optional[list[BoxEntry]]:
    """All box entries in an answer text, or None when no box container could be found at all.

    Order of preference: the first fenced ```` ```json ```` block, else the first plain fenced block, else the
    whole text -- decoded with ``load_answer_json``; when that fails or is not a box container, every box
    notation of ``box_formats`` in the same text. Malformed entries are kept as None so they still count as
    predictions. Evaluation and rewards both read boxes through this function.
    """
    text = as_text(text)
    candidates = fenced_blocks(text) or fenced_blocks(text, ANY_FENCE_OPEN)
    source = candidates[0] if candidates else text
    ok, value = load_answer_json(source.strip())
    entries = entries_from_json(value) if ok else None
    if entries is not None:
        return entries
    return entries_from_regex(source)


def valid_boxes(entries: Sequence[BoxEntry]) -> list[Box]:
    """The well-formed boxes among parsed entries, in order."""
    return [entry for entry in entries if entry is not None]


def readable_json_fence(answer: str) -> bool:
    """True when the answer holds exactly one ```` ```json ```` fence and it decodes (``load_answer_json``) to
    a box list whose entries are all well-formed boxes (``[]`` included). The grounding format point asks for
    this: a fence of malformed JSON is not a readable answer."""
    fences = fenced_blocks(answer)
    if len(fences) != 1:
        return False
    ok, value = load_answer_json(fences[0].strip())
    entries = entries_from_json(value) if ok else None
    return entries is not None and all(entry is not None for entry in entries)
