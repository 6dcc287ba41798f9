"""Anchor-aware group filter for DAPO's dynamic sampling (SPEC §2).

Plain DAPO drops a prompt whose G rewards are all equal: its GRPO advantage is zero, it only dilutes the batch.
Under MARS such a group can still carry signal, because its anchors may differ from the responses. So in
``mars`` mode a group is kept when the union of its responses and anchors is not constant; ``dapo`` mode
reproduces verl's DAPO filter (responses only). A prompt with a single response and nothing to compare it with
is kept, as verl does.

The filter returns row indices, not copies, so the caller keeps responses and anchors attached to their group id
through filtering and through the concatenation of several generation batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Sequence

import numpy as np
import torch

from mars.advantage.groups import as_float_tensor, group_has_spread, group_stats, index_groups

FilterMode = Literal["mars", "dapo"]


@dataclass(frozen=True)
class GroupFilterResult:
    """Which rows survive. Indices are into the inputs, ascending (the original row order is kept)."""

    kept_rows: np.ndarray
    kept_anchor_rows: np.ndarray
    kept_group_ids: np.ndarray
    num_groups: int
    num_kept: int
    num_rescued_by_anchors: int  # kept in ``mars`` mode although plain DAPO would drop them

    @property
    def num_dropped(self) -> int:
        return self.num_groups - self.num_kept

    def metrics(self, prefix: str = "mars/filter/") -> dict[str, float]:
        return {
            prefix + "groups": float(self.num_groups),
            prefix + "kept_groups": float(self.num_kept),
            prefix + "dropped_groups": float(self.num_dropped),
            prefix + "rescued_by_anchors": float(self.num_rescued_by_anchors),
        }


def filter_groups(
    metric: Any,
    group_ids: Sequence[Any],
    anchor_metric: Any = None,
    anchor_group_ids: Sequence[Any] | None = None,
    mode: FilterMode = "mars",
) -> GroupFilterResult:
    """Keep the groups that carry a learning signal.

    Args:
        metric: (N,) the filter metric of each multi-source response (DAPO's ``filter_groups.metric``, e.g.
            ``seq_reward`` or ``acc``).
        group_ids: (N,) prompt id of each response.
        anchor_metric / anchor_group_ids: (M,) the same metric for each anchor, and its prompt id.
        mode: ``mars`` (responses and anchors) or ``dapo`` (responses only, verl's DAPO).

    Anchors of a prompt that has no response are dropped.
    """
    if mode not in ("mars", "dapo"):
        raise ValueError(f"unknown filter mode {mode!r}: use 'mars' or 'dapo'")
    values = as_float_tensor(metric, "metric")
    anchors = as_float_tensor([] if anchor_metric is None else anchor_metric, "anchor_metric")
    n_anchor_ids = 0 if anchor_group_ids is None else len(anchor_group_ids)
    if len(anchors) != n_anchor_ids or len(values) != len(group_ids):
        raise ValueError("metric/group_ids and anchor_metric/anchor_group_ids must have matching lengths")

    groups = index_groups(group_ids, anchor_group_ids)
    n = groups.num_groups
    response_count = group_stats(values, groups.response_group, n).count
    has_responses = response_count > 0
    lone = response_count == 1

    keep_dapo = has_responses & (lone | group_has_spread(values, groups.response_group, n))
    if mode == "dapo":
        keep = keep_dapo
    else:
        union_values = torch.cat([values, anchors])
        union_group = torch.cat([groups.response_group, groups.anchor_group])
        union_lone = group_stats(union_values, union_group, n).count == 1  # a lone response without anchors
        keep = has_responses & (union_lone | group_has_spread(union_values, union_group, n))

    keep_np = keep.numpy()
    return GroupFilterResult(
        kept_rows=np.flatnonzero(keep_np[groups.response_group.numpy()]),
        kept_anchor_rows=np.flatnonzero(keep_np[groups.anchor_group.numpy()]),
        kept_group_ids=groups.ids[keep_np],
        num_groups=int(has_responses.sum()),
        num_kept=int(keep.sum()),
        num_rescued_by_anchors=int((keep & ~keep_dapo).sum()),
    )
