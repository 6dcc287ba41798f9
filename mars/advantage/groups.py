"""Vectorised per-group statistics: the shared machinery of the advantage, the diagnostics and the filter.

Rows are tied to their prompt by a group id (verl's ``uid``: usually a uuid string, sometimes an int).
Multi-source responses and anchors are two separate row sets that share the id space, so every function
here takes both and works on the union without a Python loop over rows or groups.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch


def as_id_array(ids: Any, name: str) -> np.ndarray:
    """Group ids as a 1-D numpy array (strings, ints or objects), with a clear error for bad shapes."""
    if isinstance(ids, torch.Tensor):
        ids = ids.detach().cpu().numpy()
    arr = np.asarray(ids)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional (one id per row), got shape {arr.shape}")
    return arr


def as_float_tensor(values: Any, name: str) -> torch.Tensor:
    """Rewards as a 1-D float64 CPU tensor; NaN/inf are rejected because they would poison a whole group."""
    t = values.detach() if isinstance(values, torch.Tensor) else torch.as_tensor(np.asarray(values, dtype=np.float64))
    if t.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional (one reward per row), got shape {tuple(t.shape)}")
    t = t.to(device="cpu", dtype=torch.float64)
    if not torch.isfinite(t).all():
        bad = torch.nonzero(~torch.isfinite(t)).flatten()[:5].tolist()
        raise ValueError(f"{name} has non-finite values at rows {bad}: rewards must be finite floats")
    return t


def _is_numeric(arr: np.ndarray) -> bool:
    return arr.dtype.kind in "biuf"


@dataclass(frozen=True)
class GroupIndex:
    """Dense group numbering shared by responses and anchors.

    ``response_group[i]`` / ``anchor_group[j]`` are integers in ``[0, num_groups)``; ``ids[g]`` is the original id.
    """

    ids: np.ndarray
    response_group: torch.Tensor
    anchor_group: torch.Tensor

    @property
    def num_groups(self) -> int:
        return len(self.ids)


def index_groups(group_ids: Sequence[Any], anchor_group_ids: Sequence[Any] | None = None) -> GroupIndex:
    """Number the groups of responses and anchors densely, in order of first appearance.

    ``pandas.factorize`` hashes the ids, which is several times faster than sorting uuid strings with
    ``np.unique``; the numbering never changes a result, only the order of ``ids``.
    """
    resp = as_id_array(group_ids, "group_ids")
    anch = as_id_array([] if anchor_group_ids is None else anchor_group_ids, "anchor_group_ids")
    if len(anch) and len(resp) and _is_numeric(resp) != _is_numeric(anch):
        # np.concatenate would silently turn 7 into "7" and merge groups that are not the same prompt
        raise TypeError(f"group_ids ({resp.dtype}) and anchor_group_ids ({anch.dtype}) must be of the same kind")
    joined = np.concatenate([resp, anch]) if len(anch) else resp  # an empty list is float: keep resp's dtype
    codes, ids = pd.factorize(joined)
    if (codes < 0).any():
        raise ValueError("group ids must not be None or NaN")
    codes = torch.from_numpy(codes.astype(np.int64, copy=False))
    return GroupIndex(ids=np.asarray(ids), response_group=codes[: len(resp)], anchor_group=codes[len(resp) :])


@dataclass(frozen=True)
class GroupStats:
    """Count, mean and Bessel-corrected std of the values in each group (std is NaN where count < 2)."""

    count: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor


def group_stats(values: torch.Tensor, group: torch.Tensor, num_groups: int) -> GroupStats:
    """Per-group count/mean/std by two scatter-adds (mean first, then centred squares, for stability)."""
    count = torch.zeros(num_groups, dtype=torch.float64).index_add_(0, group, torch.ones_like(values))
    total = torch.zeros(num_groups, dtype=torch.float64).index_add_(0, group, values)
    mean = total / count.clamp_min(1)
    sq = torch.zeros(num_groups, dtype=torch.float64).index_add_(0, group, (values - mean[group]) ** 2)
    std = torch.sqrt(sq / (count - 1))  # count == 1 -> 0/0 = NaN, count == 0 -> NaN: callers decide
    return GroupStats(count=count, mean=mean, std=std)


def group_has_spread(values: torch.Tensor, group: torch.Tensor, num_groups: int) -> torch.Tensor:
    """True where a group holds at least two different values (exact: max > min, no rounding of a std)."""
    lo = torch.full((num_groups,), float("inf"), dtype=torch.float64).scatter_reduce(0, group, values, "amin")
    hi = torch.full((num_groups,), float("-inf"), dtype=torch.float64).scatter_reduce(0, group, values, "amax")
    return hi > lo

