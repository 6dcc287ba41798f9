"""Evaluation numbers on the edges: an empty file, empty generations, ground truths no answer can match."""

from __future__ import annotations

import json

import pytest

from mars.evaluation import evaluate
from mars.evaluation.cli import main


def run(tmp_path, items, task):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(items))
    code = main([str(path), task])
    report = json.loads((tmp_path / "results.report.json").read_text()) if code == 0 else None
    return code, report


@pytest.mark.parametrize("task", ["vqa", "grounding"])
def test_an_empty_file_reports_zero_samples_and_no_rates(tmp_path, task, capsys):
    code, _ = run(tmp_path, [], task)
    assert code == 0
    report = evaluate.vqa_report([]) if task == "vqa" else evaluate.grounding_report([], 0.5)
    assert report["samples"] == 0
    assert not {"accuracy", "precision", "recall", "f1", "accuracy_reference"} & set(report)
    assert "No samples" in capsys.readouterr().out


@pytest.mark.parametrize("content", ["", [""], [None], [123], []])
def test_an_empty_generation_is_wrong_and_the_reference_difference_is_named(content):
    text = evaluate.generated_text(content)
    samples = [evaluate.vqa_sample(text, "yes"), evaluate.vqa_sample("<answer>yes</answer>", "yes")]
    report = evaluate.vqa_report(samples)
    assert report["accuracy"] == 50.0 and report["unparsed"] == 1
    # the reference's regex for an empty prediction (\b\b) matches: it counts the empty item as correct
    assert report["accuracy_reference"] == 100.0 and report["reference_empty_counted_correct"] == 1
    assert "empty generation as correct" in report["note"]


@pytest.mark.parametrize("truth, message", [
    (float("nan"), "is not an answer"), (True, "is not an answer"), ([False], "is not an answer"),
])
def test_vqa_ground_truths_that_are_not_answers_are_refused_naming_the_item(tmp_path, truth, message, capsys):
    items = [{"content": ["<answer>yes</answer>"], "ground_truth": "yes"},
             {"content": ["<answer>nan</answer>"], "ground_truth": truth}]
    path = tmp_path / "results.json"
    path.write_text(json.dumps(items, allow_nan=True))
    assert main([str(path), "vqa"]) == 2
    err = capsys.readouterr().err
    assert "item 1" in err and message in err


def test_numbers_are_answers(tmp_path):
    code, report = run(tmp_path, [{"content": ["<answer>5</answer>"], "ground_truth": 5}], "vqa")
    assert code == 0 and report["accuracy"] == 100.0


@pytest.mark.parametrize("box", [[10, 10, 5, 20], [10, 10, 20, 10]])
def test_an_inverted_or_empty_true_box_is_refused(tmp_path, box, capsys):
    items = [{"content": ["<answer>[[1, 1, 9, 9]]</answer>"], "ground_truth": [[1, 1, 9, 9]]},
             {"content": ["<answer>[[1, 1, 9, 9]]</answer>"], "ground_truth": [box]}]
    path = tmp_path / "results.json"
    path.write_text(json.dumps(items))
    assert main([str(path), "grounding"]) == 2
    err = capsys.readouterr().err
    assert "item 1" in err and "inverted" in err
