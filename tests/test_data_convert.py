"""Converters: reference JSON <-> parquet round trips on the real files, LLaMA-Factory SFT export."""

import json
import math
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from mars.data import convert, schema
from mars.data.cli import main as data_main
from mars.data.synth import synthesize
from mars.rewards import grounding_score, vqa_score

REFERENCE = Path(__file__).resolve().parent / "data" / "reference-data"
# file -> (data_source, reward, source names)
EXPECTED = {
    "llvip_eval.json": ("llvip", "grounding", ["visible", "infrared"]),
    "spatialqa_eval.json": ("spatialqa", "vqa", ["rgb", "depth"]),
    "OCR-VQA_eval.json": ("ocr-vqa", "vqa", ["page_1", "page_2"]),
}


def test_the_reference_files_are_there():
    # Not a skip: the round trips below are the converters' only test on real data.
    missing = [name for name in EXPECTED if not (REFERENCE / name).is_file()]
    assert not missing, f"reference files missing under {REFERENCE}: {missing}"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_reference_json_round_trips_through_parquet(name, tmp_path):
    source = REFERENCE / name
    original = json.loads(source.read_text(encoding="utf-8"))
    parquet = tmp_path / "data.parquet"
    back = tmp_path / "back.json"
    assert data_main(["convert", "to-parquet", str(source), str(parquet)]) == 0
    # training appends the answer-format instruction and to-json keeps it; stripped, the file comes back unchanged
    assert data_main(["convert", "to-json", str(parquet), str(back), "--strip-instruction"]) == 0
    assert json.loads(back.read_text(encoding="utf-8")) == original

    data_source, reward, sources = EXPECTED[name]
    rows = pq.read_table(parquet).to_pylist()
    assert len(rows) == len(original)
    assert pq.read_table(parquet).schema.equals(schema.ROW_SCHEMA)
    for k, (row, item) in enumerate(zip(rows, original)):
        assert row["data_source"] == data_source and row["ability"] == reward
        assert [im["source"] for im in row["images"]] == sources == row["extra_info"]["image_sources"]
        assert [im["image"] for im in row["images"]] == [p["image"] for p in item["content"] if p["type"] == "image"]
        content = row["prompt"][0]["content"]
        assert content == "<image>" * len(sources) + item["content"][-1]["text"] + " " + schema.FORMAT_INSTRUCTION
        wrapped = row["reward_model"]["ground_truth"]
        expected_gt = json.dumps(item["ground_truth"]) if reward == "grounding" else item["ground_truth"]
        assert wrapped == f"<answer>{expected_gt}</answer>"
        assert row["extra_info"]["index"] == k and row["extra_info"]["split"] == "test"
    # pandas reads the same nested values
    frame = pd.read_parquet(parquet)
    assert schema.to_plain(frame.iloc[0]["images"]) == rows[0]["images"]


def test_sources_option_overrides_and_must_match_the_image_count(tmp_path):
    source = REFERENCE / "spatialqa_eval.json"
    out = tmp_path / "s.parquet"
    assert data_main(["convert", "to-parquet", str(source), str(out), "--sources", "colour,range"]) == 0
    assert pq.read_table(out).to_pylist()[0]["extra_info"]["image_sources"] == ["colour", "range"]
    assert data_main(["convert", "to-parquet", str(source), str(out), "--sources", "a,b,c"]) == 2
    with pytest.raises(ValueError, match="item 0: 2 images but --sources names 3"):
        convert.reference_json_to_parquet(str(source), str(out), sources=["a", "b", "c"])


def test_no_instruction_and_explicit_source_keys(tmp_path):
    items = [
        {"role": "user", "content": [{"type": "image", "image": "a.png", "source": "left"},
                                     {"type": "text", "text": "Compare "},
                                     {"type": "image", "image": "b.png", "source": "right"},
                                     {"type": "text", "text": "these."}], "ground_truth": "A"},
    ]
    path = tmp_path / "q.json"
    path.write_text(json.dumps(items))
    out = tmp_path / "q.parquet"
    assert data_main(["convert", "to-parquet", str(path), str(out), "--no-instruction"]) == 0
    row = pq.read_table(out).to_pylist()[0]
    assert row["prompt"][0]["content"] == "<image>Compare <image>these."  # text between images is kept
    assert [im["source"] for im in row["images"]] == ["left", "right"]
    back = convert.parquet_to_reference_json(str(out), str(tmp_path / "back.json"), include_sources=True)
    assert back == items


@pytest.mark.parametrize(
    ("paths", "names"),
    [
        (["samples/CAM_FRONT/x.jpg", "samples/CAM_BACK_LEFT/x.jpg"], ["CAM_FRONT", "CAM_BACK_LEFT"]),
        (["n1__CAM_BACK__1.jpg", "n1__CAM_BACK_RIGHT__1.jpg"], ["CAM_BACK", "CAM_BACK_RIGHT"]),
        (["d/LLVIP/visible/test/1.jpg", "d/LLVIP/infrared/test/1.jpg"], ["visible", "infrared"]),
        (["d/rgb/1.png", "d/thermal/1.png"], ["rgb", "infrared"]),
        (["d/reach/n1.jpg", "d/reach_d/n1.png"], ["rgb", "depth"]),
        (["d/OCR-VQA/full/images/1.jpg", "d/OCR-VQA/full/images/2.jpg"], ["page_1", "page_2"]),
        (["a/1.jpg", "a/2.jpg", "a/3.jpg"], ["image_0", "image_1", "image_2"]),
        (["a/visible/1.jpg", "b/visible/2.jpg"], ["image_0", "image_1"]),  # not distinct: fall back
    ],
)
def test_infer_source_names(paths, names):
    assert convert.infer_source_names(paths) == names


