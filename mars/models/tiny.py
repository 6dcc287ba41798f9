"""The tiny default model: Qwen2.5-VL or Qwen3-VL, real architecture, random weights, built locally in seconds.

It exists so that everything MARS does with a vision-language model (multi-image prompts, the processor, rollouts,
the loss, checkpoint conversion) can run end to end on a CPU, in CI, with nothing downloaded. The directory written
is an ordinary Hugging Face model directory: ``AutoProcessor.from_pretrained(DIR)``,
``AutoModelForImageTextToText.from_pretrained(DIR)``, ``verl.utils.hf_tokenizer(DIR)`` and
``verl.utils.hf_processor(DIR)`` all load it offline.

Only the sizes are shrunk (hidden 64, 2 layers, a 2-block vision tower); the structural constants that the data
path depends on are the real ones: patch size (14 for Qwen2.5-VL, 16 for Qwen3-VL), spatial merge 2, temporal
patch 2, multimodal RoPE sections summing to half the head dimension, and Qwen's special tokens and chat format.
"""

from __future__ import annotations

import json
import shutil
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from mars.models.tokenizer import DEFAULT_SYSTEM_PROMPT, EOS_TOKEN, PAD_TOKEN, build_tokenizer

ARCHS: tuple[str, ...] = ("qwen2_5_vl", "qwen3_vl")
BUILD_INFO_FILE = "mars_tiny_model.json"  # how the directory was made (arch, seed, sizes); ignored by transformers


@dataclass(frozen=True)
class TinySizes:
    """The shrunk dimensions; the defaults give a few hundred thousand parameters."""

    hidden_size: int = 64
    intermediate_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    vision_hidden_size: int = 32
    vision_intermediate_size: int = 64
    vision_depth: int = 2
    vision_heads: int = 2
    vocab_size: int = 3072
    max_position_embeddings: int = 8192
    # per-image visual-token budget (after the 2x2 merge): small images stay small, large ones are scaled down
    min_image_tokens: int = 4
    max_image_tokens: int = 64

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads


@dataclass(frozen=True)
class ArchSpec:
    """What differs between the two supported architectures, beyond the class names."""

    patch_size: int
    image_mean: tuple[float, float, float]
    image_std: tuple[float, float, float]
    default_system_prompt: str | None
    rope_theta: float
    extra_rope: dict = field(default_factory=dict)


_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
ARCH_SPECS = {
    "qwen2_5_vl": ArchSpec(14, _CLIP_MEAN, _CLIP_STD, DEFAULT_SYSTEM_PROMPT, rope_theta=1_000_000.0),
    "qwen3_vl": ArchSpec(
        16, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), None, rope_theta=5_000_000.0, extra_rope={"mrope_interleaved": True}
    ),
}
MERGE_SIZE = 2
TEMPORAL_PATCH_SIZE = 2


def mrope_section(head_dim: int) -> list[int]:
    """Split the head's rotary half (head_dim/2 frequencies) into temporal/height/width parts, as Qwen does.

    The full-size models use [16, 24, 24] of 64 (Qwen2.5-VL) and [24, 20, 20] (Qwen3-VL); any split that sums to
    head_dim/2 is valid. We give the temporal axis the remainder so that the sum is exact for every head size.
    """
    half = head_dim // 2
    if head_dim % 2 or half < 3:
        raise ValueError(f"head_dim must be even and at least 6 for multimodal RoPE, got {head_dim}")
    spatial = (half * 3) // 8
    return [half - 2 * spatial, spatial, spatial]


def _model_config(arch: str, sizes: TinySizes, token_ids: dict[str, int], dtype: str):
    spec = ARCH_SPECS[arch]
    text = dict(
        vocab_size=sizes.vocab_size,
        hidden_size=sizes.hidden_size,
        intermediate_size=sizes.intermediate_size,
        num_hidden_layers=sizes.num_layers,
        num_attention_heads=sizes.num_heads,
        num_key_value_heads=sizes.num_kv_heads,
        max_position_embeddings=sizes.max_position_embeddings,
        rope_parameters={
            "rope_type": "default",
            "rope_theta": spec.rope_theta,
            "mrope_section": mrope_section(sizes.head_dim),
            **spec.extra_rope,
        },
        bos_token_id=token_ids["bos"],
        eos_token_id=token_ids["eos"],
        pad_token_id=token_ids["pad"],
        dtype=dtype,
    )
    vision = dict(
        depth=sizes.vision_depth,
        hidden_size=sizes.vision_hidden_size,
        intermediate_size=sizes.vision_intermediate_size,
        num_heads=sizes.vision_heads,
        out_hidden_size=sizes.hidden_size,
        patch_size=spec.patch_size,
        spatial_merge_size=MERGE_SIZE,
        temporal_patch_size=TEMPORAL_PATCH_SIZE,
    )
    special = dict(
        image_token_id=token_ids["image"],
        video_token_id=token_ids["video"],
        vision_start_token_id=token_ids["vision_start"],
        vision_end_token_id=token_ids["vision_end"],
        tie_word_embeddings=True,  # as the small Qwen-VL checkpoints do; keeps the embedding counted once
        bos_token_id=token_ids["bos"],
        eos_token_id=token_ids["eos"],
        pad_token_id=token_ids["pad"],
        dtype=dtype,
    )
    if arch == "qwen2_5_vl":
        from transformers import Qwen2_5_VLConfig

        # windowed attention in every block but the last, like the full model's mix of window and full blocks
        vision.update(window_size=112, fullatt_block_indexes=[sizes.vision_depth - 1], tokens_per_second=2)
        config = Qwen2_5_VLConfig(text_config=text, vision_config=vision, **special)
        # this class moves top-level token ids into text_config; restore them where readers of config.json look
        for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
            setattr(config, name, special[name])
        return config
    from transformers import Qwen3VLConfig

    text["head_dim"] = sizes.head_dim
    # a 16x16 learned position grid (interpolated to any image size) and one deepstack layer feeding the LLM
    vision.update(num_position_embeddings=256, deepstack_visual_indexes=[0], hidden_act="gelu_pytorch_tanh")
    return Qwen3VLConfig(text_config=text, vision_config=vision, **special)


