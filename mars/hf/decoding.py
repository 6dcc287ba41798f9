"""Batched generation with a Hugging Face model (``Decoder``): per-row greedy decoding and vision-token suppression.

Shared by the local engine and the verl engine's ``hf`` rollout server: one decoding code path.

Hugging Face ``generate`` takes one set of sampling settings per call. MARS wants sampled multi-source rollouts
and greedy anchors in the same call, so the next token of every row is chosen by our own logits processor
(``SampleRows``: the arg-max for greedy rows, temperature + top-p + one draw for the others) and handed to a greedy
``generate`` as a one-hot. It also makes sampling cheap on the CPU (see ``SampleRows``).

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
from mars.training.interface import Sampling

VISION_TOKENS = (
    "<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|box_start|>",
    "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
)


class SampleRows(LogitsProcessor):
    """Chooses each row's next token and returns a one-hot (0 for it, -inf elsewhere) for a greedy ``generate``.

    Greedy rows take their arg-max. The others follow Hugging Face's sampling: scores / temperature, then nucleus
    filtering (keep the most probable tokens until their mass reaches ``top_p``; ties at the boundary are all kept),
    then one draw by inverse CDF: from each row's own generator where ``seeds`` are given (a row's draws then depend
    on its seed only, not on which other rows share its batch), else from torch's global generator (seeded by the
    trainer). Why not Hugging Face's own
    warpers: on the CPU its top-p ``torch.sort`` and ``torch.multinomial`` cost about 27 ms per token for a batch of
    64 x 3072 (one thread, measured), more than the tiny model's forward; sorting the values alone (numpy) and one
    cumulative sum cost about 2 ms."""

    def __init__(self, greedy: torch.Tensor, temperature: float, top_p: float, seeds: Sequence[int] | None = None):
        self.greedy, self.temperature, self.top_p = greedy, float(temperature), float(top_p)
        self.generators = None if seeds is None else [torch.Generator().manual_seed(int(s)) for s in seeds]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        choice = scores.argmax(dim=-1)
        sampled = ~self.greedy.to(scores.device)
        if sampled.any():
            probs = torch.softmax(scores[sampled].float() / self.temperature, dim=-1)
            if self.top_p < 1.0:
                probs = torch.where(probs >= nucleus_threshold(probs, self.top_p), probs, 0.0)
            cdf = probs.cumsum(dim=-1)
            if self.generators is None:
                u = torch.rand(cdf.shape[0], 1, device=cdf.device)
            else:  # every row draws from its own generator, whichever rows share the batch
                draws = [torch.rand(1, generator=self.generators[i]) for i in range(len(self.generators))]
                u = torch.stack(draws)[sampled.cpu()].to(cdf.device)
            u = u * cdf[:, -1:]
            choice[sampled] = (cdf <= u).sum(dim=-1).clamp(max=cdf.shape[-1] - 1)  # first index with cdf > u
        return torch.full_like(scores, float("-inf")).scatter(-1, choice.unsqueeze(-1), 0.0)


def nucleus_threshold(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Per row, the smallest probability a token needs to stay in the top-p nucleus (shape (rows, 1)): sorted
    ascending, the tokens whose cumulative mass is at most 1 - top_p go, as in Hugging Face's ``TopPLogitsWarper``;
    the most probable token always stays."""
    if probs.device.type == "cpu":  # torch's CPU sort is the slow part; numpy sorts the values 20x faster
        ascending = torch.from_numpy(np.sort(probs.numpy(), axis=-1))
    else:
        ascending = probs.sort(dim=-1).values
    removed = (ascending.cumsum(dim=-1) <= 1.0 - top_p).sum(dim=-1, keepdim=True).clamp(max=probs.shape[-1] - 1)
    return ascending.gather(-1, removed)


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

    Rows may mix sampled and greedy decoding (greedy rows inside the sampling call, ``SampleRows``); vision tokens
    are banned; each row stops at its first EOS or at its own token limit."""

    model: Any
    pad_id: int
    eos_ids: set[int]
    banned: list[int]
    device: torch.device
    autocast: Callable[[], Any] = contextlib.nullcontext

    @torch.no_grad()
    def generate(self, prompts: Sequence[PromptInputs], samplings: Sequence[Sampling], max_new_tokens: int | Sequence[int],
                 chunk: int = 0, seeds: Sequence[int] | None = None) -> tuple[list[torch.Tensor], np.ndarray]:
        """Each row's response token ids (up to and including EOS) and whether it hit its token limit. ``seeds``: one
        per row, for draws that depend on the row alone (``SampleRows``)."""
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
                                               max(limits[i] for i in part),
                                               None if seeds is None else [seeds[i] for i in part])
                for i, resp, trunc in zip(part, out, cut):
                    if len(resp) > limits[i]:  # a row with a lower limit than the call's stops at its own
                        resp, trunc = resp[: limits[i]], True
                    responses[i], truncated[i] = resp, trunc
        self.model.train(was_training)
        return responses, truncated

    def _generate_rows(self, prompts: Sequence[PromptInputs], greedy: torch.Tensor, sampling: Sampling,
                       max_new_tokens: int, seeds: Sequence[int] | None = None) -> tuple[list[torch.Tensor], list[bool]]:
        from transformers import LogitsProcessorList

        batch = {k: v.to(self.device) for k, v in collate(prompts, self.pad_id, "left").items()}
        # greedy for Hugging Face: SampleRows has already reduced each sampled row to the token it drew
        kwargs = dict(do_sample=False, max_new_tokens=max_new_tokens, pad_token_id=self.pad_id,
                      eos_token_id=sorted(self.eos_ids))
        processors = [BanTokens(self.banned)]
        if sampling.do_sample:
            processors.append(SampleRows(greedy, sampling.temperature, sampling.top_p, seeds))
        processors = LogitsProcessorList(processors)
        with self.autocast():
            out = self.model.generate(**batch, logits_processor=processors, **kwargs)
        return cut_at_eos(out[:, batch["input_ids"].shape[1] :].cpu(), self.eos_ids)
