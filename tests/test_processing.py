"""The multi-source data path: inputs for prompts and mono-source variants assembled from images decoded and
processed once per batch must equal what the processor gives for each prompt on its own."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

os.environ["HF_HUB_OFFLINE"] = "1"

from mars.anchors.variants import VARIANT_MODES, build_mono_source_variants  # noqa: E402
from mars.models import ARCHS, build_tiny_model  # noqa: E402
from mars.processing import (  # noqa: E402
    ImageCache,
    MultimodalEncoder,
    collate,
    decode_image,
    encode_with_variants,
    image_key,
    image_values,
)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """{arch: (processor, model)} of the tiny models, built once for this file."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    out = {}
    for arch in ARCHS:
        path = build_tiny_model(tmp_path_factory.mktemp(arch) / "model", arch=arch)
        out[arch] = (AutoProcessor.from_pretrained(path), AutoModelForImageTextToText.from_pretrained(path).eval())
    return out


def picture(width: int, height: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def prompt(images, text="Detect all person in the images.", names=None):
    names = names or [f"source{k}" for k in range(len(images))]
    parts = [{"type": "image", "image": im, "source": n} for im, n in zip(images, names)]
    return [{"role": "user", "content": [*parts, {"type": "text", "text": text}]}]


def reference(processor, messages):
    """What verl's data path gets from the processor for one prompt on its own."""
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    images = [decode_image(v) for v in image_values(messages)] or None
    return processor(text=[text], images=images, return_tensors="pt")


def assert_same(expected, got):
    got = got.as_dict()
    assert set(expected.keys()) == set(got), (sorted(expected.keys()), sorted(got))
    for key in ("input_ids", "attention_mask", "mm_token_type_ids"):
        assert torch.equal(expected[key], got[key]), key
    if "pixel_values" in expected:
        assert torch.equal(expected["image_grid_thw"], got["image_grid_thw"])
        assert expected["pixel_values"].shape == got["pixel_values"].shape
        assert torch.allclose(expected["pixel_values"], got["pixel_values"], atol=1e-5)


def check_batch(processor, prompts, mode):
    batch = encode_with_variants(processor, prompts, mode=mode)
    assert len(batch.prompts) == len(batch.variants) == len(prompts)
    for p, encoded, variants, names in zip(prompts, batch.prompts, batch.variants, batch.variant_sources):
        assert_same(reference(processor, p), encoded)
        expected_variants = build_mono_source_variants(p, mode=mode)
        assert names == [v.source for v in expected_variants]
        assert len(variants) == len(expected_variants)
        for variant, got in zip(expected_variants, variants):
            assert_same(reference(processor, variant.messages), got)
    return batch


# ---------------------------------------------------------------- equality with the processor


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("sources", [2, 6])
@pytest.mark.parametrize("mode", VARIANT_MODES)
def test_prompts_and_variants_equal_the_processor_on_each(tiny, arch, sources, mode):
    processor = tiny[arch][0]
    # sizes that are and are not multiples of the patch grid, and sources of different sizes within a prompt
    sizes = [(112, 112), (140, 84), (100, 75), (56, 168), (224, 224), (90, 120)]
    prompts = [
        prompt([picture(*sizes[(k + i) % len(sizes)], seed=10 * i + k) for k in range(sources)], f"Question {i}?")
        for i in range(3)
    ]
    batch = check_batch(processor, prompts, mode)
    distinct_sources = 3 * sources
    if mode == "duplicate":
        assert batch.stats.processed == distinct_sources  # each image processed once, though shown 1 + K times
        assert batch.stats.requests == 3 * sources * (1 + sources)
    elif mode == "drop":
        assert batch.stats.processed == distinct_sources and batch.stats.requests == 3 * 2 * sources
    else:  # blank: plus one black image per distinct size
        assert distinct_sources < batch.stats.processed <= distinct_sources + len(sizes)


@pytest.mark.parametrize("arch", ARCHS)
def test_images_given_as_paths_bytes_and_dicts(tiny, arch, tmp_path):
    processor = tiny[arch][0]
    paths = []
    for k, fmt in enumerate(["PNG", "JPEG", "PNG", "JPEG"]):
        path = tmp_path / f"im{k}.{fmt.lower()}"
        picture(120 + 8 * k, 96, seed=k).save(path, format=fmt)
        paths.append(path)
    buffer = io.BytesIO()
    picture(64, 64, seed=9).convert("L").save(buffer, format="PNG")  # greyscale: decoded to RGB like the processor
    prompts = [
        prompt([str(paths[0]), paths[1]]),
        prompt([f"file://{paths[0]}", {"path": str(paths[2])}, {"bytes": buffer.getvalue()}]),
        prompt([str(paths[3]), str(paths[1])]),
    ]
    batch = check_batch(processor, prompts, "duplicate")
    # paths[0] (twice, once as file://) and paths[1] (twice) are decoded once each
    assert batch.stats.decoded == batch.stats.processed == 5


@pytest.mark.parametrize("arch", ARCHS)
def test_prompts_without_images_and_explicit_variants(tiny, arch):
    processor = tiny[arch][0]
    a, b = picture(112, 112, 1), picture(84, 140, 2)
    text_only = [{"role": "user", "content": [{"type": "text", "text": "Is this a cookbook?"}]}]
    swapped = prompt([b, a], names=["b", "a"])
    single = prompt([a])  # one source: no anchors
    batch = encode_with_variants(processor, [text_only, swapped, single], variants=[[], [swapped, prompt([a, a])], []])
    assert_same(reference(processor, text_only), batch.prompts[0])
    assert batch.prompts[0].pixel_values is None
    assert_same(reference(processor, swapped), batch.variants[1][0])
    assert_same(reference(processor, prompt([a, a])), batch.variants[1][1])
    assert batch.stats.processed == 2
    assert encode_with_variants(processor, [single]).variants == [[]]


@settings(max_examples=15)
@given(
    data=st.data(),
    arch=st.sampled_from(ARCHS),
    mode=st.sampled_from(VARIANT_MODES),
    sources=st.integers(1, 4),
)
def test_any_image_sizes_give_the_processors_result(tiny, data, arch, mode, sources):
    processor = tiny[arch][0]
    side = st.integers(20, 260)
    images = [picture(data.draw(side), data.draw(side), seed=k) for k in range(sources)]
    check_batch(processor, [prompt(images)], mode)


# ---------------------------------------------------------------- batching and generation


@pytest.mark.parametrize("arch", ARCHS)
def test_collated_variants_equal_a_padded_processor_batch_and_generate(tiny, arch):
    processor, model = tiny[arch]
    images = [picture(112, 112, 1), picture(168, 112, 2)]
    batch = encode_with_variants(processor, [prompt(images)], mode="drop")
    rows = [batch.prompts[0], *batch.variants[0]]
    messages = [prompt(images)] + [v.messages for v in build_mono_source_variants(prompt(images), mode="drop")]
    texts = [processor.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in messages]
    all_images = [im for m in messages for im in image_values(m)]
    expected = processor(text=texts, images=all_images, padding=True, padding_side="left", return_tensors="pt")
    got = collate(rows, processor.tokenizer.pad_token_id)
    for key in ("input_ids", "attention_mask", "mm_token_type_ids", "image_grid_thw"):
        assert torch.equal(expected[key], got[key]), key
    assert torch.allclose(expected["pixel_values"], got["pixel_values"], atol=1e-5)
    with torch.no_grad():  # greedy, as anchors are decoded
        out = model.generate(**got, do_sample=False, max_new_tokens=5)
    assert out.shape[0] == 3
    right = collate(rows, 0, padding_side="right")
    assert right["attention_mask"][:, 0].all()
    with pytest.raises(ValueError):
        collate(rows, 0, padding_side="middle")
    with pytest.raises(ValueError):
        collate([], 0)


# ---------------------------------------------------------------- the cache and errors


def test_cache_keys_paths_by_location_and_objects_by_identity(tmp_path):
    path = tmp_path / "a.png"
    assert image_key(str(path)) == image_key(f"file://{path}") == image_key(path) == image_key({"path": str(path)})
    assert image_key(str(tmp_path / "sub" / ".." / "a.png")) == image_key(path)
    one, two = picture(8, 8, 0), picture(8, 8, 0)
    assert image_key(one) != image_key(two) and image_key(one) == image_key({"image": one})


def test_cache_processes_new_images_only(tiny):
    processor = tiny["qwen2_5_vl"][0]
    cache = ImageCache(processor.image_processor)
    a, b = picture(112, 112, 1), picture(56, 56, 2)
    cache.prepare([a, a, b])
    cache.prepare([b, a])
    assert cache.stats.processed == 2 and len(cache) == 2 and a in cache
    assert cache[a].num_tokens == 16 and cache[b].num_tokens == 4
    with pytest.raises(KeyError, match="not prepared"):
        cache[picture(8, 8, 3)]


def test_clear_errors(tiny, tmp_path):
    processor = tiny["qwen2_5_vl"][0]
    with pytest.raises(ValueError, match="cannot decode image"):
        encode_with_variants(processor, [prompt([str(tmp_path / "missing.png"), picture(28, 28, 0)])])
    with pytest.raises(TypeError, match="unsupported image"):
        decode_image(3.5)
    with pytest.raises(TypeError, match="needs 'bytes', 'path' or 'image'"):
        image_key({"url": "x"})
    # an image part the template renders but that is not an image slot: placeholders and images disagree
    odd = [{"role": "user", "content": [{"type": "image_url", "image_url": "x"}, {"type": "text", "text": "q"}]}]
    with pytest.raises(ValueError, match="image placeholders"):
        MultimodalEncoder(processor).encode([odd])
    with pytest.raises(ValueError, match="prompts but variants"):
        encode_with_variants(processor, [odd], variants=[])
    with pytest.raises(ValueError, match="source names"):
        encode_with_variants(processor, [prompt([picture(28, 28, 0)] * 2, names=["x", "x"])])
