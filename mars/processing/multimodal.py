"""Model inputs for multi-source prompts and their mono-source variants, with each image processed once.

The result for every prompt equals what the Qwen-VL processor gives for that prompt on its own,
``processor(text=[processor.apply_chat_template(messages, ...)], images=[its images], return_tensors="pt")``:
same ``input_ids`` (with one ``<|image_pad|>`` per visual token of each slot), ``attention_mask``,
``mm_token_type_ids``, and ``pixel_values`` / ``image_grid_thw`` concatenated over the prompt's images in order.
What changes is the cost: images come from an ``ImageCache`` (decoded and processed once per batch), and the
rendered chat text is tokenised once per distinct text (a ``duplicate`` variant usually renders exactly like its
prompt).

Why tokenising the template text and then repeating ``<|image_pad|>`` is exact: ``<|image_pad|>`` is a special
added token, so the tokenizer cuts the text around it before BPE; a run of n pads is n pad tokens and leaves the
neighbouring text's tokens unchanged. The tests check the equality against the processor for every variant mode.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import torch

from mars.anchors.variants import MonoSourceVariant, build_mono_source_variants, image_slots
from mars.processing.images import CacheStats, ImageCache

Messages = Sequence[dict[str, Any]]


@dataclass
class PromptInputs:
    """One prompt's model inputs, shaped like the processor's output for a single prompt (batch dimension 1)."""

    input_ids: torch.Tensor  # (1, L) int64
    attention_mask: torch.Tensor  # (1, L) int64
    mm_token_type_ids: torch.Tensor  # (1, L) int64: 1 on image tokens
    pixel_values: torch.Tensor | None  # (sum of the images' patch rows, patch dim), None without images
    image_grid_thw: torch.Tensor | None  # (images, 3) int64

    def as_dict(self) -> dict[str, torch.Tensor]:
        """The non-empty fields, as keyword arguments for the model's forward or ``generate``."""
        return {k: v for k, v in vars(self).items() if v is not None}


@dataclass
class EncodedBatch:
    """Inputs of a batch of prompts and of each prompt's mono-source variants."""

    prompts: list[PromptInputs]
    variants: list[list[PromptInputs]]  # variants[i][j]: the j-th variant of prompt i
    variant_sources: list[list[str]]  # the source name each variant shows
    stats: CacheStats = field(default_factory=CacheStats)


def image_values(messages: Messages) -> list[Any]:
    """The image values of a prompt's image parts, in prompt order."""
    return [messages[m]["content"][p]["image"] for m, p in image_slots(messages)]


class MultimodalEncoder:
    """Turns chat-message prompts into model inputs through one ``ImageCache``.

    ``chat_template_kwargs`` go to ``processor.apply_chat_template`` (e.g. ``add_vision_id=True``).
    """

    def __init__(self, processor, add_generation_prompt: bool = True, **chat_template_kwargs):
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.add_generation_prompt = add_generation_prompt
        self.chat_template_kwargs = chat_template_kwargs
        self.image_token_id = int(processor.image_token_id)
        self.video_token_id = getattr(processor, "video_token_id", None)

    def render(self, messages: Messages) -> str:
        """The prompt text with one ``<|image_pad|>`` per image slot."""
        return self.processor.apply_chat_template(
            list(messages),
            tokenize=False,
            add_generation_prompt=self.add_generation_prompt,
            **self.chat_template_kwargs,
        )

    def encode(self, prompts: Sequence[Messages], cache: ImageCache | None = None) -> list[PromptInputs]:
        """Inputs of every prompt; images through ``cache`` (a fresh one if not given), text tokenised once per
        distinct rendering."""
        cache = cache if cache is not None else ImageCache(self.processor.image_processor)
        images_per_prompt = [image_values(p) for p in prompts]
        cache.prepare(image for images in images_per_prompt for image in images)

        texts = [self.render(p) for p in prompts]
        distinct = list(dict.fromkeys(texts))
        token_ids = dict(zip(distinct, self.tokenizer(distinct)["input_ids"]))
        return [self.assemble(token_ids[t], images, cache) for t, images in zip(texts, images_per_prompt)]

    def assemble(self, template_ids: list[int], images: list[Any], cache: ImageCache) -> PromptInputs:
        """One prompt's inputs from token ids with ONE ``<|image_pad|>`` per image slot, each expanded to its
        image's visual tokens (also how the verl engine's ``hf`` rollout server builds its inputs)."""
        processed = [cache[image] for image in images]
        pads = [i for i, t in enumerate(template_ids) if t == self.image_token_id]
        if len(pads) != len(processed):
            raise ValueError(
                f"the rendered prompt has {len(pads)} image placeholders but {len(processed)} image parts: does the "
                "chat template render every image part as <|vision_start|><|image_pad|><|vision_end|>?"
            )
        ids: list[int] = []
        start = 0
        for pad, image in zip(pads, processed):
            ids.extend(template_ids[start:pad])
            ids.extend([self.image_token_id] * image.num_tokens)
            start = pad + 1
        ids.extend(template_ids[start:])

        input_ids = torch.tensor([ids], dtype=torch.long)
        token_types = torch.zeros_like(input_ids)
        token_types[input_ids == self.image_token_id] = 1
        if self.video_token_id is not None:
            token_types[input_ids == self.video_token_id] = 2
        return PromptInputs(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            mm_token_type_ids=token_types,
            pixel_values=torch.cat([p.pixel_values for p in processed]) if processed else None,
            image_grid_thw=torch.stack([p.grid_thw for p in processed]) if processed else None,
        )


