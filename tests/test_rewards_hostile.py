"""Hostile model outputs: every reward returns finite floats quickly and never raises.

Timing bounds are generous (seconds, not milliseconds): they catch quadratic or exponential blow-ups, not
ordinary machine noise.
"""

import json
import math
import time

import pytest

from mars.rewards import default_compute_score, grounding_score, max_grounding_score, vqa_score

TRUE = [[100, 100, 200, 300], [400, 100, 500, 300]]
TIME_LIMIT_S = 2.0


def fenced(payload: str) -> str:
    return f"<think>t</think><answer>```json\n{payload}\n```</answer>"


def thousands_of_boxes() -> str:
    """The two true boxes first, then 15000 others (about 0.8 MB)."""
    junk = [[i, i, i + 50, i + 80] for i in range(15000)]
    return fenced(json.dumps([{"bbox_2d": box, "label": "person"} for box in TRUE + junk]))


HOSTILE_OUTPUTS = {
    "thousands of boxes": thousands_of_boxes(),
    "nan inf huge": fenced(
        "[[NaN, 1, 2, 3], [Infinity, -Infinity, 1, 2], [1e308, 1e308, -1e308, 1e308], [1e999, 0, 1, 1]]"
    ),
    "huge integer": fenced("[[" + "9" * 5000 + ", 0, 1, 1]]"),
    "1 MB of text": "<think>" + "x" * 1_000_000 + "</think><answer>" + "y" * 1_000 + "</answer>",
    "10 MB of text": "<think>" + "x" * 10_000_000 + "</think><answer>[[100, 100, 200, 300]]</answer>",
    "1 MB inside the answer": "<answer>" + '"bbox_2d": [' * 80_000 + "</answer>",
    "many unclosed tags": "<think><answer>" * 70_000,
    "many unclosed fences": "<answer>" + "```json [" * 100_000 + "</answer>",
    "deep json": fenced("[" * 100_000 + "]" * 100_000),
    "deep json dicts": fenced('{"bbox_2d": ' * 50_000 + "1" + "}" * 50_000),
    "wrongly typed json": fenced('{"bbox_2d": {"x": 1}, "label": ["person"]}'),
    "strings as numbers": fenced('[{"bbox_2d": ["1", "2", "3", "4"]}]'),
    "digits without end": "<answer>[" + "1" * 1_000_000 + "</answer>",
    "regex fallback at scale": "<answer>" + '{"bbox_2d": [1, 2, 3, 4]} ,' * 40_000 + "</answer>",
    "whitespace bombs": "<answer>[" + " " * 500_000 + "1," + " " * 500_000 + "</answer>",
    "100k-character perception block": "<perception>" + "p" * 100_000 + "</perception><think>t</think><answer>B</answer>",
    "many unclosed perception tags": "<perception><answer>B</answer>" * 50_000,
    "none": None,
    "int": 12345,
    "bytes": b"<answer>[[100, 100, 200, 300]]</answer>",
    "list": ["<answer>", "</answer>"],
}


def assert_finite_floats(result: dict) -> None:
    assert all(type(value) is float and math.isfinite(value) for value in result.values()), result


@pytest.mark.parametrize("name", list(HOSTILE_OUTPUTS))
def test_grounding_survives(name):
    start = time.perf_counter()
    result = grounding_score(HOSTILE_OUTPUTS[name], TRUE)
    assert time.perf_counter() - start < TIME_LIMIT_S
    assert_finite_floats(result)
    assert 0.0 <= result["score"] <= max_grounding_score(len(TRUE))
    assert result["error"] == 0.0  # handled as data, not through the exception guard


@pytest.mark.parametrize("name", list(HOSTILE_OUTPUTS))
def test_vqa_survives(name):
    start = time.perf_counter()
    result = vqa_score(HOSTILE_OUTPUTS[name], "B")
    assert time.perf_counter() - start < TIME_LIMIT_S
    assert_finite_floats(result)
    assert 0.0 <= result["score"] <= 1.5


def test_thousands_of_boxes_are_matched_and_penalised():
    result = grounding_score(HOSTILE_OUTPUTS["thousands of boxes"], TRUE)
    # Entries past MAX_BOX_ENTRIES are counted, not read, so the fence is not a readable answer (no json point).
    assert result["format"] == 0.5
    # Both true boxes are found (they come first), and the full over-prediction penalty takes it all back.
    assert result["iou"] == 0.0
    assert grounding_score(fenced(json.dumps(TRUE)), TRUE)["iou"] == pytest.approx(1 + 0.3 * math.log(2))


def test_regex_fallback_counts_every_entry():
    result = grounding_score(HOSTILE_OUTPUTS["regex fallback at scale"], [[1, 2, 3, 4]])
    assert result["format"] == 0.25 and result["iou"] == 0.0  # one match, 39999 surplus boxes


def test_text_beyond_the_cap_is_ignored():
    assert grounding_score(HOSTILE_OUTPUTS["10 MB of text"], TRUE)["score"] == 0.0


def test_hostile_ground_truth_and_extra_info():
    weird_extra = {"coord_format": "qwen2_5_vl", "image_size": [1e300, float("nan")], "max_pixels": -1}
    for ground_truth in ("[" * 100_000, float("nan"), object(), [[math.inf, 0, 1, 1]], {"a": 1}):
        for task_result in (
            grounding_score(fenced("[[1, 2, 3, 4]]"), ground_truth, weird_extra),
            vqa_score("<answer>B</answer>", ground_truth, weird_extra),
            default_compute_score("x", fenced("[[1, 2, 3, 4]]"), ground_truth, weird_extra),
        ):
            assert_finite_floats(task_result)


def test_unexpected_exception_becomes_error_entry(monkeypatch, caplog):
    from mars.rewards import grounding

    def explode(_):
        raise RuntimeError("bug")

    monkeypatch.setattr(grounding, "grounding_format_score", explode)
    first = grounding_score("<answer>[]</answer>", [])
    second = grounding_score("<answer>[]</answer>", [])
    assert first == second == {"score": 0.0, "format": 0.0, "iou": 0.0, "coord_error": 0.0, "error": 1.0}
    assert sum("raised" in record.getMessage() for record in caplog.records) == 1


def test_srpos_format_is_read_and_an_answer_in_the_perception_block_is_not_the_answer():
    perceived = "<perception>The infrared image shows: B</perception><think>so B</think><answer>B</answer>"
    assert vqa_score(perceived, "B")["score"] == vqa_score("<think>so B</think><answer>B</answer>", "B")["score"]
    drafted = "<perception><answer>B</answer></perception><think>t</think>"
    assert vqa_score(drafted, "B")["score"] < vqa_score(perceived, "B")["score"]
