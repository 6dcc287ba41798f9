"""Synthetic tasks: determinism, the row schema, and the premise each task is built on."""

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image

from mars.data import schema
from mars.data.cli import main as data_main
from mars.data.synth import TASKS, drawing as dr, generate_sample, make_options, split_counts, synthesize
from mars.data.synth.multiview_vqa import VIEW_NAMES

NUM = 12
PREMISE_SAMPLES = 60


def all_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    """Each task synthesised once (12 samples, seed 0) under a relative --out, as users run it."""
    root = tmp_path_factory.mktemp("synth")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        for task in TASKS:
            synthesize(task, os.path.join("out", task), NUM, seed=0)
    finally:
        os.chdir(cwd)
    return root


# ------------------------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("task", sorted(TASKS))
def test_same_seed_gives_identical_bytes_and_another_seed_differs(task, tmp_path, monkeypatch):
    for run, seed in (("a", 3), ("b", 3), ("c", 4)):
        (tmp_path / run).mkdir()
        monkeypatch.chdir(tmp_path / run)
        synthesize(task, "ds", NUM, seed=seed)
    first, second, other = (all_files(tmp_path / run / "ds") for run in ("a", "b", "c"))
    assert first == second
    assert first.keys() == other.keys()
    images = [name for name in first if name.endswith(".png")]
    assert len(images) == NUM * len(TASKS[task].sources(make_options(TASKS[task])))
    assert sum(first[name] != other[name] for name in images) > len(images) // 2
    assert first["train.parquet"] != other["train.parquet"]


def test_a_sample_does_not_depend_on_num_or_on_other_tasks():
    task = TASKS["depth_vqa"]
    options = make_options(task)
    a, b = generate_sample(task, 5, 7, options), generate_sample(task, 5, 7, options)
    assert all(np.array_equal(a.images[k], b.images[k]) for k in a.images) and a.question == b.question
    c = generate_sample(task, 5, 8, options)
    assert not np.array_equal(a.images["rgb"], c.images["rgb"])


def test_split_counts_and_bad_arguments():
    assert split_counts(12, 0.1, 0.1) == {"train": 10, "val": 1, "test": 1}
    assert split_counts(3, 0.1, 0.1) == {"train": 3, "val": 0, "test": 0}
    with pytest.raises(ValueError):
        split_counts(0, 0.1, 0.1)
    with pytest.raises(ValueError):
        split_counts(10, 0.6, 0.5)
    with pytest.raises(ValueError, match="multiples of 28"):
        make_options(TASKS["ir_grounding"], image_size=(100, 112))
    with pytest.raises(ValueError, match="views"):
        make_options(TASKS["multiview_vqa"], views=7)
    with pytest.raises(ValueError, match="unknown synthetic task"):
        synthesize("nope", "x", 1)


# ------------------------------------------------------------------------------------------------ schema


@pytest.mark.parametrize("task", sorted(TASKS))
def test_every_row_follows_the_schema(task, datasets):
    out = os.path.join("out", task)
    sources = TASKS[task].sources(make_options(TASKS[task]))
    indices = []
    for split in schema.SPLITS:
        table = pq.read_table(datasets / out / f"{split}.parquet")
        assert table.schema.equals(schema.ROW_SCHEMA)
        for row in table.to_pylist():
            extra = row["extra_info"]
            assert row["data_source"] == f"mars_synth/{task}"
            assert len(row["prompt"]) == 1 and row["prompt"][0]["role"] == "user"
            content = row["prompt"][0]["content"]
            assert content.startswith("<image>" * len(sources)) and content.count("<image>") == len(row["images"])
            assert content.endswith(" " + schema.FORMAT_INSTRUCTION)
            assert [sorted(im) for im in row["images"]] == [["image", "source"]] * len(sources)
            assert [im["source"] for im in row["images"]] == sources == extra["image_sources"]
            for im in row["images"]:
                assert im["image"] == os.path.join(out, "images", os.path.basename(im["image"]))
                assert (datasets / im["image"]).is_file()
                with Image.open(datasets / im["image"]) as picture:
                    assert list(picture.size) == extra["image_size"]
            width, height = extra["image_size"]
            assert width % 28 == 0 and height % 28 == 0 and width * height >= 3136
            assert set(extra) == set(schema.EXTRA_INFO_KEYS)
            assert extra["split"] == split and extra["task"] == task and extra["coord_format"] == "absolute"
            assert extra["answer_sources"] and set(extra["answer_sources"]) <= set(sources)
            assert extra["scenario"] and extra["reference_extra_info"] == ""
            assert row["ability"] == extra["reward"] in schema.REWARDS
            assert row["reward_model"]["style"] == "rule"
            ground_truth = row["reward_model"]["ground_truth"]
            assert ground_truth.startswith("<answer>") and ground_truth.endswith("</answer>")
            value, problem = schema.parse_ground_truth(ground_truth, extra["reward"])
            assert problem is None, problem
            if extra["reward"] == "grounding":
                assert 1 <= len(value) <= 3
                assert all(0 <= b[0] < b[2] <= width and 0 <= b[1] < b[3] <= height for b in value)
            indices.append(extra["index"])
    assert sorted(indices) == list(range(NUM))


