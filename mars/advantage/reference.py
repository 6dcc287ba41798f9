"""SPEC §2 written as plainly as possible: a Python loop over groups.

Not used for training. It is the oracle the vectorised ``compute_mars_advantage`` is tested against, and the
baseline the benchmark measures it against.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from typing import Any, Sequence


def mars_advantage_loop(
    scores: Sequence[float],
    group_ids: Sequence[Any],
    anchor_scores: Sequence[float] = (),
    anchor_group_ids: Sequence[Any] = (),
    norm_by_std: bool = True,
    eps: float = 1e-6,
) -> list[float]:
    union: dict[Any, list[float]] = defaultdict(list)
    for score, gid in zip(scores, group_ids):
        union[gid].append(float(score))
    for score, gid in zip(anchor_scores, anchor_group_ids):
        if gid in union:  # anchors of a prompt without responses change nothing
            union[gid].append(float(score))

    mean, std = {}, {}
    for gid, values in union.items():
        if len(values) == 1:
            mean[gid], std[gid] = 0.0, 1.0
        else:
            mean[gid], std[gid] = statistics.fmean(values), statistics.stdev(values)  # stdev: Bessel's correction

    out = []
    for score, gid in zip(scores, group_ids):
        centred = float(score) - mean[gid]
        out.append(centred / (std[gid] + eps) if norm_by_std else centred)
    return out
