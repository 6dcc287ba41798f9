"""The tiny default model: a real Qwen2.5-VL / Qwen3-VL architecture with random weights, built offline in seconds,
loadable by transformers and verl, and usable through the full multi-image path (template, processor, generate,
loss and gradients)."""

from __future__ import annotations

import hashlib
import json
import os
import time

import numpy as np
import pytest
import torch
from PIL import Image

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing may come from a model hub, ever

from mars.models import ARCHS, build_tiny_model  # noqa: E402
from mars.models.cli import main as model_cli  # noqa: E402
from mars.models.tiny import BUILD_INFO_FILE, mrope_section  # noqa: E402
from mars.models.tokenizer import build_tokenizer  # noqa: E402

EXPECTED_FILES = (
    "config.json", "model.safetensors", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
    "chat_template.jinja", "processor_config.json",
)
CLASSES = {
    "qwen2_5_vl": ("Qwen2_5_VLForConditionalGeneration", "Qwen2_5_VLProcessor"),
    "qwen3_vl": ("Qwen3VLForConditionalGeneration", "Qwen3VLProcessor"),
}


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    """Both architectures, built once for this file: {arch: (directory, build seconds)}."""
    out = {}
    for arch in ARCHS:
        start = time.perf_counter()
        path = build_tiny_model(tmp_path_factory.mktemp(arch) / "model", arch=arch, seed=0)
        out[arch] = (path, time.perf_counter() - start)
    return out


