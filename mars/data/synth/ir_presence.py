"""``ir_presence``: is there a person in the scene? A yes/no question on ``ir_grounding``'s visible + infrared pairs.

The same scenes and scenarios as ``ir_grounding`` (same drawing code), but half of them have nobody in them, and
the question is "Is there a person in the scene? Answer Yes or No." (scored by the VQA reward):
    ``clear``      daylight, people in distinct clothing: both sources answer;
    ``dark``       the visible image is nearly black: only infrared answers;
    ``cluttered``  person-shaped decoys in the visible image, also when nobody is there: visible misleads.
``hard_frac`` of the samples are ``dark`` or ``cluttered``; there ``answer_sources == ["infrared"]``.

Why it exists: it is the regime where MARS's anchors carry signal with a tiny model trained for minutes. The cue
is simple enough to be learnt by the tiny random-init model (a person is the brightest thing in the infrared
image), so the fused answers become confident and agree with each other, while an answer that sees only the
visible image (a mono-source variant) is at chance in the dark and fooled by decoys: the anchors disagree with the
group where GRPO sees none (mars/signal_mars_only > 0), see docs/compare.md. ``ir_grounding``'s answer (boxes)
is out of the tiny model's reach, so there its anchors and rollouts score alike.
"""

from __future__ import annotations

import numpy as np

from mars.data.synth import ir_grounding as ir
from mars.data.synth.common import SynthOptions, SynthSample, SynthTask

QUESTION = "Here are two images of the same scene. Is there a person in the scene? Answer Yes or No."
EMPTY_SHARE = 0.5  # scenes with nobody in them


def make_sample(rng: np.random.Generator, opts: SynthOptions) -> SynthSample:
    scene = ir._layout(rng, opts.width, opts.height)
    if rng.random() < EMPTY_SHARE:
        scene["people"] = []
    visible, infrared, masks, boxes, scenario, decoys = ir.draw_scene(rng, opts, scene)
    return SynthSample(
        images={"visible": visible, "infrared": infrared},
        question=QUESTION,
        answer="Yes" if boxes else "No",
        reward="vqa",
        answer_sources=ir.SOURCES.copy() if scenario == "clear" else ["infrared"],
        scenario=scenario,
        meta={"person_masks": masks, "decoys": decoys, "boxes": boxes},
        regions=boxes,
    )


TASK = SynthTask(
    name="ir_presence",
    description="visible + infrared pair; is anyone there? Only infrared answers in the hard samples (yes/no VQA)",
    default_size=ir.TASK.default_size,
    sources=lambda opts: ir.SOURCES.copy(),
    make_sample=make_sample,
    salt=404,
)
