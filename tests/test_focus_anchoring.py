"""Faithful-MR1's anchoring stage in the warm start (``mars.sft_warmup.focus``, our interpretation): the focus token
added and saved with the model, the image tokens inside the boxes, and its attention trained toward them."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from mars.config.compose import compose_config
from mars.hf.focus import image_token_mask, sample_regions
from mars.hf.warm_start import warm_started_model


def focus_cfg(tmp_path, model_dir, data_dir, *overrides):
    return compose_config("embedded", [
        f"actor_rollout_ref.model.path={model_dir}",
        f"data.train_files={data_dir}/train.parquet",
        f"data.val_files={data_dir}/val.parquet",
        f"mars.sft_warmup.cache_dir={tmp_path / 'cache'}",
        "mars.sft_warmup.steps=12",
        "mars.sft_warmup.batch_size=4",
        "mars.sft_warmup.focus.enable=true",
        *overrides,
    ])


def test_regions_come_from_extra_info_or_a_grounding_answer():
    assert sample_regions({"regions": [[1, 2, 3, 4]]}, "<answer>No</answer>") == [[1.0, 2.0, 3.0, 4.0]]
    assert sample_regions({"reward": "grounding", "regions": []}, "<answer>[[5, 6, 7, 8]]</answer>") == [[5.0, 6.0, 7.0, 8.0]]
    assert sample_regions({"reward": "vqa"}, "<answer>Yes</answer>") == []
    assert sample_regions({"reward": "grounding"}, "<answer>not boxes</answer>") == []


def test_the_in_box_mask_covers_each_images_tokens_in_order(tiny_model_dir, ir_data_dir):
    from transformers import AutoProcessor

    from mars.data.samples import load_samples
    from mars.perception.focus import box_token_mask
    from mars.processing import ImageCache, MultimodalEncoder

    processor = AutoProcessor.from_pretrained(str(tiny_model_dir))
    samples = [s for s in load_samples(f"{ir_data_dir}/train.parquet") if len(s.extra_info["regions"])]
    # the sample with the biggest person: its box holds some tokens' centres
    sample = max(samples, key=lambda s: max((b[2] - b[0]) * (b[3] - b[1]) for b in s.extra_info["regions"]))
    prompt = MultimodalEncoder(processor).encode([sample.messages], ImageCache(processor.image_processor))[0]
    regions = sample_regions(sample.extra_info, sample.ground_truth)
    mask = image_token_mask(prompt, regions, sample.extra_info["image_size"], 2)
    per_image = box_token_mask(regions, tuple(sample.extra_info["image_size"]), prompt.image_grid_thw[0].tolist(), 2)
    assert len(prompt.image_grid_thw) == 2 and int((prompt.mm_token_type_ids == 1).sum()) == len(mask)
    assert torch.equal(mask, torch.cat([per_image, per_image]))  # visible and infrared are aligned
    assert 0 < int(mask.sum()) < len(mask)
    import numpy as np

    assert torch.equal(image_token_mask(prompt, regions, np.array(sample.extra_info["image_size"]), 2), mask)  # verl
    assert image_token_mask(prompt, [], sample.extra_info["image_size"], 2) is None
    assert image_token_mask(prompt, [[500.0, 500.0, 600.0, 600.0]], sample.extra_info["image_size"], 2) is None  # outside


def test_the_anchoring_stage_adds_the_token_and_moves_its_attention_into_the_boxes(tiny_model_dir, ir_data_dir,
                                                                                   tmp_path):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    lines: list[str] = []
    path = Path(warm_started_model(focus_cfg(tmp_path, tiny_model_dir, ir_data_dir), write=lines.append))
    summary = json.loads((path / "warm_start.json").read_text())
    before, after = summary["focus"]["before"], summary["focus"]["after"]
    assert before["prompts"] == after["prompts"] > 0
    assert 0 < after["focus_in_box_uniform"] < 1
    assert after["focus_in_box"] > before["focus_in_box"] and after["focus_in_box"] > after["focus_in_box_uniform"]
    assert any("focus token's attention inside the regions" in line for line in lines)
    # saved with the model: merge, inference and verl load the token with it
    processor = AutoProcessor.from_pretrained(str(path))
    model = AutoModelForImageTextToText.from_pretrained(str(path))
    focus_id = processor.tokenizer.convert_tokens_to_ids("<Focus>")
    assert focus_id != processor.tokenizer.unk_token_id and focus_id < model.get_input_embeddings().weight.shape[0]
    assert processor.tokenizer.decode([focus_id]) == "<Focus>"
    # a warm start without the focus stage is another cache entry
    plain = warm_started_model(focus_cfg(tmp_path, tiny_model_dir, ir_data_dir, "mars.sft_warmup.focus.enable=false"),
                               write=lines.append)
    assert Path(plain) != path and "focus" not in json.loads((Path(plain) / "warm_start.json").read_text())


def test_a_run_with_the_anchoring_stage_logs_where_the_focus_token_looks(tiny_model_dir, ir_data_dir, tmp_path):
    """``perception/focus_in_box`` and its uniform share at every validation of the local engine, and a panel."""
    from mars.engines.local.run import run
    from tests.test_local_engine import tiny_cfg

    cfg = tiny_cfg(tmp_path / "run", tiny_model_dir, ir_data_dir, "mars.sft_warmup.focus.enable=true",
                   "trainer.total_training_steps=1", "trainer.test_freq=1", "mars.sft_warmup.steps=4")
    run(cfg, write=lambda line: None)
    history = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    validated = [h for h in history if "val/reward" in h]
    assert [h["step"] for h in validated] == [0, 1]
    for h in validated:
        assert 0 <= h["perception/focus_in_box"] <= 1 and 0 < h["perception/focus_in_box_uniform"] < 1
    assert (tmp_path / "run" / "training.png").stat().st_size > 0