@pytest.fixture(scope="session")
def loaded(built):
    """{arch: (processor, model)} loaded back from disk with the Auto classes."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    return {
        arch: (AutoProcessor.from_pretrained(path), AutoModelForImageTextToText.from_pretrained(path).eval())
        for arch, (path, _) in built.items()
    }


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def random_images(count: int, size=(112, 112), seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)) for _ in range(count)]


def user_turn(images, text="Here are two images of the same scene. Detect all person in the images."):
    parts = [{"type": "image", "image": im} for im in images]
    return [{"role": "user", "content": [*parts, {"type": "text", "text": text}]}]


# ---------------------------------------------------------------- the directory


@pytest.mark.parametrize("arch", ARCHS)
def test_writes_a_standard_hugging_face_directory_quickly(built, arch):
    path, seconds = built[arch]
    for name in EXPECTED_FILES:
        assert (path / name).is_file(), f"{name} missing from {sorted(p.name for p in path.iterdir())}"
    assert seconds < 15, f"building took {seconds:.1f}s"  # a few seconds; generous for loaded CI machines
    info = json.loads((path / BUILD_INFO_FILE).read_text())
    assert info["arch"] == arch and info["seed"] == 0
    assert 100_000 < info["parameters"] < 1_000_000


@pytest.mark.parametrize("arch", ARCHS)
def test_config_names_the_tokenizers_special_token_ids(built, loaded, arch):
    from transformers import AutoConfig

    path, _ = built[arch]
    processor, model = loaded[arch]
    config = AutoConfig.from_pretrained(path)
    tok = processor.tokenizer
    assert config.architectures == [CLASSES[arch][0]] and type(model).__name__ == CLASSES[arch][0]
    assert type(processor).__name__ == CLASSES[arch][1]
    assert config.image_token_id == tok.convert_tokens_to_ids("<|image_pad|>") == processor.image_token_id
    assert config.video_token_id == tok.convert_tokens_to_ids("<|video_pad|>")
    assert config.vision_start_token_id == tok.convert_tokens_to_ids("<|vision_start|>")
    assert config.vision_end_token_id == tok.convert_tokens_to_ids("<|vision_end|>")
    assert config.text_config.vocab_size == len(tok) == 3072
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    assert config.text_config.eos_token_id == tok.eos_token_id
    assert config.text_config.pad_token_id == tok.pad_token_id
    gen = model.generation_config
    assert gen.eos_token_id == [tok.eos_token_id, tok.pad_token_id] and gen.pad_token_id == tok.pad_token_id
    # the structural constants of the real models
    vision = config.vision_config
    assert (vision.patch_size, vision.spatial_merge_size, vision.temporal_patch_size) == (
        {"qwen2_5_vl": 14, "qwen3_vl": 16}[arch], 2, 2
    )
    assert processor.image_processor.patch_size == vision.patch_size and processor.image_processor.merge_size == 2
    head_dim = config.text_config.hidden_size // config.text_config.num_attention_heads
    assert sum(config.text_config.rope_parameters["mrope_section"]) == head_dim // 2


def test_mrope_sections_always_cover_half_the_head():
    for head_dim in range(6, 258, 2):
        section = mrope_section(head_dim)
        assert sum(section) == head_dim // 2 and min(section) >= 1
    assert mrope_section(128) == [16, 24, 24]  # Qwen2.5-VL's own split
    with pytest.raises(ValueError):
        mrope_section(7)


@pytest.mark.parametrize("arch", ARCHS)
def test_verl_loads_tokenizer_and_processor(built, arch):
    from verl.utils import hf_processor, hf_tokenizer

    path, _ = built[arch]
    tokenizer = hf_tokenizer(str(path))
    processor = hf_processor(str(path))  # returns None (with a warning) when anything fails
    assert processor is not None and type(processor).__name__ == CLASSES[arch][1]
    assert tokenizer.pad_token_id == tokenizer.convert_tokens_to_ids("<|endoftext|>")
    assert hasattr(processor, "get_rope_index")  # verl binds the model's mrope index function to it


def test_same_seed_same_bytes_other_seed_other_weights(built, tmp_path):
    path, _ = built["qwen2_5_vl"]
    again = build_tiny_model(tmp_path / "again", arch="qwen2_5_vl", seed=0)
    for name in ("model.safetensors", "tokenizer.json", "config.json", "chat_template.jinja"):
        assert sha256(again / name) == sha256(path / name), name
    other = build_tiny_model(tmp_path / "other", arch="qwen2_5_vl", seed=1)
    assert sha256(other / "model.safetensors") != sha256(path / "model.safetensors")
    assert sha256(other / "tokenizer.json") == sha256(path / "tokenizer.json")  # the seed is for the weights


def test_building_leaves_the_global_random_stream_alone(tmp_path):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_tiny_model(tmp_path / "m", arch="qwen3_vl", seed=5)
    assert torch.equal(torch.rand(3), expected)


# ---------------------------------------------------------------- tokenizer and chat template


@pytest.mark.parametrize("arch", ARCHS)
def test_tokenizer_round_trips_and_keeps_the_vocabulary_of_prompts(loaded, arch):
    tok = loaded[arch][0].tokenizer
    text = (
        "Here are two images of the same scene. Is the red object nearer to the camera than the blue one? "
        "CAM_FRONT CAM_BACK_LEFT <think>The infrared view shows a person.</think><answer>```json\n"
        '[{"bbox_2d": [12, 40, 88, 200], "label": "person"}]\n```</answer> '
        "Yes No A B C D E F 0123456789 ünïcødé 中文"
    )
    ids = tok(text)["input_ids"]
    assert tok.decode(ids) == text  # byte-level: any text, nothing unknown
    for token in ("<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|vision_start|>", "<|image_pad|>", "<think>"):
        assert len(tok(token)["input_ids"]) == 1, token
    for word in (" person", " images", " scene", "Yes", " camera"):
        assert len(tok(word)["input_ids"]) == 1, f"{word!r} should be one learned token"
    assert "<think>" in tok.decode(ids, skip_special_tokens=True)  # an ordinary token, unlike the chat markers
    assert len(ids) < len(text) / 2.0  # the BPE compresses the prompt language


def test_extra_corpus_files_extend_the_tokenizer(tmp_path):
    corpus = tmp_path / "extra.txt"
    corpus.write_text("\n".join(["the zyxwquv sensor array"] * 50), encoding="utf-8")
    plain, extended = build_tokenizer(), build_tokenizer(corpus_files=[corpus])
    assert len(plain(" zyxwquv")["input_ids"]) > 1
    assert len(extended(" zyxwquv")["input_ids"]) == 1
    with pytest.raises(ValueError, match="cannot read corpus file"):
        build_tokenizer(corpus_files=[tmp_path / "missing.txt"])


VISION = "<|vision_start|><|image_pad|><|vision_end|>"


@pytest.mark.parametrize("arch", ARCHS)
def test_chat_template_renders_qwens_format(loaded, arch):
    processor = loaded[arch][0]
    system = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n" if arch == "qwen2_5_vl" else ""
    messages = user_turn([None, None], "Is the red object nearer?")
    for part in messages[0]["content"][:2]:
        part["source"] = "depth"  # extra keys on parts are ignored
    assert processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == (
        f"{system}<|im_start|>user\n{VISION}{VISION}Is the red object nearer?<|im_end|>\n<|im_start|>assistant\n"
    )
    conversation = [
        {"role": "system", "content": "Answer briefly."},
        {
            "role": "user",
            "content": [{"type": "text", "text": "Look: "}, {"type": "image"}, {"type": "text", "text": "?"}],
        },
        {"role": "assistant", "content": "<think>x</think><answer>Yes</answer>"},
    ]
    assert processor.apply_chat_template(conversation, tokenize=False) == (
        "<|im_start|>system\nAnswer briefly.<|im_end|>\n"
        f"<|im_start|>user\nLook: {VISION}?<|im_end|>\n"
        "<|im_start|>assistant\n<think>x</think><answer>Yes</answer><|im_end|>\n"
    )
    six = processor.apply_chat_template(user_turn([None] * 6, "Q"), tokenize=False, add_vision_id=True)
    assert six.count(VISION) == 6 and "Picture 6: " in six and not six.endswith("assistant\n")


# ---------------------------------------------------------------- the full-size code path on a tiny model


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("count", [2, 6])
def test_multi_image_prompt_generates_with_sampling(loaded, arch, count):
    processor, model = loaded[arch]
    images = random_images(count, size=(112, 84), seed=count)
    text = processor.apply_chat_template(user_turn(images), tokenize=False, add_generation_prompt=True)
    inputs = processor(text=[text], images=images, return_tensors="pt")
    grid = inputs["image_grid_thw"]
    assert grid.shape == (count, 3)
    pads = int((inputs["input_ids"] == processor.image_token_id).sum())
    assert pads == int(grid.prod(-1).sum()) // 4  # 2x2 merge: one token per four patches
    torch.manual_seed(0)
    with torch.no_grad():
        out = model.generate(**inputs, do_sample=True, temperature=1.0, top_p=0.95, max_new_tokens=12)
    new = out[:, inputs["input_ids"].shape[1] :]
    assert 1 <= new.shape[1] <= 12 and int(new.max()) < len(processor.tokenizer)
    assert isinstance(processor.batch_decode(new, skip_special_tokens=True)[0], str)


@pytest.mark.parametrize("arch", ARCHS)
def test_batched_left_padded_generation(loaded, arch):
    processor, model = loaded[arch]
    two, six = random_images(2, seed=1), random_images(6, size=(56, 56), seed=2)
    texts = [
        processor.apply_chat_template(user_turn(ims), tokenize=False, add_generation_prompt=True) for ims in (two, six)
    ]
    inputs = processor(text=texts, images=two + six, padding=True, padding_side="left", return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, do_sample=False, max_new_tokens=6)
    assert out.shape[0] == 2


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("count", [2, 6])
def test_forward_with_labels_gives_finite_loss_and_gradients(loaded, arch, count):
    processor, model = loaded[arch]
    images = random_images(count, seed=10 + count)
    prompt = processor.apply_chat_template(user_turn(images), tokenize=False, add_generation_prompt=True)
    boxes = '[{"bbox_2d": [1, 2, 30, 40], "label": "person"}]'
    answer = f"<think>Two warm figures.</think><answer>```json\n{boxes}\n```</answer><|im_end|>"
    inputs = processor(text=[prompt + answer], images=images, return_tensors="pt")
    prompt_len = processor(text=[prompt], images=images, return_tensors="pt")["input_ids"].shape[1]
    labels = inputs["input_ids"].clone()
    labels[:, :prompt_len] = -100  # train on the answer only, as RL does
    model.train()
    try:
        model.zero_grad()
        loss = model(**inputs, labels=labels).loss
        loss.backward()
    finally:
        model.eval()
    assert torch.isfinite(loss) and 5.0 < loss.item() < 12.0  # about ln(3072) = 8.0 for random weights
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert all(torch.isfinite(g).all() for g in grads.values())
    assert any("visual" in n and g.abs().sum() > 0 for n, g in grads.items()), "no gradient reached the vision tower"
    assert any("language_model" in n and g.abs().sum() > 0 for n, g in grads.items())
    model.zero_grad()


def test_bfloat16_weights_load_as_bfloat16(tmp_path):
    from transformers import AutoModelForImageTextToText

    path = build_tiny_model(tmp_path / "bf16", arch="qwen2_5_vl", dtype="bfloat16")
    model = AutoModelForImageTextToText.from_pretrained(path, dtype="auto")
    assert next(model.parameters()).dtype == torch.bfloat16


# ---------------------------------------------------------------- the command line and errors


def test_cli_builds_and_refuses_a_non_empty_directory(tmp_path, capsys):
    from mars.cli import main as mars_main

    out = tmp_path / "tiny"
    assert mars_main(["model", "tiny", "--out", str(out), "--arch", "qwen3_vl", "--seed", "2"]) == 0
    assert "qwen3_vl" in capsys.readouterr().out
    assert json.loads((out / BUILD_INFO_FILE).read_text())["seed"] == 2
    assert model_cli(["tiny", "--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert model_cli(["tiny", "--out", str(out), "--overwrite"]) == 0
    assert json.loads((out / BUILD_INFO_FILE).read_text())["arch"] == "qwen2_5_vl"
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    assert model_cli(["tiny", "--out", str(precious), "--overwrite"]) == 2  # never deletes a folder it did not write
    assert (precious / "notes.txt").read_text() == "keep me"


def test_bad_arguments_raise_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown arch"):
        build_tiny_model(tmp_path / "x", arch="llava")
    with pytest.raises(ValueError, match="dtype"):
        build_tiny_model(tmp_path / "y", dtype="float16")
    with pytest.raises(ValueError, match="vocab_size"):
        build_tokenizer(vocab_size=100)
    with pytest.raises(SystemExit):
        model_cli(["tiny", "--out", str(tmp_path / "z"), "--arch", "llava"])
