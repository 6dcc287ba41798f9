"""Turning a batch of prompts into generation requests: n multi-source rollouts + the anchor variants of each.

Both kinds go into ONE engine call. Group ids are unique per step and generation batch (``s{step}g{gen}p{i}``),
so anchors stay attached to their prompt through filtering and the concatenation of generation batches.
"""

from __future__ import annotations

from typing import Any, Sequence

from mars.anchors import build_mono_source_variants
from mars.trainer.dataset import PromptSample
from mars.trainer.engine import RolloutRequest, Sampling


def anchor_settings(mars_cfg: Any) -> tuple[int, Sampling]:
    anchor = mars_cfg.anchor
    sampling = Sampling(do_sample=bool(anchor.do_sample), temperature=float(anchor.temperature), top_p=float(anchor.top_p))
    return int(anchor.n), sampling


def build_requests(
    samples: Sequence[PromptSample],
    tag: str,
    n: int,
    sampling: Sampling,
    mars_cfg: Any,
    with_anchors: bool = True,
) -> list[RolloutRequest]:
    """``n`` sampled rollouts of each prompt, then (if ``with_anchors``) its mono-source variants' anchors."""
    anchor_n, anchor_sampling = anchor_settings(mars_cfg)
    anchor_sources = mars_cfg.anchor_sources
    if anchor_sources is not None and not isinstance(anchor_sources, str):
        anchor_sources = list(anchor_sources)
    requests: list[RolloutRequest] = []
    for i, sample in enumerate(samples):
        group_id = f"{tag}p{i}"
        requests += [RolloutRequest(sample.messages, group_id, sampling, sample=sample) for _ in range(n)]
        if not with_anchors:
            continue
        for variant in build_mono_source_variants(sample.messages, sample.sources, mars_cfg.variant_mode, anchor_sources):
            requests += [
                RolloutRequest(variant.messages, group_id, anchor_sampling, True, variant.source, sample)
                for _ in range(anchor_n)
            ]
    return requests
