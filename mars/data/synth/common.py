"""What every synthetic task produces, and how a task is described to the dataset builder."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

# Qwen2.5-VL's processor works on 28-pixel units (14-pixel patches merged 2x2): with both sides multiples of
# 28 and the area within its pixel limits it resizes nothing, so absolute coordinates equal original pixels.
PATCH_FACTOR = 28
MIN_PIXELS = 3136


@dataclass
class SynthSample:
    """One sample: the images by source name (in prompt order), the question and the plain answer."""

    images: dict[str, np.ndarray]
    question: str
    answer: Any  # list of [x1, y1, x2, y2] for grounding, a string for VQA
    reward: str  # "grounding" | "vqa"
    answer_sources: list[str]  # the sources that alone suffice to answer
    scenario: str  # the condition drawn for this sample, e.g. "dark" (see each task's docstring)
    meta: dict[str, Any] = field(default_factory=dict)  # task facts for tests (not written to parquet)
    regions: list[list[int]] = field(default_factory=list)  # boxes of the objects asked about (extra_info.regions)


@dataclass(frozen=True)
class SynthOptions:
    """Knobs shared by the tasks (a task ignores the ones it has no use for)."""

    width: int
    height: int
    hard_frac: float = 0.8  # share of samples where only the dominant source carries the answer
    views: int = 6  # multiview_vqa only


@dataclass(frozen=True)
class SynthTask:
    name: str
    description: str
    default_size: tuple[int, int]  # (width, height)
    sources: Callable[[SynthOptions], list[str]]
    make_sample: Callable[[np.random.Generator, SynthOptions], SynthSample]
    salt: int  # mixed into every sample's seed so tasks with the same --seed draw different scenes


def check_size(width: int, height: int) -> None:
    """Refuse image sizes the processor would resize (it would shift every absolute coordinate)."""
    if width % PATCH_FACTOR or height % PATCH_FACTOR or width <= 0 or height <= 0:
        raise ValueError(
            f"image size {width}x{height}: both sides must be positive multiples of {PATCH_FACTOR} "
            "(e.g. 112x112, 140x112), so that Qwen2.5-VL's processor keeps the images as they are"
        )
    if width * height < MIN_PIXELS:
        raise ValueError(f"image size {width}x{height} is below the processor's min_pixels {MIN_PIXELS}")
