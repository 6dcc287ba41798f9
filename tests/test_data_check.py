"""Dataset checker: passes fresh synthetic data, catches each kind of bad row with its index."""

import copy
import json
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from mars.data import check, schema
from mars.data.check import Problem, check_dataset, validate_row
from mars.data.cli import main as data_main
from mars.data.synth import TASKS, synthesize


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    root = tmp_path_factory.mktemp("check")
    return {task: synthesize(task, str(root / task), 12, seed=2) for task in TASKS}


@pytest.mark.parametrize("task", sorted(TASKS))
def test_fresh_synthetic_data_passes(task, fresh, capsys):
    report = check_dataset(fresh[task].out_dir)
    assert report.ok and report.exit_code == 0, report.summary()
    assert report.rows == 12 and len(report.files) == 3 and not report.warnings
    assert report.images == 12 * len(fresh[task].sources)
    assert report.sources == {name: 12 for name in fresh[task].sources}
    assert data_main(["check", fresh[task].out_dir]) == 0
    assert "OK" in capsys.readouterr().out


def test_a_single_parquet_file_and_a_pandas_row(fresh):
    train = fresh["ir_grounding"].parquet_files["train"]
    assert check_dataset(train).rows == 10
    row = pd.read_parquet(train).iloc[0].to_dict()  # numpy arrays inside, as the trainer sees rows
    assert validate_row(row) == []


