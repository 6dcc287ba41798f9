"""Faithful-MR1's focus token on a Hugging Face model: where its attention over the image tokens goes.

The anchoring stage (``mars.hf.warm_start``, ``mars.sft_warmup.focus``) adds a ``<Focus>`` token that the target
text opens with, and trains its attention row toward the objects' regions; the formulas are engine-free in
``mars.perception.focus``. Here: the token added to the tokenizer and the model, the in-box mask of a prompt's image
tokens, the focus token's attention row (recomputed from one layer's queries and keys, ``mars.hf.attention``:
whatever attention implementation the model runs), and the measurement

    focus_in_box          the focus token's attention mass inside the regions, over its attention on image tokens
    focus_in_box_uniform  the regions' share of the image tokens (what attention spread evenly would get)

averaged over prompts that have regions; and the reinforcing stage's two measurements (``perception=faithful_mr1``),
both engines calling the same functions:

    focus_region_attention  in the old-log-prob pass: each trajectory's attention over the image tokens, as shares
                            per grid region (``mars.perception.focus.region_attention``): its first focus token's
                            row, or (``perception.attention=response``) the mean row of its response from there on
    causal_maps             per asked row, the prompt's masked copies (one per region) and the real one in ONE
                            no-gradient forward: the drop of the answer's log-probability per region
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, NamedTuple, Sequence

import numpy as np
import torch

from mars.hf.attention import attention_rows, layer_input
from mars.hf.log_probs import teacher_forced
from mars.hf.pieces import label_tokens
from mars.perception.focus import (anchoring_loss, answer_tokens, box_token_mask, causal_map, focus_in_box,
                                   focus_token_id, grid_regions, region_attention)
from mars.perception.views import mask_tokens
from mars.processing import PromptInputs


def add_focus_token(model, tokenizer, token: str) -> int:
    """The focus token's id, added to the tokenizer (a plain added token: it shows in decoded text) and to the
    model's embeddings where the vocabulary has no room for it."""
    tokenizer.add_tokens([token])
    focus_id = int(tokenizer.convert_tokens_to_ids(token))
    if focus_id >= model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer))
    return focus_id


def as_metrics(measured: dict[str, float]) -> dict[str, float]:
    """``measure_focus``'s result under the names both engines log: ``perception/focus_in_box``, ``..._uniform``."""
    return {f"perception/{key}": value for key, value in measured.items() if key != "prompts"}


def sample_regions(extra_info: dict[str, Any], ground_truth: Any) -> list[list[float]]:
    """The boxes a sample's focus should look at: ``extra_info.regions``, else a grounding answer's own boxes."""
    regions = extra_info.get("regions")
    if regions is not None and len(regions):
        return [[float(v) for v in box] for box in regions]
    if extra_info.get("reward") == "grounding":
        from mars.data.schema import GROUNDING, parse_ground_truth

        boxes, problem = parse_ground_truth(ground_truth, GROUNDING)
        if not problem:
            return [[float(v) for v in box] for box in boxes if len(box) == 4]
    return []


def image_token_mask(prompt: PromptInputs, regions: Sequence[Sequence[float]], image_size: Sequence[int],
                     merge: int) -> torch.Tensor | None:
    """(image tokens,) bool over the prompt's image tokens, image after image: inside one of ``regions`` (the same
    boxes in every image: the sources of a row are aligned). None without regions, image size or images, when no
    token overlaps the regions (boxes outside the image), or when the prompt's image tokens do not match its
    grids."""
    if not regions or image_size is None or len(image_size) < 2 or prompt.image_grid_thw is None:
        return None
    mask = torch.cat([box_token_mask(regions, (int(image_size[0]), int(image_size[1])), grid.tolist(), merge)
                      for grid in prompt.image_grid_thw])
    return mask if mask.any() and int((prompt.mm_token_type_ids == 1).sum()) == len(mask) else None


def focus_rows(kept: dict[str, Any], batch: dict[str, torch.Tensor], prompt_lens: torch.Tensor) -> list[torch.Tensor]:
    """Per row, the focus token's attention over the row's image tokens (mean over heads), from a forward recorded
    by ``layer_input``. The focus token is the first response token: at position ``prompt_lens[b]``."""
    rows = attention_rows(kept, prompt_lens.view(-1, 1), batch["attention_mask"]).mean(dim=1)[:, 0]  # (b, L)
    image = batch["mm_token_type_ids"] == 1
    return [rows[b][image[b]] for b in range(rows.shape[0])]


def focus_probe(samples: Sequence[Any], encoder, images, merge: int, limit: int = 64
                ) -> tuple[list[PromptInputs], list[torch.Tensor]]:
    """Up to ``limit`` of ``samples`` (``PromptSample``) that have regions, encoded, with their in-box masks: the
    prompts the focus token's attention is measured on."""
    prompts, masks = [], []
    for sample in samples:
        regions = sample_regions(sample.extra_info, sample.ground_truth)
        if not regions:
            continue
        prompt = encoder.encode([sample.messages], images)[0]
        mask = image_token_mask(prompt, regions, sample.extra_info.get("image_size"), merge)
        if mask is not None:
            prompts.append(prompt)
            masks.append(mask)
        if len(prompts) >= limit:
            break
    return prompts, masks


