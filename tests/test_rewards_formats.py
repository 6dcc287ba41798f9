"""Box notations, read alike by the reward and the evaluation (issue 10, items 1, 10, 12, 13)."""

import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mars.evaluation.evaluate import grounding_sample, prediction_text
from mars.rewards import grounding_score, parsing
from mars.rewards.grounding import answer_box_entries, grounding_format_score

FAST = settings(max_examples=60, deadline=None, database=None)
TRUE = [[100, 100, 200, 300]]
BOX = (100.0, 100.0, 200.0, 300.0)

# Every notation the reference reads (its evaluator's and its reward's), inside the fenced answer.
REFERENCE_NOTATIONS = {
    "point pairs": "(100,100),(200,300)",
    "point pairs, spaced": "(100, 100), (200, 300)",
    "decimal point pairs": "(100.0,100.0),(200.0,300.0)",
    "box tag": "<box>100 100 200 300</box>",
    "decimal tuple": "(100.0, 100.0, 200.0, 300.0)",
    "decimal list": "[100.0, 100.0, 200.0, 300.0]",
    "integer list": "[100, 100, 200, 300]",
    "single-quoted key": "[{'bbox_2d': [100, 100, 200, 300], 'label': 'person'}]",
    "quoted list": '[{"bbox_2d": \'[100, 100, 200, 300]\', "label": "person"}]',
}


def fenced(body: str) -> str:
    return f"<think>one person</think><answer>```json\n{body}\n```</answer>"


@pytest.mark.parametrize("name", list(REFERENCE_NOTATIONS))
def test_every_reference_notation_is_read_by_reward_and_evaluation(name):
    text = fenced(REFERENCE_NOTATIONS[name])
    assert answer_box_entries(text) == [BOX]
    assert grounding_score(text, TRUE)["iou"] == pytest.approx(1.0)
    sample = grounding_sample(text, TRUE)
    assert sample.parsed and sample.mean_iou == pytest.approx(1.0)


def test_notations_we_read_beyond_the_reference_still_work():
    assert parsing.parse_box_entries("[1e2, 1E2, +2e2, 300]") == [BOX]
    assert parsing.parse_box_entries('{"bbox": [100, 100, 200, 300]}') == [BOX]
    assert parsing.parse_box_entries("[100, 100.0, 200, 300.0]") == [BOX]  # mixed: not read by the reference


def test_quoted_list_box_counts_among_several_boxes():
    # Before: JSON failed and the keyed regex skipped the quoted list, so the box vanished entirely.
    body = '[{"bbox_2d": [400, 100, 500, 300], "label": "person"}, {"bbox_2d": \'[716, 114, 845, 446]\', "label": "person"}]'
    entries = parsing.parse_box_entries(body)
    assert entries == [(400.0, 100.0, 500.0, 300.0), (716.0, 114.0, 845.0, 446.0)]
    truth = [[400, 100, 500, 300], [716, 114, 845, 446]]
    assert grounding_score(fenced(body), truth)["score"] == pytest.approx(grounding_score(fenced(json.dumps(truth)), truth)["score"])


def test_json_fence_point_needs_a_readable_answer():
    degenerate = "<think>I find 2 people people people</think><answer>```json\n[{\"bbox_2d\": [100, 100, 200, 300], \"label\": person people\n```</answer>"
    assert grounding_format_score(degenerate) == 0.5  # was 0.75
    assert grounding_format_score(fenced('[{"bbox_2d": [1, 2, 3]}]')) == 0.5  # decodes, but not a box
    assert grounding_format_score(fenced('["person"]')) == 0.5
    assert grounding_format_score(fenced("[]")) == 0.75  # nobody there: a readable answer
    assert grounding_format_score(fenced(REFERENCE_NOTATIONS["quoted list"])) == 0.75  # the reference reads it


def test_json_fence_point_only_for_the_sole_answer():
    one = fenced("[[100, 100, 200, 300]]")
    two = one + "<answer>```json\n[[0, 0, 1, 1]]\n```</answer>"
    assert grounding_format_score(one) == 0.75
    assert grounding_format_score(two) == 0.25  # the reference also withholds the answer and json points


@pytest.mark.parametrize("text", [
    "<think>t</think><answer>[[100, 100, 200, 300]]</answer><answer>[[100, 100, 200, 300]]</answer>",
    "<think>draft <answer>[[100, 100, 200, 300]]</answer></think>",
    "<think>draft <answer>[[100, 100, 200, 300]]</answer></think><answer>[[100, 100, 200, 300]]</answer>",
])
def test_answer_must_be_one_block_outside_think(text):
    assert grounding_score(text, TRUE)["iou"] == 0.0
    assert prediction_text(text) == ""  # the evaluation reads no answer either
    assert not grounding_sample(text, TRUE).parsed


# Notation writers for the agreement property: the reward and the evaluation must read the same boxes.
WRITERS = [
    lambda b: json.dumps({"bbox_2d": b, "label": "person"}),
    lambda b: json.dumps(b),
    lambda b: f"({b[0]},{b[1]}),({b[2]},{b[3]})",
    lambda b: f"<box>{b[0]} {b[1]} {b[2]} {b[3]}</box>",
    lambda b: f"({b[0]}.0, {b[1]}.0, {b[2]}.0, {b[3]}.0)",
    lambda b: "{'bbox_2d': '[" + ", ".join(map(str, b)) + "]'}",
    lambda b: f"[{b[0]}, {b[1]}, {b[2]}]",
]
small_box = st.tuples(*[st.integers(0, 500)] * 4).map(list)


@FAST
@given(
    st.lists(st.tuples(small_box, st.integers(0, len(WRITERS) - 1)), max_size=5),
    st.sampled_from(["```json\n{}\n```", "{}", "```\n{}\n```", "I see them: {} done"]),
    st.sampled_from(["<think>t</think><answer>{}</answer>", "<answer>{}</answer>"]),
)
def test_reward_and_evaluation_read_the_same_boxes(boxes, body_shape, outer):
    body = body_shape.format("[" + ", ".join(WRITERS[k](b) for b, k in boxes) + "]")
    text = outer.format(body)
    assert answer_box_entries(text) == parsing.parse_box_entries(prediction_text(text))


@pytest.mark.parametrize("unit", ["[1,2,3,4]", "[1,2,3,4],", '{"bbox_2d": [1, 2, 3, 4]}, ', "(1,2),(3,4) ", "["])
def test_two_megabytes_of_boxes_score_quickly(unit):
    # 2 to 4 s per call before; benchmarks/bench_rewards.py shows the margin under the 0.3 s bound.
    text = "<think>t</think><answer>" + unit * ((parsing.MAX_TEXT_CHARS - 100) // len(unit)) + "</answer>"
    start = time.perf_counter()
    result = grounding_score(text, [[1, 2, 3, 4]])
    assert time.perf_counter() - start < 1.5
    assert result["iou"] == 0.0 and result["error"] == 0.0  # hundreds of thousands of surplus boxes


def test_boxes_past_the_cap_are_counted_for_the_penalty():
    surplus = "[5, 5, 9, 9] " * (parsing.MAX_BOX_ENTRIES + 500)
    entries = parsing.parse_box_entries("[100, 100, 200, 300] " + surplus)
    assert len(entries) >= parsing.MAX_BOX_ENTRIES + 501
    assert entries[0] == BOX and len(parsing.valid_boxes(entries)) == parsing.MAX_BOX_ENTRIES
