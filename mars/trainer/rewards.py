"""Scoring rollouts with a verl-style reward function, plus DAPO's overlong shaping.

The reward file and function come from verl's keys: ``reward.custom_reward_function.path/name`` (verl 0.9.1) or
the legacy ``custom_reward_function.path/name``; without one, ``mars.rewards.default_compute_score`` picks
grounding or VQA per sample. A function may return a float or a dict with ``score`` and float parts (logged).
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any, Callable

import numpy as np

from mars.trainer.engine import RolloutBatch

logger = logging.getLogger(__name__)
RewardFn = Callable[..., Any]


def load_reward_fn(cfg: Any) -> RewardFn:
    """The configured ``compute_score``, loaded by verl's own ``get_custom_reward_fn`` (with its ``reward_kwargs``).

    verl 0.9.1 reads ``reward.custom_reward_function``; the legacy top-level ``custom_reward_function`` is moved there
    first, as verl's reward loop does, with the name defaulting to ``compute_score``."""
    from omegaconf import OmegaConf
    from verl.trainer.ppo.reward import get_custom_reward_fn

    section = OmegaConf.to_container(cfg.get("reward", {}).get("custom_reward_function", {}) or {}, resolve=True)
    legacy = cfg.get("custom_reward_function", {}) or {}
    if legacy.get("path"):
        section = {**section, **{k: v for k, v in legacy.items() if v is not None}}
    if not section.get("path"):
        from mars.rewards import default_compute_score

        return default_compute_score
    if not os.path.exists(section["path"]):
        raise FileNotFoundError(f"reward file {section['path']!r} (custom_reward_function.path) does not exist")
    section["name"] = section.get("name") or "compute_score"
    return get_custom_reward_fn(OmegaConf.create({"reward": {"custom_reward_function": section}}))


def score_rows(rows: RolloutBatch, reward_fn: RewardFn, overlong: Any = None, max_response_length: int = 0) -> None:
    """Fill ``rows.rewards`` (and ``rows.reward_extras``) in place, one call of the reward function per row.

    A reward function that raises or returns a non-finite value scores 0 for that row, counted in
    ``reward_extras["reward_error"]`` and logged: one bad output must not stop a run.
    """
    scores = np.zeros(len(rows), dtype=np.float64)
    extras: dict[str, np.ndarray] = {}
    errors = np.zeros(len(rows), dtype=np.float64)
    for i, (text, sample) in enumerate(zip(rows.texts, rows.samples)):
        try:
            result = reward_fn(
                data_source=sample.data_source,
                solution_str=text,
                ground_truth=sample.ground_truth,
                extra_info=sample.extra_info,
            )
        except Exception as exc:  # noqa: BLE001 - a reward must never stop training
            logger.warning("reward function raised on row %d (%s): %s", i, sample.data_source, exc)
            result, errors[i] = 0.0, 1.0
        if isinstance(result, dict):
            for key, value in result.items():
                if key != "score" and isinstance(value, (int, float)) and math.isfinite(value):
                    extras.setdefault(key, np.zeros(len(rows), dtype=np.float64))[i] = float(value)
            result = result.get("score", 0.0)
        value = float(result) if isinstance(result, (int, float)) else float("nan")
        if not math.isfinite(value):
            logger.warning("reward function returned %r on row %d: scored 0", result, i)
            value, errors[i] = 0.0, 1.0
        scores[i] = value

    if overlong is not None and overlong.get("enable", False) and max_response_length > 0:
        penalty = overlong_penalty(rows.response_lengths, max_response_length, int(overlong.len), float(overlong.penalty_factor))
        scores += penalty
        extras["overlong_penalty"] = penalty
    extras["reward_error"] = errors
    rows.rewards = scores
    rows.reward_extras = extras


def overlong_penalty(lengths: np.ndarray, max_length: int, buffer: int, factor: float) -> np.ndarray:
    """DAPO's soft overlong punishment: 0 up to ``max_length - buffer`` tokens, then linear down to ``-factor``."""
    buffer = max(min(buffer, max_length), 1)
    expected = max_length - buffer
    excess = np.asarray(lengths, dtype=np.float64) - expected
    return np.minimum(-excess / buffer * factor, 0.0)
