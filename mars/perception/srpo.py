"""SRPO's role-aware token weights ("Structured Role-Aware Policy Optimization for Multimodal Reasoning", arXiv
2605.07274; no public code: everything below the roles' existence is our interpretation, docs/methods.md).

A response in the format ``<perception>P</perception><think>R</think><answer>A</answer>`` has perception tokens (the
text of P: the visual evidence it extracts) and reasoning tokens (the text of R); every other token (tags, answer)
has no role. Per response i:

    perception score   s_t = log pi(y_t | q, I, y_<t) - log pi(y_t | q, I_corrupted, y_<t)   (visual dependency)
    reasoning score    s_t = log pi(y_t | q, P_i, R_<t; no image) - log pi(y_t | q, I, y_<t)  (consistency with P_i:
                       how well the step follows from the response's own perception text without the picture)
    baseline           b_i = mean of s_t over the role tokens of response i (one per response, both roles)
    weight             u_t = exp(clip(s_t - b_i, -C, C)) on role tokens, 1 on the others;
                       w_t = u_t / mean_{t in response} u_t           (mean 1 over the response's tokens)
    into               A_{i,t} = w_t * A_i

Why: a token that reads the picture, or a step of reasoning that follows from what was read, should carry more of the
reward than one that does neither; normalising to mean 1 moves credit between the tokens of a response without
changing how much the response as a whole is pushed. Both scores are differences of log-probabilities (the real
pass's log-probs are the old log-probs: only the corrupted pass and the text-only pass are extra), so they are
commensurate under one baseline, and flat signals (every score equal, e.g. 0 for a policy that ignores both the
picture and its own perception) give weight 1 everywhere; a raw log-probability as the reasoning score would sit
below every visual dependency and down-weight all reasoning. A response without exactly one perception block before its
think block (the old format, a malformed one) has no roles and weight 1 everywhere. The clip C (default 5) keeps
exp finite on hostile scores; it is ours.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

OTHER, PERCEPTION, REASONING = 0, 1, 2


def block_span(text: str, tag: str, start: int = 0) -> tuple[int, int] | None:
    """The characters between ``<tag>`` and the next ``</tag>`` after ``start``; None without a closed block."""
    opening, closing = f"<{tag}>", f"</{tag}>"
    begin = text.find(opening, start)
    if begin < 0:
        return None
    end = text.find(closing, begin + len(opening))
    return (begin + len(opening), end) if end >= 0 else None


def role_spans(text: str) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """The character spans of the perception block's text and of the think block's text, when the response has
    exactly one perception block and a think block after it; else None (no roles). Linear in the text's length."""
    perception = block_span(text, "perception")
    if perception is None or text.count("<perception>") != 1:
        return None
    think = block_span(text, "think", perception[1])
    if think is None:
        return None
    return perception, think


def token_roles(offsets: Sequence[tuple[int, int]], spans: tuple[tuple[int, int], tuple[int, int]] | None
                ) -> list[int]:
    """The role of each token from its character span in the response text (``offsets``: (start, end) per token):
    perception or reasoning when the token lies inside that block's text, else none."""
    if spans is None:
        return [OTHER] * len(offsets)
    (p_start, p_end), (r_start, r_end) = spans
    roles = []
    for start, end in offsets:
        if p_start <= start and end <= p_end and end > start:
            roles.append(PERCEPTION)
        elif r_start <= start and end <= r_end and end > start:
            roles.append(REASONING)
        else:
            roles.append(OTHER)
    return roles


def roles_of_pieces(pieces: Sequence[str]) -> list[int]:
    """The role of each response token from the text of each token (``pieces``, in order): the tokens' texts laid
    end to end give every token its character span; the tags are found in that text. Linear in its length."""
    offsets, position = [], 0
    for piece in pieces:
        offsets.append((position, position + len(piece)))
        position += len(piece)
    return token_roles(offsets, role_spans("".join(pieces)))


def srpo_weights(perception_score: torch.Tensor, reasoning_score: torch.Tensor, roles: torch.Tensor,
                 response_mask: torch.Tensor, clip: float = 5.0) -> torch.Tensor:
    """(B, T) weights ``w_t`` (module docstring); 1 outside the mask. ``roles`` (B, T): OTHER, PERCEPTION or
    REASONING per token."""
    mask = response_mask.bool()
    on_perception = (roles == PERCEPTION) & mask
    on_reasoning = (roles == REASONING) & mask
    with_role = on_perception | on_reasoning
    score = torch.where(on_perception, perception_score.double(),
                        torch.where(on_reasoning, reasoning_score.double(), torch.zeros_like(perception_score.double())))
    count = with_role.sum(dim=-1, keepdim=True)
    baseline = (score * with_role).sum(dim=-1, keepdim=True) / count.clamp_min(1)
    raw = torch.where(with_role, torch.exp((score - baseline).clamp(-clip, clip)), torch.ones_like(score))
    raw = torch.where(mask, raw, torch.zeros_like(raw))
    mean = raw.sum(dim=-1, keepdim=True) / mask.sum(dim=-1, keepdim=True).clamp_min(1)
    weights = raw / mean.clamp_min(1e-12)
    weights = torch.where(mask & (count > 0), weights, torch.ones_like(weights))
    return weights.to(perception_score.dtype)


def srpo_weights_reference(perception_score, reasoning_score, roles, response_mask, clip=5.0):
    """The same weights one response at a time in plain Python: the tests' oracle."""
    p, r = perception_score.double().tolist(), reasoning_score.double().tolist()
    role, mask = roles.tolist(), response_mask.bool().tolist()
    out = []
    for i in range(len(p)):
        columns = [t for t in range(len(p[i])) if mask[i][t]]
        scored = {t: (p[i][t] if role[i][t] == PERCEPTION else r[i][t]) for t in columns
                  if role[i][t] in (PERCEPTION, REASONING)}
        row = [1.0] * len(p[i])
        if scored:
            baseline = sum(scored.values()) / len(scored)
            raw = {t: math.exp(min(max(scored[t] - baseline, -clip), clip)) if t in scored else 1.0 for t in columns}
            mean = sum(raw.values()) / len(columns)
            for t in columns:
                row[t] = raw[t] / mean
        out.append(row)
    return torch.tensor(out, dtype=perception_score.dtype)


__all__ = ["OTHER", "PERCEPTION", "REASONING", "block_span", "role_spans", "roles_of_pieces", "srpo_weights",
           "srpo_weights_reference", "token_roles"]
