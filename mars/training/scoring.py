"""Scoring rollouts with a verl-style reward function, plus DAPO's overlong shaping.

The reward file and function come from verl's keys: ``reward.custom_reward_function.path/name`` (verl 0.9.1) or
the legacy ``custom_reward_function.path/name``; without one, both engines use ``mars.rewards.default_compute_score``
(grounding or VQA per sample), through verl's custom reward hook. A function may return a float or a dict with ``score`` and float parts (logged).
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any, Callable

import numpy as np

from mars.training.interface import RolloutBatch

logger = logging.getLogger(__name__)
RewardFn = Callable[..., Any]


# MARS's reward (grounding or VQA per sample), in the form verl's custom reward hook loads (``load_module``'s pkg://)
DEFAULT_REWARD_PATH = "pkg://mars.rewards"
DEFAULT_REWARD_NAME = "default_compute_score"


def resolve_reward_config(cfg: Any) -> None:
    """The reward rules both engines follow, written into ``cfg`` once, when the config is composed
    (``mars.config.compose.finalize_config``), before any engine reads it."""
    use_default_reward(cfg)
    fit_overlong_buffer(cfg)


def use_default_reward(cfg: Any) -> None:
    """Without ``reward.custom_reward_function.path`` (or the legacy top-level key) both engines score with MARS's
    ``default_compute_score``: verl's own fallback, ``default_compute_score`` by data source, raises for MARS's."""
    legacy = cfg.get("custom_reward_function", {}) or {}
    section = cfg.reward.custom_reward_function
    if section.get("path") or legacy.get("path"):
        return
    section.path, section.name = DEFAULT_REWARD_PATH, DEFAULT_REWARD_NAME
    logger.info("no reward.custom_reward_function.path: scoring with MARS's %s (%s)", DEFAULT_REWARD_NAME,
                DEFAULT_REWARD_PATH)


def fit_overlong_buffer(cfg: Any) -> None:
    """DAPO's overlong buffer must fit in the response limit (verl's DAPO reward manager asserts it). A longer one
    (the DAPO preset's 4096 with a shorter ``data.max_response_length``) becomes half the limit, the reference's
    proportion (4096 of 8192), on both engines, with a warning naming the setting."""
    overlong = (cfg.get("reward", {}).get("reward_kwargs", {}) or {}).get("overlong_buffer_cfg", None)
    if overlong is None or not overlong.get("enable", False):
        return
    limit, buffer = int(cfg.data.max_response_length), int(overlong.len)
    if buffer <= limit:
        return
    overlong.len = max(limit // 2, 1)
    logger.warning(
        "reward.reward_kwargs.overlong_buffer_cfg.len=%d is longer than data.max_response_length=%d: using %d (half "
        "the limit, as the reference's 4096 of 8192), so the overlong penalty starts at token %d. Set "
        "overlong_buffer_cfg.len <= data.max_response_length to choose another.", buffer, limit, overlong.len,
        limit - overlong.len,
    )


def load_reward_fn(cfg: Any) -> RewardFn:
    """The configured ``compute_score``, loaded by verl's own ``get_custom_reward_fn`` (with its ``reward_kwargs``).

    verl 0.9.1 reads ``reward.custom_reward_function``; the legacy top-level ``custom_reward_function`` is moved there
    first, as verl's reward loop does, with the name defaulting to ``compute_score``. ``cfg`` is a composed config,
    so the shared rules (MARS's reward by default, the overlong buffer) are already in it."""
    from omegaconf import OmegaConf
    from verl.trainer.ppo.reward import get_custom_reward_fn

    section = OmegaConf.to_container(cfg.get("reward", {}).get("custom_reward_function", {}) or {}, resolve=True)
    legacy = cfg.get("custom_reward_function", {}) or {}
    if legacy.get("path"):
        section = {**section, **{k: v for k, v in legacy.items() if v is not None}}
    if "://" not in section["path"] and not os.path.exists(section["path"]):
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


def finite_rewards(rows: RolloutBatch) -> None:
    """The rule for a reward that is NaN or infinite, on every engine: the row scores 0, is counted in
    ``reward_extras["reward_error"]`` and logged. The step applies it to whatever the engine's reward path returned
    (the local engine's ``score_rows`` already scored such rows 0; verl's reward loop passes them through)."""
    rewards = np.asarray(rows.rewards, dtype=np.float64)
    bad = ~np.isfinite(rewards)
    errors = np.asarray(rows.reward_extras.get("reward_error", np.zeros(len(rows))), dtype=np.float64)
    rows.reward_extras["reward_error"] = np.maximum(errors, bad.astype(np.float64))
    for key, values in rows.reward_extras.items():  # a NaN part would poison the filter metric or the log
        rows.reward_extras[key] = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if bad.any():
        logger.warning("%d of %d rewards were not finite (rows %s): scored 0, counted in reward/reward_error",
                       int(bad.sum()), len(rows), np.flatnonzero(bad)[:5].tolist())
    rows.rewards = np.where(bad, 0.0, rewards)


def overlong_penalty(lengths: np.ndarray, max_length: int, buffer: int, factor: float) -> np.ndarray:
    """DAPO's soft overlong punishment: 0 up to ``max_length - buffer`` tokens, then linear down to ``-factor``."""
    buffer = max(min(buffer, max_length), 1)
    expected = max_length - buffer
    excess = np.asarray(lengths, dtype=np.float64) - expected
    return np.minimum(-excess / buffer * factor, 0.0)
