"""Validation, the same keys on both engines: ``val/reward`` and ``val/<reward part>`` (means over the greedy
answers to the validation prompts), and the accuracy per view (``view_metrics``: the fused prompt against each
source alone). ``validate`` answers them through the step's engine interface; the verl engine answers the fused
prompts in verl's own ``_validate`` too (for verl's keys), and hands its reward parts to ``validation_metrics``."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from mars.anchors import build_mono_source_variants
from mars.data.samples import PromptSample
from mars.evaluation.sources import ItemViews, Verdict, source_report
from mars.training.interface import Engine, RolloutBatch, RolloutRequest, Sampling
from mars.training.settings import AnchorSettings

# reward parts that count failures of the reward function itself, not a quality of the answers
NOT_VALIDATION_METRICS = ("reward_error", "coord_error", "error")
REWARD_KEYS = ("reward", "score")  # what verl's reward loop calls the total


def validation_metrics(rewards: Any, parts: Mapping[str, Any]) -> dict[str, float]:
    """``val/reward`` = mean of ``rewards`` (None: taken from ``parts``' ``reward``/``score``), and ``val/<part>`` for
    every numeric reward part except the error counters."""
    metrics: dict[str, float] = {}
    if rewards is not None:
        metrics["val/reward"] = float(np.mean(rewards))
    for key, values in parts.items():
        try:
            numbers = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError):
            continue
        if not numbers.size or key in NOT_VALIDATION_METRICS:
            continue
        name = "val/reward" if key in REWARD_KEYS else f"val/{key}"
        metrics.setdefault(name, float(numbers.mean()))
    return metrics


def answer_correct(rows: RolloutBatch) -> np.ndarray:
    """Per row, whether the answer is right, from the reward's parts: VQA's ``accuracy`` (0 or 1), grounding's
    ``iou`` part above 0.5; a reward without either part: the whole reward above 0.5."""
    if "accuracy" in rows.reward_extras:
        return np.asarray(rows.reward_extras["accuracy"]) > 0.5
    if "iou" in rows.reward_extras:
        return np.asarray(rows.reward_extras["iou"]) > 0.5
    return np.asarray(rows.rewards) > 0.5


def view_metrics(rows: RolloutBatch) -> dict[str, float]:
    """Accuracy per view of scored validation rows (fused rows and the mono-source rows of each prompt, tied by
    group id), as fractions: ``val/view/fused/accuracy``, ``val/view/<source>/accuracy``, ``val/fusion_gain``,
    ``val/interference_rate``, ``val/synergy_rate`` over the prompts with two or more sources
    (``mars.evaluation.sources`` defines each)."""
    correct = answer_correct(rows)
    fused: dict[str, bool] = {}
    mono: dict[str, dict[str, Verdict]] = {}
    for group, is_mono, source, right in zip(rows.group_ids, rows.is_anchor, rows.sources, correct):
        if is_mono:
            mono.setdefault(group, {})[source] = Verdict(bool(right))
        else:
            fused[group] = bool(right)
    report = source_report([ItemViews(Verdict(fused[g]), mono[g]) for g in fused if len(mono.get(g, {})) >= 2])
    if not report["multi_source_items"]:
        return {}
    metrics = {f"val/view/{name}/accuracy": view["accuracy"] / 100 for name, view in report["views"].items()}
    metrics.update({"val/fusion_gain": report["fusion_gain"] / 100,
                    "val/interference_rate": report["interference_rate"] / 100,
                    "val/synergy_rate": report["synergy_rate"] / 100})
    return metrics


def is_view_metric(key: str) -> bool:
    return key.startswith("val/view/") or key in ("val/fusion_gain", "val/interference_rate", "val/synergy_rate")


def validation_requests(samples: Sequence[PromptSample], cfg: Any) -> list[RolloutRequest]:
    """The validation prompts, decoded as ``rollout.val_kwargs`` says (greedy by default), and, with
    ``mars.val_views`` (the default), every mono-source variant of each prompt with two or more sources, decoded
    alike, marked as anchors of the prompt's group (they are never trained on)."""
    val_kwargs = cfg.actor_rollout_ref.rollout.val_kwargs
    sampling = Sampling(do_sample=bool(val_kwargs.do_sample), temperature=float(val_kwargs.temperature),
                        top_p=float(val_kwargs.top_p))
    mode = AnchorSettings.from_config(cfg).variant_mode
    requests = []
    for i, sample in enumerate(samples):
        requests.append(RolloutRequest(sample.messages, f"val{i}", sampling, sample=sample))
        if cfg.mars.get("val_views", True):
            requests += [RolloutRequest(v.messages, f"val{i}", sampling, True, v.source, sample)
                         for v in build_mono_source_variants(sample.messages, sample.sources, mode)]
    return requests


def validate(engine: Engine, samples: Sequence[PromptSample], cfg: Any, show: int = 0, write=print,
             shaping: bool = False) -> dict[str, float]:
    """The validation prompts (and their mono-source variants) in ONE generation call, scored without the
    training-time shaping: ``val/reward`` and its parts over the fused answers, the per-view metrics over all;
    ``show`` fused answers are printed."""
    rows = engine.generate(validation_requests(samples, cfg), int(cfg.data.max_response_length))
    engine.score(rows, shaping=shaping)
    fused = rows.select(np.flatnonzero(~rows.is_anchor))
    for text, sample, reward in list(zip(fused.texts, fused.samples, fused.rewards))[:show]:
        write(f"  [val] reward {reward:.3f} | truth {sample.ground_truth} | answer {text[:200]!r}")
    return {**validation_metrics(fused.rewards, fused.reward_extras), **view_metrics(rows)}
