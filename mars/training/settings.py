"""The settings the step reads, typed and checked once, when the config is composed.

    AnchorSettings     how anchors are built and decoded: variant mode, anchor sources, anchors per variant
    EstimatorSettings  which advantage estimator, and whether it normalises by the group's std
    StepSettings       everything the step reads (the two above, rollouts, filtering, lengths)

``check_settings(cfg)`` lists every bad value of these keys, each naming the key and what it accepts; the config
composition (``mars.config.compose``) turns them into one short error before any data or model is built, for both
engines and ``mars compare``. Reading them again later (``StepSettings.from_config``) cannot fail.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mars.anchors import VARIANT_MODES
from mars.perception.methods import PerceptionSettings, perception_problems, perception_settings
from mars.training.interface import Sampling

ESTIMATOR_WITH_ANCHORS = "mars"  # the estimator that takes the anchors' rewards (mars.advantage.verl_estimator)
FILTER_MODES = ("mars", "dapo")
ON_BAD_ROW = ("error", "skip")


class SettingsError(ValueError):
    """Bad values of the keys the step reads; ``problems`` has one line per key."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class AnchorSettings:
    """``mars.variant_mode``, ``mars.anchor_sources`` (None: all) and ``mars.anchor`` (n per variant, decoding)."""

    variant_mode: str
    sources: tuple[str, ...] | None
    n: int
    sampling: Sampling

    @classmethod
    def from_config(cls, cfg_or_mars: Any) -> "AnchorSettings":
        """From the whole config or its ``mars`` section."""
        mars = cfg_or_mars.mars if "mars" in cfg_or_mars else cfg_or_mars
        _raise_if(anchor_problems(mars))
        sources = mars.get("anchor_sources", "all")
        if sources is None or sources == "all":
            sources = None
        elif isinstance(sources, str):
            sources = (sources,)
        else:
            sources = tuple(str(s) for s in sources)
        anchor = mars.anchor
        sampling = Sampling(do_sample=bool(anchor.do_sample), temperature=float(anchor.temperature),
                            top_p=float(anchor.top_p))
        return cls(str(mars.variant_mode), sources, int(anchor.n), sampling)


@dataclass(frozen=True)
class EstimatorSettings:
    """``algorithm.adv_estimator`` (a name in verl's estimator registry) and ``norm_adv_by_std_in_grpo``."""

    name: str
    norm_adv_by_std: bool

    @property
    def with_anchors(self) -> bool:
        return self.name == ESTIMATOR_WITH_ANCHORS

    @classmethod
    def from_config(cls, cfg: Any) -> "EstimatorSettings":
        _raise_if(estimator_problems(cfg))
        return cls(str(cfg.algorithm.adv_estimator), bool(cfg.algorithm.norm_adv_by_std_in_grpo))


@dataclass(frozen=True)
class StepSettings:
    """The parts of the config the step reads, resolved once (``algorithm`` is verl's node, which verl's estimators
    take as their ``config``)."""

    n: int
    sampling: Sampling
    max_response_length: int
    train_batch_size: int
    estimator: EstimatorSettings
    anchors: AnchorSettings
    use_kl_loss: bool
    filter_enable: bool
    filter_metric: str
    filter_mode: str
    max_num_gen_batches: int
    algorithm: Any
    perception: PerceptionSettings = PerceptionSettings()

    @classmethod
    def from_config(cls, cfg: Any) -> "StepSettings":
        _raise_if(check_settings(cfg))
        rollout = cfg.actor_rollout_ref.rollout
        filter_cfg = cfg.algorithm.filter_groups
        return cls(
            n=int(rollout.n),
            sampling=Sampling(do_sample=bool(rollout.get("do_sample", True)), temperature=float(rollout.temperature),
                              top_p=float(rollout.top_p)),
            max_response_length=int(cfg.data.max_response_length),
            train_batch_size=int(cfg.data.train_batch_size),
            estimator=EstimatorSettings.from_config(cfg),
            anchors=AnchorSettings.from_config(cfg),
            use_kl_loss=bool(cfg.actor_rollout_ref.actor.use_kl_loss),
            filter_enable=bool(filter_cfg.enable),
            filter_metric=str(filter_cfg.metric),
            filter_mode=str(cfg.mars.filter_mode),
            max_num_gen_batches=int(filter_cfg.max_num_gen_batches),
            algorithm=cfg.algorithm,
            perception=perception_settings(cfg),
        )

    @property
    def with_anchors(self) -> bool:
        return self.estimator.with_anchors


