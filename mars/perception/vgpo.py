"""VGPO's token weights: visually-guided policy optimisation (arXiv 2604.09349; public code ``wzb-bupt/VGPO``).

The advantage of token t of response i becomes ``A_i * alpha_i * psi_{i,t}``: tokens that look at the image more, and
responses that do so overall, weigh more, with a late-response boost against "visual forgetting". The visual signal
is a hidden-state similarity, not attention (as in the public code): ``w_t = (cos(h_t, v) + 1) / 2`` for the
response token's last-layer state ``h_t`` and the mean image-token state ``v``; this module starts from ``w``.

Per response i of T tokens (t = 1..T, padding excluded everywhere):

    compensation   C_t = beta * t / T                                        (later tokens: more)
    gate           G_t = 1 for the tokens in the last gamma share of the response that are among the top kappa share
                   of w within that tail, else 0
    boosted        w~_t = w_t * (1 + G_t * C_t)
    intra          w^ = min-max of w~ over the response (0 when flat); psi_t = clamp(1 + w^_t - mean(w^), 0.1, 2)
    inter          phi_i = sum_t w^_t; phi^ = min-max of phi over the prompt's group (0 when flat);
                   alpha_i = clamp(1 + phi^_i - mean over the group of phi^, 0.9, 2)

Our reading, where the paper and the code leave room (docs/methods.md): the tail is the last ceil(gamma * T) tokens,
its top share the ceil(kappa * tail) largest w (ties to the earlier token); a flat signal gives weight 1 everywhere
(so with beta = 0 and equal w the loss is the base estimator's, exactly). Two faults of the public code are not
repeated: its min-max runs over a whole micro-batch, padding included, and its group step takes runs of adjacent rows
of a micro-batch as a group; here both are per response and per group id. Weights are 1 outside the mask.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from mars.perception.groups import group_mean, group_minmax, top_in_rows

PSI_CLAMP = (0.1, 2.0)
ALPHA_CLAMP = (0.9, 2.0)


def _minmax_rows(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Min-max normalised over each row's masked entries; 0 for a flat (or empty) row."""
    big = torch.finfo(x.dtype).max
    low = torch.where(mask, x, big).min(dim=-1, keepdim=True).values
    high = torch.where(mask, x, -big).max(dim=-1, keepdim=True).values
    span = high - low
    out = torch.where(span > 0, (x - low) / torch.where(span > 0, span, 1.0), torch.zeros_like(x))
    return out * mask


def tail_gate(similarity: torch.Tensor, mask: torch.Tensor, gamma: float, kappa: float) -> torch.Tensor:
    """(B, T) bool: the tokens in the last ``gamma`` share of each response that are among the top ``kappa`` share of
    ``similarity`` within that tail (responses are left-aligned: token t of response i at column t)."""
    lengths = mask.sum(dim=-1)
    position = torch.arange(mask.shape[1], device=mask.device).unsqueeze(0)
    tail_size = torch.ceil(gamma * lengths.double()).long()
    tail = mask & (position >= (lengths - tail_size).unsqueeze(1))
    return top_in_rows(similarity, tail, torch.ceil(kappa * tail_size.double()).long())


def vgpo_weights(similarity: torch.Tensor, response_mask: torch.Tensor, group_ids: Sequence, beta: float = 0.3,
                 gamma: float = 0.5, kappa: float = 0.2) -> torch.Tensor:
    """(B, T) token weights ``alpha_i * psi_{i,t}`` (module docstring). ``similarity`` in [0, 1], (B, T);
    ``response_mask`` (B, T), left-aligned responses; ``group_ids`` (B,): the GRPO group of each row."""
    alpha, psi = vgpo_terms(similarity, response_mask, group_ids, beta, gamma, kappa)
    weights = alpha.unsqueeze(1) * psi
    return torch.where(response_mask.bool(), weights, torch.ones_like(weights)).to(similarity.dtype)


def vgpo_terms(similarity: torch.Tensor, response_mask: torch.Tensor, group_ids: Sequence, beta: float = 0.3,
               gamma: float = 0.5, kappa: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """(alpha (B,), psi (B, T)) in float64: the two factors of the weights, before their product."""
    mask = response_mask.bool()
    w = similarity.double() * mask
    lengths = mask.sum(dim=-1, keepdim=True).clamp_min(1)
    t = torch.arange(1, mask.shape[1] + 1, device=mask.device, dtype=torch.float64).unsqueeze(0)
    compensation = beta * t / lengths
    boosted = w * (1 + tail_gate(w, mask, gamma, kappa) * compensation)
    w_hat = _minmax_rows(boosted, mask)
    mean_hat = w_hat.sum(dim=-1, keepdim=True) / lengths
    psi = (1 + w_hat - mean_hat).clamp(*PSI_CLAMP)

    phi_hat = group_minmax(w_hat.sum(dim=-1), group_ids)
    alpha = (1 + phi_hat - group_mean(phi_hat, group_ids)).clamp(*ALPHA_CLAMP)
    return alpha, psi


def vgpo_weights_reference(similarity, response_mask, group_ids, beta=0.3, gamma=0.5, kappa=0.2) -> torch.Tensor:
    """The same weights, one response and one group at a time in plain Python: the tests' oracle."""
    sim = similarity.double().tolist()
    mask = response_mask.bool().tolist()
    rows, width = len(sim), len(sim[0]) if sim else 0
    w_hats, psis = [], []
    for i in range(rows):
        w = [sim[i][t] for t in range(width) if mask[i][t]]
        n = len(w)
        tail = math.ceil(gamma * n)
        keep = math.ceil(kappa * tail)
        tail_idx = list(range(n - tail, n))
        top = sorted(tail_idx, key=lambda t: (-w[t], t))[:keep]
        boosted = [w[t] * (1 + (beta * (t + 1) / n if t in top else 0.0)) for t in range(n)]
        low, high = (min(boosted), max(boosted)) if boosted else (0.0, 0.0)
        w_hat = [(b - low) / (high - low) if high > low else 0.0 for b in boosted]
        mean = sum(w_hat) / n if n else 0.0
        w_hats.append(w_hat)
        psis.append([min(max(1 + x - mean, PSI_CLAMP[0]), PSI_CLAMP[1]) for x in w_hat])
    phi = [sum(w_hat) for w_hat in w_hats]
    alpha = [0.0] * rows
    for g in {str(x) for x in group_ids}:
        members = [i for i in range(rows) if str(group_ids[i]) == g]
        low, high = min(phi[i] for i in members), max(phi[i] for i in members)
        hat = {i: (phi[i] - low) / (high - low) if high > low else 0.0 for i in members}
        mean = sum(hat.values()) / len(members)
        for i in members:
            alpha[i] = min(max(1 + hat[i] - mean, ALPHA_CLAMP[0]), ALPHA_CLAMP[1])
    out = torch.ones(rows, width, dtype=torch.float64)
    for i in range(rows):
        columns = [t for t in range(width) if mask[i][t]]
        for k, t in enumerate(columns):
            out[i, t] = alpha[i] * psis[i][k]
    return out.to(similarity.dtype)
