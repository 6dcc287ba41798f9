"""Batched generation with a Hugging Face model (``Decoder``): per-row greedy decoding and vision-token suppression.

Shared by the local engine and the verl engine's ``hf`` rollout server: one decoding code path.

Hugging Face ``generate`` takes one set of sampling settings per call. MARS wants sampled multi-source rollouts
and greedy anchors in the same call, so greedy rows are made greedy inside a sampling call: their scores keep only
the arg-max token, which temperature and top-p cannot remove.

A VLM can emit its own image-placeholder tokens (``<|image_pad|>``, ``<|vision_start|>``...). Fed back for the
log-prob pass they would be taken for image positions without pixels and break the forward, so they are banned
during generation (a known failure in other VLM trainers).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from transformers import LogitsProcessor

from mars.processing import PromptInputs, collate
from mars.trainer.engine import Sampling

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


def generate_calls(samplings: Sequence[Sampling]) -> list[tuple[Sampling, list[int]]]:
    """Rows per ``generate`` call: one call per distinct (temperature, top_p) of the sampled rows; greedy rows ride
    along with the first call (normally everything is ONE call)."""
    calls: dict[tuple[float, float], list[int]] = {}
    greedy = []
    for i, s in enumerate(samplings):
        if s.do_sample and s.temperature > 0:
            calls.setdefault((s.temperature, s.top_p), []).append(i)
        else:
            greedy.append(i)
    if not calls:
        return [(Sampling(do_sample=False), greedy)] if greedy else []
    ordered = [(Sampling(True, t, p), rows) for (t, p), rows in calls.items()]
    ordered[0] = (ordered[0][0], sorted(ordered[0][1] + greedy))
    return ordered


@dataclass
class Decoder:
    """Batched decoding with a Hugging Face VLM: THE generation code of the local engine and of the verl engine's
    ``hf`` rollout server (``mars/engines/verl/hf_rollout``), so both decode a request the same way.

    Rows may mix sampled and greedy decoding (greedy rows inside the sampling call, ``GreedyRows``); vision tokens
    are banned; each row stops at its first EOS or at its own token limit."""

    model: Any
    pad_id: int
    eos_ids: set[int]
    banned: list[int]
    device: torch.device
    autocast: Callable[[], Any] = contextlib.nullcontext

    @torch.no_grad()
    def generate(self, prompts: Sequence[PromptInputs], samplings: Sequence[Sampling], max_new_tokens: int | Sequence[int],
                 chunk: int = 0) -> tuple[list[torch.Tensor], np.ndarray]:
        """Each row's response token ids (up to and including EOS) and whether it hit its token limit."""
        limits = [int(max_new_tokens)] * len(prompts) if isinstance(max_new_tokens, int) else [int(m) for m in max_new_tokens]
        responses: list[torch.Tensor | None] = [None] * len(prompts)
        truncated = np.zeros(len(prompts), dtype=bool)
        chunk = int(chunk or 0) or max(len(prompts), 1)
        was_training = self.model.training
        self.model.eval()
        for sampling, rows in generate_calls(samplings):
            for start in range(0, len(rows), chunk):
                part = rows[start : start + chunk]
                greedy = torch.tensor([not (samplings[i].do_sample and samplings[i].temperature > 0) for i in part])
                out, cut = self._generate_rows([prompts[i] for i in part], greedy, sampling,
                                               max(limits[i] for i in part))
                for i, resp, trunc in zip(part, out, cut):
                    if len(resp) > limits[i]:  # a row with a lower limit than the call's stops at its own
                        resp, trunc = resp[: limits[i]], True
                    responses[i], truncated[i] = resp, trunc
        self.model.train(was_training)
        return responses, truncated

    def _generate_rows(self, prompts: Sequence[PromptInputs], greedy: torch.Tensor, sampling: Sampling,
                       max_new_tokens: int) -> tuple[list[torch.Tensor], list[bool]]:
        from transformers import LogitsProcessorList

        batch = {k: v.to(self.device) for k, v in collate(prompts, self.pad_id, "left").items()}
        kwargs = dict(do_sample=sampling.do_sample, max_new_tokens=max_new_tokens, pad_token_id=self.pad_id,
                      eos_token_id=sorted(self.eos_ids))
        if sampling.do_sample:
            kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p, top_k=0)
        processors = LogitsProcessorList([BanTokens(self.banned)] + ([GreedyRows(greedy)] if sampling.do_sample else []))
        with self.autocast():
            out = self.model.generate(**batch, logits_processor=processors, **kwargs)
        return cut_at_eos(out[:, batch["input_ids"].shape[1] :].cpu(), self.eos_ids)