@torch.no_grad()
def measure_focus(model, prompts: Sequence[PromptInputs], masks: Sequence[torch.Tensor], focus_id: int, layer: int,
                  device: torch.device, pad_id: int, autocast, batch_size: int = 8,
                  position_ids: Sequence[torch.Tensor] | None = None) -> dict[str, float]:
    """``focus_in_box`` and ``focus_in_box_uniform`` (module docstring) over ``prompts``, each with its in-box mask;
    the focus token teacher-forced as the first response token. ``position_ids``: per prompt, for a forward that
    wants them given (verl's patched Qwen-VL forward: ``teacher_forced``)."""
    masses, shares = [], []
    response = [torch.tensor([focus_id])] * len(prompts)
    for start in range(0, len(prompts), batch_size):
        rows = np.arange(start, min(start + batch_size, len(prompts)))
        with layer_input(model, layer) as kept:
            *_, batch = teacher_forced(model, prompts, response, rows, 1, device, pad_id, 1.0, autocast,
                                       position_ids=position_ids)
        prompt_lens = torch.tensor([prompts[i].input_ids.shape[1] for i in rows], device=device)
        for attention, i in zip(focus_rows(kept, batch, prompt_lens), rows):
            mass, share = focus_in_box(attention.cpu(), masks[i])
            masses.append(mass)
            shares.append(share)
    if not masses:
        return {}
    return {"focus_in_box": float(np.mean(masses)), "focus_in_box_uniform": float(np.mean(shares)),
            "prompts": len(masses)}


class FocusJob(NamedTuple):
    """Faithful-MR1's part of the perception pass: the focus token's id, the layer its attention is read at, the
    side of the region grid, and whose attention is read (``focus_region_attention``)."""

    focus_id: int
    layer: int
    cells: int
    attention: str = "focus"


def focus_job(tokenizer, request) -> FocusJob | None:
    """The perception pass's focus part for a ``FocusRequest`` (None without one, or when the tokenizer has no
    focus token: no trajectory can then earn the bonus, and no causal map is worth its forwards)."""
    if request is None:
        return None
    focus_id = focus_token_id(tokenizer, request.token)
    return None if focus_id is None else FocusJob(focus_id, int(request.layer), int(request.cells),
                                                  str(request.attention))


def with_focus_defaults(signals: dict[str, torch.Tensor], request, rows: int) -> dict[str, torch.Tensor]:
    """``signals`` with zero focus attention and zero causal maps where a ``FocusRequest`` got none (no focus token)."""
    if request is not None and request.focus is not None:
        regions = request.focus.cells ** 2
        signals.setdefault("focus/attention", torch.zeros(rows, regions, dtype=torch.float64))
        signals.setdefault("focus/causal", torch.zeros(len(request.focus.causal_rows), regions, dtype=torch.float64))
    return signals


def focus_positions(responses: Sequence[torch.Tensor], focus_id: int) -> list[int | None]:
    """The index of each response's first focus token (None without one: that trajectory earns no bonus)."""
    out = []
    for ids in responses:
        hits = (ids == focus_id).nonzero()
        out.append(int(hits[0, 0]) if len(hits) else None)
    return out


def answer_token_masks(responses: Sequence[torch.Tensor], tokenizer, width: int) -> torch.Tensor:
    """(B, width) bool: the tokens of each response's answer (``mars.perception.focus.answer_tokens``), from each
    token's own text."""
    return label_tokens(responses, tokenizer, width, answer_tokens, torch.bool)


def mean_attention(kept: dict[str, Any], key_mask: torch.Tensor, starts: torch.Tensor, ends: torch.Tensor,
                   chunk: int = 64) -> torch.Tensor:
    """(b, L) the attention rows of query positions ``starts[b] .. ends[b] - 1`` (mean over heads, then over those
    positions), from a forward recorded by ``layer_input``; ``chunk`` query rows at a time (memory: b x H x chunk x
    L floats, whatever the response's length)."""
    total = torch.zeros(key_mask.shape, dtype=torch.float32, device=key_mask.device)
    span = int((ends - starts).max())
    offsets = torch.arange(min(chunk, span), device=key_mask.device)  # one query row: the focus token's own row
    for first in range(0, span, len(offsets)):
        queries = starts[:, None] + first + offsets  # (b, chunk)
        valid = queries < ends[:, None]
        rows = attention_rows(kept, torch.minimum(queries, ends[:, None] - 1), key_mask).mean(dim=1)  # (b, chunk, L)
        total += (rows * valid[..., None]).sum(dim=1)
    return (total / (ends - starts).clamp_min(1)[:, None]).detach()


