"""Tagged blocks, fences and box parsing of model outputs."""

import numpy as np

from mars.rewards import parsing
from mars.rewards.parsing import COORD_LIMIT, parse_box_entries


def test_tag_blocks_finds_closed_blocks_in_order():
    text = "<think>a</think> x <think>b</think><think>unclosed"
    assert parsing.tag_blocks(text, "think") == ["a", "b"]


def test_single_nonempty_block_rule():
    assert parsing.has_single_nonempty_block("<think> why </think>", "think")
    assert not parsing.has_single_nonempty_block("<think>  </think>", "think")
    assert not parsing.has_single_nonempty_block("<think>a</think><think>b</think>", "think")
    assert not parsing.has_single_nonempty_block("no tags", "think")


def test_strip_think_blocks_keeps_the_rest():
    assert parsing.strip_think_blocks("<think>[1,2,3,4]</think>final") == "final"
    assert parsing.strip_think_blocks("<think>open only") == "<think>open only"


def test_prefers_fenced_json_over_surrounding_text():
    text = 'draft [0, 0, 1, 1] ```json\n[{"bbox_2d": [10, 20, 30, 40], "label": "person"}]\n``` done'
    assert parse_box_entries(text) == [(10.0, 20.0, 30.0, 40.0)]


def test_accepts_bbox_key_single_dict_and_plain_lists():
    assert parse_box_entries('{"bbox": [1, 2, 3, 4]}') == [(1.0, 2.0, 3.0, 4.0)]
    assert parse_box_entries("[[1, 2, 3, 4], [5, 6, 7, 8]]") == [(1.0, 2.0, 3.0, 4.0), (5.0, 6.0, 7.0, 8.0)]
    assert parse_box_entries("[1, 2, 3, 4]") == [(1.0, 2.0, 3.0, 4.0)]
    assert parse_box_entries("```\n[[1, 2, 3, 4]]\n```") == [(1.0, 2.0, 3.0, 4.0)]


def test_explicit_empty_list_is_parsed_with_zero_boxes():
    assert parse_box_entries("```json\n[]\n```") == []


def test_nothing_parseable_gives_none():
    assert parse_box_entries("I cannot see anyone.") is None
    assert parse_box_entries('"just a string"') is None
    assert parse_box_entries("") is None


def test_regex_fallback_on_broken_json():
    text = '```json\n[{"bbox_2d": [1, 2, 3, 4], "label": "person"}, {"bbox_2d": [5, 6, 7, 8], "label": \n```'
    assert parse_box_entries(text) == [(1.0, 2.0, 3.0, 4.0), (5.0, 6.0, 7.0, 8.0)]


def test_malformed_entries_are_kept_as_none():
    text = '[{"bbox_2d": [1, 2, 3]}, {"bbox_2d": "x"}, {"label": "person"}, [1, 2, 3, 4], [true, 1, 2, 3], 7]'
    assert parse_box_entries(text) == [None, None, None, (1.0, 2.0, 3.0, 4.0), None, None]


def test_nan_infinity_are_malformed_and_huge_values_clipped():
    entries = parse_box_entries("[[NaN, 1, 2, 3], [Infinity, 1, 2, 3], [1e308, -1e308, 2, 3]]")
    assert entries[:2] == [None, None]
    assert entries[2] == (COORD_LIMIT, -COORD_LIMIT, 2.0, 3.0)


def test_python_int_too_large_for_float_is_clipped():
    assert parsing.box_from_numbers([10**400, -(10**400), 1, 2]) == (COORD_LIMIT, -COORD_LIMIT, 1.0, 2.0)


def test_to_plain_unwraps_numpy_object_arrays():
    nested = np.empty(2, dtype=object)
    nested[0], nested[1] = np.array([1, 2, 3, 4]), np.array([5, 6, 7, 8])
    plain = parsing.to_plain(nested)
    assert plain == [[1, 2, 3, 4], [5, 6, 7, 8]]
    assert all(type(v) is int for v in plain[0])


def test_as_text_rejects_non_strings_and_caps_length():
    assert parsing.as_text(None) == "" and parsing.as_text(42) == ""
    assert parsing.as_text(b"<answer>x</answer>") == "<answer>x</answer>"
    assert len(parsing.as_text("x" * (parsing.MAX_TEXT_CHARS + 10))) == parsing.MAX_TEXT_CHARS
