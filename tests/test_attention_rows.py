"""Attention rows recomputed from one layer's queries and keys equal eager attention's weights, while the model
itself runs sdpa (what Faithful-MR1's focus-token attention needs without eager attention everywhere)."""

from __future__ import annotations

import dataclasses

import pytest
import torch


@pytest.fixture(scope="module", params=["qwen2_5_vl", "qwen3_vl"])
def model_dir(request, tmp_path_factory, tiny_model_dir):
    if request.param == "qwen2_5_vl":
        return tiny_model_dir
    from mars.models.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny_qwen3_vl", arch="qwen3_vl", seed=0)


def padded_batch(model_dir, ir_data_dir):
    """Two prompts with images, each followed by a few text tokens of its own length, left-padded: (batch, the
    real-token mask)."""
    from transformers import AutoProcessor

    from mars.data.samples import load_samples
    from mars.processing import ImageCache, MultimodalEncoder
    from mars.processing.multimodal import collate

    processor = AutoProcessor.from_pretrained(model_dir)
    samples = load_samples(str(ir_data_dir / "val.parquet"), "error")[:2]
    prompts = MultimodalEncoder(processor).encode([s.messages for s in samples], ImageCache(processor.image_processor))
    generator = torch.Generator().manual_seed(0)
    longer = []
    for prompt, extra in zip(prompts, (3, 11)):
        tail = torch.randint(10, 200, (1, extra), generator=generator)
        longer.append(dataclasses.replace(
            prompt, input_ids=torch.cat([prompt.input_ids, tail], 1),
            attention_mask=torch.cat([prompt.attention_mask, torch.ones_like(tail)], 1),
            mm_token_type_ids=torch.cat([prompt.mm_token_type_ids, torch.zeros_like(tail)], 1)))
    batch = collate(longer, processor.tokenizer.pad_token_id)
    return batch, batch["attention_mask"].bool()


@pytest.mark.parametrize("layer", [0, -1])
def test_recomputed_rows_equal_eager_attention_while_the_model_runs_sdpa(model_dir, ir_data_dir, layer):
    from transformers import AutoModelForImageTextToText

    from mars.hf.attention import attention_rows, layer_input

    batch, real = padded_batch(model_dir, ir_data_dir)
    eager = AutoModelForImageTextToText.from_pretrained(model_dir, attn_implementation="eager").eval()
    sdpa = AutoModelForImageTextToText.from_pretrained(model_dir, attn_implementation="sdpa").eval()
    with torch.no_grad():
        expected = eager(**batch, output_attentions=True).attentions[layer]  # (B, H, L, L)
        with layer_input(sdpa, layer) as kept:
            sdpa(**batch)
    length = real.shape[1]
    queries = torch.stack([torch.tensor([length - 1, length - 2, length - 6]) for _ in range(2)])
    rows = attention_rows(kept, queries, real)
    assert rows.shape == (2, expected.shape[1], 3, length)
    for b in range(2):
        torch.testing.assert_close(rows[b], expected[b][:, queries[b]].float(), atol=2e-6, rtol=1e-4)
    assert torch.allclose(rows.sum(-1), torch.ones(rows.shape[:-1]), atol=1e-5)
    assert (rows[~real[:, None, None, :].expand_as(rows)] == 0).all()  # padding is never attended to
    assert (rows[:, :, 1:, length - 1] == 0).all()  # causal: the earlier queries do not see the last token


def test_the_hook_is_gone_after_the_block(tiny_model_dir):
    from transformers import AutoModelForImageTextToText

    from mars.hf.attention import decoder_layers, layer_input

    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    attention = decoder_layers(model)[-1].self_attn
    with layer_input(model) as kept:
        assert kept["attention"] is attention and len(attention._forward_pre_hooks) == 1
    assert len(attention._forward_pre_hooks) == 0
