"""Evaluation: oracle results built from the three reference files, unparsed predictions, report maths."""

import json
from pathlib import Path

import pytest

from mars.evaluation import cli, evaluate
from mars.evaluation.evaluate import (
    GroundingSample,
    grounding_report,
    grounding_sample,
    prediction_text,
    reference_vqa_match,
    vqa_sample,
)
from mars.rewards.coords import CoordSettings

# Shipped with the tests (tests/data/reference-data/README.md); the oracle tests fail, never skip, without them.
REFERENCE_DATA = Path(__file__).resolve().parent / "data" / "reference-data"


def oracle_grounding_answer(true_boxes) -> str:
    payload = json.dumps([{"bbox_2d": box, "label": "person"} for box in true_boxes])
    return f"<think>I see {len(true_boxes)} people.</think><answer>```json\n{payload}\n```</answer>"


def write_oracle(reference_name: str, tmp_path: Path) -> Path:
    questions = json.loads((REFERENCE_DATA / reference_name).read_text())
    assert questions, f"{reference_name} is empty"
    results = []
    for question in questions:
        truth = question["ground_truth"]
        text = oracle_grounding_answer(truth) if isinstance(truth, list) else f"<answer>{truth}</answer>"
        results.append({"content": [text], "ground_truth": truth})
    path = tmp_path / reference_name.replace("_eval", "_results")
    path.write_text(json.dumps(results))
    return path


@pytest.mark.parametrize(
    "reference_name,task,samples",
    [
        ("llvip_eval.json", "grounding", 3463),
        ("OCR-VQA_eval.json", "vqa", 73),
        ("spatialqa_eval.json", "vqa", 80),
        ("nuscenes_eval.json", "vqa", 100),
    ],
)
def test_oracle_results_score_perfectly(reference_name, task, samples, tmp_path, capsys):
    results = write_oracle(reference_name, tmp_path)
    assert cli.main([str(results), task, "0.5"]) == 0
    report = json.loads(results.with_suffix(".report.json").read_text())
    assert report["samples"] == samples and report["unparsed"] == 0
    assert report["accuracy"] == 100.0
    if task == "grounding":
        assert report["mean_iou"] == 1.0
        assert report["accuracy_at_50"] == report["accuracy_at_75"] == report["accuracy_50_95"] == 100.0
    else:
        assert report["accuracy_strict"] == 100.0
    assert report["accuracy_reference"] == 100.0
    assert "100.00" in capsys.readouterr().out


def test_nuscenes_alternatives_each_count_as_right(tmp_path):
    """nuScenes writes ground truths as alternatives ("two or 2"): each one alone is a right answer."""
    questions = json.loads((REFERENCE_DATA / "nuscenes_eval.json").read_text())
    last = [q["ground_truth"].split(" or ")[-1] for q in questions]
    results = tmp_path / "nuscenes_results.json"
    results.write_text(json.dumps([
        {"content": [f"<think>look</think><answer>{answer}</answer>"], "ground_truth": q["ground_truth"]}
        for q, answer in zip(questions, last)
    ]))
    assert cli.main([str(results), "vqa"]) == 0
    report = json.loads(results.with_suffix(".report.json").read_text())
    assert report["accuracy_strict"] == 100.0
    # The reference needs the whole phrase "two or 2" in the generation (its reverse test looks for the whole
    # generation in the ground truth), so each of the 32 answers that give one alternative fails there.
    assert sum(" or " in q["ground_truth"] for q in questions) == 32
    assert report["accuracy_reference"] == 68.0