def test_pandas_round_trips_the_nested_columns(datasets):
    path = datasets / "out" / "multiview_vqa" / "train.parquet"
    frame = pd.read_parquet(path)
    assert list(frame.columns) == list(schema.ROW_SCHEMA.names)
    assert [schema.to_plain(r) for r in frame.to_dict("records")] == pq.read_table(path).to_pylist()


def test_cli_synth_writes_the_dataset(tmp_path, capsys):
    out = tmp_path / "mv"
    code = data_main(["synth", "--task", "multiview_vqa", "--out", str(out), "--num", "5", "--seed", "1",
                      "--views", "3", "--val-frac", "0", "--test-frac", "0.2", "--quiet"])
    assert code == 0
    rows = pq.read_table(out / "train.parquet").to_pylist()
    assert len(rows) == 4 and len(pq.read_table(out / "test.parquet")) == 1
    assert [im["source"] for im in rows[0]["images"]] == VIEW_NAMES[:3]
    assert (out / "synth_config.json").is_file()
    assert data_main(["synth", "--task", "nope", "--out", str(out), "--num", "1"]) != 0
    bad_size = ["synth", "--task", "ir_grounding", "--out", str(out), "--num", "1", "--image-size", "100x100"]
    assert data_main(bad_size) == 2


# ------------------------------------------------------------------------------------------------ premise


def local_contrast(image: np.ndarray, masks, boxes) -> float:
    """Smallest, over the people, colour distance between a person and the ring around its box, relative to
    the ring's own spread: >> 1 means the person stands out, < 1 that it melts into its surroundings."""
    image = image.astype(float)
    image = image[..., None] if image.ndim == 2 else image
    height, width = image.shape[:2]
    people = np.any(masks, axis=0)
    values = []
    for mask, (x1, y1, x2, y2) in zip(masks, boxes):
        ring = dr.rect_mask(height, width, x1 - 4, y1 - 4, x2 + 4, y2 + 4) & ~people
        outer = image[ring]
        centre = outer.mean(axis=0)
        spread = np.sqrt(((outer - centre) ** 2).sum(-1)).mean()
        values.append(np.sqrt(((image[mask].mean(axis=0) - centre) ** 2).sum()) / (spread + 1))
    return min(values)


def test_ir_grounding_people_stand_out_in_infrared_and_hide_in_visible():
    task = TASKS["ir_grounding"]
    options = make_options(task)
    scenarios, infrared_wins = [], 0
    for index in range(PREMISE_SAMPLES):
        sample = generate_sample(task, 0, index, options)
        masks = sample.meta["person_masks"]
        assert sample.answer == [dr.mask_box(m) for m in masks]  # boxes are the people's tight boxes
        infrared = local_contrast(dr.to_uint8(sample.images["infrared"]), masks, sample.answer)
        visible = local_contrast(dr.to_uint8(sample.images["visible"]), masks, sample.answer)
        assert infrared > 4, (index, infrared)  # infrared always shows every person
        if sample.scenario == "dark":
            assert visible < 1, (index, visible)
        elif sample.scenario == "clear":
            assert visible > 2, (index, visible)
            assert sample.answer_sources == ["visible", "infrared"]
        else:
            assert sample.meta["decoys"] >= 2  # person-shaped decoys that are not in the ground truth
        if sample.scenario != "clear":
            assert sample.answer_sources == ["infrared"]
        infrared_wins += infrared > 2 * visible
        scenarios.append(sample.scenario)
    assert infrared_wins >= 0.75 * PREMISE_SAMPLES
    hard = sum(s != "clear" for s in scenarios) / PREMISE_SAMPLES
    assert 0.65 <= hard <= 0.95 and {"dark", "cluttered", "clear"} <= set(scenarios)


_DEPTH_QUESTION = re.compile(r"Is the (\w+) object (nearer to|farther from) the camera than the (\w+) object\?")