def encode_with_variants(
    processor,
    prompts: Sequence[Messages],
    variants: Sequence[Sequence[MonoSourceVariant | Messages]] | None = None,
    *,
    mode: str = "duplicate",
    sources: Sequence[Sequence[str] | None] | None = None,
    anchor_sources: str | Iterable[str] | None = "all",
    add_generation_prompt: bool = True,
    decode_threads: int = 1,
    **chat_template_kwargs,
) -> EncodedBatch:
    """Model inputs of ``prompts`` and of their mono-source variants, decoding and processing each image once.

    ``variants[i]`` lists prompt i's variants (``MonoSourceVariant`` or plain message lists); when ``variants`` is
    None they are built here with ``build_mono_source_variants(prompt, sources[i], mode, anchor_sources)``.
    """
    if variants is None:
        if sources is not None and len(sources) != len(prompts):
            raise ValueError(f"got {len(prompts)} prompts but {len(sources)} source lists")
        variants = [
            build_mono_source_variants(p, sources[i] if sources is not None else None, mode, anchor_sources)
            for i, p in enumerate(prompts)
        ]
    elif len(variants) != len(prompts):
        raise ValueError(f"got {len(prompts)} prompts but variants for {len(variants)}")

    encoder = MultimodalEncoder(processor, add_generation_prompt, **chat_template_kwargs)
    cache = ImageCache(processor.image_processor, decode_threads=decode_threads)
    flat_variants = [v.messages if isinstance(v, MonoSourceVariant) else v for vs in variants for v in vs]
    # one pass over everything: every distinct image of prompts and variants is decoded and processed together
    encoded = encoder.encode([*prompts, *flat_variants], cache)

    prompt_inputs, rest = encoded[: len(prompts)], iter(encoded[len(prompts) :])
    variant_inputs = [[next(rest) for _ in vs] for vs in variants]
    names = [[v.source if isinstance(v, MonoSourceVariant) else "" for v in vs] for vs in variants]
    return EncodedBatch(prompts=prompt_inputs, variants=variant_inputs, variant_sources=names, stats=cache.stats)


def collate(inputs: Sequence[PromptInputs], pad_token_id: int, padding_side: str = "left") -> dict[str, torch.Tensor]:
    """Pad a list of single-prompt inputs into one batch (left padding for generation); images concatenated in
    prompt order, as the processor does for a batch of texts."""
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    if not inputs:
        raise ValueError("nothing to collate")
    length = max(x.input_ids.shape[1] for x in inputs)

    def pad(t: torch.Tensor, value: int) -> torch.Tensor:
        fill = t.new_full((1, length - t.shape[1]), value)
        return torch.cat([fill, t] if padding_side == "left" else [t, fill], dim=1)

    batch = {
        "input_ids": torch.cat([pad(x.input_ids, pad_token_id) for x in inputs]),
        "attention_mask": torch.cat([pad(x.attention_mask, 0) for x in inputs]),
        "mm_token_type_ids": torch.cat([pad(x.mm_token_type_ids, 0) for x in inputs]),
    }
    with_images = [x for x in inputs if x.pixel_values is not None]
    if with_images:
        batch["pixel_values"] = torch.cat([x.pixel_values for x in with_images])
        batch["image_grid_thw"] = torch.cat([x.image_grid_thw for x in with_images])
    return batch
