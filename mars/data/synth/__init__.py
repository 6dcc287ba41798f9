"""Synthetic multi-source tasks: one module per task, ``build.synthesize`` writes a dataset.

    ir_grounding   visible + infrared, people grounding (LLVIP-like)
    depth_vqa      RGB + depth, nearer/farther yes-no (SpatialQA-like)
    multiview_vqa  2..6 surround camera views, which view shows the target car (nuScenes-like)
    ir_presence    visible + infrared, is anyone there (yes/no on ir_grounding's scenes)
"""

from mars.data.synth.build import TASKS, SynthResult, generate_sample, make_options, split_counts, synthesize
from mars.data.synth.common import SynthOptions, SynthSample, SynthTask

__all__ = [
    "TASKS",
    "SynthOptions",
    "SynthResult",
    "SynthSample",
    "SynthTask",
    "generate_sample",
    "make_options",
    "split_counts",
    "synthesize",
]