def test_unparsed_prediction_is_counted_as_a_failure(tmp_path):
    results = tmp_path / "results.json"
    items = [
        {"content": [oracle_grounding_answer([[0, 0, 10, 10]])], "ground_truth": [[0, 0, 10, 10]]},
        {"content": ["<answer>I could not find anyone.</answer>"], "ground_truth": [[0, 0, 10, 10]]},
        {"content": "<answer>[]</answer>", "ground_truth": []},  # a plain string; [] is a parsed answer
    ]
    results.write_text(json.dumps(items))
    assert cli.main([str(results), "grounding", "0.5"]) == 0
    report = json.loads((tmp_path / "results.report.json").read_text())
    assert report["unparsed"] == 1
    assert report["accuracy"] == pytest.approx(200 / 3)
    # The reference skips both answers without a json fence (the [] too) and says 100% (1 of 1).
    assert (report["accuracy_reference"], report["reference_skipped"]) == (100.0, 2)
    assert "accuracy_parsed_only" not in report
    assert report["mean_iou"] == pytest.approx(2 / 3)


def test_unparsed_vqa_prediction_is_counted(tmp_path):
    results = tmp_path / "vqa.json"
    results.write_text(json.dumps([
        {"content": ["<answer>Yes</answer>"], "ground_truth": "Yes"},
        {"content": ["<think>hmm</think><answer> </answer>"], "ground_truth": "No"},
    ]))
    assert cli.main([str(results), "vqa", "0.5"]) == 0
    report = json.loads((tmp_path / "vqa.report.json").read_text())
    assert (report["unparsed"], report["accuracy"], report["accuracy_reference"]) == (1, 50.0, 50.0)


def test_prediction_text_falls_back_to_text_without_think():
    assert prediction_text("<think>[[1, 2, 3, 4]]</think>[[5, 6, 7, 8]]") == "[[5, 6, 7, 8]]"
    assert prediction_text("<think>x</think><answer>B</answer> trailing") == "B"


def test_grounding_sample_rules():
    assert grounding_sample("[[0, 0, 10, 10]]", [[0, 0, 10, 10], [20, 20, 30, 30]]).mean_iou == 0.5
    def verdict(sample):
        return sample.mean_iou, sample.parsed

    assert verdict(grounding_sample("[]", [])) == (1.0, True)
    assert verdict(grounding_sample("[[0, 0, 1, 1]]", [])) == (0.0, True)
    assert verdict(grounding_sample('[{"bbox_2d": "junk"}]', [[0, 0, 1, 1]])) == (0.0, False)
    assert verdict(grounding_sample("no idea", [])) == (0.0, False)


def test_grounding_sample_converts_coordinates_when_asked():
    settings = CoordSettings(coord_format="qwen3_vl", image_size=(1280.0, 1024.0))
    assert grounding_sample("[[0, 0, 500, 500]]", [[0, 0, 640, 512]], settings).mean_iou == pytest.approx(1.0)


def test_threshold_is_strict_and_averaged_over_50_95():
    samples = [GroundingSample(0.5, True), GroundingSample(0.8, True), GroundingSample(1.0, True)]
    report = grounding_report(samples, 0.5)
    assert report["accuracy"] == pytest.approx(200 / 3)  # 0.5 is not above 0.5
    assert report["accuracy_at_75"] == pytest.approx(200 / 3)
    # Thresholds 0.50..0.95: IoU 1.0 passes all ten, 0.8 passes 0.50..0.75 (six), 0.5 passes none.
    assert report["accuracy_50_95"] == pytest.approx(100 * (10 + 6) / 30)
    assert report["mean_iou"] == pytest.approx(2.3 / 3)


@pytest.mark.parametrize("prediction,truth,expected", [
    ("D. Medical Books", "D", True),
    ("Yes, the person is there", "Yes", True),
    ("medical", "Medical Books", True),  # reverse direction, as the reference does
    ("", "Yes", False),
    ("yesterday", "Yes", False),
])
def test_reference_vqa_rule(prediction, truth, expected):
    assert reference_vqa_match(prediction, truth) is expected


def test_vqa_sample_strict_rule_is_reported_too():
    sample = vqa_sample("<answer>This is a book</answer>", "A")
    assert sample.correct and not sample.strict_correct  # the article "a" fools the reference rule only


def test_format_report_names_every_number():
    text = evaluate.format_report(grounding_report([GroundingSample(1.0, True), GroundingSample(0.0, False)], 0.5))
    assert "unparsed (counted as wrong)" in text and "mean IoU" in text and "skipped" in text