def _raise_if(problems: list[str]) -> None:
    if problems:
        raise SettingsError(problems)


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def anchor_problems(mars: Any) -> list[str]:
    """Bad values of ``mars.variant_mode``, ``mars.anchor_sources`` and ``mars.anchor.*``."""
    problems = []
    if mars.get("variant_mode") not in VARIANT_MODES:
        problems.append(f"mars.variant_mode={mars.get('variant_mode')}: not a variant mode; valid: "
                        f"{', '.join(VARIANT_MODES)}")
    sources = mars.get("anchor_sources", "all")
    if sources is not None and not isinstance(sources, str) and (
            not hasattr(sources, "__iter__") or any(not isinstance(s, str) or not s for s in sources)):
        problems.append(f"mars.anchor_sources={sources}: valid: all, a source name, or a list of source names")
    anchor = mars.get("anchor") or {}
    n = anchor.get("n")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        problems.append(f"mars.anchor.n={n}: valid: a whole number >= 1 (anchors per mono-source variant)")
    if not isinstance(anchor.get("do_sample"), bool):
        problems.append(f"mars.anchor.do_sample={anchor.get('do_sample')}: valid: true, false")
    temperature, top_p = _number(anchor.get("temperature")), _number(anchor.get("top_p"))
    if temperature is None or temperature <= 0:
        problems.append(f"mars.anchor.temperature={anchor.get('temperature')}: valid: a number > 0")
    if top_p is None or not 0 < top_p <= 1:
        problems.append(f"mars.anchor.top_p={anchor.get('top_p')}: valid: a number in (0, 1]")
    return problems


def estimator_problems(cfg: Any) -> list[str]:
    """Bad values of ``algorithm.adv_estimator`` and ``algorithm.norm_adv_by_std_in_grpo``. Whether verl knows the
    estimator's name is verl's to say when the run imports it (its registry is filled by importing verl)."""
    problems = []
    name = cfg.algorithm.get("adv_estimator")
    if not isinstance(name, str) or not name:
        problems.append(f"algorithm.adv_estimator={name}: valid: an estimator name, e.g. {ESTIMATOR_WITH_ANCHORS} "
                        "(GRPO + anchors) or grpo")
    if not isinstance(cfg.algorithm.get("norm_adv_by_std_in_grpo"), bool):
        problems.append(f"algorithm.norm_adv_by_std_in_grpo={cfg.algorithm.get('norm_adv_by_std_in_grpo')}: "
                        "valid: true, false")
    return problems


def check_settings(cfg: Any) -> list[str]:
    """Every bad value among the keys the step reads (empty when all are fine)."""
    problems = anchor_problems(cfg.mars) + estimator_problems(cfg)
    if cfg.mars.get("filter_mode") not in FILTER_MODES:
        problems.append(f"mars.filter_mode={cfg.mars.get('filter_mode')}: valid: {', '.join(FILTER_MODES)}")
    if cfg.mars.get("on_bad_row", "error") not in ON_BAD_ROW:
        problems.append(f"mars.on_bad_row={cfg.mars.get('on_bad_row')}: valid: {', '.join(ON_BAD_ROW)}")
    problems += perception_problems(perception_settings(cfg))
    return problems + warmup_problems(cfg.mars.get("sft_warmup") or {})


def warmup_problems(sft: Any) -> list[str]:
    """Bad values of ``mars.sft_warmup.stages``: a list of ``{view: fused|<source name>, weight: W,
    answerable_only: true|false}`` (``mars.sft_warmup.steps`` is split between them in proportion to their weights)."""
    stages = sft.get("stages")
    if stages is None:
        return []
    if isinstance(stages, str) or not hasattr(stages, "__iter__") or not len(stages):
        return [f"mars.sft_warmup.stages={stages}: valid: null, or a list of {{view: fused|<source>, weight: W, "
                "answerable_only: true|false}"]
    problems = []
    for k, stage in enumerate(stages):
        where = f"mars.sft_warmup.stages[{k}]"
        if not hasattr(stage, "get") or not isinstance(stage.get("view"), str) or not stage.get("view"):
            problems.append(f"{where}: needs view: fused or a source name")
            continue
        unknown = set(stage) - {"view", "weight", "answerable_only"}
        if unknown:
            problems.append(f"{where}: unknown key(s) {sorted(unknown)}; valid: view, weight, answerable_only")
        weight = _number(stage.get("weight", 1.0))
        if weight is None or isinstance(stage.get("weight"), bool) or weight <= 0:
            problems.append(f"{where}.weight={stage.get('weight')}: valid: a number > 0 (its share of "
                            "mars.sft_warmup.steps)")
        if not isinstance(stage.get("answerable_only", False), bool):
            problems.append(f"{where}.answerable_only={stage.get('answerable_only')}: valid: true, false")
    return problems
