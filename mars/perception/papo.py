"""PAPO's perception loss: perception-aware policy optimisation (ICLR 2026; public code ``MikeWangWZHL/PAPO``).

Beside the policy loss, the policy is asked to answer differently when the picture is mostly hidden: with
``lp_t = log pi(o_t | q, I, o_<t)`` and ``lm_t = log pi(o_t | q, I_masked, o_<t)`` at the sampled tokens (both
with gradient), the perception KL per token is the k3 estimator of KL(pi(.|I) || pi(.|I_masked)),

    k3_t = exp(lm_t - lp_t) - (lm_t - lp_t) - 1          (>= 0, unbiased at samples of the unmasked policy)

and the loss becomes

    L = L_pg - gamma * agg(k3) + eta * (agg(H) + agg(H_masked))

with ``agg`` the policy loss's aggregation (``actor.loss_agg_mode``). Why: a model that answers the same with the
image hidden has not used it; maximising the KL rewards using it. The entropy terms (PAPO's "double entropy loss")
keep the masked branch from collapsing into noise, the easy way to make the KL large. Settings: masked images at
p = 0.6 in 14-pixel patches; gamma 0.02 with GRPO, 0.01 with DAPO; eta 0.03.
"""

from __future__ import annotations

import torch


def k3_kl(log_probs: torch.Tensor, masked_log_probs: torch.Tensor) -> torch.Tensor:
    """(B, T) k3 estimate of KL(pi(.|I) || pi(.|I_masked)) at the sampled tokens; log-ratio clamped to [-20, 20]
    so one token whose masked probability vanishes cannot overflow the loss."""
    delta = (masked_log_probs - log_probs).clamp(-20.0, 20.0)
    return torch.exp(delta) - delta - 1.0


def papo_loss_terms(log_probs: torch.Tensor, masked_log_probs: torch.Tensor, entropy: torch.Tensor | None,
                    masked_entropy: torch.Tensor | None, aggregate, gamma: float, eta: float):
    """(added loss, {metric: value}): ``-gamma * agg(k3) + eta * (agg(H) + agg(H_masked))`` (module docstring).
    ``aggregate(per_token) -> scalar`` is the policy loss's aggregation over the micro-batch."""
    kl = aggregate(k3_kl(log_probs, masked_log_probs))
    loss = -gamma * kl
    metrics = {"perception/kl": float(kl.detach())}
    if eta != 0.0 and entropy is not None and masked_entropy is not None:
        h, hm = aggregate(entropy), aggregate(masked_entropy)
        loss = loss + eta * (h + hm)
        metrics["perception/entropy_masked"] = float(hm.detach())
    return loss, metrics
