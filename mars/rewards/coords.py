"""Coordinate conventions of the models, and conversion of predicted boxes to original-image pixels.

- ``absolute`` (default): boxes are already in the pixels of the original image; nothing to do.
- ``qwen2_5_vl``: Qwen2.5-VL writes absolute pixels of the image *as resized by its processor*
  (``smart_resize``), so a box is scaled by original_size / resized_size per axis.
- ``qwen3_vl``: Qwen3-VL writes coordinates relative to 0..1000, so a box is scaled by size / 1000.

The convention is chosen per dataset through ``extra_info`` (see ``CoordSettings.from_extra_info``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from mars.rewards.parsing import COORD_LIMIT, Box

ABSOLUTE = "absolute"
QWEN2_5_VL = "qwen2_5_vl"
QWEN3_VL = "qwen3_vl"
COORD_FORMATS = (ABSOLUTE, QWEN2_5_VL, QWEN3_VL)

# Qwen2.5-VL's processor: 14-pixel patches merged 2x2, so sides are multiples of 28. The pixel bounds are
# those shipped in Qwen2.5-VL-3B-Instruct's preprocessor_config.json.
PATCH_FACTOR = 28
DEFAULT_MIN_PIXELS = 3136
DEFAULT_MAX_PIXELS = 12845056
QWEN3_VL_SCALE = 1000.0
# Image sides beyond this are rejected as unreadable settings (keeps the resize arithmetic finite).
MAX_IMAGE_SIDE = 1_000_000


def smart_resize(
    height: int,
    width: int,
    factor: int = PATCH_FACTOR,
    min_pixels: int = DEFAULT_MIN_PIXELS,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[int, int]:
    """The (height, width) the Qwen2-VL/Qwen2.5-VL processor resizes an image to.

    Each side is rounded to the nearest multiple of ``factor``. If the area then exceeds ``max_pixels`` both
    sides are shrunk by sqrt(h*w / max_pixels) and rounded *down* to multiples of ``factor``; if it falls
    below ``min_pixels`` both are grown by sqrt(min_pixels / (h*w)) and rounded *up*. Every side is at least
    ``factor``. The aspect ratio is kept as closely as the rounding allows.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"image sides must be positive, got height={height}, width={width}")
    resized_h = round(height / factor) * factor  # 0 for sides under factor/2: the min_pixels branch fixes it
    resized_w = round(width / factor) * factor
    if resized_h * resized_w > max_pixels:
        shrink = math.sqrt(height * width / max_pixels)
        resized_h = max(factor, math.floor(height / shrink / factor) * factor)
        resized_w = max(factor, math.floor(width / shrink / factor) * factor)
    elif resized_h * resized_w < min_pixels:
        grow = math.sqrt(min_pixels / (height * width))
        resized_h = math.ceil(height * grow / factor) * factor
        resized_w = math.ceil(width * grow / factor) * factor
    return resized_h, resized_w


def _image_size_pair(value: Any) -> Optional[tuple[float, float]]:
    """(width, height) from a list/tuple/array (parquet gives numpy arrays); None unless both are in
    (0, MAX_IMAGE_SIDE]."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        return None
    try:
        first, second = float(value[0]), float(value[1])
    except (TypeError, ValueError, OverflowError):
        return None
    if not all(0 < v <= MAX_IMAGE_SIDE for v in (first, second)):  # also rejects NaN
        return None
    return first, second


def _pixel_count(value: Any, default: int) -> int:
    """A pixel budget in [1, MAX_IMAGE_SIDE**2], else ``default``."""
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        return default
    return number if 0 < number <= MAX_IMAGE_SIDE**2 else default


@dataclass(frozen=True)
class CoordSettings:
    """How to bring predicted boxes into original-image pixels.

    ``image_size`` and ``resized_size`` are (width, height), matching how boxes are written (x before y).
    """

    coord_format: str = ABSOLUTE
    image_size: Optional[tuple[float, float]] = None
    resized_size: Optional[tuple[float, float]] = None
    min_pixels: int = DEFAULT_MIN_PIXELS
    max_pixels: int = DEFAULT_MAX_PIXELS

    @classmethod
    def from_extra_info(cls, extra_info: Any) -> "CoordSettings":
        """Settings from a verl ``extra_info`` dict; missing or unreadable keys fall back to defaults.

        Keys: ``coord_format`` (absolute | qwen2_5_vl | qwen3_vl), ``image_size`` [W, H] of the image the
        ground truth refers to, optional ``resized_size`` [W, H] (skips smart_resize), ``min_pixels``,
        ``max_pixels``. An unknown ``coord_format`` is kept as given so that ``scale`` reports an error.
        """
        if not isinstance(extra_info, dict):
            return cls()
        coord_format = extra_info.get("coord_format") or ABSOLUTE
        return cls(
            coord_format=str(coord_format).strip().lower(),
            image_size=_image_size_pair(extra_info.get("image_size")),
            resized_size=_image_size_pair(extra_info.get("resized_size")),
            min_pixels=_pixel_count(extra_info.get("min_pixels"), DEFAULT_MIN_PIXELS),
            max_pixels=_pixel_count(extra_info.get("max_pixels"), DEFAULT_MAX_PIXELS),
        )

    def scale(self) -> Optional[tuple[float, float]]:
        """(x, y) factors from model coordinates to original pixels; None when they cannot be known.

        None means: unknown format, or a conversion was asked without a usable ``image_size``.
        """
        if self.coord_format == ABSOLUTE:
            return 1.0, 1.0
        if self.coord_format not in COORD_FORMATS or self.image_size is None:
            return None
        width, height = self.image_size
        if self.coord_format == QWEN3_VL:
            return width / QWEN3_VL_SCALE, height / QWEN3_VL_SCALE
        resized_w, resized_h = self.resized_size or self._smart_resized_size()
        return width / resized_w, height / resized_h

    def _smart_resized_size(self) -> tuple[float, float]:
        height, width = smart_resize(
            max(1, round(self.image_size[1])),
            max(1, round(self.image_size[0])),
            min_pixels=self.min_pixels,
            max_pixels=self.max_pixels,
        )
        return float(width), float(height)


def scale_box(box: Box, scale_x: float, scale_y: float) -> Box:
    """A box with x coordinates times ``scale_x`` and y times ``scale_y``, clipped to +-COORD_LIMIT."""
    x1, y1, x2, y2 = box
    return tuple(  # type: ignore[return-value]
        max(-COORD_LIMIT, min(COORD_LIMIT, value))
        for value in (x1 * scale_x, y1 * scale_y, x2 * scale_x, y2 * scale_y)
    )


def to_original_pixels(boxes: Sequence[Box], settings: CoordSettings) -> tuple[list[Box], bool]:
    """``(boxes in original pixels, coord_error)``.

    When the conversion cannot be done (unknown format, missing image_size) the boxes come back unchanged
    with ``coord_error`` True, so the caller can record it instead of raising.
    """
    factors = settings.scale()
    if factors is None:
        return list(boxes), True
    if factors == (1.0, 1.0):
        return list(boxes), False
    return [scale_box(box, *factors) for box in boxes], False