@pytest.fixture()
def broken(fresh, tmp_path):
    """A grounding file whose rows 1..8 each break one rule (row 0 and 9 stay good)."""
    rows = schema.read_parquet_rows(fresh["ir_grounding"].parquet_files["train"])
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 10)
    truncated = tmp_path / "truncated.png"
    good_bytes = Path(rows[0]["images"][0]["image"]).read_bytes()
    truncated.write_bytes(good_bytes[: len(good_bytes) // 2])
    huge = tmp_path / "huge.png"
    Image.new("L", (3600, 3600)).save(huge)  # 12,960,000 pixels > 12,845,056
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (28, 28)).save(tiny)

    rows[1]["images"][0]["image"] = str(tmp_path / "nowhere.png")
    rows[2]["images"][1]["image"] = str(corrupt)
    rows[3]["prompt"][0]["content"] = rows[3]["prompt"][0]["content"].replace("<image>", "", 1)
    rows[4]["images"][1]["source"] = ""
    rows[5]["reward_model"]["ground_truth"] = "<answer>[[30, 10, 20, 40]]</answer>"
    rows[6]["images"][0]["image"] = str(huge)
    rows[7]["images"][1]["source"] = rows[7]["images"][0]["source"]
    rows[8]["images"][0]["image"] = str(truncated)
    rows[9]["images"][0]["image"] = str(tiny)
    path = tmp_path / "broken.parquet"
    schema.write_parquet(rows, str(path))
    return path, rows


EXPECTED_KINDS = {
    1: check.MISSING_IMAGE,
    2: check.CORRUPT_IMAGE,
    3: check.PLACEHOLDER_MISMATCH,
    4: check.MISSING_SOURCE,
    5: check.BAD_GROUND_TRUTH,
    6: check.IMAGE_TOO_LARGE,
    7: check.DUPLICATE_SOURCE,
    8: check.CORRUPT_IMAGE,
    9: check.IMAGE_TOO_SMALL,
}


def test_each_kind_of_bad_row_is_caught_with_its_row_index(broken, capsys):
    path, rows = broken
    report = check_dataset(str(path))
    assert not report.ok and report.exit_code == 1
    assert report.bad_rows == len(EXPECTED_KINDS) and report.rows == 10
    for index, kind in EXPECTED_KINDS.items():
        messages = [m for m in report.examples if m.startswith(f"broken.parquet row {index}:")]
        assert messages, (index, report.examples)
        problems = validate_row(rows[index], row_index=index, file="broken.parquet")
        assert [p.kind for p in problems] == [kind], problems
        assert problems[0] == messages[0] and isinstance(problems[0], str)
    assert validate_row(rows[0]) == []
    assert report.errors[check.CORRUPT_IMAGE] == 2 and report.errors[check.MISSING_IMAGE] == 1

    assert data_main(["check", str(path), "--limit-errors", "3"]) == 1
    out = capsys.readouterr().out
    assert "ERRORS in 9 row(s)" in out and "broken.parquet row 1:" in out and "broken.parquet row 5:" not in out
    assert "FAILED" in out


def test_messages_say_what_to_do(broken):
    _, rows = broken
    text = {index: str(validate_row(rows[index])[0]) for index in EXPECTED_KINDS}
    assert "file not found" in text[1] and "nowhere.png" in text[1]
    assert "cannot be decoded" in text[2] and "re-export" in text[2]
    assert "1 <image> placeholder(s) but the row has 2 image(s)" in text[3]
    assert "no source name" in text[4] and "--sources" in text[4]
    assert "x1 < x2" in text[5] and "grounding" in text[5]
    assert "--max-pixels" in text[6]
    assert "repeat" in text[7]


def test_max_pixels_is_configurable(fresh):
    path = fresh["depth_vqa"].out_dir
    report = check_dataset(path, max_pixels=112 * 112 - 1)
    assert report.errors == {check.IMAGE_TOO_LARGE: 24}
    assert data_main(["check", path, "--max-pixels", str(112 * 112)]) == 0


def test_explicit_reward_checks_the_ground_truth_against_it(fresh):
    report = check_dataset(fresh["depth_vqa"].parquet_files["train"], reward="grounding")
    assert report.errors == {check.BAD_GROUND_TRUTH: 10}


def test_mixed_source_names_warn_but_pass(fresh, tmp_path):
    rows = schema.read_parquet_rows(fresh["depth_vqa"].parquet_files["train"])
    for row in rows[:3]:
        for image, name in zip(row["images"], ("colour", "range")):
            image["source"] = name
        row["extra_info"]["image_sources"] = ["colour", "range"]
    path = tmp_path / "mixed.parquet"
    schema.write_parquet(rows, str(path))
    report = check_dataset(str(path))
    assert report.ok and report.warnings[check.MIXED_SOURCES] == 1
    assert "2 different ways" in report.summary()


def test_grounding_images_the_processor_would_resize_warn(tmp_path):
    image = tmp_path / "odd.png"
    Image.new("RGB", (100, 90)).save(image)
    row = schema.make_row(data_source="x", question="Q", images=[(str(image), "visible"), (str(image), "infrared")],
                          reward="grounding", ground_truth=[[1, 2, 30, 40]], index=0, split="train", task="x")
    findings = check.inspect_row(row)
    assert findings.problems == [] and [w.kind for w in findings.warnings] == [check.RESIZED_GROUNDING]
    assert "112x84" in findings.warnings[0] and "qwen2_5_vl" in findings.warnings[0]


def test_reference_json_is_checked_too(tmp_path):
    picture = tmp_path / "images" / "a.png"
    picture.parent.mkdir()
    Image.new("RGB", (112, 112)).save(picture)
    items = [
        {"role": "user", "content": [{"type": "image", "image": "images/a.png"},
                                     {"type": "image", "image": "images/a.png"},
                                     {"type": "text", "text": "Q"}], "ground_truth": "Yes"},
        {"role": "user", "content": [{"type": "image", "image": "images/b.png"}, {"type": "text", "text": "Q"}],
         "ground_truth": "No"},
        {"role": "user", "content": [{"type": "image", "image": "images/a.png"}, {"type": "text", "text": "Q"}],
         "ground_truth": [[3, 3, 1, 1]]},
        {"role": "user", "content": "not a list", "ground_truth": "No"},
    ]
    path = tmp_path / "q.json"
    path.write_text(json.dumps(items))
    report = check_dataset(str(path), base_dir=str(tmp_path))
    assert report.rows == 4 and report.bad_rows == 3
    assert report.errors == {check.MISSING_IMAGE: 1, check.BAD_GROUND_TRUTH: 1, check.BAD_ROW: 1}
    assert [m.split(":")[0] for m in report.examples] == ["q.json row 1", "q.json row 2", "q.json row 3"]
    # Relative paths resolve against the working directory by default; the report says where they exist.
    elsewhere = check_dataset(str(path), base_dir=str(tmp_path / "images"))
    assert elsewhere.errors[check.MISSING_IMAGE] == 4
    assert any(str(tmp_path) in hint for hint in elsewhere.hints)


def test_the_real_reference_file_reports_missing_images(tmp_path):
    reference = Path(__file__).resolve().parent / "data" / "reference-data" / "spatialqa_eval.json"
    report = check_dataset(str(reference), base_dir=str(tmp_path))
    assert report.rows == 80 and report.sources == {"rgb": 80, "depth": 80}
    assert set(report.errors) == {check.MISSING_IMAGE} and report.exit_code == 1


def test_paths_that_are_not_datasets(tmp_path):
    with pytest.raises(FileNotFoundError):
        check_dataset(str(tmp_path))
    with pytest.raises(FileNotFoundError):
        check_dataset(str(tmp_path / "none.parquet"))
    assert data_main(["check", str(tmp_path)]) == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    schema.write_parquet([], str(empty / "train.parquet"))
    report = check_dataset(str(empty))
    assert report.errors == {check.EMPTY_DATASET: 1} and report.exit_code == 1


def test_structurally_broken_rows():
    assert [p.kind for p in validate_row("nonsense")] == [check.BAD_ROW]
    assert [p.kind for p in validate_row({"prompt": [], "images": []})] == [check.BAD_ROW]
    row = {
        "prompt": [{"role": "user", "content": [{"type": "text", "text": "Q"}]}],
        "images": [],
        "reward_model": {"style": "rule", "ground_truth": "<answer>A</answer>"},
    }
    assert [p.kind for p in validate_row(row)] == [check.BAD_PROMPT]
    plain = {"prompt": [{"role": "user", "content": "<image>Q"}], "images": ["x.png"],
             "reward_model": {"style": "rule", "ground_truth": "<answer>A</answer>"}}
    kinds = sorted(p.kind for p in validate_row(plain))
    assert kinds == [check.MISSING_IMAGE, check.MISSING_SOURCE]
    assert isinstance(validate_row(plain)[0], Problem)


def test_each_image_is_decoded_once_per_check(fresh, monkeypatch):
    calls = []
    original = check.inspect_image
    monkeypatch.setattr(check, "inspect_image", lambda *a, **k: calls.append(a[0]) or original(*a, **k))
    rows = schema.read_parquet_rows(fresh["ir_grounding"].parquet_files["train"])
    cache = {}
    for _ in range(2):
        check.inspect_row(copy.deepcopy(rows[0]), image_cache=cache)
    assert len(calls) == 2


def test_a_duplicate_variant_longer_than_the_prompt_length_is_caught(fresh, tmp_path, capsys):
    """Row 1's infrared image is large: its duplicate variant (that image in both slots) needs more tokens than the
    multi-source prompt, and more than the rollout's prompt_length allows, though the prompt itself fits."""
    rows = schema.read_parquet_rows(fresh["ir_grounding"].parquet_files["train"])[:3]
    large = tmp_path / "large.png"
    Image.new("RGB", (560, 560)).save(large)  # 20 x 20 merged patches = 400 + 2 tokens
    rows[1]["images"][1]["image"] = str(large)
    path = tmp_path / "train.parquet"
    schema.write_parquet(rows, str(path))
    small = check.image_tokens(Image.open(rows[1]["images"][0]["image"]).size, check.DEFAULT_MIN_PIXELS,
                               check.DEFAULT_MAX_PIXELS)
    assert check.image_tokens((560, 560), check.DEFAULT_MIN_PIXELS, check.DEFAULT_MAX_PIXELS) == 402
    limit = 402 + small + 10  # the multi-source prompt fits, the duplicate variant (2 x 402) does not

    report = check_dataset(str(path), length_limit=check.LengthLimit(limit))
    assert report.errors == {check.PROMPT_TOO_LONG: 1}
    message = report.examples[0]
    assert message.startswith("train.parquet row 1: the infrared variant (duplicate) has 804 tokens")
    assert f"rollout.prompt_length={limit}" in message and "data.max_prompt_length to at least 804" in message
    assert "mars.variant_mode=blank" in message
    assert check_dataset(str(path), length_limit=check.LengthLimit(limit, "blank")).ok  # blank: the prompt's length
    assert check_dataset(str(path)).ok  # no limit given: not checked

    assert data_main(["check", str(path), "--max-prompt-length", str(limit)]) == 1
    assert "the infrared variant (duplicate) has 804 tokens" in capsys.readouterr().out


def test_text_tokens_are_counted_with_the_tokenizer(fresh, tmp_path):
    from mars.models.tokenizer import build_tokenizer

    row = schema.read_parquet_rows(fresh["depth_vqa"].parquet_files["train"])[0]
    tokenizer = build_tokenizer(400)
    text = check.text_tokens(row["prompt"], tokenizer)
    assert text > 10
    images = sum(check.image_tokens(Image.open(i["image"]).size, check.DEFAULT_MIN_PIXELS, check.DEFAULT_MAX_PIXELS)
                 for i in row["images"])
    assert validate_row(row, length_limit=check.LengthLimit(images + text, "duplicate", tokenizer)) == []
    problems = validate_row(row, length_limit=check.LengthLimit(images + text - 1, "blank", tokenizer))
    assert [p.kind for p in problems] == [check.PROMPT_TOO_LONG]
    assert f"({images} image + {text} text tokens)" in problems[0]


def test_a_16_bit_grayscale_image_is_refused_naming_the_row(fresh, tmp_path):
    """PIL's RGB conversion of an I;16 picture clips it to white: the checker refuses it instead of training on it."""
    import numpy as np

    rows = schema.read_parquet_rows(fresh["ir_grounding"].parquet_files["train"])
    deep = tmp_path / "deep.png"
    Image.fromarray(np.linspace(0, 65535, 112 * 112).reshape(112, 112).astype(np.uint16)).save(deep)
    assert Image.open(deep).mode in check.HIGH_BIT_MODES
    assert Image.open(deep).convert("RGB").getextrema() != ((0, 0), (0, 0), (0, 0))
    rows[3]["images"][1]["image"] = str(deep)
    path = tmp_path / "deep.parquet"
    schema.write_parquet(rows, str(path))
    report = check_dataset(str(path))
    assert not report.ok and report.errors[check.HIGH_BIT_DEPTH] == 1
    text = report.summary()
    assert "row 3" in text and "16-bit" in text and "257" in text


def test_text_that_is_not_utf8_names_the_file_column_and_row(fresh, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(fresh["ir_grounding"].parquet_files["train"])
    where = table.schema.get_field_index("data_source")
    raw = [c.encode() for c in table.column("data_source").to_pylist()]
    raw[4] = b"llvip" + bytes([0xFF, 0xFE])  # Latin-1 bytes in a string column, as a foreign writer can leave
    binary = pa.array(raw, type=pa.binary())
    invalid = pa.Array.from_buffers(pa.string(), len(raw), binary.buffers())  # same bytes, labelled UTF-8
    path = tmp_path / "latin1.parquet"
    pq.write_table(table.set_column(where, "data_source", invalid), path)
    report = check_dataset(str(path))
    assert not report.ok
    text = report.summary()
    assert "row 4" in text and "'data_source'" in text and "not UTF-8" in text and "latin1.parquet" in text


def test_skipped_rows_are_one_line_per_cause_and_no_usable_rows_says_why(fresh, tmp_path, caplog):
    import logging

    from mars.data.samples import BadDataError, load_samples

    rows = schema.read_parquet_rows(fresh["ir_grounding"].parquet_files["train"])
    for row in rows:
        row["images"][0]["image"] = str(tmp_path / "gone.png")
    path = tmp_path / "missing.parquet"
    schema.write_parquet(rows, str(path))
    with caplog.at_level(logging.WARNING), pytest.raises(BadDataError, match=r"no usable rows(.|\n)*10 row\(s\): "
                                                                             r"missing_image"):
        load_samples(str(path), "skip")
    skipped = [r for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skipped) == 1 and "10 row(s)" in skipped[0].getMessage()


def test_the_reference_files_missing_images_are_explained_and_convert_warns(tmp_path, capsys):
    reference = Path(__file__).parent / "data" / "reference-data"
    files = sorted(reference.glob("*.json")) if reference.is_dir() else []
    if not files:
        pytest.fail("tests/data/reference-data holds the reference release's evaluation files")
    report = check_dataset(str(files[0]))
    assert report.errors[check.MISSING_IMAGE] > 0
    text = report.summary()
    assert "ships its question files without the images" in text and "pass --base-dir)" not in text
    assert data_main(["convert", "to-parquet", str(files[0]), str(tmp_path / "out.parquet")]) == 0
    err = capsys.readouterr().err
    assert "image paths do not exist" in err and "without the images" in err
