"""Perception-aware token weights beside MARS's anchors: engine-free, each a pure function of per-token signals.

    vgpo.py   VGPO: token and trajectory weights from the hidden-state similarity of response tokens to the image

Where a new perception-aware method goes: a pure function here (its formula and its reason in the docstring, a loop
reference as its test oracle); what it needs from the policy (hidden states, log-probs under an altered image) is
a call of the engine interface, on both engines.
"""

from mars.perception.vgpo import vgpo_weights, vgpo_weights_reference

__all__ = ["vgpo_weights", "vgpo_weights_reference"]
