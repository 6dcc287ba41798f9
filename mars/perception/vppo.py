"""VPPO's token gate and trajectory scale: visually-perceptive policy optimisation (ICLR 2026; public code
``huaixuheqing/VPPO-RL``).

Per token, the visual dependency is how much the token's distribution moves when the picture is masked:
``d_t = KL(pi(. | q, I, o_<t) || pi(. | q, I_masked, o_<t))`` over the full vocabulary (the engine computes it:
``kl/<view>`` of the perception pass). Per response i of T tokens:

    gate      g_t = 1 for the ceil(share * T) tokens of largest d_t (ties to the earlier token), else 0:
              only the tokens that depend most on the image receive gradient
    scale     D_i = mean_t d_t; D^ = min-max of D over the prompt's group (0 when flat);
              s_i = scale_min + (scale_max - scale_min) * D^
    into      A_{i,t} = A_i * s_i * g_t

Why: a reward earned by looking should be credited to the tokens that looked, and responses that rely more on the
picture are pushed a little harder. Our reading, where the paper and the code leave room (docs/methods.md): the
scale is min-max within the GRPO group (by group id), and a gated-off token keeps its place in the loss's token
count with advantage 0 (so share 1 and scale_min = scale_max = 1 give the base estimator's loss exactly).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from mars.perception.groups import group_minmax, top_in_rows


def top_share_gate(dependency: torch.Tensor, mask: torch.Tensor, share: float) -> torch.Tensor:
    """(B, T) bool: the ceil(share * length) most dependent tokens of each response."""
    mask = mask.bool()
    lengths = mask.sum(dim=-1)
    return top_in_rows(dependency, mask, torch.ceil(share * lengths.double()).long())


def vppo_weights(dependency: torch.Tensor, response_mask: torch.Tensor, group_ids: Sequence, share: float = 0.4,
                 scale_min: float = 0.9, scale_max: float = 1.1) -> torch.Tensor:
    """(B, T) weights ``s_i * g_t`` (module docstring); 1 outside the mask."""
    mask = response_mask.bool()
    d = dependency.double() * mask
    lengths = mask.sum(dim=-1).clamp_min(1)
    mean_dependency = d.sum(dim=-1) / lengths
    scale = scale_min + (scale_max - scale_min) * group_minmax(mean_dependency, group_ids)
    weights = scale.unsqueeze(1) * top_share_gate(d, mask, share).double()
    return torch.where(mask, weights, torch.ones_like(weights)).to(dependency.dtype)


def vppo_weights_reference(dependency, response_mask, group_ids, share=0.4, scale_min=0.9, scale_max=1.1):
    """The same weights one response and one group at a time in plain Python: the tests' oracle."""
    dep = dependency.double().tolist()
    mask = response_mask.bool().tolist()
    rows, width = len(dep), len(dep[0]) if dep else 0
    means, gates = [], []
    for i in range(rows):
        columns = [t for t in range(width) if mask[i][t]]
        values = [dep[i][t] for t in columns]
        keep = math.ceil(share * len(values))
        top = sorted(range(len(values)), key=lambda k: (-values[k], k))[:keep]
        gates.append({columns[k] for k in top})
        means.append(sum(values) / max(len(values), 1))
    scale = [0.0] * rows
    for g in {str(x) for x in group_ids}:
        members = [i for i in range(rows) if str(group_ids[i]) == g]
        low, high = min(means[i] for i in members), max(means[i] for i in members)
        for i in members:
            scale[i] = scale_min + (scale_max - scale_min) * ((means[i] - low) / (high - low) if high > low else 0.0)
    out = torch.ones(rows, width, dtype=torch.float64)
    for i in range(rows):
        for t in range(width):
            if mask[i][t]:
                out[i, t] = scale[i] if t in gates[i] else 0.0
    return out.to(dependency.dtype)
