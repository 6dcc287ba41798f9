"""Grounding reward: format part, IoU part, ground-truth forms, coordinates, verl wrapper."""

import json
import math

import numpy as np
import pytest

from mars.rewards import GROUNDING_KEYS, grounding_reward, grounding_score, max_grounding_score
from mars.rewards.grounding import grounding_format_score, parse_ground_truth_boxes
from utils.reward_score.grounding import compute_score

TRUE = [[100, 100, 200, 300], [400, 100, 500, 300]]


def answer(boxes, think="two people", label="person"):
    payload = json.dumps([{"bbox_2d": box, "label": label} for box in boxes])
    return f"<think>{think}</think><answer>```json\n{payload}\n```</answer>"


def test_perfect_answer_scores_the_maximum():
    result = grounding_score(answer(TRUE), TRUE)
    assert result["format"] == 0.75
    assert result["iou"] == pytest.approx(1 + 0.3 * math.log(2))
    assert result["score"] == pytest.approx(max_grounding_score(2))
    assert set(result) == set(GROUNDING_KEYS) and result["error"] == 0.0


@pytest.mark.parametrize(
    "text,expected",
    [
        ("<think>t</think><answer>```json\n[]\n```</answer>", 0.75),
        ("<answer>```json\n[]\n```</answer>", 0.5),
        ("<think></think><answer>```json\n[]\n```</answer>", 0.5),
        ("<think>t</think><answer>[]</answer>", 0.5),
        ("<think>t</think><answer>```json\n[]\n``````json\n[]\n```</answer>", 0.5),
        ("<think>t</think><think>u</think>", 0.0),
        ("", 0.0),
    ],
)
def test_format_part(text, expected):
    assert grounding_format_score(text) == expected


@pytest.mark.parametrize(
    "ground_truth",
    [TRUE, json.dumps(TRUE), f"<answer>{json.dumps(TRUE)}</answer>", np.array(TRUE), tuple(map(tuple, TRUE))],
)
def test_ground_truth_forms(ground_truth):
    assert parse_ground_truth_boxes(ground_truth) == [tuple(map(float, box)) for box in TRUE]
    assert grounding_score(answer(TRUE), ground_truth)["iou"] == pytest.approx(1 + 0.3 * math.log(2))


@pytest.mark.parametrize("ground_truth", ["person at left", "[[1, 2, 3]]", None, [[1, 2, "x", 4]], 5])
def test_unreadable_ground_truth_is_an_error_entry_not_an_exception(ground_truth):
    result = grounding_score(answer(TRUE), ground_truth)
    assert result["error"] == 1.0 and result["iou"] == 0.0
    assert result["score"] == result["format"] == 0.75


def test_low_overlap_earns_no_iou_and_surplus_boxes_are_penalised():
    assert grounding_score(answer([[100, 100, 200, 140]]), [[100, 100, 200, 300]])["iou"] == 0.0
    one_true = [[100, 100, 200, 300]]
    doubled = grounding_score(answer(one_true + [[400, 400, 450, 450]]), one_true)
    assert doubled["iou"] == pytest.approx(1.0 - 0.5)


def test_malformed_entries_count_for_the_penalty():
    one_true = [[100, 100, 200, 300]]
    text = '<answer>```json\n[{"bbox_2d": [100, 100, 200, 300]}, {"bbox_2d": [1, 2]}, {"bbox_2d": null}]\n```</answer>'
    assert grounding_score(text, one_true)["iou"] == pytest.approx(1.0 - 1.0)  # penalty min(0.5 * 2, 1)


def test_boxes_outside_the_answer_block_do_not_count():
    assert grounding_score(f"<think>{json.dumps(TRUE)}</think>", TRUE)["iou"] == 0.0


def test_empty_ground_truth():
    assert grounding_score("<answer>[]</answer>", [])["iou"] == 1.0
    assert grounding_score(answer(TRUE), [])["iou"] == 0.0
    assert grounding_score("<answer>no boxes here</answer>", [])["iou"] == 0.0  # unparseable earns nothing


def test_qwen3_vl_coordinates_are_converted_before_matching():
    # 0..1000 relative coordinates of the two true boxes in a 1280x1024 image.
    relative = [[x1 / 1.28, y1 / 1.024, x2 / 1.28, y2 / 1.024] for x1, y1, x2, y2 in TRUE]
    extra_info = {"coord_format": "qwen3_vl", "image_size": [1280, 1024]}
    converted = grounding_score(answer(relative), TRUE, extra_info)
    assert converted["iou"] == pytest.approx(1 + 0.3 * math.log(2))
    assert converted["coord_error"] == 0.0
    assert grounding_score(answer(relative), TRUE)["iou"] < converted["iou"]


def test_missing_image_size_is_recorded():
    result = grounding_score(answer(TRUE), TRUE, {"coord_format": "qwen2_5_vl"})
    assert result["coord_error"] == 1.0
    assert result["iou"] == pytest.approx(1 + 0.3 * math.log(2))  # compared as written


def test_verl_wrapper_and_plain_float():
    result = compute_score("llvip", answer(TRUE), f"<answer>{json.dumps(TRUE)}</answer>", {"sample_id": 3})
    assert all(type(value) is float for value in result.values())
    assert result["score"] == grounding_reward(answer(TRUE), TRUE)


def test_dispatcher_follows_the_schemas_reward_key():
    from mars.rewards import task_of

    # a VQA answer that happens to look like a box list is still scored as VQA when the row says so
    assert task_of("[[1, 2, 3, 4]]", {"reward": "vqa", "task": "multiview_vqa"}) == "vqa"
    assert task_of("Yes", {"reward": "grounding"}) == "grounding"
    assert task_of("[[1, 2, 3, 4]]", {"task": "ir_grounding"}) == "grounding"  # falls back to the ground truth
