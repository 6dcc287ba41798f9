"""Hypothesis strategies for batches of groups: responses and anchors tied by a prompt id."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import strategies as st

# A few discrete reward values make ties (degenerate groups) common; floats cover the rest, rounded like real
# rewards so that "no signal" can be told from float noise by a tolerance.
DISCRETE_REWARDS = st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0, 1.5])  # the values format/accuracy rewards take
REWARDS = st.one_of(DISCRETE_REWARDS, st.floats(-3, 3, allow_nan=False).map(lambda x: round(x, 3)))


@dataclass
class Batch:
    scores: list[float]
    group_ids: list[str]
    anchor_scores: list[float]
    anchor_group_ids: list[str]
    anchor_sources: list[str]


@st.composite
def batches(draw, max_groups: int = 8, max_g: int = 8, max_k: int = 4, min_g: int = 1, rewards=REWARDS) -> Batch:
    n_groups = draw(st.integers(1, max_groups))
    scores, gids, a_scores, a_gids, a_sources = [], [], [], [], []
    for g in range(n_groups):
        gid = f"uid-{g}"
        for _ in range(draw(st.integers(min_g, max_g))):
            scores.append(draw(rewards))
            gids.append(gid)
        for k in range(draw(st.integers(0, max_k))):
            a_scores.append(draw(rewards))
            a_gids.append(gid)
            a_sources.append(["visible", "infrared", "depth", "CAM_FRONT"][k])
    return Batch(scores, gids, a_scores, a_gids, a_sources)