def focus_region_attention(kept: dict[str, Any], batch: dict[str, torch.Tensor], prompts: Sequence[PromptInputs],
                           responses: Sequence[torch.Tensor], rows: Sequence[int], focus: FocusJob,
                           merge: int) -> torch.Tensor:
    """(b, cells^2) for ``rows`` of a forward recorded by ``layer_input``: the share of each row's attention (mean
    over heads) over its image tokens in each grid region. ``focus.attention``: ``focus``, the row of the first
    focus token; ``response``, the mean row of the response tokens from the focus token on (the trajectory's own
    visual attention). Zeros for a row without a focus token or whose image tokens do not match its grids."""
    out = torch.zeros(len(rows), focus.cells ** 2, dtype=torch.float64)
    device = batch["input_ids"].device
    where = focus_positions([responses[i] for i in rows], focus.focus_id)
    prompt_lens = torch.tensor([prompts[i].input_ids.shape[1] for i in rows], device=device)
    starts = prompt_lens + torch.tensor([w or 0 for w in where], device=device)
    ends = starts + 1
    if focus.attention == "response":
        ends = torch.maximum(prompt_lens + torch.tensor([len(responses[i]) for i in rows], device=device), ends)
    attention = mean_attention(kept, batch["attention_mask"], starts, ends)
    image = batch["mm_token_type_ids"] == 1
    for b, i in enumerate(rows):
        grids = prompts[i].image_grid_thw
        if where[b] is None or grids is None:
            continue
        regions = grid_regions(grids.tolist(), merge, focus.cells)
        row = attention[b][image[b]].cpu()
        if regions.shape[1] == len(row):
            out[b] = region_attention(row, regions)
    return out


@torch.no_grad()
def causal_maps(model, prompts: Sequence[PromptInputs], responses: Sequence[torch.Tensor], answer_masks: torch.Tensor,
                cells: int, geometry: tuple, device: torch.device, pad_id: int, temperature: float, autocast,
                position_ids: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
    """(N, cells^2) the causal map of each row (``mars.perception.focus.causal_map``): the row's prompt with each grid
    region's patches black in every image, and the real prompt, teacher-forcing the row's response, in one forward
    per row; a region without tokens is not forwarded (no drop). ``geometry``: ``image_geometry``'s tuple."""
    black_row, merge, _ = geometry
    out = torch.zeros(len(prompts), cells * cells, dtype=torch.float64)
    for i, prompt in enumerate(prompts):
        if prompt.pixel_values is None or prompt.image_grid_thw is None:
            continue
        regions = grid_regions(prompt.image_grid_thw.tolist(), merge, cells)
        present = [r for r in range(len(regions)) if regions[r].any()]
        copies = [prompt] + [replace(prompt, pixel_values=mask_tokens(prompt.pixel_values, regions[r], black_row,
                                                                      merge)) for r in present]
        width = answer_masks.shape[1]
        log_probs, targets, valid, _, _ = teacher_forced(
            model, copies, [responses[i]] * len(copies), np.arange(len(copies)), width, device, pad_id, temperature,
            autocast, position_ids=None if position_ids is None else [position_ids[i]] * len(copies))
        picked = log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1) * valid
        answer = (picked.double().cpu() * answer_masks[i].double()).sum(dim=1)
        masked = torch.full((len(regions),), float(answer[0]), dtype=torch.float64)
        masked[present] = answer[1:]
        out[i] = causal_map(float(answer[0]), masked)
    return out


class Anchoring:
    """The anchoring stage inside a supervised loop (``mars.hf.warm_start``): ``settings`` = token, weight, layer.

        anchoring = Anchoring(settings, model, tokenizer, merge)     # adds the token (before model.to(device))
        ids, mask = anchoring.target(ids, prompt, sample)            # the token first; the prompt's in-box mask
        with anchoring.recording(model) as kept: <the forward>
        loss = answer_loss + anchoring.weight * anchoring.loss(kept, batch, prompts, masks)
    """

    def __init__(self, settings: dict[str, Any], model, tokenizer, merge: int):
        self.token, self.weight, self.layer = settings["token"], float(settings["weight"]), int(settings["layer"])
        self.focus_id = add_focus_token(model, tokenizer, self.token)
        self.merge = merge

    def target(self, ids: list[int], prompt: PromptInputs, sample: Any) -> tuple[list[int], torch.Tensor | None]:
        mask = image_token_mask(prompt, sample_regions(sample.extra_info, sample.ground_truth),
                                sample.extra_info.get("image_size"), self.merge)
        return [self.focus_id, *ids], mask

    def recording(self, model):
        return layer_input(model, self.layer)

    def loss(self, kept: dict[str, Any], batch: dict[str, torch.Tensor], prompts: Sequence[PromptInputs],
             masks: Sequence[torch.Tensor | None]) -> torch.Tensor | None:
        """The mean anchoring loss over the rows with regions (None without any)."""
        if all(m is None for m in masks):
            return None
        device = batch["input_ids"].device
        prompt_lens = torch.tensor([p.input_ids.shape[1] for p in prompts], device=device)
        rows = focus_rows(kept, batch, prompt_lens)
        return torch.stack([anchoring_loss(row, m.to(device)) for row, m in zip(rows, masks) if m is not None]).mean()


__all__ = ["Anchoring", "add_focus_token", "answer_token_masks", "as_metrics", "causal_maps", "focus_positions",
           "focus_probe", "focus_region_attention", "focus_rows", "image_token_mask",
           "measure_focus", "sample_regions"]
