"""Command line and evaluation/eval_qwen.sh: errors with exit status 2, reports beside the results file."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mars.evaluation import cli

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "evaluation" / "eval_qwen.sh"


def write(path: Path, payload) -> Path:
    path.write_text(payload if isinstance(payload, str) else json.dumps(payload))
    return path


@pytest.mark.parametrize(
    "payload,task,expected",
    [
        ("{not json", "grounding", "not valid JSON"),
        ({"content": "x"}, "grounding", "expected a JSON list"),
        ([{"content": ["x"], "ground_truth": "A"}, {"content": ["x"]}], "vqa", "item 1 has no ground_truth"),
        ([{"ground_truth": "A"}], "vqa", "item 0 has no content"),
        ([{"content": 3, "ground_truth": "A"}], "vqa", "item 0: content must be"),
        (["text"], "vqa", "item 0 is a str"),
        ([{"content": ["x"], "ground_truth": [[1, 2, 3, 4]]}, {"content": ["x"], "ground_truth": "Yes"}],
         "grounding", "item 1: ground_truth"),
        ([{"content": ["x"], "ground_truth": "  "}], "vqa", "item 0: ground_truth"),
    ],
)
def test_bad_results_files_exit_2_naming_file_and_item(payload, task, expected, tmp_path, capsys):
    results = write(tmp_path / "bad.json", payload)
    assert cli.main([str(results), task, "0.5"]) == 2
    message = capsys.readouterr().err
    assert expected in message and str(results) in message
    assert not (tmp_path / "bad.report.json").exists()


def test_missing_file_exits_2(tmp_path, capsys):
    assert cli.main([str(tmp_path / "absent.json"), "vqa"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_threshold_out_of_range_exits_2(tmp_path, capsys):
    results = write(tmp_path / "r.json", [{"content": ["<answer>A</answer>"], "ground_truth": "A"}])
    assert cli.main([str(results), "vqa", "1.5"]) == 2
    assert "threshold" in capsys.readouterr().err


def test_coordinate_conversion_needs_an_image_size(tmp_path, capsys):
    results = write(tmp_path / "r.json", [{"content": ["[[0, 0, 500, 500]]"], "ground_truth": [[0, 0, 640, 512]]}])
    assert cli.main([str(results), "grounding", "0.5", "--coords", "qwen3_vl"]) == 2
    assert "--image-size" in capsys.readouterr().err
    assert cli.main([str(results), "grounding", "0.5", "--coords", "qwen3_vl", "--image-size", "1280", "1024"]) == 0
    assert json.loads((tmp_path / "r.report.json").read_text())["mean_iou"] == pytest.approx(1.0)


def test_per_item_image_size(tmp_path):
    item = {"content": ["[[0, 0, 500, 500]]"], "ground_truth": [[0, 0, 640, 512]], "image_size": [1280, 1024]}
    results = write(tmp_path / "r.json", [item])
    report_path = tmp_path / "custom.json"
    assert cli.main([str(results), "grounding", "--coords", "qwen3_vl", "--report", str(report_path)]) == 0
    assert json.loads(report_path.read_text())["accuracy"] == 100.0


def run_script(*args, cwd):
    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
    return subprocess.run(["sh", str(SCRIPT), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def test_shell_script_end_to_end_from_another_directory(tmp_path):
    items = [
        {"content": ['<answer>```json\n[{"bbox_2d": [0, 0, 10, 10], "label": "person"}]\n```</answer>'],
         "ground_truth": [[0, 0, 10, 10]]},
        {"content": ["<answer>[[0, 0, 10, 6]]</answer>"], "ground_truth": [[0, 0, 10, 10]]},
        {"content": ["nothing"], "ground_truth": [[0, 0, 10, 10]]},
    ]
    write(tmp_path / "results.json", items)
    completed = run_script("results.json", "grounding", "0.5", cwd=tmp_path)  # a relative path from elsewhere
    assert completed.returncode == 0, completed.stderr
    assert "unparsed (counted as wrong)" in completed.stdout
    report = json.loads((tmp_path / "results.report.json").read_text())
    assert (report["samples"], report["unparsed"]) == (3, 1)
    assert report["accuracy"] == pytest.approx(200 / 3)  # IoU 1.0 and 0.6 are above 0.5
    assert report["mean_iou"] == pytest.approx(1.6 / 3)


def test_shell_script_reports_errors_with_status_2(tmp_path):
    completed = run_script(str(tmp_path / "missing.json"), "vqa", "0.5", cwd=tmp_path)
    assert completed.returncode == 2 and "no such file" in completed.stderr
    assert run_script(cwd=tmp_path).returncode == 2  # no arguments: usage
