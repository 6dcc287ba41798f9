"""Small numpy drawing helpers for the synthetic scenes.

Images are float arrays in 0..255 while drawing (H x W x 3 for colour, H x W for grey) and become uint8 only
when saved, so noise and blending never wrap around. All randomness comes from the caller's
``numpy.random.Generator``; nothing here draws from a global state.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image

# Named colours of the tasks: far apart from each other and from the backgrounds (sky, road, walls), so a
# colour test in the tests (and a model) can tell them apart even with pixel noise.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (210, 30, 30),
    "blue": (30, 60, 210),
    "green": (30, 170, 50),
    "yellow": (230, 210, 30),
    "purple": (140, 40, 180),
    "orange": (240, 130, 20),
}


def gradient(height: int, width: int, top: Sequence[float], bottom: Sequence[float]) -> np.ndarray:
    """A vertical gradient from ``top`` to ``bottom`` (colours or grey levels)."""
    top_arr, bottom_arr = np.asarray(top, dtype=np.float32), np.asarray(bottom, dtype=np.float32)
    t = np.linspace(0.0, 1.0, height, dtype=np.float32).reshape(height, 1, *([1] * top_arr.ndim))
    row = top_arr * (1 - t) + bottom_arr * t
    return np.broadcast_to(row, (height, width, *top_arr.shape)).astype(np.float32).copy()


def smooth_noise(rng: np.random.Generator, height: int, width: int, cell: int = 8) -> np.ndarray:
    """Low-frequency noise in [-1, 1]: a coarse random grid, bilinearly upsampled (blotchy texture)."""
    gh, gw = height // cell + 2, width // cell + 2
    grid = rng.uniform(-1.0, 1.0, size=(gh, gw)).astype(np.float32)
    ys = np.arange(height, dtype=np.float32) / cell
    xs = np.arange(width, dtype=np.float32) / cell
    y0, x0 = ys.astype(int), xs.astype(int)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x0 + 1] * fx
    bottom = grid[y0 + 1][:, x0] * (1 - fx) + grid[y0 + 1][:, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def ellipse_mask(height: int, width: int, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    """Pixels whose centres lie inside the axis-aligned ellipse."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5
    return ((xs - cx) / max(rx, 1e-3)) ** 2 + ((ys - cy) / max(ry, 1e-3)) ** 2 <= 1.0


def rect_mask(height: int, width: int, x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    """Pixels in [x1, x2) x [y1, y2), clipped to the image."""
    mask = np.zeros((height, width), dtype=bool)
    mask[max(0, y1) : max(0, y2), max(0, x1) : max(0, x2)] = True
    return mask


def person_mask(height: int, width: int, x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    """An upright person blob filling the box [x1, x2) x [y1, y2): a round head over an elliptic body."""
    box_w, box_h = x2 - x1, y2 - y1
    cx = x1 + box_w / 2
    head_r = box_w * 0.3
    head = ellipse_mask(height, width, cx, y1 + head_r, head_r, head_r)
    body_top = y1 + 2 * head_r * 0.9
    body = ellipse_mask(height, width, cx, (body_top + y2) / 2, box_w / 2, (y2 - body_top) / 2)
    return head | body


def mask_box(mask: np.ndarray) -> list[int]:
    """Tight pixel box [x1, y1, x2, y2] of a mask, with x2/y2 one past the last pixel (LLVIP's convention:
    a person touching the bottom of a 1024-high image has y2 = 1024)."""
    ys, xs = np.nonzero(mask)
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def paint(image: np.ndarray, mask: np.ndarray, value: Sequence[float] | float, alpha: float = 1.0) -> None:
    """Blend ``value`` into ``image`` where ``mask`` is set (in place)."""
    image[mask] = image[mask] * (1 - alpha) + np.asarray(value, dtype=np.float32) * alpha


def add_noise(rng: np.random.Generator, image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian pixel noise (same shape as the image)."""
    return image + rng.normal(0.0, sigma, size=image.shape).astype(np.float32)


def to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def save_png(path: str, image: np.ndarray) -> None:
    """Save as PNG (grey for 2-D arrays). PIL writes no timestamp, so equal arrays give equal bytes."""
    Image.fromarray(to_uint8(image)).save(path, format="PNG", compress_level=6)


def colour_mask(image: np.ndarray, colour: Sequence[float], tolerance: float = 45.0) -> np.ndarray:
    """Pixels within ``tolerance`` (Euclidean, RGB) of ``colour``: used by tests to find objects again."""
    diff = image.astype(np.float32) - np.asarray(colour, dtype=np.float32)
    return np.sqrt((diff**2).sum(axis=-1)) <= tolerance


def boxes_overlap(a: Sequence[int], b: Sequence[int], margin: int = 0) -> bool:
    """True when the boxes [x1, y1, x2, y2] overlap once grown by ``margin`` pixels."""
    return not (
        a[2] + margin <= b[0] or b[2] + margin <= a[0] or a[3] + margin <= b[1] or b[3] + margin <= a[1]
    )
