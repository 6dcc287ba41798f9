"""The perception pass on a Hugging Face model: what the perception-aware methods ask of the policy, no gradient.

Both engines call ``perception_signals`` (the local engine on its model, the verl engine inside its actor workers on
the FSDP module), so the numbers are computed by one piece of code. For the rows asked, in micro-batches:

    real forward      log-probs of the sampled tokens, the full next-token distributions, and the last layer's
                      states (a hook on the decoder's output: one layer kept, not all of them)
    similarity        VGPO's visual signal: (cos(h_t, v) + 1) / 2, h_t the state at response token t, v the mean
                      state over the prompt's image tokens (all images pooled)
    each view         the same sequences with the images altered (``mars.perception.views``): the sampled tokens'
                      log-probs ``log_probs/<view>``, the full-vocabulary KL(real || altered) per token ``kl/<view>``

    focus/attention   Faithful-MR1: each row's attention shares over the grid regions (its focus token's, or its
                      response's from the focus token on), from the real forward's recorded layer
                      (``mars.hf.focus.focus_region_attention``)

and, without a forward, SRPO's role of each response token (``response_roles``), from its text.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import replace
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from mars.hf.attention import layer_input
from mars.hf.focus import FocusJob, focus_region_attention
from mars.hf.log_probs import teacher_forced
from mars.hf.pieces import label_tokens
from mars.perception.views import AlteredView, alter_pixel_values, view_seed
from mars.processing import PromptInputs


def image_geometry(image_processor) -> tuple[torch.Tensor, int, int]:
    """(the pixel-value row of a black patch, the merge size, the patch size in pixels) of a Qwen-VL processor."""
    from PIL import Image

    merge, patch = int(image_processor.merge_size), int(image_processor.patch_size)
    side = merge * patch
    out = image_processor(images=[Image.new("RGB", (side, side))], return_tensors="pt")
    return out["pixel_values"][0].clone(), merge, patch


def altered_prompts(prompts: Sequence[PromptInputs], sources: Sequence[Sequence[str]], group_ids: Sequence[str],
                    view: AlteredView, geometry: tuple, seed: int, step: int) -> list[PromptInputs]:
    """Each prompt with its images altered by ``view``; the mask of row i depends on (seed, step, its group) only.
    ``geometry``: ``image_geometry``'s (black row, merge size, patch size)."""
    black_row, merge, patch = geometry
    side = view.region_side(patch)
    out = []
    for prompt, names, group in zip(prompts, sources, group_ids):
        if prompt.pixel_values is None:
            out.append(prompt)
            continue
        pixels = alter_pixel_values(prompt.pixel_values, prompt.image_grid_thw, names, view, black_row, merge,
                                    view_seed(seed, step, str(group)), side)
        out.append(replace(prompt, pixel_values=pixels))
    return out


def response_roles(responses: Sequence[torch.Tensor], tokenizer, width: int) -> torch.Tensor:
    """(B, width) SRPO's role of each response token (``mars.perception.srpo``: 0 none, 1 perception, 2 reasoning),
    from each token's own text (one decode per token, so a token's span is exact whatever the tokenizer merges)."""
    from mars.perception.srpo import roles_of_pieces

    return label_tokens(responses, tokenizer, width, roles_of_pieces, torch.long)


def response_similarity(hidden: torch.Tensor, batch: dict, prompt_lens: torch.Tensor, width: int) -> torch.Tensor:
    """(b, width) ``(cos(h_t, v) + 1) / 2``: h_t the last-layer state at response token t, v the mean state over
    the row's image tokens (``mm_token_type_ids == 1``); 0.5 (no signal) for a row without images."""
    hidden = hidden.float()
    image = (batch["mm_token_type_ids"] == 1).to(hidden.dtype)
    count = image.sum(dim=1, keepdim=True)
    v = (hidden * image.unsqueeze(-1)).sum(dim=1) / count.clamp_min(1)
    positions = (prompt_lens.unsqueeze(1) + torch.arange(width, device=hidden.device)).clamp(max=hidden.shape[1] - 1)
    h = hidden.gather(1, positions.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))
    cos = F.cosine_similarity(h, v.unsqueeze(1).expand_as(h), dim=-1, eps=1e-8)
    return torch.where(count > 0, (cos + 1) / 2, torch.full_like(cos, 0.5))


@torch.no_grad()
def perception_signals(model, prompts: Sequence[PromptInputs], responses: Sequence[torch.Tensor],
                       sources: Sequence[Sequence[str]], group_ids: Sequence[str], width: int, micro_batch: int,
                       device: torch.device, pad_id: int, temperature: float, autocast, views: Sequence[AlteredView],
                       similarity: bool, geometry: tuple, seed: int, step: int,
                       position_ids: Sequence[torch.Tensor] | None = None,
                       focus: FocusJob | None = None) -> dict[str, torch.Tensor]:
    """The signals of the module docstring for every row, (B, width) each, zeros past each response (but
    ``focus/attention``: (B, regions)). ``position_ids``: per row, where the model's forward wants them given
    (``teacher_forced``). ``focus``: Faithful-MR1's focus token, layer and grid."""
    n = len(prompts)
    altered = {view.name: altered_prompts(prompts, sources, group_ids, view, geometry, seed, step) for view in views}
    parts: dict[str, list[torch.Tensor]] = {}
    size = max(int(micro_batch or n), 1)
    for start in range(0, n, size):
        rows = np.arange(start, min(start + size, n))
        with (layer_input(model, focus.layer) if focus else nullcontext()) as kept:
            log_probs, targets, valid, hidden, batch = teacher_forced(
                model, prompts, responses, rows, width, device, pad_id, temperature, autocast,
                hidden_states=similarity, position_ids=position_ids)
        out = {"log_probs": log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1) * valid}
        if focus:
            out["focus/attention"] = focus_region_attention(kept, batch, prompts, responses, rows, focus, geometry[1])
        if similarity:
            prompt_lens = torch.tensor([prompts[i].input_ids.shape[1] for i in rows], device=device)
            out["similarity"] = response_similarity(hidden, batch, prompt_lens, width) * valid
        real_probs = log_probs.exp()
        for view in views:
            view_lp, _, _, _, _ = teacher_forced(model, altered[view.name], responses, rows, width, device, pad_id,
                                                 temperature, autocast, position_ids=position_ids)
            out[f"log_probs/{view.name}"] = view_lp.gather(-1, targets.unsqueeze(-1)).squeeze(-1) * valid
            out[f"kl/{view.name}"] = ((real_probs * (log_probs - view_lp)).sum(-1)).clamp_min(0.0) * valid
        for key, value in out.items():
            parts.setdefault(key, []).append(value.float().cpu())
    return {key: torch.cat(values) for key, values in parts.items()}
