"""The never-raise guard around reward functions.

A reward that raises kills a training step (verl does not catch it), so the top-level reward functions are
wrapped: an unexpected exception becomes score 0.0 with ``error`` 1.0, logged once per function so that a
systematic bug does not flood the logs with one traceback per rollout.
"""

from __future__ import annotations

import functools
import logging
import math
from typing import Callable, Iterable

logger = logging.getLogger(__name__)


_already_logged: set[str] = set()


def warn_once(key: str, message: str, *args) -> None:
    """Log a warning the first time ``key`` is seen in this process; rewards run per rollout, so repeating
    the same data problem thousands of times per step would bury everything else."""
    if key not in _already_logged:
        _already_logged.add(key)
        logger.warning(message + " (further occurrences not logged)", *args)


def zero_result(keys: Iterable[str]) -> dict[str, float]:
    """A result with every key at 0.0. verl collects each key into a per-sample list, so every call must
    return the same keys."""
    return {key: 0.0 for key in keys}


def finite(value: float) -> float:
    """``value`` as a Python float, with NaN and infinity mapped to 0.0."""
    number = float(value)
    return number if math.isfinite(number) else 0.0


def never_raise(keys: Iterable[str]) -> Callable:
    """Decorator: the wrapped reward returns ``zero_result(keys) | {"error": 1.0}`` instead of raising, and
    every value it returns is made a finite Python float."""
    keys = tuple(keys)

    def decorate(reward: Callable[..., dict]) -> Callable[..., dict]:
        logged = False

        @functools.wraps(reward)
        def guarded(*args, **kwargs) -> dict[str, float]:
            nonlocal logged
            try:
                result = reward(*args, **kwargs)
                return {key: finite(result.get(key, 0.0)) for key in keys}
            except Exception:  # noqa: BLE001 -- any failure must become a zero reward, not a dead step
                if not logged:
                    logged = True
                    logger.exception("%s raised; returning score 0 (logged once)", reward.__name__)
                return {**zero_result(keys), "error": 1.0}

        return guarded

    return decorate
