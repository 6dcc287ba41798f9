"""Image paths of a question file: found from where the user ran the command, or a clear error before any model
loads (``evaluation/qwen_inference.sh`` runs Python from the repository root, so a relative path must not be read
against it alone)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from mars.inference import image_search_dirs, resolve_images
from tests.scripts import script_env

ROOT = Path(__file__).resolve().parents[1]


def question(*images: str) -> dict:
    return {"role": "user", "content": [*({"type": "image", "image": i} for i in images),
                                        {"type": "text", "text": "Is there a person?"}], "ground_truth": "Yes"}


def test_relative_paths_resolve_against_the_callers_directory_first(tmp_path, monkeypatch):
    caller = tmp_path / "work"
    (caller / "data").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(caller / "data" / "a.png")
    questions = tmp_path / "elsewhere" / "q.json"
    monkeypatch.setenv("MARS_CALLER_CWD", str(caller))
    items = [question("data/a.png")]
    resolve_images(items, questions, image_search_dirs(questions))
    assert items[0]["content"][0]["image"] == str((caller / "data" / "a.png").resolve())
    assert image_search_dirs(questions)[:2] == [caller.resolve(), ROOT]


def test_a_missing_image_names_the_question_and_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("MARS_CALLER_CWD", str(tmp_path))
    Image.new("RGB", (4, 4)).save(tmp_path / "here.png")
    items = [question("here.png"), question("here.png", "images/gone.png")]
    with pytest.raises(SystemExit, match=r"q\.json item 1: image 'images/gone\.png' not found .*" + str(tmp_path)):
        resolve_images(items, tmp_path / "q.json", image_search_dirs(tmp_path / "q.json"))


def test_the_script_stops_before_loading_a_model_when_an_image_is_missing(tmp_path):
    questions = tmp_path / "q.json"
    questions.write_text(json.dumps([question("outputs/nothing/here.png")]))
    env = script_env(HF_HUB_OFFLINE="1")
    done = subprocess.run(["sh", str(ROOT / "evaluation/qwen_inference.sh"), "no-such-model", str(questions),
                           str(tmp_path / "r.json")], check=False, cwd=tmp_path, capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode != 0
    assert "item 0: image 'outputs/nothing/here.png' not found" in done.stderr
    assert str(tmp_path) in done.stderr  # the user's directory was searched, not only the repository root
    assert not (tmp_path / "r.json").exists()
