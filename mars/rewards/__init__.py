"""MARS rewards for verl (custom reward signature ``compute_score(data_source, solution_str, ground_truth,
extra_info=None)``).

- ``grounding_score`` / ``grounding_reward``: format (<= 0.75) + Hungarian-matched IoU part.
- ``vqa_score`` / ``vqa_reward``: format (<= 0.5) + strict accuracy (0 or 1).
- ``default_compute_score``: picks one of the two per sample (``task_of``).

The ``*_score`` functions return verl result dicts (``"score"`` plus logged float entries, the same keys on
every call); the ``*_reward`` functions return the plain float. None of them raises.
"""

from __future__ import annotations

from typing import Any

from mars.rewards import parsing
from mars.rewards.grounding import (
    GROUNDING_KEYS,
    grounding_reward,
    grounding_score,
    max_grounding_score,
    parse_ground_truth_boxes,
)
from mars.rewards.vqa import VQA_KEYS, vqa_reward, vqa_score

GROUNDING = "grounding"
VQA = "vqa"

__all__ = [
    "ALL_KEYS",
    "GROUNDING",
    "GROUNDING_KEYS",
    "VQA",
    "VQA_KEYS",
    "default_compute_score",
    "grounding_reward",
    "grounding_score",
    "max_grounding_score",
    "task_of",
    "vqa_reward",
    "vqa_score",
]


def task_of(ground_truth: Any, extra_info: Any = None) -> str:
    """``"grounding"`` or ``"vqa"`` for one sample.

    ``extra_info["reward"]`` (the dataset schema's key) or ``extra_info["task"]`` decides when it names one of the
    two. Otherwise the ground truth does: boxes (a list, or a string holding a JSON box list, possibly inside
    ``<answer>``) mean grounding, anything else VQA.
    """
    if isinstance(extra_info, dict):
        for key in ("reward", "task"):
            named = str(extra_info.get(key) or "").strip().lower()
            if named in (GROUNDING, VQA):
                return named
    value = parsing.to_plain(ground_truth)
    if isinstance(value, list):
        return VQA if value and all(isinstance(item, str) for item in value) else GROUNDING
    if isinstance(value, str) and parse_ground_truth_boxes(value) is not None:
        return GROUNDING
    return VQA


# A batch may mix tasks, and verl collects every key into one list per batch, so the dispatcher always
# returns the union of both key sets (the entries that do not apply to a sample are 0.0).
ALL_KEYS = tuple(dict.fromkeys(GROUNDING_KEYS + VQA_KEYS))


def default_compute_score(
    data_source: Any, solution_str: Any, ground_truth: Any, extra_info: Any = None, **_: Any
) -> dict[str, float]:
    """verl entry point: the grounding or VQA result for one sample, with the keys ``ALL_KEYS``.

    ``data_source`` is not needed; extra keyword arguments verl may pass (``sandbox_fusion_url`` ...) are
    ignored. Never raises.
    """
    try:
        task = task_of(ground_truth, extra_info)
    except Exception:  # noqa: BLE001 -- an odd ground-truth object must not stop training
        task = VQA
    score = grounding_score if task == GROUNDING else vqa_score
    return {**dict.fromkeys(ALL_KEYS, 0.0), **score(solution_str, ground_truth, extra_info)}
