"""The MARS advantage (SPEC §2): GRPO's group normalisation over responses *and* mono-source anchors.

For a prompt with G multi-source responses (rewards r_1..r_G, trained on) and K anchors (rewards m_1..m_K of the
policy's answers to the mono-source variants, never trained on), the statistics are taken over the union
U = {r_1..r_G, m_1..m_K}:

    mu    = mean(U)
    sigma = std(U)                      # Bessel's correction, like torch.std
    A_i   = (r_i - mu) / (sigma + eps)  # or r_i - mu when norm_by_std is False (Dr.GRPO)

Why anchors help: r_i - mu = (r_i - rbar) + K/(G+K) * (rbar - mbar). The second term is the information gain of
fusing the sources, shared by the whole group: it pushes every response up when fusion beats the single sources
and down when it does worse, even when all G rewards are equal (where plain GRPO has no signal at all).

A group whose union holds a single value (G = 1, K = 0) gets mean 0 and std 1, as in verl's ``grpo``; with no
anchors at all the result equals verl's ``grpo`` estimator.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from mars.advantage.groups import as_float_tensor, group_stats, index_groups


def compute_mars_advantage(
    scores: Any,
    group_ids: Sequence[Any],
    anchor_scores: Any = None,
    anchor_group_ids: Sequence[Any] | None = None,
    norm_by_std: bool = True,
    eps: float = 1e-6,
) -> torch.Tensor:
    """One advantage per multi-source response.

    Args:
        scores: (N,) reward of each multi-source response.
        group_ids: (N,) prompt id of each response (strings or ints, e.g. verl's ``uid``).
        anchor_scores: (M,) reward of each anchor (mono-source answer); M may be 0, any count per prompt.
        anchor_group_ids: (M,) prompt id of each anchor. Anchors of a prompt without responses are ignored.
        norm_by_std: divide by the group std (GRPO) or not (Dr.GRPO).
        eps: added to the std before dividing.

    Returns:
        (N,) advantages: a tensor of the dtype and device of ``scores`` when it is a floating tensor, else float64.
        Computed in float64 and independent of the order of rows. The union has one dtype: when ``scores`` is
        a floating tensor (verl's float32 rewards), the anchors' rewards are first rounded to its dtype.
    """
    rewards = as_float_tensor(scores, "scores")
    anchors = as_float_tensor(_in_dtype_of(scores, anchor_scores), "anchor_scores")
    n_anchor_ids = 0 if anchor_group_ids is None else len(anchor_group_ids)
    if len(anchors) != n_anchor_ids:
        raise ValueError(f"anchor_scores has {len(anchors)} rows but anchor_group_ids has {n_anchor_ids}")
    if len(rewards) != len(group_ids):
        raise ValueError(f"scores has {len(rewards)} rows but group_ids has {len(group_ids)}")

    groups = index_groups(group_ids, anchor_group_ids)
    stats = group_stats(
        torch.cat([rewards, anchors]),
        torch.cat([groups.response_group, groups.anchor_group]),
        groups.num_groups,
    )
    lone = stats.count == 1  # one value in the union: no spread to normalise by (verl's grpo convention)
    mean = torch.where(lone, torch.zeros_like(stats.mean), stats.mean)
    std = torch.where(lone, torch.ones_like(stats.std), stats.std)

    g = groups.response_group
    advantages = rewards - mean[g]
    if norm_by_std:
        advantages = advantages / (std[g] + eps)

    if isinstance(scores, torch.Tensor) and scores.is_floating_point():
        return advantages.to(dtype=scores.dtype, device=scores.device)
    return advantages


def _in_dtype_of(scores: Any, anchor_scores: Any) -> Any:
    """The anchors' rewards rounded to the precision the responses' rewards arrive in (e.g. verl's float32
    token-level rewards), so that equal rewards are equal in the union: 0.7 in float32 and 0.7 in float64 differ
    by 1e-8, which the division by a 1e-8 std would blow up into a spurious advantage."""
    if anchor_scores is None:
        return []
    if isinstance(scores, torch.Tensor) and scores.is_floating_point():
        anchors = anchor_scores
        if not isinstance(anchors, torch.Tensor):
            anchors = torch.as_tensor(np.asarray(anchors, dtype=np.float64))
        return anchors.to(scores.dtype)
    return anchor_scores
