"""``ir_grounding``: find the people in a visible + infrared pair of one scene (mirrors LLVIP).

One street scene (sky, buildings, ground) with 1-3 people, drawn twice with the same geometry:

- infrared (grey): people are bright warm blobs on a dark, cool background (a few warm but wide, flat
  objects such as car engines are not person-shaped);
- visible (colour), in one of three scenarios:
    ``clear``      daylight, people in distinct clothing colours: both sources suffice;
    ``dark``       night: the scene is nearly black and the people have the colour of the ground;
    ``cluttered``  daylight, but a busy background of coloured shapes, person-like decoys among them, and
                   people dressed in the same random colours: the visible image misleads.
  ``hard_frac`` of the samples are ``dark`` or ``cluttered`` (half each); there only the infrared image
  carries the answer (``answer_sources == ["infrared"]``).

Ground truth: tight pixel boxes [x1, y1, x2, y2] (x2, y2 one past the last pixel), scored by the grounding
reward. Default size 140x112 (LLVIP's 5:4 aspect, multiples of 28).
"""

from __future__ import annotations

import numpy as np

from mars.data.synth import drawing as dr
from mars.data.synth.common import SynthOptions, SynthSample, SynthTask

SOURCES = ["visible", "infrared"]
QUESTION = (
    "Here are two images of the same scene. Detect all person in the scene based on the two images and return "
    'their locations in the form of coordinates. The format of output should be like {"bbox_2d": [x1, y1, x2, '
    'y2], "label": "person"}.'
)
MAX_PEOPLE = 3


