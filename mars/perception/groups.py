"""What the token-weighting methods share: per-group statistics by GRPO group id (never by position in a batch),
and the top tokens of each response."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch


def group_index(group_ids: Sequence, device=None) -> tuple[torch.Tensor, int]:
    """(B,) index of each row's group, and the number of groups."""
    _, group = np.unique(np.asarray(group_ids, dtype=object).astype(str), return_inverse=True)
    group = torch.as_tensor(group, device=device)
    return group, int(group.max()) + 1 if len(group) else 0


def group_minmax(values: torch.Tensor, group_ids: Sequence) -> torch.Tensor:
    """Min-max of ``values`` (B,) within each group; 0 where a group is flat."""
    group, n = group_index(group_ids, values.device)
    low = torch.full((n,), math.inf, dtype=values.dtype, device=values.device).scatter_reduce(0, group, values, "amin")
    high = torch.full((n,), -math.inf, dtype=values.dtype, device=values.device).scatter_reduce(0, group, values, "amax")
    span = (high - low)[group]
    return torch.where(span > 0, (values - low[group]) / torch.where(span > 0, span, 1.0), torch.zeros_like(values))


def group_mean(values: torch.Tensor, group_ids: Sequence) -> torch.Tensor:
    """(B,) the mean of ``values`` over each row's group."""
    group, n = group_index(group_ids, values.device)
    count = torch.zeros(n, dtype=values.dtype, device=values.device).index_add_(0, group, torch.ones_like(values))
    total = torch.zeros(n, dtype=values.dtype, device=values.device).index_add_(0, group, values)
    return (total / count)[group]


def top_in_rows(scores: torch.Tensor, among: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """(B, T) bool: in each row, the ``keep[i]`` largest ``scores`` among the positions ``among`` (ties to the
    earlier token: a stable sort)."""
    ranked = torch.where(among, scores.double(), -math.inf)
    order = torch.sort(-ranked, dim=-1, stable=True).indices
    position = torch.arange(scores.shape[1], device=scores.device).unsqueeze(0).expand_as(order)
    rank = torch.empty_like(order).scatter_(-1, order, position)
    return among & (rank < keep.unsqueeze(1))
