"""``depth_vqa``: which of two objects is nearer, from an RGB + depth pair (mirrors SpatialQA).

Two flat-coloured objects (two of ``drawing.COLOURS``, rectangles or discs) float in front of a far wall, at
random heights (so the floor-contact cue of real photos is absent). The depth image (grey) shows the same
silhouettes, nearer = brighter, with the two objects at least 40 grey levels apart.

The RGB image only offers apparent size as a cue, and it lies in ``hard_frac`` of the samples:
    ``size_misleading``  the farther object is physically larger and looks bigger: only depth answers
                         (``answer_sources == ["depth"]``);
    ``size_consistent``  the nearer object looks bigger: both sources answer.
Questions: "Is the red object nearer to the camera than the blue object?" (or "farther ... than"), answer
"Yes"/"No", scored by the VQA reward. Default size 112x112.
"""

from __future__ import annotations

import numpy as np

from mars.data.synth import drawing as dr
from mars.data.synth.common import SynthOptions, SynthSample, SynthTask

SOURCES = ["rgb", "depth"]
NEAREST, FARTHEST = 1.5, 9.0  # distances in metres of the object range
WALL_LEVEL = 28.0  # grey level of the far wall in the depth image
MIN_LEVEL_GAP = 40.0  # the two objects' depth grey levels differ at least this much


def depth_level(distance: float) -> float:
    """Grey level of a distance: 250 at NEAREST, falling linearly to 85 at FARTHEST (nearer = brighter)."""
    return 250.0 - (distance - NEAREST) * (165.0 / (FARTHEST - NEAREST))


def _shape_mask(rng, width, height, cx, cy, half) -> np.ndarray:
    if rng.random() < 0.5:
        return dr.ellipse_mask(height, width, cx, cy, half, half)
    aspect = rng.uniform(0.7, 1.3)
    half_w, half_h = half * aspect, half / aspect
    return dr.rect_mask(height, width, int(cx - half_w), int(cy - half_h), int(cx + half_w), int(cy + half_h))


def _place(rng, width, height, halves) -> list[tuple[float, float]]:
    """Centres for two objects of the given half-sizes, not overlapping and inside the image."""
    for _ in range(200):
        centres = [(rng.uniform(h + 2, width - h - 2), rng.uniform(h + 2, height - h - 2)) for h in halves]
        (x0, y0), (x1, y1) = centres
        if abs(x0 - x1) > halves[0] + halves[1] + 3 or abs(y0 - y1) > halves[0] + halves[1] + 3:
            return centres
    # Fallback (never reached at the default sizes): side by side.
    return [(halves[0] + 2, height / 2), (width - halves[1] - 2, height / 2)]


def make_sample(rng: np.random.Generator, opts: SynthOptions) -> SynthSample:
    width, height = opts.width, opts.height
    names = [str(n) for n in rng.choice(list(dr.COLOURS), size=2, replace=False)]
    while True:
        distances = rng.uniform(NEAREST, FARTHEST, size=2)
        if abs(depth_level(distances[0]) - depth_level(distances[1])) >= MIN_LEVEL_GAP:
            break
    near = int(np.argmin(distances))
    scenario = "size_misleading" if rng.random() < opts.hard_frac else "size_consistent"
    scale = min(width, height)
    small, large = rng.uniform(0.07, 0.11) * scale, rng.uniform(0.17, 0.23) * scale
    halves = [0.0, 0.0]
    halves[near] = small if scenario == "size_misleading" else large
    halves[1 - near] = large if scenario == "size_misleading" else small
    centres = _place(rng, width, height, halves)
    masks = [_shape_mask(rng, width, height, cx, cy, half) for (cx, cy), half in zip(centres, halves)]

    rgb = dr.gradient(height, width, (200, 195, 185), (160, 155, 150))
    rgb += dr.smooth_noise(rng, height, width, cell=8)[..., None] * 12
    depth = dr.gradient(height, width, [WALL_LEVEL - 6], [WALL_LEVEL + 6])[..., 0]
    depth += dr.smooth_noise(rng, height, width, cell=8) * 4
    for k in np.argsort(-distances):  # far to near, so a nearer object would cover a farther one
        dr.paint(rgb, masks[k], dr.COLOURS[names[k]])
        dr.paint(depth, masks[k], depth_level(distances[k]))
    rgb, depth = dr.add_noise(rng, rgb, 4.0), dr.add_noise(rng, depth, 2.0)

    first = int(rng.integers(2))  # which object the question names first
    relation = "nearer to" if rng.random() < 0.5 else "farther from"
    first_is_nearer = first == near
    answer = "Yes" if first_is_nearer == (relation == "nearer to") else "No"
    question = (
        f"Is the {names[first]} object {relation} the camera than the {names[1 - first]} object? "
        "Answer Yes or No."
    )
    return SynthSample(
        images={"rgb": rgb, "depth": depth},
        question=question,
        answer=answer,
        reward="vqa",
        answer_sources=["depth"] if scenario == "size_misleading" else SOURCES.copy(),
        scenario=scenario,
        meta={"colours": names, "distances": distances.tolist(), "masks": masks, "near": near},
    )


TASK = SynthTask(
    name="depth_vqa",
    description="RGB + depth pair; apparent size in RGB misleads in the hard samples (yes/no VQA)",
    default_size=(112, 112),
    sources=lambda opts: SOURCES.copy(),
    make_sample=make_sample,
    salt=202,
)
