"""The synthetic parquet files load in verl 0.9.1's RLHFDataset, and the source names reach the chat parts."""

import pytest

from mars.anchors import build_mono_source_variants
from mars.data.synth import synthesize


def test_rlhf_dataset_hands_the_source_names_to_the_chat_messages(tmp_path, monkeypatch):
    rl_dataset = pytest.importorskip("verl.utils.dataset.rl_dataset")
    from omegaconf import OmegaConf

    monkeypatch.chdir(tmp_path)
    result = synthesize("ir_grounding", "data/ir", 6, seed=0, val_frac=0, test_frac=0)
    config = OmegaConf.create({"filter_overlong_prompts": False, "cache_dir": str(tmp_path / "cache")})
    # No tokenizer or processor: with length filtering off the dataset only reads the parquet file.
    dataset = rl_dataset.RLHFDataset(result.parquet_files["train"], tokenizer=None, config=config, processor=None)
    assert len(dataset) == 6
    dataset.processor = object()  # __getitem__ only asserts that a processor exists before expanding images
    item = dataset[0]
    parts = item["raw_prompt"][0]["content"]
    assert [p["type"] for p in parts] == ["image", "image", "text"]
    assert parts[0] == {"type": "image", "image": "data/ir/images/000000_visible.png", "source": "visible"}
    assert parts[1]["source"] == "infrared"
    assert item["index"] == 0 and item["extra_info"]["answer_sources"]
    variants = build_mono_source_variants(item["raw_prompt"])
    assert [v.source for v in variants] == ["visible", "infrared"]
    assert [p["image"] for p in variants[1].messages[0]["content"][:2]] == ["data/ir/images/000000_infrared.png"] * 2
