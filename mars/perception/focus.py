"""Faithful-MR1's quantities on the image-token grid (arXiv 2605.22072; no public code: our interpretation,
docs/methods.md): where the objects are, how much of the focus token's attention lands there, the anchoring loss
that teaches it to look there, and the causal map and reward term of the reinforcing stage.

One image of ``grid_thw = (t, h, w)`` patches becomes ``t * (h / m) * (w / m)`` tokens (``m``: the merge size), in
row-major order. A token is inside the regions when its ``m x m`` patch block, in the original image's pixels,
overlaps a ground-truth box (boxes ``[x1, y1, x2, y2]`` in those pixels).

    focus_in_box          = sum_{k in boxes} a_k / sum_k a_k      a: the focus token's attention over image tokens
    focus_in_box_uniform  = |boxes| / |image tokens|              what attention spread evenly would get
    anchoring loss        = - sum_k target_k log(a_k / sum a),    target = the in-box mask normalised to sum 1
    causal map            c_r = max(0, log p(answer | I) - log p(answer | I with region r masked)), normalised to
                          sum 1 (all 0 when no region matters)
    reward                r = r_verifiable + lambda * 1[answer correct] * sum_r A_r c_r,  A_r the attention mass on r

Why: the focus token is asked to look where the objects are (anchoring), then rewarded for looking where looking
changes the answer (reinforcing). Both bonus terms lie in [0, 1] (a mass times a distribution), so the reward
stays within ``lambda`` of the verifiable one.
"""

from __future__ import annotations

from typing import Sequence

import torch


def box_token_mask(boxes: Sequence[Sequence[float]], image_size: tuple[int, int], grid_thw: Sequence[int],
                   merge: int = 2) -> torch.Tensor:
    """(tokens,) bool: the image's tokens whose patch block overlaps one of ``boxes`` (original pixels;
    ``image_size`` = (width, height) of the original image). Overlap, not the block's centre: an object smaller
    than a token (a far person is a few pixels wide) still has the tokens that show it."""
    t, h, w = (int(v) for v in grid_thw)
    rows, columns = h // merge, w // merge
    width, height = image_size
    y0 = torch.arange(rows, dtype=torch.float64) * height / rows
    x0 = torch.arange(columns, dtype=torch.float64) * width / columns
    y1, x1 = y0 + height / rows, x0 + width / columns
    inside = torch.zeros(rows, columns, dtype=torch.bool)
    for bx1, by1, bx2, by2 in boxes:
        overlaps_y = (y0 < max(by1, by2)) & (y1 > min(by1, by2))
        overlaps_x = (x0 < max(bx1, bx2)) & (x1 > min(bx1, bx2))
        inside |= overlaps_y[:, None] & overlaps_x[None]
    return inside.flatten().repeat(t)


def focus_in_box(attention: torch.Tensor, in_box: torch.Tensor) -> tuple[float, float]:
    """(the attention mass inside the regions, renormalised over the image tokens; the regions' share of the image
    tokens). ``attention`` (tokens,): the focus token's attention over one prompt's image tokens."""
    total = float(attention.double().sum())
    share = float(in_box.double().mean()) if in_box.numel() else 0.0
    if total <= 0:
        return 0.0, share
    return float(attention.double()[in_box].sum()) / total, share


def anchoring_loss(attention: torch.Tensor, in_box: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Cross-entropy of the focus token's attention over the image tokens (renormalised) against the normalised
    in-box mask; 0 (and no gradient) for an image without regions."""
    if not bool(in_box.any()):
        return attention.sum() * 0.0
    target = in_box.to(attention.dtype) / in_box.sum()
    p = attention / attention.sum().clamp_min(eps)
    return -(target * torch.log(p.clamp_min(eps))).sum()


NOISE_NATS = 1e-6  # a drop this small is float rounding (log-probs come in float32), not a region that matters


def causal_map(answer_log_prob: float, masked_log_probs: torch.Tensor) -> torch.Tensor:
    """(regions,) the normalised drop of the answer's log-probability when each region is masked (module
    docstring); all 0 when masking no region lowers it by more than ``NOISE_NATS``."""
    drop = float(answer_log_prob) - masked_log_probs.double()
    drop = torch.where(drop > NOISE_NATS, drop, torch.zeros_like(drop))
    total = drop.sum()
    return drop / total if total > 0 else torch.zeros_like(drop)


def faithful_reward(verifiable: float, correct: bool, region_attention: torch.Tensor, causal: torch.Tensor,
                    weight: float) -> float:
    """``verifiable + weight * 1[correct] * sum_r A_r c_r`` (``region_attention``: the focus token's attention mass
    on each region, a share of its image attention); the verifiable reward alone for a wrong answer."""
    if not correct:
        return float(verifiable)
    bonus = float((region_attention.double().clamp(0, 1) * causal.double()).sum())
    return float(verifiable) + weight * min(max(bonus, 0.0), 1.0)


__all__ = ["anchoring_loss", "box_token_mask", "causal_map", "faithful_reward", "focus_in_box"]
