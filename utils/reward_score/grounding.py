"""verl custom reward file for grounding datasets (e.g. LLVIP):
``custom_reward_function.path=utils/reward_score/grounding.py`` (``compute_score`` is verl's default name).

The logic lives in ``mars.rewards.grounding``; see docs/rewards_and_evaluation.md.
"""

import sys
from pathlib import Path
from typing import Any

# verl loads this file by path inside Ray workers, whose sys.path need not hold the repository root.
_REPO_ROOT = str(Path(__file__).resolve().parents[2])
if _REPO_ROOT not in sys.path:
    sys.path.append(_REPO_ROOT)

from mars.rewards import grounding_score  # noqa: E402


def compute_score(data_source: Any, solution_str: Any, ground_truth: Any, extra_info: Any = None, **_: Any) -> dict:
    """``{"score", "format", "iou", "coord_error", "error"}`` for one rollout; never raises."""
    return grounding_score(solution_str, ground_truth, extra_info)