def _processor(arch: str, sizes: TinySizes, tokenizer):
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor

    spec = ARCH_SPECS[arch]
    factor = spec.patch_size * MERGE_SIZE  # one visual token covers factor x factor pixels
    pixels = {"shortest_edge": sizes.min_image_tokens * factor**2, "longest_edge": sizes.max_image_tokens * factor**2}
    common = dict(
        patch_size=spec.patch_size,
        merge_size=MERGE_SIZE,
        temporal_patch_size=TEMPORAL_PATCH_SIZE,
        image_mean=list(spec.image_mean),
        image_std=list(spec.image_std),
    )
    # `size` is passed as a fresh dict: these classes otherwise write min/max pixels into a class-level default
    image_processor = Qwen2VLImageProcessor(size=dict(pixels), **common)
    if arch == "qwen2_5_vl":
        from transformers import Qwen2_5_VLProcessor
        from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

        video_processor = Qwen2VLVideoProcessor(size=dict(pixels), **common)
        processor_class = Qwen2_5_VLProcessor
    else:
        from transformers import Qwen3VLProcessor
        from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

        video_processor = Qwen3VLVideoProcessor(size=dict(pixels), **common)
        processor_class = Qwen3VLProcessor
    return processor_class(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=tokenizer.chat_template,
    )


def build_tiny_model(
    out_dir: str | Path,
    arch: str = "qwen2_5_vl",
    seed: int = 0,
    sizes: TinySizes | None = None,
    corpus_files: Sequence[str | Path] = (),
    dtype: str = "float32",
    overwrite: bool = False,
) -> Path:
    """Write a random-init ``arch`` model with its tokenizer and processor to ``out_dir``; return the path.

    The same ``seed`` (and sizes and corpus) gives byte-identical weights and tokenizer files. ``dtype`` is the
    stored weight type: float32 (default, best on CPU) or bfloat16. ``out_dir`` must be empty or absent or, with
    ``overwrite``, a directory this function wrote before (it is replaced).
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}: choose one of {ARCHS}")
    if dtype not in ("float32", "bfloat16"):
        raise ValueError(f"dtype must be float32 or bfloat16, got {dtype!r}")
    sizes = sizes or TinySizes()
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out} is not empty; choose another directory or pass overwrite=True (--overwrite)")
        if not (out / BUILD_INFO_FILE).is_file():
            # overwrite deletes the directory: only ever one this function wrote, never a user's folder by mistake
            raise FileExistsError(f"refusing to overwrite {out}: no {BUILD_INFO_FILE} there, so it is not a tiny model")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)

    tokenizer = build_tokenizer(sizes.vocab_size, corpus_files, ARCH_SPECS[arch].default_system_prompt)
    if len(tokenizer) != sizes.vocab_size:
        # the corpus ran out of merges: size the embedding to the tokenizer so that every row is a real token
        sizes = TinySizes(**{**asdict(sizes), "vocab_size": len(tokenizer)})
    token_ids = {
        name: tokenizer.convert_tokens_to_ids(token)
        for name, token in {
            "bos": PAD_TOKEN,  # Qwen has no BOS in prompts; its configs name <|endoftext|>
            "eos": EOS_TOKEN,
            "pad": PAD_TOKEN,
            "image": "<|image_pad|>",
            "video": "<|video_pad|>",
            "vision_start": "<|vision_start|>",
            "vision_end": "<|vision_end|>",
        }.items()
    }
    config = _model_config(arch, sizes, token_ids, dtype)
    model = _random_model(config, seed).to(getattr(torch, dtype))
    model.generation_config = _generation_config(token_ids)

    # the marker goes first: a build interrupted half-way still leaves a directory that overwrite=True may replace
    info = {"arch": arch, "seed": seed, "dtype": dtype, "sizes": asdict(sizes), "parameters": count_parameters(model)}
    (out / BUILD_INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
    with _quiet_progress_bars():  # a one-shard progress bar is noise in CLI output and test logs
        model.save_pretrained(out)
    _processor(arch, sizes, tokenizer).save_pretrained(out)
    return out


@contextmanager
def _quiet_progress_bars():
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _random_model(config, seed: int):
    from transformers import AutoModelForImageTextToText

    # fork_rng: seeding must not disturb the caller's random stream (tests, training scripts)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForImageTextToText.from_config(config)
    return model.eval()


def _generation_config(token_ids: dict[str, int]):
    from transformers import GenerationConfig

    # stop on the end of the assistant turn or on end-of-text, as Qwen's instruct checkpoints do
    return GenerationConfig(
        bos_token_id=token_ids["bos"],
        eos_token_id=[token_ids["eos"], token_ids["pad"]],
        pad_token_id=token_ids["pad"],
        do_sample=True,
        temperature=1.0,
        top_p=1.0,
    )


def count_parameters(model) -> int:
    """Distinct parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in model.parameters())
