"""Perception-aware methods beside MARS's anchors, engine-free: each a pure function of per-token signals.

    views.py    altered views of a prompt's images (patches blacked out, one source black, no image), on pixel values
    vgpo.py     VGPO: token and trajectory weights from the hidden-state similarity of response tokens to the image
    vppo.py     VPPO: the most image-dependent tokens keep their advantage, scaled by the response's dependency
    papo.py     PAPO: the perception-KL and double-entropy terms of the loss
    srpo.py     SRPO (our interpretation): role-aware token weights, perception and reasoning blocks scored apart
    focus.py    Faithful-MR1 (our interpretation): focus attention in the boxes, anchoring loss, grid regions, causal
                map, the reward bonus for correct answers
    methods.py  the ``perception=<name>`` switch: what a method asks of the engine, and what it makes of it

Where a new perception-aware method goes: a pure function here (its formula and its reason in the docstring, a loop
reference as its test oracle), an option in ``mars/config/perception/``, a branch in ``methods.py``; what it needs
from the policy (hidden states, log-probs under an altered image) comes from the engine's
``compute_log_probs_with_signals`` (``mars/hf/perception.py``), the same code on both engines.
"""

from mars.perception.methods import PERCEPTION_METHODS, PerceptionSettings, perception_settings
from mars.perception.vgpo import vgpo_weights, vgpo_weights_reference
from mars.perception.vppo import vppo_weights, vppo_weights_reference

__all__ = ["PERCEPTION_METHODS", "PerceptionSettings", "perception_settings", "vgpo_weights",
           "vgpo_weights_reference", "vppo_weights", "vppo_weights_reference"]
