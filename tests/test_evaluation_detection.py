"""Detection metrics: precision, recall and F1 with one-to-one matching (issue 10, item 4)."""

import json
from pathlib import Path

import pytest

from mars.evaluation import cli, evaluate
from mars.evaluation.evaluate import grounding_report, grounding_sample

LLVIP = Path(__file__).parent / "data" / "reference-data" / "llvip_eval.json"


def answer(boxes) -> str:
    payload = json.dumps([{"bbox_2d": list(box), "label": "person"} for box in boxes])
    return f"<think>t</think><answer>```json\n{payload}\n```</answer>"


def test_duplicates_and_extra_boxes_are_false_positives():
    true = [[0, 0, 10, 10]]
    samples = [grounding_sample(answer([[0, 0, 10, 10]] * 3 + [[50, 50, 60, 60]]), true)]
    report = grounding_report(samples, 0.5)
    assert report["accuracy"] == 100.0  # the reference-compatible accuracy does not see the extra boxes
    assert (report["precision"], report["recall"]) == (25.0, 100.0)
    assert report["f1"] == pytest.approx(40.0)  # 2 * 1 / (4 + 1)


def test_f1_is_averaged_over_thresholds_and_threshold_is_strict():
    true = [[0, 0, 10, 10], [20, 0, 30, 10]]
    # One exact box (IoU 1) and one at IoU 0.6 (x 20..32 against 20..30: 100 / 120 ... = 0.8333).
    samples = [grounding_sample(answer([[0, 0, 10, 10], [20, 0, 32, 10]]), true)]
    report = grounding_report(samples, 0.5)
    assert report["f1"] == 100.0
    # IoU 1.0 passes all ten thresholds, 0.8333 passes 0.50..0.80 (seven): F1 100 seven times, 50 three times.
    assert report["f1_50_95"] == pytest.approx((7 * 100 + 3 * 50) / 10)
    assert grounding_report([grounding_sample(answer([[0, 0, 10, 5]]), [[0, 0, 10, 10]])], 0.5)["f1"] == 0.0


def test_unparsed_and_empty_samples():
    report = grounding_report([grounding_sample("no idea", [[0, 0, 1, 1]]), grounding_sample("[]", [])], 0.5)
    assert (report["precision"], report["recall"], report["f1"]) == (0.0, 0.0, 0.0)
    empty = grounding_report([grounding_sample("[]", [])], 0.5)
    assert (empty["precision"], empty["recall"], empty["f1"]) == (100.0, 100.0, 100.0)


def test_detection_metrics_are_in_the_table_and_the_report(tmp_path, capsys):
    path = tmp_path / "results.json"
    path.write_text(json.dumps([{"content": [answer([[0, 0, 10, 10]] * 2)], "ground_truth": [[0, 0, 10, 10]]}]))
    assert cli.main([str(path), "grounding", "0.5"]) == 0
    report = json.loads(path.with_suffix(".report.json").read_text())
    assert (report["precision"], report["recall"]) == (50.0, 100.0)
    assert {"f1", "f1_50_95", "accuracy_reference"} <= set(report)
    table = capsys.readouterr().out
    for label in ("precision @ threshold", "recall @ threshold", "F1 @ threshold", "F1, mean 0.50:0.95"):
        assert label in table


def test_a_constant_dense_grid_scores_low_on_llvip():
    truths = [item["ground_truth"] for item in json.loads(LLVIP.read_text())][::8]
    grid = [
        (x, y, x + w, y + h)
        for w, h in ((70, 170), (110, 250), (150, 330))
        for y in range(0, 1024 - h + 1, int(h / 2.2))
        for x in range(0, 1280 - w + 1, int(w / 2.2))
    ]
    text = answer(grid)
    report = evaluate.grounding_report([grounding_sample(text, truth) for truth in truths], 0.5)
    assert report["accuracy"] > 75  # the reference-compatible accuracy is fooled (83.6% on the whole file)
    assert report["f1"] < 1.0 and report["f1_50_95"] < 1.0 and report["precision"] < 1.0
