"""Per-token log-probabilities of responses under a Hugging Face vision-language model, teacher-forced.

One function for the RL losses (the local engine) and the supervised warm start, so both score a response the same
way: right-padded prompt+response sequences, and only the response positions through the LM head.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from mars.processing import PromptInputs, collate


def teacher_forced(model, prompts: Sequence[PromptInputs], responses: Sequence[torch.Tensor], rows: np.ndarray,
                   width: int, device: torch.device, pad_id: int, temperature: float, autocast,
                   hidden_states: bool = False, position_ids: Sequence[torch.Tensor] | None = None):
    """One forward of the prompt+response sequences of ``rows``: (log_probs (b, width, V) at the response positions,
    targets (b, width), valid (b, width) bool, last-layer states (b, L, H) or None, the collated batch).

    ``prompts[i]`` is the encoded prompt of row i and ``responses[i]`` its generated token ids (no padding).
    ``hidden_states`` keeps the last layer's output (a hook on the decoder: never every layer's states).
    ``position_ids[i]``: (P, prompt+response length) positions of row i, where the caller has them (verl's patched
    Qwen-VL forward wants its own (4, b, L) layout); else the model computes them."""
    sequences = []
    for i in rows:
        p = prompts[i]
        full_ids = torch.cat([p.input_ids[0], responses[i]])
        sequences.append(PromptInputs(
            input_ids=full_ids.unsqueeze(0), attention_mask=torch.ones_like(full_ids).unsqueeze(0),
            mm_token_type_ids=torch.cat([p.mm_token_type_ids[0], torch.zeros_like(responses[i])]).unsqueeze(0),
            pixel_values=p.pixel_values, image_grid_thw=p.image_grid_thw,
        ))
    batch = {k: v.to(device) for k, v in collate(sequences, pad_id, "right").items()}
    seq_len = batch["input_ids"].shape[1]
    if position_ids is not None:
        rows_pos = [position_ids[i] for i in rows]
        padded = torch.zeros((rows_pos[0].shape[0], len(rows_pos), seq_len), dtype=torch.long)
        for b, pos in enumerate(rows_pos):
            padded[:, b, : pos.shape[1]] = pos
        batch["position_ids"] = padded.to(device)
    # the logit at position t predicts token t+1: response token j of row b sits at prompt_len_b + j
    prompt_lens = torch.tensor([prompts[i].input_ids.shape[1] for i in rows], device=device)
    positions = (prompt_lens.unsqueeze(1) - 1 + torch.arange(width, device=device)).clamp(max=seq_len - 2)
    # only the response positions go through the LM head (the prompt is most of a sequence): profiled, the LM head
    # and its log-softmax over every position were a third of a warm-start step of the tiny model
    first = int(positions.min())
    captured = []
    hook = None
    if hidden_states:
        hook = model.get_decoder().register_forward_hook(lambda module, args, output: captured.append(output[0]))
    try:
        with autocast():
            logits = model(**batch, use_cache=False, logits_to_keep=torch.arange(first, seq_len, device=device)).logits
    finally:
        if hook is not None:
            hook.remove()
    logits = logits.float()
    # a forward that ignores logits_to_keep (verl's patched Qwen-VL forward) returns every position's logits
    kept = positions - (first if logits.shape[1] == seq_len - first else 0)
    picked = logits.gather(1, kept.unsqueeze(-1).expand(-1, -1, logits.shape[-1])) / temperature
    targets = batch["input_ids"].gather(1, (positions + 1).clamp(max=seq_len - 1))
    lengths = torch.tensor([len(responses[i]) for i in rows], device=device)
    valid = torch.arange(width, device=device).unsqueeze(0) < lengths.unsqueeze(1)
    return torch.log_softmax(picked, dim=-1), targets, valid, (captured[-1] if captured else None), batch


def response_log_probs(model, prompts: Sequence[PromptInputs], responses: Sequence[torch.Tensor], rows: np.ndarray,
                       width: int, device: torch.device, pad_id: int, temperature: float, autocast,
                       entropy: bool = False):
    """(b, width) log-probs of the responses of ``rows`` (zeros past each response); optionally entropies."""
    log_probs, targets, valid, _, _ = teacher_forced(model, prompts, responses, rows, width, device, pad_id,
                                                     temperature, autocast)
    token_lp = log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1) * valid
    if not entropy:
        return token_lp, None
    ent = -(log_probs.exp() * log_probs).sum(-1) * valid
    return token_lp, ent
