"""Faithful-MR1's reinforcing stage on a tiny Qwen2.5-VL (our interpretation, mars/hf/focus.py): the causal map from
masked copies of a prompt, each trajectory's focus attention per region, and the step that turns them into rewards."""

from __future__ import annotations

import json
from contextlib import nullcontext

import numpy as np
import pytest
import torch

from mars.hf.focus import FocusJob, answer_token_masks, causal_maps, focus_region_attention
from mars.hf.perception import image_geometry
from mars.perception.focus import grid_regions


@pytest.fixture(scope="module")
def setting(tiny_model_dir, ir_data_dir):
    """The tiny model, two encoded prompts with their images, a response for each (a few tokens of the vocabulary),
    and the processor's geometry."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from mars.data.samples import load_samples
    from mars.processing import ImageCache, MultimodalEncoder

    processor = AutoProcessor.from_pretrained(str(tiny_model_dir))
    model = AutoModelForImageTextToText.from_pretrained(str(tiny_model_dir), dtype=torch.float32).eval()
    samples = load_samples(f"{ir_data_dir}/val.parquet")[:2]
    prompts = MultimodalEncoder(processor).encode([s.messages for s in samples], ImageCache(processor.image_processor))
    tokenizer = processor.tokenizer
    responses = [torch.tensor(tokenizer.encode("<think>look</think><answer>Yes</answer>")),
                 torch.tensor(tokenizer.encode("<answer>No</answer>"))]
    return model, tokenizer, prompts, responses, image_geometry(processor.image_processor)


def ignoring_region(model, prompt, cells: int, region: int, merge: int):
    """A forward pre-hook on the vision tower that overwrites the patch rows of ``region`` with a constant: a model
    built to ignore that region's pixels (whatever they are, the tower sees the same input)."""
    tokens = grid_regions(prompt.image_grid_thw.tolist(), merge, cells)[region]
    rows = tokens.repeat_interleave(merge * merge)

    def constant(module, args, kwargs):
        pixels = (kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]).clone()
        if len(pixels) == len(rows):  # every copy of the prompt: its pixel rows
            pixels[rows] = 0.123
        elif len(pixels) % len(rows) == 0:  # copies batched: the same rows in each
            pixels.view(-1, len(rows), pixels.shape[-1])[:, rows] = 0.123
        if "hidden_states" in kwargs:
            return args, {**kwargs, "hidden_states": pixels}
        return (pixels, *args[1:]), kwargs

    return model.model.visual.register_forward_pre_hook(constant, with_kwargs=True)


def test_the_causal_map_of_a_region_the_model_ignores_is_zero(setting):
    model, tokenizer, prompts, responses, geometry = setting
    merge, cells, ignored = geometry[1], 2, 1
    masks = answer_token_masks(responses[:1], tokenizer, len(responses[0]))
    args = (geometry, torch.device("cpu"), tokenizer.pad_token_id or 0, 1.0, nullcontext)
    plain = causal_maps(model, prompts[:1], responses[:1], masks, cells, *args)[0]
    assert plain.shape == (4,) and plain[ignored] > 0.01  # the real model does depend on that region
    handle = ignoring_region(model, prompts[0], cells, ignored, merge)
    try:
        blind = causal_maps(model, prompts[:1], responses[:1], masks, cells, *args)[0]
    finally:
        handle.remove()
    assert blind[ignored] == 0.0  # masking what the model does not look at changes nothing
    assert blind.sum() == pytest.approx(1.0) and (blind >= 0).all()  # the others still share the drop


def test_a_model_that_ignores_the_image_has_a_flat_causal_map(setting):
    model, tokenizer, prompts, responses, geometry = setting
    handle = model.model.visual.register_forward_pre_hook(
        lambda module, args, kwargs: ((torch.zeros_like(args[0]), *args[1:]), kwargs) if args else
        (args, {**kwargs, "hidden_states": torch.zeros_like(kwargs["hidden_states"])}), with_kwargs=True)
    try:
        maps = causal_maps(model, prompts, responses, answer_token_masks(responses, tokenizer, 20), 3, geometry,
                           torch.device("cpu"), tokenizer.pad_token_id or 0, 1.0, nullcontext)
    finally:
        handle.remove()
    assert maps.shape == (2, 9) and maps.abs().max() == 0.0


