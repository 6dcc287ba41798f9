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

The reinforcing stage's regions are a ``g x g`` grid of cells over each image's tokens, the same cell in every image of
a row (a row's sources are aligned: cell r of the RGB image and of the infrared one show the same place), so
``sum_r A_r = 1``. The causal map is one per prompt, from the first answer-correct trajectory of its group (the
correct answers of a group are the same answer; one map per prompt bounds the masked forwards at g^2 + 1 per prompt);
"the answer's log-probability" is the sum of the sampled tokens' log-probs inside the response's last ``<answer>``
block (the whole response without one).

Why: the focus token is asked to look where the objects are (anchoring), then rewarded for looking where looking
changes the answer (reinforcing). Both bonus terms lie in [0, 1] (a mass times a distribution), so the reward
stays within ``lambda`` of the verifiable one.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
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
    bonus = float((region_attention.double().clamp(0, 1) * causal.double().clamp(0, 1)).sum())
    bonus = min(max(bonus, 0.0), 1.0) if math.isfinite(bonus) else 0.0  # NaN attention earns nothing
    return float(verifiable) + weight * bonus


def focus_token_id(tokenizer, token: str) -> int | None:
    """The focus token's id, None when the tokenizer does not have it (no anchoring stage built this model)."""
    focus_id = tokenizer.convert_tokens_to_ids(token)
    return None if focus_id is None or focus_id == tokenizer.unk_token_id else int(focus_id)


def grid_regions(grids_thw: Sequence[Sequence[int]], merge: int, cells: int) -> torch.Tensor:
    """(cells^2, image tokens) bool: region r = (i, j) holds the tokens of row band i and column band j of a
    ``cells x cells`` grid laid over each image's token grid, in every image of the prompt (image after image, as
    the tokens come). A band of an image smaller than the grid may be empty: that region has no token there."""
    masks = []
    for grid in grids_thw:
        t, h, w = (int(v) for v in grid)
        rows, columns = h // merge, w // merge
        band_y = (torch.arange(rows) * cells) // max(rows, 1)
        band_x = (torch.arange(columns) * cells) // max(columns, 1)
        cell = (band_y[:, None] * cells + band_x[None]).flatten().repeat(t)  # each token's cell index
        masks.append(cell[None] == torch.arange(cells * cells)[:, None])
    return torch.cat(masks, dim=1) if masks else torch.zeros(cells * cells, 0, dtype=torch.bool)


def region_attention(attention: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
    """(regions,) the share of the focus token's image attention (``attention``, (image tokens,)) in each region;
    zeros when the row has no attention to share (no focus token, no image)."""
    attention = attention.double().clamp_min(0)
    total = attention.sum()
    if total <= 0:
        return torch.zeros(regions.shape[0], dtype=torch.float64)
    return (regions.double() * attention[None]).sum(dim=1) / total


def answer_tokens(pieces: Sequence[str]) -> list[bool]:
    """Which response tokens (``pieces``: each token's text, in order) lie in the last closed ``<answer>`` block's
    text, a token straddling a tag included; every token when there is no such block. Linear in the length."""
    text = "".join(pieces)
    begin = text.rfind("<answer>")
    end = text.find("</answer>", begin) if begin >= 0 else -1
    if begin < 0 or end < 0:
        return [True] * len(pieces)
    begin += len("<answer>")
    out, position = [], 0
    for piece in pieces:
        start, position = position, position + len(piece)
        out.append(start < end and position > begin)
    return out if any(out) else [True] * len(pieces)


def answer_correct(rewards: np.ndarray, extras: dict[str, np.ndarray]) -> np.ndarray:
    """(B,) bool: the answer is correct. MARS's rewards say it in a part: ``accuracy`` (VQA) is 1, ``iou`` (grounding)
    is at least 0.5; a reward function without either: a positive reward."""
    if "accuracy" in extras or "iou" in extras:
        accuracy = np.asarray(extras.get("accuracy", np.zeros(len(rewards))), dtype=float)
        iou = np.asarray(extras.get("iou", np.zeros(len(rewards))), dtype=float)
        return (accuracy >= 1.0) | (iou >= 0.5)
    return np.asarray(rewards, dtype=float) > 0


def causal_rows(group_ids: Sequence, correct: np.ndarray) -> list[int]:
    """The first answer-correct row of each group that has one, in row order: whose causal map is computed."""
    seen, rows = set(), []
    for i, (group, ok) in enumerate(zip(group_ids, correct)):
        if ok and group not in seen:
            seen.add(group)
            rows.append(i)
    return rows


def faithful_rewards(rewards: np.ndarray, correct: np.ndarray, group_ids: Sequence, attention: torch.Tensor,
                     maps: dict[str, torch.Tensor], weight: float) -> tuple[np.ndarray, dict[str, float]]:
    """Each row's reward with the bonus of ``faithful_reward`` (its group's causal map from ``maps``, keyed by group
    id; a group without a map gets no bonus), and the stage's metrics; ``bonus_spread``, the standard deviation of
    the bonus among a group's correct answers (mean over groups): 0 means the bonus cannot tell them apart.
    ``attention`` (B, regions): each row's ``region_attention``."""
    out = np.asarray(rewards, dtype=float).copy()
    by_group: dict[str, list[float]] = {}
    for i, group in enumerate(group_ids):
        if correct[i] and str(group) in maps:
            out[i] = faithful_reward(out[i], True, attention[i], maps[str(group)], weight)
            by_group.setdefault(str(group), []).append((out[i] - float(rewards[i])) / weight if weight > 0 else 0.0)
    bonuses = [b for values in by_group.values() for b in values]
    spreads = [float(np.std(values)) for values in by_group.values() if len(values) > 1]
    maps_stacked = torch.stack(list(maps.values())) if maps else torch.zeros(0, attention.shape[1])
    return out, {
        "perception/faithful/bonus": float(np.mean(bonuses)) if bonuses else 0.0,
        "perception/faithful/bonus_spread": float(np.mean(spreads)) if spreads else 0.0,
        "perception/faithful/correct_share": float(np.mean(correct)) if len(correct) else 0.0,
        "perception/faithful/with_focus_share": float((attention.sum(dim=1) > 0).double().mean()) if len(attention) else 0.0,
        "perception/faithful/causal_maps": float(len(maps)),
        "perception/faithful/flat_map_share": float((maps_stacked.sum(dim=1) == 0).double().mean()) if maps else 0.0,
    }


__all__ = ["anchoring_loss", "answer_correct", "answer_tokens", "box_token_mask", "causal_map", "causal_rows",
           "faithful_reward", "faithful_rewards", "focus_in_box", "focus_token_id", "grid_regions", "region_attention"]
