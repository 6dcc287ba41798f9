"""The ``mars`` estimator in verl's advantage-estimator registry.

verl's registered estimators receive token-level rewards, the response mask, the group ids (``uid``) and the
algorithm config. The MARS trainer calls this estimator itself and adds ``anchor_scores`` and
``anchor_index`` (the anchors' rewards and their prompts' uids); called by verl's own ``compute_advantage``,
without anchors, it is exactly ``grpo``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mars.advantage.core import compute_mars_advantage

ESTIMATOR_NAME = "mars"


def _config_flag(config: Any, key: str, default: bool) -> bool:
    if config is None:
        return default
    getter = getattr(config, "get", None)
    value = getter(key, default) if getter is not None else getattr(config, key, default)
    return default if value is None else bool(value)


def compute_mars_outcome_advantage(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: np.ndarray,
    epsilon: float = 1e-6,
    norm_adv_by_std_in_grpo: bool | None = None,
    config: Any = None,
    anchor_scores: torch.Tensor | np.ndarray | None = None,
    anchor_index: np.ndarray | None = None,
    **unused: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """MARS advantage broadcast over the response tokens and masked: returns (advantages, returns), (bs, T).

    ``norm_adv_by_std_in_grpo`` defaults to the config's value of the same name (verl's key), else True.
    """
    if norm_adv_by_std_in_grpo is None:
        norm_adv_by_std_in_grpo = _config_flag(config, "norm_adv_by_std_in_grpo", True)
    with torch.no_grad():
        scores = token_level_rewards.sum(dim=-1)
        adv = compute_mars_advantage(
            scores,
            index,
            anchor_scores,
            anchor_index,
            norm_by_std=norm_adv_by_std_in_grpo,
            eps=epsilon,
        )
        adv = adv.unsqueeze(-1) * response_mask
    return adv, adv


def register() -> None:
    """Register ``mars`` in verl's registry (idempotent). Imports verl, so call it only where verl is wanted."""
    from verl.trainer.ppo.core_algos import ADV_ESTIMATOR_REGISTRY, register_adv_est

    if ADV_ESTIMATOR_REGISTRY.get(ESTIMATOR_NAME) is not compute_mars_outcome_advantage:
        register_adv_est(ESTIMATOR_NAME)(compute_mars_outcome_advantage)