def test_the_focus_attention_per_region_is_read_at_the_first_focus_token(setting):
    from mars.hf.attention import attention_rows, layer_input
    from mars.hf.log_probs import teacher_forced

    model, tokenizer, prompts, responses, geometry = setting
    focus_id = int(responses[0][2])  # a token of the first response, standing for the focus token
    with_focus = [torch.cat([responses[0][:2], torch.tensor([focus_id]), responses[0][2:]]), responses[1]]
    assert int((with_focus[0] == focus_id).sum()) == 2 and focus_id not in with_focus[1].tolist()
    rows = np.arange(2)
    with layer_input(model, -1) as kept:
        *_, batch = teacher_forced(model, prompts, with_focus, rows, 30, torch.device("cpu"),
                                   tokenizer.pad_token_id or 0, 1.0, nullcontext)
    shares = focus_region_attention(kept, batch, prompts, with_focus, rows, FocusJob(focus_id, -1, 2), geometry[1])
    assert shares[1].abs().sum() == 0  # no focus token: no attention to share, no bonus
    assert shares[0].sum() == pytest.approx(1.0)
    query = prompts[0].input_ids.shape[1] + 2  # the first of the two focus tokens
    row = attention_rows(kept, torch.tensor([[query, query]]), batch["attention_mask"]).mean(dim=1)[0, 0]
    image = row[batch["mm_token_type_ids"][0] == 1]
    regions = grid_regions(prompts[0].image_grid_thw.tolist(), geometry[1], 2)
    expected = (regions.double() * image.double()).sum(dim=1) / image.double().sum()
    torch.testing.assert_close(shares[0], expected)
    later = prompts[0].input_ids.shape[1] + 3  # the second one's row differs: the first is the one read
    other = attention_rows(kept, torch.tensor([[later, later]]), batch["attention_mask"]).mean(dim=1)[0, 0]
    other = other[batch["mm_token_type_ids"][0] == 1]
    assert not torch.allclose((regions.double() * other.double()).sum(dim=1) / other.double().sum(), expected)
    # perception.attention=response: the mean row of the response tokens from the first focus token on
    whole = focus_region_attention(kept, batch, prompts, with_focus, rows, FocusJob(focus_id, -1, 2, "response"),
                                   geometry[1])
    first, last = query, prompts[0].input_ids.shape[1] + len(with_focus[0])
    positions = torch.arange(first, last).view(1, -1)
    mean = attention_rows(kept, positions.expand(2, -1), batch["attention_mask"]).mean(dim=1)[0].mean(dim=0)
    mean = mean[batch["mm_token_type_ids"][0] == 1].double()
    torch.testing.assert_close(whole[0], (regions.double() * mean).sum(dim=1) / mean.sum())
    assert not torch.allclose(whole[0], expected) and whole[1].abs().sum() == 0


def test_a_faithful_mr1_run_reshapes_the_rewards_of_correct_answers(tiny_model_dir, ir_data_dir, tmp_path):
    """``perception=faithful_mr1`` on the local engine: the anchoring warm start, then the stage's metrics."""
    from mars.engines.local.run import run
    from tests.test_local_engine import tiny_cfg

    cfg = tiny_cfg(tmp_path / "run", tiny_model_dir, ir_data_dir, "perception=faithful_mr1",
                   "trainer.total_training_steps=1", "mars.sft_warmup.steps=8", "perception.cells=2")
    run(cfg, write=lambda line: None)
    history = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    step = [h for h in history if h.get("step") == 1 and "perception/faithful/bonus" in h][0]
    assert 0 <= step["perception/faithful/bonus"] <= 1
    assert 0 <= step["perception/faithful/with_focus_share"] <= 1
    assert (step["perception/faithful/causal_maps"] >= 1) == (step["perception/faithful/correct_share"] > 0)
    assert any("perception/focus_in_box" in h for h in history)  # the anchoring stage ran: the token exists


def test_faithful_mr1_composes_runs_its_anchoring_stage_and_refuses_what_cannot_work(tiny_model_dir, ir_data_dir,
                                                                                     tmp_path):
    from transformers import AutoProcessor

    from mars.config.compose import ConfigError, compose_config
    from mars.hf.warm_start import focus_settings
    from mars.perception.methods import perception_settings
    from mars.training.preflight import check_perception
    from mars.training.settings import SettingsError
    from tests.test_local_engine import tiny_cfg

    cfg = compose_config("embedded", ["perception=faithful_mr1", "mars.sft_warmup.focus.layer=0"])
    settings = perception_settings(cfg)
    assert (settings.name, settings.cells, settings.focus_reward, settings.focus_layer) == ("faithful_mr1", 3, 0.5, 0)
    assert focus_settings(cfg) == {"token": "<Focus>", "weight": 1.0, "layer": 0}  # stage 1, without focus.enable
    with pytest.raises(ConfigError, match=r"perception.cells=9: valid: an integer in \[1, 4\]"):
        compose_config("embedded", ["perception=faithful_mr1", "perception.cells=9"])
    processor = AutoProcessor.from_pretrained(str(tiny_model_dir))  # a model without the focus token
    no_stage = tiny_cfg(tmp_path / "run", tiny_model_dir, ir_data_dir, "perception=faithful_mr1",
                        "mars.sft_warmup.steps=0")
    with pytest.raises(SettingsError, match="no focus token <Focus>.*mars.sft_warmup.steps=0"):
        check_perception(no_stage, processor)
    check_perception(tiny_cfg(tmp_path / "run2", tiny_model_dir, ir_data_dir, "perception=faithful_mr1",
                              "mars.sft_warmup.steps=4"), processor)  # the warm start will add it