def _layout(rng: np.random.Generator, width: int, height: int) -> dict:
    """Scene geometry shared by both images: horizon, buildings, warm objects and people boxes."""
    horizon = int(height * rng.uniform(0.35, 0.5))
    buildings = []
    x = int(rng.integers(-10, 5))
    while x < width:
        w = int(rng.integers(width // 8, width // 3))
        top = int(rng.integers(max(2, horizon - height // 3), max(3, horizon - 4)))
        buildings.append((x, top, x + w, horizon))
        x += w + int(rng.integers(0, 6))
    people: list[tuple[int, int, int, int]] = []
    wanted = int(rng.integers(1, MAX_PEOPLE + 1))
    for _ in range(60):  # rejection sampling for non-overlapping people
        if len(people) == wanted:
            break
        h = int(rng.uniform(0.22, 0.4) * height)
        w = max(6, int(h * rng.uniform(0.32, 0.45)))
        y2 = int(rng.integers(max(horizon + h // 2, h), height + 1))
        x1 = int(rng.integers(0, width - w + 1))
        box = (x1, y2 - h, x1 + w, y2)
        if not any(dr.boxes_overlap(box, other, margin=2) for other in people):
            people.append(box)
    warm_objects = []
    for _ in range(int(rng.integers(0, 3))):
        w, h = int(rng.integers(14, 30)), int(rng.integers(4, 8))  # wide and flat: not a person
        x1, y1 = int(rng.integers(0, width - w)), int(rng.integers(horizon, height - h))
        warm_objects.append((x1, y1, x1 + w, y1 + h))
    return {"horizon": horizon, "buildings": buildings, "people": people, "warm_objects": warm_objects}


def _infrared(rng, width, height, scene, person_masks) -> np.ndarray:
    image = dr.gradient(height, width, [18.0], [40.0])[..., 0]
    for x1, y1, x2, y2 in scene["buildings"]:
        dr.paint(image, dr.rect_mask(height, width, x1, y1, x2, y2), float(rng.uniform(38, 60)))
    image += dr.smooth_noise(rng, height, width, cell=10) * 8
    for x1, y1, x2, y2 in scene["warm_objects"]:
        dr.paint(image, dr.rect_mask(height, width, x1, y1, x2, y2), float(rng.uniform(95, 130)))
    for mask in person_masks:
        dr.paint(image, mask, float(rng.uniform(195, 240)))
    return dr.add_noise(rng, image, 3.0)


def _visible_day(rng, width, height, scene) -> np.ndarray:
    image = dr.gradient(height, width, (110, 160, 215), (185, 210, 235))
    ground = dr.gradient(height, width, (125, 120, 112), (95, 92, 88))
    image[scene["horizon"] :] = ground[scene["horizon"] :]
    for x1, y1, x2, y2 in scene["buildings"]:
        grey = rng.uniform(120, 175)
        colour = np.array([grey, grey * rng.uniform(0.85, 1.0), grey * rng.uniform(0.75, 0.95)])
        dr.paint(image, dr.rect_mask(height, width, x1, y1, x2, y2), colour)
    image += dr.smooth_noise(rng, height, width, cell=6)[..., None] * 10
    for x1, y1, x2, y2 in scene["warm_objects"]:
        dr.paint(image, dr.rect_mask(height, width, x1, y1, x2, y2), (60, 60, 70))
    return image


def _clutter(rng, width, height, image, horizon) -> int:
    """Coloured boxes and discs all over the ground, and person-shaped decoys (cold in infrared: mannequins,
    posters) drawn like the people; returns the number of decoys."""
    for _ in range(int(rng.integers(8, 16))):
        h = int(rng.uniform(0.1, 0.35) * height)
        w = int(h * rng.uniform(0.6, 2.0))
        x1, y2 = int(rng.integers(-w // 2, width)), int(rng.integers(horizon, height + 1))
        shape = (dr.rect_mask(height, width, x1, y2 - h, x1 + w, y2) if rng.random() < 0.5
                 else dr.ellipse_mask(height, width, x1 + w / 2, y2 - h / 2, w / 2, h / 2))
        dr.paint(image, shape, rng.uniform(30, 230, size=3))
    decoys = int(rng.integers(2, 6))
    for _ in range(decoys):
        h = int(rng.uniform(0.22, 0.4) * height)
        w = max(6, int(h * rng.uniform(0.32, 0.45)))
        x1, y2 = int(rng.integers(0, width - w + 1)), int(rng.integers(horizon + h // 2, height + 1))
        dr.paint(image, dr.person_mask(height, width, x1, y2 - h, x1 + w, y2), rng.uniform(30, 230, size=3))
    return decoys


def make_sample(rng: np.random.Generator, opts: SynthOptions) -> SynthSample:
    scene = _layout(rng, opts.width, opts.height)
    visible, infrared, masks, boxes, scenario, decoys = draw_scene(rng, opts, scene)
    return SynthSample(
        images={"visible": visible, "infrared": infrared},
        question=QUESTION,
        answer=boxes,
        reward="grounding",
        answer_sources=SOURCES.copy() if scenario == "clear" else ["infrared"],
        scenario=scenario,
        meta={"person_masks": masks, "decoys": decoys},
        regions=boxes,
    )


def draw_scene(rng: np.random.Generator, opts: SynthOptions, scene: dict):
    """Both images of a laid-out scene, in a drawn scenario: (visible, infrared, person masks, boxes, scenario,
    decoys). Shared with ``ir_presence``; the draws' order is what makes ``ir_grounding``'s bytes, keep it."""
    width, height = opts.width, opts.height
    masks = [dr.person_mask(height, width, *box) for box in scene["people"]]
    boxes = [dr.mask_box(mask) for mask in masks]
    roll = rng.random()
    scenario = "clear" if roll >= opts.hard_frac else ("dark" if roll < opts.hard_frac / 2 else "cluttered")

    infrared = _infrared(rng, width, height, scene, masks)
    visible = _visible_day(rng, width, height, scene)
    decoys = 0
    if scenario == "clear":
        for mask in masks:
            shirt = np.array(list(dr.COLOURS.values())[int(rng.integers(len(dr.COLOURS)))], dtype=np.float32)
            dr.paint(visible, mask, shirt)
            dr.paint(visible, mask & (np.arange(height)[:, None] < dr.mask_box(mask)[1] + 4), (225, 185, 150))
        visible = dr.add_noise(rng, visible, 4.0)
    elif scenario == "cluttered":
        decoys = _clutter(rng, width, height, visible, scene["horizon"])
        for mask in masks:
            dr.paint(visible, mask, rng.uniform(30, 230, size=3))
        visible = dr.add_noise(rng, visible, 6.0)
    else:  # dark: the night scene; people take the (dark) colour of the ground around their feet
        visible = visible * rng.uniform(0.08, 0.14)
        for mask, box in zip(masks, boxes):
            ground = visible[min(box[3], height - 1), min(max(box[0], 0), width - 1)]
            dr.paint(visible, mask, ground * rng.uniform(0.9, 1.1))
        for _ in range(int(rng.integers(1, 4))):  # street lights: bright spots that hide nothing
            cx, cy = rng.uniform(0, width), rng.uniform(0, scene["horizon"])
            dr.paint(visible, dr.ellipse_mask(height, width, cx, cy, 2.5, 2.5), (255, 230, 160))
        visible = dr.add_noise(rng, visible, 3.0)
    return visible, infrared, masks, boxes, scenario, decoys


TASK = SynthTask(
    name="ir_grounding",
    description="visible + infrared pair; people visible only in infrared in the hard samples (grounding)",
    default_size=(140, 112),
    sources=lambda opts: SOURCES.copy(),
    make_sample=make_sample,
    salt=101,
)