def test_bad_reference_items_name_the_item(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([
        {"role": "user", "content": [{"type": "image", "image": "a.png"}, {"type": "text", "text": "Q"}],
         "ground_truth": [[1, 2, 3, 4]]},
        {"role": "user", "content": [{"type": "image", "image": "a.png"}, {"type": "text", "text": "Q"}],
         "ground_truth": [[5, 2, 3, 4]]},
    ]))
    with pytest.raises(ValueError, match=r"item 1: bad ground truth: box 0 .*x1 < x2"):
        convert.reference_json_to_parquet(str(path), str(tmp_path / "o.parquet"))
    assert data_main(["convert", "to-parquet", str(path), str(tmp_path / "o.parquet")]) == 2


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("conv")
    return {task: synthesize(task, str(root / task), 12, seed=1) for task in ("ir_grounding", "depth_vqa")}


def test_sft_targets_earn_the_full_reward(synthetic, tmp_path):
    for task, result in synthetic.items():
        out = tmp_path / f"{task}_sft.json"
        assert data_main(["convert", "to-sft", result.parquet_files["train"], str(out)]) == 0
        examples = json.loads(out.read_text())
        rows = pq.read_table(result.parquet_files["train"]).to_pylist()
        assert len(examples) == len(rows) == 10
        for example, row in zip(examples, rows):
            user, assistant = example["messages"]
            assert user == {"role": "user", "content": row["prompt"][0]["content"]}
            assert example["images"] == [im["image"] for im in row["images"]]
            assert user["content"].count("<image>") == len(example["images"])
            text, truth = assistant["content"], row["reward_model"]["ground_truth"]
            assert assistant["role"] == "assistant" and text.startswith("<think>") and text.endswith("</answer>")
            for source in row["extra_info"]["answer_sources"]:
                assert source in text.split("</think>")[0]
            if task == "ir_grounding":
                assert '"label": "person"' in text and "```json" in text
                score = grounding_score(text, truth, row["extra_info"])
                assert score["format"] == 0.75 and score["error"] == 0.0
                n = len(json.loads(truth[len("<answer>"):-len("</answer>")]))
                assert score["iou"] == pytest.approx(1 + 0.3 * math.log(n))
            else:
                assert vqa_score(text, truth, row["extra_info"])["score"] == 1.5


def test_reference_llvip_sft_export(tmp_path):
    parquet = tmp_path / "llvip.parquet"
    convert.reference_json_to_parquet(str(REFERENCE / "llvip_eval.json"), str(parquet))
    examples = convert.parquet_to_llamafactory(str(parquet), str(tmp_path / "sft.json"))
    last = examples[-1]["messages"][1]["content"]
    assert last.count('"bbox_2d"') == 5 and "I find 5 people" in last


def test_synthetic_rows_to_reference_json_keep_the_training_prompt(synthetic, tmp_path):
    """Prompts at inference equal prompts at training by default; the instruction is stripped only on request."""
    result = synthetic["depth_vqa"]
    items = convert.parquet_to_reference_json(result.parquet_files["test"], str(tmp_path / "t.json"))
    assert len(items) == 1
    item = items[0]
    assert [p["type"] for p in item["content"]] == ["image", "image", "text"]
    assert item["content"][-1]["text"].endswith(schema.FORMAT_INSTRUCTION)
    assert item["ground_truth"] in ("Yes", "No")
    assert item["extra_info"]["task"] == "depth_vqa" and item["extra_info"]["image_sources"] == ["rgb", "depth"]
    stripped = convert.parquet_to_reference_json(
        result.parquet_files["test"], str(tmp_path / "k.json"), keep_instruction=False
    )
    assert schema.FORMAT_INSTRUCTION not in stripped[0]["content"][-1]["text"]


def test_synthetic_and_converted_files_concatenate_in_hf_datasets(synthetic, tmp_path):
    """verl concatenates its train files with datasets.concatenate_datasets: the features must match."""
    datasets = pytest.importorskip("datasets")
    converted = tmp_path / "spatialqa.parquet"
    convert.reference_json_to_parquet(str(REFERENCE / "spatialqa_eval.json"), str(converted))
    files = [synthetic[task].parquet_files["train"] for task in ("ir_grounding", "depth_vqa")] + [str(converted)]
    parts = [datasets.load_dataset("parquet", data_files=f, cache_dir=str(tmp_path / "hf"))["train"] for f in files]
    merged = datasets.concatenate_datasets(parts)
    assert len(merged) == 10 + 10 + 80
    assert merged[0]["images"][1] == {"image": synthetic["ir_grounding"].parquet_files["train"].rsplit("/", 1)[0]
                                      + "/images/000000_infrared.png", "source": "infrared"}
