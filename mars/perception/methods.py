"""The ``perception=<name>`` switch: which signals a method asks of the engine, and what it makes of them.

    none   nothing (with ``perception.log_sources``: the per-source dependency, logged only)
    vgpo   token weights from the hidden-state similarity of the old-log-prob pass (``vgpo.py``)
    vppo   token gate and trajectory scale from the per-token KL under masked images (``vppo.py``)
    papo   a perception-KL and double-entropy term in the policy loss, on masked images (``papo.py``)
    srpo   role-aware token weights: perception tokens by their visual dependency (masked images), reasoning
           tokens by their consistency with the response's own perception text without the picture (``srpo.py``)
    faithful_mr1  the anchoring stage (a warm start teaching a focus token where the objects are), then a reward
           bonus for answer-correct trajectories whose focus attention lies where masking the image changes the
           answer (``focus.py``): the rewards change, not the token weights

Every method composes with any estimator: the weights multiply the estimator's advantages (A_{i,t} = A_i * w_{i,t})
after DAPO's filtering, computed on the kept rows, so they stay aligned with their rows by construction. Anchors
are never trained on and never weighted: the estimator sees them before any weight is applied.

The per-source dependency, ``perception/dependency/<source>``: the mean over response tokens of
KL(pi(. | all sources) || pi(. | that source blacked out)), over the rows that show the source. Which source the
policy's words rely on, on every step, under every method that logs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from mars.data.samples import run_seed
from mars.perception.focus import answer_correct, faithful_rewards
from mars.perception.srpo import PERCEPTION, REASONING, srpo_weights
from mars.perception.views import AlteredView
from mars.perception.vgpo import ALPHA_CLAMP, PSI_CLAMP, vgpo_terms
from mars.perception.vppo import vppo_weights

PERCEPTION_METHODS = ("none", "vgpo", "papo", "vppo", "srpo", "faithful_mr1")
MAX_CELLS = 4  # faithful_mr1's grid side: at most 16 masked copies of a prompt in its one forward
FOCUS_ATTENTION = ("focus", "response")  # faithful_mr1: the focus token's attention row, or the response's mean row
PERCEPTION_VIEWS = ("patches", "drop_source")
NO_IMAGE = AlteredView("no_image", "no_image")


@dataclass(frozen=True)
class PerceptionSettings:
    """``perception.*`` of the configuration (the group option's keys; see docs/methods.md)."""

    name: str = "none"
    view: str = "patches"  # the altered view of papo / vppo: patches | drop_source
    source: str | None = None  # drop_source: the source shown black
    mask_ratio: float = 0.6
    patch_size: int | None = None  # pixels, a multiple of the model's patch; null: one model patch
    log_sources: bool = False  # per-source dependency on every step
    beta: float = 0.3  # vgpo
    gamma: float = 0.5
    kappa: float = 0.2
    kl_coef: float = 0.02  # papo
    entropy_coef: float = 0.03
    token_share: float = 0.4  # vppo
    scale_min: float = 0.9
    scale_max: float = 1.1
    clip: float = 5.0  # srpo: |s_t - b_i| clipped before exp
    focus_reward: float = 0.5  # faithful_mr1: lambda, the bonus's weight
    cells: int = 3  # faithful_mr1: the regions, a cells x cells grid over each image
    attention: str = "focus"  # faithful_mr1: whose attention is rewarded: focus | response
    focus_token: str = "<Focus>"  # faithful_mr1: mars.sft_warmup.focus.token and .layer (the anchoring stage's)
    focus_layer: int = -1
    seed: int = 0

    @property
    def active(self) -> bool:
        return self.name != "none" or self.log_sources

    def method_view(self) -> AlteredView | None:
        """The altered view papo, vppo and srpo (its corrupted image) compare against; None for the others."""
        if self.name not in ("papo", "vppo", "srpo"):
            return None
        if self.view == "drop_source":
            return AlteredView(f"drop_{self.source}", "blank", source=str(self.source))
        return AlteredView("patches", "patches", ratio=self.mask_ratio, patch_pixels=int(self.patch_size or 0))


def perception_settings(cfg: Any) -> PerceptionSettings:
    """The settings from a composed configuration; ``none`` where it has no ``perception`` section. PAPO's
    ``kl_coef: null`` is 0.01 under DAPO's filtering and 0.02 otherwise (the paper's two settings)."""
    node = cfg.get("perception", None) or {}
    dapo = bool(cfg.get("algorithm", {}).get("filter_groups", {}).get("enable", False))
    kl_coef = node.get("kl_coef", None)
    defaults = PerceptionSettings()
    values = {key: node.get(key, getattr(defaults, key)) for key in PerceptionSettings.__dataclass_fields__}
    values["kl_coef"] = float(kl_coef) if kl_coef is not None else (0.01 if dapo else 0.02)
    values["seed"] = run_seed(cfg)  # the run's seed: masks differ between seeds as rollouts do
    focus = ((cfg.get("mars", {}) or {}).get("sft_warmup", {}) or {}).get("focus", {}) or {}
    values["focus_token"] = str(focus.get("token", defaults.focus_token))
    values["focus_layer"] = int(focus.get("layer", defaults.focus_layer))
    return PerceptionSettings(**values)


def perception_problems(settings: PerceptionSettings) -> list[str]:
    """One line per bad ``perception.*`` value, naming the key and what is valid."""
    problems = []
    if settings.name not in PERCEPTION_METHODS:
        problems.append(f"perception.name={settings.name}: valid: {', '.join(PERCEPTION_METHODS)}")
    if settings.view not in PERCEPTION_VIEWS:
        problems.append(f"perception.view={settings.view}: valid: {', '.join(PERCEPTION_VIEWS)}")
    if settings.view == "drop_source" and not settings.source:
        problems.append("perception.view=drop_source needs perception.source: valid: a source name of the data")
    if not 0.0 < float(settings.mask_ratio) < 1.0:
        problems.append(f"perception.mask_ratio={settings.mask_ratio}: valid: a number in (0, 1)")
    if settings.patch_size is not None and int(settings.patch_size) <= 0:
        problems.append(f"perception.patch_size={settings.patch_size}: valid: null or pixels > 0")
    for key, low, high in (("beta", 0.0, None), ("gamma", 0.0, 1.0), ("kappa", 0.0, 1.0), ("entropy_coef", 0.0, None),
                           ("kl_coef", 0.0, None)):
        value = float(getattr(settings, key))
        if value < low or (high is not None and value > high):
            problems.append(f"perception.{key}={value}: valid: [{low}, {high if high is not None else 'inf'}]")
    if not 0.0 < float(settings.token_share) <= 1.0:
        problems.append(f"perception.token_share={settings.token_share}: valid: a number in (0, 1]")
    if not float(settings.clip) > 0.0:
        problems.append(f"perception.clip={settings.clip}: valid: a number > 0")
    if settings.attention not in FOCUS_ATTENTION:
        problems.append(f"perception.attention={settings.attention}: valid: {', '.join(FOCUS_ATTENTION)}")
    if not float(settings.focus_reward) >= 0.0:
        problems.append(f"perception.focus_reward={settings.focus_reward}: valid: a number >= 0")
    if isinstance(settings.cells, bool) or not (isinstance(settings.cells, int) and 1 <= settings.cells <= MAX_CELLS):
        problems.append(f"perception.cells={settings.cells}: valid: an integer in [1, {MAX_CELLS}]")
    if not 0.0 <= float(settings.scale_min) <= float(settings.scale_max):
        problems.append(f"perception.scale_min={settings.scale_min}, scale_max={settings.scale_max}: "
                        "valid: 0 <= scale_min <= scale_max")
    return problems


def source_views(sources: Sequence[str]) -> list[AlteredView]:
    """One view per source, that source shown black: the per-source dependency."""
    return [AlteredView(f"drop_{s}", "blank", source=s) for s in sources]


def signal_views(settings: PerceptionSettings, sources: Sequence[str]) -> list[AlteredView]:
    """The altered views the no-gradient perception pass computes for this method (papo's own view is in the
    update, with gradient), each once."""
    views = []
    if settings.name in ("vppo", "srpo"):
        views.append(settings.method_view())
    if settings.name == "srpo":  # the reasoning score: the response's own perception text, no picture
        views.append(NO_IMAGE)
    if settings.log_sources:
        views += source_views(sources)
    return list({view.name: view for view in views}.values())


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> float:
    mask = mask.bool()
    return float(values[mask].double().mean()) if mask.any() else 0.0


def token_weights(settings: PerceptionSettings, signals: dict[str, torch.Tensor], mask: torch.Tensor,
                  group_ids: Sequence, log_probs: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor | None, dict[str, float]]:
    """(B, T) weights for the advantages (None: the method leaves them alone) and the method's metrics.
    ``log_probs``: the old log-probs of the sampled tokens (SRPO's scores are differences from them)."""
    metrics: dict[str, float] = {}
    if settings.name == "vgpo":
        alpha, psi = vgpo_terms(signals["similarity"], mask, group_ids, settings.beta, settings.gamma, settings.kappa)
        weights = torch.where(mask.bool(), alpha.unsqueeze(1) * psi, torch.ones_like(psi)).float()
        at_psi_clamp = (psi <= PSI_CLAMP[0]) | (psi >= PSI_CLAMP[1])
        metrics["perception/similarity/mean"] = masked_mean(signals["similarity"], mask)
        metrics["perception/token_weight/mean"] = masked_mean(weights, mask)
        metrics["perception/token_weight/clipped_share"] = masked_mean(at_psi_clamp.double(), mask)
        metrics["perception/trajectory_weight/clipped_share"] = float(
            ((alpha <= ALPHA_CLAMP[0]) | (alpha >= ALPHA_CLAMP[1])).double().mean())
        return weights, metrics
    if settings.name == "vppo":
        dependency = signals[f"kl/{settings.method_view().name}"]
        weights = vppo_weights(dependency, mask, group_ids, settings.token_share, settings.scale_min,
                               settings.scale_max).float()
        metrics["perception/dependency/mean"] = masked_mean(dependency, mask)
        metrics["perception/token_weight/mean"] = masked_mean(weights, mask)
        metrics["perception/token_weight/gated_share"] = masked_mean((weights == 0).double(), mask)
        return weights, metrics
    if settings.name == "srpo":
        roles = signals["roles"]
        perception = log_probs - signals[f"log_probs/{settings.method_view().name}"]
        reasoning = signals[f"log_probs/{NO_IMAGE.name}"] - log_probs
        weights = srpo_weights(perception, reasoning, roles, mask, settings.clip).float()
        on_p, on_r = mask.bool() & (roles == PERCEPTION), mask.bool() & (roles == REASONING)
        metrics["perception/token_weight/mean"] = masked_mean(weights, mask)
        metrics["perception/role_share/perception"] = masked_mean(on_p.double(), mask)
        metrics["perception/role_share/reasoning"] = masked_mean(on_r.double(), mask)
        metrics["perception/score/perception"] = masked_mean(perception, on_p)
        metrics["perception/score/reasoning"] = masked_mean(reasoning, on_r)
        metrics["perception/token_weight/perception"] = masked_mean(weights, on_p)
        metrics["perception/token_weight/reasoning"] = masked_mean(weights, on_r)
        metrics["perception/with_roles_share"] = float((on_p | on_r).any(dim=-1).double().mean())
        return weights, metrics
    return None, metrics


def focus_rewards(settings: PerceptionSettings, rewards: np.ndarray, extras: dict[str, np.ndarray],
                  group_ids: Sequence, signals: dict[str, torch.Tensor], asked: Sequence[int] = ()
                  ) -> tuple[np.ndarray, dict[str, float]]:
    """faithful_mr1's rewards (``focus.faithful_rewards``): ``focus/causal``'s k-th map is the map of the group of
    row ``asked[k]`` (the rows the step asked maps of: ``focus.causal_rows``); the rewards unchanged for any other
    method."""
    if settings.name != "faithful_mr1":
        return rewards, {}
    maps = {str(group_ids[row]): signals["focus/causal"][k] for k, row in enumerate(asked)}
    return faithful_rewards(rewards, answer_correct(rewards, extras), group_ids, signals["focus/attention"], maps,
                            settings.focus_reward)


def source_dependency(signals: dict[str, torch.Tensor], mask: torch.Tensor, row_sources: Sequence[Sequence[str]],
                      sources: Sequence[str]) -> dict[str, float]:
    """``perception/dependency/<source>``: mean per-token KL with that source black, over the rows showing it."""
    out = {}
    for source in sources:
        key = f"kl/drop_{source}"
        if key not in signals:
            continue
        shows = torch.tensor([source in names for names in row_sources], dtype=torch.bool)
        out[f"perception/dependency/{source}"] = masked_mean(signals[key], mask.bool() & shows.unsqueeze(1))
    return out
