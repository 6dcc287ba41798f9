"""Fusion diagnostics: what the anchors tell about multi-source vs mono-source answers in one batch.

These are the trainer's ``mars/*`` metrics. Every value is a float; keys about anchors are only present when
the batch has anchors (a missing curve is clearer than a NaN one).

    mars/multi_source_reward      rbar: mean reward of the multi-source responses
    mars/anchor_reward            mbar: mean reward of the anchors (mono-source answers)
    mars/anchor_reward/<source>   mean anchor reward of the variants that show only <source>
    mars/information_gain         mean over anchored groups of (rbar_g - mbar_g); > 0 means fusing helps
    mars/anchored_groups          share of groups that have at least one anchor
    mars/signal_groups            share of groups where some response has a non-zero MARS advantage
    mars/signal_groups_grpo       the same under plain GRPO (anchors ignored)
    mars/signal_mars_only         share of groups with signal under MARS but none under GRPO
    mars/signal_grpo_only         the reverse (rare: e.g. a lone response whose anchors equal its reward, or
                                  anchors that put the union's mean exactly on every response)
    mars/orphan_anchors           number of anchors whose prompt has no response in the batch
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from mars.advantage.core import compute_mars_advantage
from mars.advantage.groups import as_float_tensor, group_stats, index_groups

# An advantage below this is float noise of a constant group (|r - mean| ~ 1e-16 divided by std + eps ~ 1e-6),
# far below any real signal of rewards given to a few decimals.
SIGNAL_TOLERANCE = 1e-6


def fusion_diagnostics(
    scores: Any,
    group_ids: Sequence[Any],
    anchor_scores: Any = None,
    anchor_group_ids: Sequence[Any] | None = None,
    anchor_sources: Sequence[str] | None = None,
    prefix: str = "mars/",
) -> dict[str, float]:
    """The metrics listed in the module docstring, for one batch (vectorised over rows and groups)."""
    rewards = as_float_tensor(scores, "scores")
    anchors = as_float_tensor([] if anchor_scores is None else anchor_scores, "anchor_scores")
    if anchor_sources is not None and len(anchor_sources) != len(anchors):
        raise ValueError(f"anchor_sources has {len(anchor_sources)} rows but anchor_scores has {len(anchors)}")
    groups = index_groups(group_ids, anchor_group_ids)
    n_groups = groups.num_groups
    r_stats = group_stats(rewards, groups.response_group, n_groups)
    a_stats = group_stats(anchors, groups.anchor_group, n_groups)
    has_responses = r_stats.count > 0
    n_prompts = max(int(has_responses.sum()), 1)

    anchor_ids = anchor_group_ids if len(anchors) else None
    signal_mars = _has_signal(compute_mars_advantage(rewards, group_ids, anchors, anchor_ids), groups.response_group, n_groups)
    signal_grpo = _has_signal(compute_mars_advantage(rewards, group_ids), groups.response_group, n_groups)

    def share(mask: torch.Tensor) -> float:
        return float(mask.sum()) / n_prompts

    out = {
        "multi_source_reward": float(rewards.mean()) if len(rewards) else 0.0,
        "signal_groups": share(signal_mars),
        "signal_groups_grpo": share(signal_grpo),
        "signal_mars_only": share(signal_mars & ~signal_grpo),
        "signal_grpo_only": share(signal_grpo & ~signal_mars),
        "anchored_groups": share(has_responses & (a_stats.count > 0)),
    }
    if len(anchors):
        anchored = has_responses & (a_stats.count > 0)
        out["anchor_reward"] = float(anchors.mean())
        out["orphan_anchors"] = float((~has_responses[groups.anchor_group]).sum())
        if anchored.any():
            out["information_gain"] = float((r_stats.mean[anchored] - a_stats.mean[anchored]).mean())
        if anchor_sources is not None:
            names, which = np.unique(np.asarray(anchor_sources, dtype=str), return_inverse=True)
            which_t = torch.as_tensor(which.reshape(-1), dtype=torch.long)
            per_source = group_stats(anchors, which_t, len(names)).mean
            out.update({f"anchor_reward/{name}": float(v) for name, v in zip(names.tolist(), per_source.tolist())})
    return {prefix + k: v for k, v in out.items()}


def _has_signal(advantages: torch.Tensor, group: torch.Tensor, num_groups: int) -> torch.Tensor:
    """True where some response of the group has a non-zero advantage (a policy gradient)."""
    peak = torch.zeros(num_groups, dtype=torch.float64).scatter_reduce(0, group, advantages.abs(), "amax")
    return peak > SIGNAL_TOLERANCE
