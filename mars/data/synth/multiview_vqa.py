"""``multiview_vqa``: which camera sees the target car (mirrors nuScenes' six surround views).

N views (default 6, ``--views`` 2..6) named CAM_FRONT, CAM_FRONT_LEFT, CAM_FRONT_RIGHT, CAM_BACK,
CAM_BACK_LEFT, CAM_BACK_RIGHT (the first N of these). Every view is a road scene with 0-3 cars in other colours
(grey, black, white or another named colour); exactly one view also shows the target car, in a named colour
that appears nowhere else. Only that one source carries the answer; the other N-1 add distractor cars.

Questions (``scenario``):
    ``which_view`` (60%)  "In which view is the red car? Answer with the letter: A. CAM_FRONT, ..." -> "C"
    ``yes_no``     (40%)  "Is there a red car in the CAM_BACK_LEFT view? Answer Yes or No." (half Yes)
``answer_sources`` is the target view (which_view) or the view asked about (yes_no: that view alone shows the
car or its absence). Scored by the VQA reward. Default size 112x84 (landscape, multiples of 28).
"""

from __future__ import annotations

import string

import numpy as np

from mars.data.synth import drawing as dr
from mars.data.synth.common import SynthOptions, SynthSample, SynthTask

VIEW_NAMES = ["CAM_FRONT", "CAM_FRONT_LEFT", "CAM_FRONT_RIGHT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_BACK_RIGHT"]
NEUTRAL_CARS = [(200, 200, 205), (40, 40, 45), (240, 240, 240)]
WHICH_VIEW_SHARE = 0.6


def view_names(views: int) -> list[str]:
    if not 2 <= views <= len(VIEW_NAMES):
        raise ValueError(f"--views must be between 2 and {len(VIEW_NAMES)}, got {views}")
    return VIEW_NAMES[:views]


def _road(rng, width, height) -> tuple[np.ndarray, int]:
    """Sky, roadside buildings, a grey road with a dashed lane line; returns (image, horizon row)."""
    horizon = int(height * rng.uniform(0.35, 0.5))
    image = dr.gradient(height, width, (110, 160, 215), (185, 210, 235))
    image[horizon:] = dr.gradient(height, width, (105, 105, 108), (80, 80, 82))[horizon:]
    x = int(rng.integers(-8, 4))
    while x < width:  # buildings: muted browns and greys, far from every named colour
        w, h = int(rng.integers(10, 30)), int(rng.integers(6, max(7, horizon - 2)))
        grey = rng.uniform(110, 170)
        dr.paint(image, dr.rect_mask(height, width, x, horizon - h, x + w, horizon), (grey, grey * 0.9, grey * 0.8))
        x += w + int(rng.integers(0, 8))
    lane_y = (horizon + height) // 2
    for x in range(int(rng.integers(0, 8)), width, 14):
        dr.paint(image, dr.rect_mask(height, width, x, lane_y, x + 7, lane_y + 2), (225, 225, 215))
    return image + dr.smooth_noise(rng, height, width, cell=8)[..., None] * 6, horizon


def _car(rng, image, horizon, colour, taken: list) -> bool:
    """Draw one car on the road where it overlaps no other car; False when no free spot was found."""
    height, width = image.shape[:2]
    for _ in range(40):
        w = int(rng.integers(20, 34))
        h = int(w * 0.45)
        x1 = int(rng.integers(0, width - w))
        y2 = int(rng.integers(horizon + h + 2, height - 1))
        box = (x1, y2 - h, x1 + w, y2)
        if any(dr.boxes_overlap(box, other, margin=2) for other in taken):
            continue
        taken.append(box)
        body = (x1, y2 - int(h * 0.6), x1 + w, y2 - 2)
        cabin = (x1 + w // 5, y2 - h, x1 + w - w // 5, y2 - int(h * 0.6))
        dr.paint(image, dr.rect_mask(height, width, *body), colour)
        dr.paint(image, dr.rect_mask(height, width, *cabin), colour)
        window = (cabin[0] + 2, cabin[1] + 1, cabin[2] - 2, cabin[3])
        dr.paint(image, dr.rect_mask(height, width, *window), (150, 175, 190))
        for wx in (x1 + w // 4, x1 + 3 * w // 4):
            dr.paint(image, dr.ellipse_mask(height, width, wx, y2 - 2, 2.5, 2.5), (25, 25, 25))
        return True
    return False


def make_sample(rng: np.random.Generator, opts: SynthOptions) -> SynthSample:
    width, height = opts.width, opts.height
    names = view_names(opts.views)
    target_colour = str(rng.choice(list(dr.COLOURS)))
    others = [c for name, c in dr.COLOURS.items() if name != target_colour] + NEUTRAL_CARS
    target_view = int(rng.integers(len(names)))
    images = {}
    for v, name in enumerate(names):
        image, horizon = _road(rng, width, height)
        taken: list = []
        if v == target_view:
            _car(rng, image, horizon, dr.COLOURS[target_colour], taken)
        for _ in range(int(rng.integers(0, 3 if v == target_view else 4))):
            _car(rng, image, horizon, others[int(rng.integers(len(others)))], taken)
        images[name] = dr.add_noise(rng, image, 4.0)

    preamble = f"Here are {len(names)} camera views around a car, in this order: {', '.join(names)}. "
    if rng.random() < WHICH_VIEW_SHARE:
        scenario = "which_view"
        letters = string.ascii_uppercase[: len(names)]
        choices = ", ".join(f"{letter}. {name}" for letter, name in zip(letters, names))
        question = f"{preamble}In which view is the {target_colour} car? Answer with the letter: {choices}."
        answer, asked = letters[target_view], target_view
    else:
        scenario = "yes_no"
        others = [v for v in range(len(names)) if v != target_view]
        asked = target_view if rng.random() < 0.5 else int(rng.choice(others))
        question = f"{preamble}Is there a {target_colour} car in the {names[asked]} view? Answer Yes or No."
        answer = "Yes" if asked == target_view else "No"
    return SynthSample(
        images=images,
        question=question,
        answer=answer,
        reward="vqa",
        answer_sources=[names[asked]],
        scenario=scenario,
        meta={"target_colour": target_colour, "target_view": names[target_view]},
    )


TASK = SynthTask(
    name="multiview_vqa",
    description="N surround camera views; the target car is in exactly one (letter or yes/no VQA)",
    default_size=(112, 84),
    sources=lambda opts: view_names(opts.views),
    make_sample=make_sample,
    salt=303,
)
