"""Turning a batch of prompts into generation requests: n multi-source rollouts + the anchor variants of each.

Both kinds go into ONE engine call. Group ids are unique per step and generation batch (``s{step}g{gen}p{i}``),
so anchors stay attached to their prompt through filtering and the concatenation of generation batches.
"""

from __future__ import annotations

from typing import Sequence

from mars.anchors import build_mono_source_variants
from mars.data.samples import PromptSample
from mars.training.interface import RolloutRequest, Sampling
from mars.training.settings import AnchorSettings


def build_requests(
    samples: Sequence[PromptSample],
    tag: str,
    n: int,
    sampling: Sampling,
    anchors: AnchorSettings,
    with_anchors: bool = True,
) -> list[RolloutRequest]:
    """``n`` sampled rollouts of each prompt, then (if ``with_anchors``) its mono-source variants' anchors."""
    requests: list[RolloutRequest] = []
    for i, sample in enumerate(samples):
        group_id = f"{tag}p{i}"
        requests += [RolloutRequest(sample.messages, group_id, sampling, sample=sample) for _ in range(n)]
        if not with_anchors:
            continue
        for variant in build_mono_source_variants(sample.messages, sample.sources, anchors.variant_mode, anchors.sources):
            requests += [
                RolloutRequest(variant.messages, group_id, anchors.sampling, True, variant.source, sample)
                for _ in range(anchors.n)
            ]
    return requests
