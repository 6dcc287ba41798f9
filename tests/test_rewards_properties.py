"""Property tests: rewards stay finite and inside their documented ranges for arbitrary inputs."""

import itertools
import json
import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mars.evaluation.evaluate import grounding_sample
from mars.rewards import boxes, grounding_score, max_grounding_score, vqa_score

# No example database: keeps the test run from writing .hypothesis/ into the repository.
FAST = settings(max_examples=60, deadline=None, database=None)

coordinate = st.floats(min_value=-2000, max_value=2000, allow_nan=False)
any_number = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(), coordinate)


@st.composite
def proper_box(draw):
    x1, y1 = draw(coordinate), draw(coordinate)
    width = draw(st.floats(min_value=1, max_value=500))
    height = draw(st.floats(min_value=1, max_value=500))
    return [x1, y1, x1 + width, y1 + height]


any_box = st.lists(any_number, min_size=4, max_size=4)
json_entry = st.one_of(
    st.fixed_dictionaries({"bbox_2d": any_box, "label": st.just("person")}),
    st.fixed_dictionaries({"bbox_2d": st.one_of(st.none(), st.text(max_size=5), st.lists(any_number, max_size=6))}),
    any_box,
    st.integers(),
)
tag_soup = st.lists(
    st.sampled_from(["<think>", "</think>", "<answer>", "</answer>", "```json", "```", "[", "]", "{", "}",
                     '"bbox_2d":', ",", "1", "-5e3", "NaN", "person", " ", "\n", "A", "Yes"]),
    max_size=60,
).map("".join)


def answer_with(entries) -> str:
    return f"<think>t</think><answer>```json\n{json.dumps(entries)}\n```</answer>"


@FAST
@given(st.lists(proper_box(), max_size=6), st.lists(proper_box(), max_size=6))
def test_iou_matrix_is_symmetric_and_bounded(first, second):
    forward, backward = boxes.iou_matrix(first, second), boxes.iou_matrix(second, first)
    assert np.allclose(forward, backward.T)
    assert np.all((forward >= 0) & (forward <= 1))


@FAST
@given(proper_box())
def test_box_with_itself_has_iou_one(box):
    assert math.isclose(boxes.iou_matrix([box], [box])[0, 0], 1.0, rel_tol=1e-9)


def greedy_total(ious: np.ndarray) -> float:
    """Repeatedly take the highest remaining pair: the baseline the optimal matching must not lose to."""
    total, ious = 0.0, ious.copy()
    for _ in range(min(ious.shape)):
        row, col = np.unravel_index(np.argmax(ious), ious.shape)
        total += ious[row, col]
        ious[row, :], ious[:, col] = -1.0, -1.0
    return total


@FAST
@given(st.lists(proper_box(), min_size=1, max_size=6), st.lists(proper_box(), min_size=1, max_size=5))
def test_hungarian_is_optimal(predicted, true):
    ious = boxes.iou_matrix(predicted, true)
    hungarian = boxes.matched_ious(predicted, true).sum()
    assert hungarian >= greedy_total(ious) - 1e-9
    if len(predicted) <= 4 and len(true) <= 4:  # brute force over all assignments agrees
        best = max(
            sum(ious[p, t] for p, t in zip(perm, range(len(true))) if p is not None)
            for perm in itertools.permutations(list(range(len(predicted))) + [None] * len(true), len(true))
        )
        assert math.isclose(hungarian, best, abs_tol=1e-9)


@FAST
@given(st.lists(proper_box(), max_size=8, unique_by=tuple))
def test_oracle_prediction_scores_the_maximum(true):
    # Distinct true boxes: a box may earn only against the one true box it overlaps most, so a ground truth
    # that lists one box twice can be matched once (issue 10, item 11).
    result = grounding_score(answer_with([{"bbox_2d": box, "label": "person"} for box in true]), true)
    assert math.isclose(result["score"], max_grounding_score(len(true)), rel_tol=1e-9)
    assert grounding_sample(answer_with(true), true).mean_iou == 1.0


@FAST
@given(st.lists(json_entry, max_size=12), st.lists(proper_box(), max_size=8))
def test_grounding_score_in_range_for_arbitrary_boxes(entries, true):
    result = grounding_score(answer_with(entries), true)
    assert all(math.isfinite(value) for value in result.values())
    assert 0.0 <= result["score"] <= max_grounding_score(len(true)) + 1e-9
    assert 0.0 <= result["format"] <= 0.75 and result["error"] == 0.0


@FAST
@given(tag_soup, st.lists(proper_box(), max_size=4))
def test_grounding_score_in_range_for_arbitrary_text(text, true):
    result = grounding_score(text, true)
    assert all(math.isfinite(value) for value in result.values())
    assert 0.0 <= result["score"] <= max_grounding_score(len(true)) + 1e-9 and result["error"] == 0.0


@FAST
@given(
    st.one_of(tag_soup, st.text(max_size=200)),
    st.one_of(st.sampled_from(["A", "D", "Yes", "No"]), st.text(max_size=20)),
)
def test_vqa_score_in_range(text, truth):
    result = vqa_score(text, truth)
    assert result["score"] in {0.0, 0.25, 0.5, 1.0, 1.25, 1.5}
    assert result["accuracy"] in {0.0, 1.0} and result["error"] == 0.0
    assert result["score"] == result["format"] + result["accuracy"]


@FAST
@given(st.sampled_from(["A", "B", "C", "D", "Yes", "No", "Travel", "red car"]))
def test_vqa_oracle_scores_the_maximum(truth):
    assert vqa_score(f"<think>t</think><answer>{truth}</answer>", truth)["score"] == 1.5