def test_depth_vqa_depth_answers_every_question_and_size_misleads_in_most():
    task = TASKS["depth_vqa"]
    options = make_options(task)
    size_right, answers = 0, []
    for index in range(PREMISE_SAMPLES):
        sample = generate_sample(task, 0, index, options)
        first, relation, second = _DEPTH_QUESTION.search(sample.question).groups()
        rgb, depth = dr.to_uint8(sample.images["rgb"]), dr.to_uint8(sample.images["depth"]).astype(float)
        # Find each object by its colour in RGB, then read its brightness in depth (nearer = brighter).
        masks = {name: dr.colour_mask(rgb, dr.COLOURS[name]) for name in (first, second)}
        assert all(mask.sum() > 20 for mask in masks.values())
        first_nearer_by_depth = depth[masks[first]].mean() > depth[masks[second]].mean()
        first_nearer_by_size = masks[first].sum() > masks[second].sum()
        wanted = "Yes" if first_nearer_by_depth == (relation == "nearer to") else "No"
        assert sample.answer == wanted, index
        size_right += first_nearer_by_size == first_nearer_by_depth
        assert (first_nearer_by_size == first_nearer_by_depth) == (sample.scenario == "size_consistent")
        assert sample.answer_sources == (["depth"] if sample.scenario == "size_misleading" else ["rgb", "depth"])
        answers.append(sample.answer)
    assert size_right <= 0.4 * PREMISE_SAMPLES  # RGB's size cue points the wrong way in most samples
    assert 0.3 <= answers.count("Yes") / PREMISE_SAMPLES <= 0.7


@pytest.mark.parametrize("views", [6, 3])
def test_multiview_vqa_the_target_is_in_exactly_one_view(views):
    task = TASKS["multiview_vqa"]
    options = make_options(task, views=views)
    kinds = set()
    for index in range(PREMISE_SAMPLES // 2):
        sample = generate_sample(task, 0, index, options)
        names = VIEW_NAMES[:views]
        assert list(sample.images) == names
        colour = re.search(r"(?:is the|there a) (\w+) car", sample.question).group(1)
        assert colour == sample.meta["target_colour"]
        seen = [n for n in names if dr.colour_mask(dr.to_uint8(sample.images[n]), dr.COLOURS[colour]).sum() > 15]
        assert seen == [sample.meta["target_view"]], (index, seen)
        if sample.scenario == "which_view":
            letters = "ABCDEF"[:views]
            assert all(f"{letter}. {name}" in sample.question for letter, name in zip(letters, names))
            assert names[letters.index(sample.answer)] == seen[0]
            assert sample.answer_sources == seen
        else:
            asked = re.search(r"in the (CAM_\w+) view", sample.question).group(1)
            assert sample.answer == ("Yes" if asked == seen[0] else "No")
            assert sample.answer_sources == [asked]
        kinds.add((sample.scenario, sample.answer if sample.scenario == "yes_no" else "letter"))
    assert {("which_view", "letter"), ("yes_no", "Yes"), ("yes_no", "No")} <= kinds


def test_ir_presence_infrared_answers_and_visible_cannot_in_the_hard_samples():
    task = TASKS["ir_presence"]
    options = make_options(task)
    answers, scenarios = [], []
    for index in range(PREMISE_SAMPLES):
        sample = generate_sample(task, 0, index, options)
        infrared = dr.to_uint8(sample.images["infrared"]).astype(float)
        # a person is the brightest thing in infrared (warm objects and buildings stay far below)
        assert (infrared.max() > 170) == (sample.answer == "Yes"), index
        assert sample.answer == ("Yes" if sample.meta["person_masks"] else "No")
        if sample.scenario == "cluttered":
            assert sample.meta["decoys"] >= 2  # person-shaped decoys in visible, people there or not
        if sample.scenario == "dark":
            assert dr.to_uint8(sample.images["visible"]).mean() < 40
        assert sample.answer_sources == (["visible", "infrared"] if sample.scenario == "clear" else ["infrared"])
        answers.append(sample.answer)
        scenarios.append(sample.scenario)
    assert 0.3 <= answers.count("Yes") / PREMISE_SAMPLES <= 0.7
    assert {"dark", "cluttered", "clear"} <= set(scenarios)


@pytest.mark.parametrize("task", ["ir_presence", "ir_grounding"])
def test_the_person_boxes_are_written_as_regions(task, datasets):
    """``extra_info.regions``: the boxes of the people the question is about (Faithful-MR1's anchoring reads them);
    the other tasks have none."""
    frame = pd.read_parquet(datasets / "out" / task / "train.parquet")
    options = make_options(TASKS[task])
    with_people = 0
    for _, row in frame.iterrows():
        extra = row["extra_info"]
        sample = generate_sample(task, 0, int(extra["index"]), options)
        boxes = sample.meta.get("boxes", sample.answer)
        assert [list(map(float, box)) for box in extra["regions"]] == [list(map(float, box)) for box in boxes]
        with_people += bool(len(extra["regions"]))
    assert with_people > 0
    other = pd.read_parquet(datasets / "out" / "depth_vqa" / "train.parquet")
    assert all(len(extra["regions"]) == 0 for extra in other["extra_info"])
