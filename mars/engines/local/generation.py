"""Batched generation helpers for the local engine: per-row greedy decoding and vision-token suppression.

Hugging Face ``generate`` takes one set of sampling settings per call. MARS wants sampled multi-source rollouts
and greedy anchors in the same call, so greedy rows are made greedy inside a sampling call: their scores keep only
the arg-max token, which temperature and top-p cannot remove.

A VLM can emit its own image-placeholder tokens (``<|image_pad|>``, ``<|vision_start|>``...). Fed back for the
log-prob pass they would be taken for image positions without pixels and break the forward, so they are banned
during generation (a known failure in other VLM trainers).
"""

from __future__ import annotations

from typing import Iterable

import torch
from transformers import LogitsProcessor

VISION_TOKENS = (
    "<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|box_start|>",
    "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
)


class GreedyRows(LogitsProcessor):
    """Rows where ``greedy`` is True keep only their arg-max token (a one-hot distribution)."""

    def __init__(self, greedy: torch.Tensor):
        self.greedy = greedy

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if not self.greedy.any():
            return scores
        greedy = self.greedy.to(scores.device)
        best = scores.argmax(dim=-1, keepdim=True)
        one_hot = torch.full_like(scores, float("-inf")).scatter(-1, best, 0.0)
        return torch.where(greedy.unsqueeze(-1), one_hot, scores)


class BanTokens(LogitsProcessor):
    """Never generate the given token ids."""

    def __init__(self, token_ids: Iterable[int]):
        self.token_ids = torch.tensor(sorted(set(token_ids)), dtype=torch.long)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if len(self.token_ids):
            scores[:, self.token_ids.to(scores.device)] = float("-inf")
        return scores


def vision_token_ids(tokenizer) -> list[int]:
    """Ids of the vision special tokens this tokenizer knows."""
    vocab = tokenizer.get_vocab()
    return [vocab[t] for t in VISION_TOKENS if t in vocab]


def eos_token_ids(model, tokenizer) -> set[int]:
    """The ids that end a response: the generation config's (one or several), else the tokenizer's."""
    eos = model.generation_config.eos_token_id
    if eos is None:
        eos = tokenizer.eos_token_id
    return set(eos if isinstance(eos, (list, tuple)) else [eos])


def cut_at_eos(generated: torch.Tensor, eos_ids: set[int]) -> tuple[list[torch.Tensor], list[bool]]:
    """Each row's response up to and including its first EOS; and whether it hit the length limit instead."""
    responses, truncated = [], []
    for row in generated:
        stop = next((i for i, t in enumerate(row.tolist()) if t in eos_ids), None)
        responses.append(row[: stop + 1] if stop is not None else row)
        truncated.append(stop is None)
    return responses, truncated
