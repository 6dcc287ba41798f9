"""One training step of GRPO/DAPO + MARS, written once for every engine. Where the engine is called.

    1. rollouts   n sampled answers per prompt + one (greedy) answer per mono-source variant, ONE engine call
    2. rewards    the engine scores every row (anchors too) with the configured reward, DAPO's overlong shaping
    3. filter     (DAPO) keep groups with signal, anchors attached by group id; generate more until the batch is full
    4. log-probs  old (actor) and reference log-probs of the multi-source responses; with ``perception=<method>``
                  the same actor pass also returns what the method needs (similarity, log-probs under altered images)
    5. advantage  the registered estimator (on faithful_mr1's reshaped rewards with that method); for ``mars``
                  with the anchors' rewards and group ids; then the perception method's token weights,
                  A_{i,t} = A_{i,t} * w_{i,t}
    6. update     the engine's policy update with verl's policy loss, KL loss and loss aggregation (+ PAPO's term)

Anchors are generated and scored but never trained on: after step 3 they only feed the advantage's statistics
and the ``mars/*`` diagnostics.
"""

from __future__ import annotations

import inspect
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from mars.advantage import filter_groups, fusion_diagnostics
from mars.data.samples import PromptSample
from mars.perception.focus import answer_correct, causal_rows
from mars.perception.methods import focus_rewards, signal_views, source_dependency, token_weights
from mars.training.interface import (Engine, FocusRequest, PerceptionLoss, PerceptionRequest, PolicyBatch,
                                     RolloutBatch)
from mars.training.requests import build_requests
from mars.training.scoring import finite_rewards
from mars.training.settings import StepSettings


class TooManyGenerationBatches(RuntimeError):
    """DAPO's dynamic sampling could not fill the batch within ``algorithm.filter_groups.max_num_gen_batches``."""


class Timer:
    """Wall-clock seconds per phase, reported as ``timing_s/<phase>``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


def generate_and_score(
    engine: Engine, samples: Sequence[PromptSample], tag: str, settings: StepSettings, timer: Timer
) -> RolloutBatch:
    """Steps 1-2: one engine call for the rollouts and the anchors of ``samples``, then their rewards."""
    requests = build_requests(samples, tag, settings.n, settings.sampling, settings.anchors, settings.with_anchors)
    with timer.phase("gen"):
        rows = engine.generate(requests, settings.max_response_length)
    with timer.phase("reward"):
        engine.score(rows)
        finite_rewards(rows)  # one rule for NaN/inf rewards on every engine: 0, counted, logged
    return rows


def filter_metric(rows: RolloutBatch, metric: str) -> np.ndarray:
    """DAPO's ``filter_groups.metric``: ``seq_reward`` / ``seq_final_reward`` = the reward, else a reward part."""
    if metric in ("seq_reward", "seq_final_reward", "score", "reward"):
        return rows.rewards
    if metric in rows.reward_extras:
        return rows.reward_extras[metric]
    raise KeyError(f"algorithm.filter_groups.metric={metric!r} is not a reward part; have {sorted(rows.reward_extras)}")


def collect_rollouts(
    engine: Engine, next_prompts: Callable[[], list[PromptSample]], step: int, settings: StepSettings, timer: Timer,
    metrics: dict[str, float],
) -> RolloutBatch:
    """Steps 1-3. Without filtering, one generation batch. With it, generation batches until ``train_batch_size``
    groups with signal are kept (then trimmed to exactly that many), bounded by ``max_num_gen_batches``."""
    if not settings.filter_enable:
        rows = generate_and_score(engine, next_prompts(), f"s{step}g0", settings, timer)
        count_generated(rows, metrics)
        return rows

    kept: list[RolloutBatch] = []
    kept_groups, generated, seen_groups = 0, 0, 0
    while kept_groups < settings.train_batch_size:
        if settings.max_num_gen_batches > 0 and generated >= settings.max_num_gen_batches:
            raise TooManyGenerationBatches(
                f"step {step}: only {kept_groups}/{settings.train_batch_size} groups with signal after {generated} "
                f"generation batches (algorithm.filter_groups.max_num_gen_batches). The data may be too easy or too "
                f"hard for the policy: raise max_num_gen_batches or lower data.train_batch_size"
                + ("" if settings.filter_mode == "mars" else ", or set mars.filter_mode=mars (anchors can rescue groups)")
            )
        rows = generate_and_score(engine, next_prompts(), f"s{step}g{generated}", settings, timer)
        count_generated(rows, metrics)
        generated += 1
        values = filter_metric(rows, settings.filter_metric)
        multi = np.flatnonzero(~rows.is_anchor)
        anchors = np.flatnonzero(rows.is_anchor)
        result = filter_groups(
            values[multi], rows.group_ids[multi], values[anchors], rows.group_ids[anchors], mode=settings.filter_mode
        )
        keep = np.sort(np.concatenate([multi[result.kept_rows], anchors[result.kept_anchor_rows]]))
        kept.append(rows.select(keep))
        kept_groups += result.num_kept
        seen_groups += result.num_groups
        for key, value in result.metrics().items():
            metrics[key] = metrics.get(key, 0.0) + value

    batch = RolloutBatch.concat(kept)
    first_groups = list(dict.fromkeys(batch.group_ids[~batch.is_anchor].tolist()))[: settings.train_batch_size]
    batch = batch.select(np.flatnonzero(np.isin(batch.group_ids, first_groups)))
    metrics["mars/filter/gen_batches"] = float(generated)
    metrics["mars/filter/kept_share"] = kept_groups / max(seen_groups, 1)
    return batch


def count_generated(rows: RolloutBatch, metrics: dict[str, float]) -> None:
    """Tokens generated in the step: rollouts, anchors and the groups the filter dropped all took generation time."""
    metrics["mars/generated_tokens"] = metrics.get("mars/generated_tokens", 0.0) + float(rows.response_lengths.sum())


def outcome_rewards(rewards: np.ndarray, mask: torch.Tensor) -> torch.Tensor:
    """verl's ``token_level_rewards``: the sequence reward on the last generated token, zeros elsewhere."""
    token_rewards = torch.zeros_like(mask, dtype=torch.float32)
    last = (mask.sum(dim=-1).long() - 1).clamp_min(0)
    token_rewards[torch.arange(len(mask)), last] = torch.as_tensor(rewards, dtype=torch.float32)
    return token_rewards * (mask.sum(dim=-1, keepdim=True) > 0)


def compute_advantages(responses: RolloutBatch, anchors: RolloutBatch, mask: torch.Tensor, settings: StepSettings,
                       rewards: np.ndarray | None = None):
    """Step 5: the registered estimator, called by us so that MARS gets its anchors (verl's call would not).
    ``rewards``: the responses' rewards when a method reshaped them (faithful_mr1), else their own.

    ``mars`` is in verl's registry once verl is imported: MARS is a ``verl.plugins`` entry point (and ``import mars``
    registers it when verl came first)."""
    from verl.trainer.ppo.core_algos import get_adv_estimator_fn

    try:
        estimator = get_adv_estimator_fn(settings.estimator.name)
    except ValueError as exc:
        raise ValueError(f"algorithm.adv_estimator={settings.estimator.name}: {exc} (the mars estimator is "
                         "registered by MARS's verl plugin: is mars-rl installed, `pip install -e .`?)") from exc
    kwargs: dict[str, Any] = dict(
        token_level_rewards=outcome_rewards(responses.rewards if rewards is None else rewards, mask),
        response_mask=mask,
        index=responses.group_ids.astype(object),
        config=settings.algorithm,
    )
    if "norm_adv_by_std_in_grpo" in inspect.signature(estimator).parameters:  # verl's grpo ignores the config's
        kwargs["norm_adv_by_std_in_grpo"] = settings.estimator.norm_adv_by_std
    if settings.with_anchors:
        kwargs.update(anchor_scores=torch.as_tensor(anchors.rewards), anchor_index=anchors.group_ids.astype(object))
    advantages, _ = estimator(**kwargs)
    return advantages


def train_step(
    engine: Engine, next_prompts: Callable[[], list[PromptSample]], step: int, settings: StepSettings
) -> dict[str, float]:
    """One step; returns its metrics (rewards, ``mars/*`` diagnostics, ``actor/*`` update metrics, timings)."""
    timer = Timer()
    metrics: dict[str, float] = {}
    with timer.phase("step"):
        batch = collect_rollouts(engine, next_prompts, step, settings, timer, metrics)
        responses = batch.select(np.flatnonzero(~batch.is_anchor))
        anchors = batch.select(np.flatnonzero(batch.is_anchor))

        mask = engine.response_mask(responses)
        perception = settings.perception
        signals: dict[str, torch.Tensor] = {}
        with timer.phase("old_log_prob"):
            if perception.active:
                request = perception_request(responses, step, settings)
                old_log_probs, signals = engine.compute_log_probs_with_signals(responses, request)
            else:
                old_log_probs = engine.compute_log_probs(responses, "actor")
        ref_log_probs = None
        if settings.use_kl_loss:
            with timer.phase("ref"):
                ref_log_probs = engine.compute_log_probs(responses, "ref")
        with timer.phase("adv"):
            rewards = responses.rewards
            if perception.active:  # faithful_mr1's bonus for correct answers that look where it matters
                asked = request.focus.causal_rows if request.focus is not None else ()
                rewards, focus_metrics = focus_rewards(perception, rewards, responses.reward_extras,
                                                       responses.group_ids, signals, asked)
                metrics.update(focus_metrics)
            advantages = compute_advantages(responses, anchors, mask, settings, rewards)
            if perception.active:
                weights, perception_metrics = token_weights(perception, signals, mask, responses.group_ids,
                                                            old_log_probs)
                if weights is not None:
                    advantages = advantages * weights
                metrics.update(perception_metrics)
                metrics.update(source_dependency(signals, mask, responses.row_sources(), all_sources(responses)))
        papo = None
        if perception.name == "papo":
            papo = PerceptionLoss(perception.method_view(), perception.kl_coef, perception.entropy_coef,
                                  perception.seed, step)
        with timer.phase("update_actor"):
            metrics.update(engine.update_policy(
                PolicyBatch(responses, advantages, old_log_probs, ref_log_probs, perception_loss=papo)))

    metrics.update(rollout_metrics(responses, anchors))
    metrics.update(
        fusion_diagnostics(responses.rewards, responses.group_ids, anchors.rewards, anchors.group_ids, anchors.sources)
    )
    metrics.update({f"timing_s/{k}": v for k, v in timer.seconds.items()})
    # verl divides by the trained rows' tokens only; the generation time also produced the anchors' tokens
    metrics["timing_per_token_ms/gen"] = 1000 * timer.seconds["gen"] / max(metrics["mars/generated_tokens"], 1.0)
    return metrics


def all_sources(rows: RolloutBatch) -> list[str]:
    return sorted({name for names in rows.row_sources() for name in names})


def perception_request(rows: RolloutBatch, step: int, settings: StepSettings) -> PerceptionRequest:
    """What the configured perception method needs from the old-log-prob pass of ``rows``. faithful_mr1: the
    focus attention of every row, the causal map of each group's first answer-correct row."""
    perception = settings.perception
    focus = None
    if perception.name == "faithful_mr1":
        asked = causal_rows(rows.group_ids, answer_correct(rows.rewards, rows.reward_extras))
        focus = FocusRequest(perception.focus_token, perception.focus_layer, perception.cells, tuple(asked),
                             perception.attention)
    return PerceptionRequest(
        views=tuple(signal_views(perception, all_sources(rows))), similarity=perception.name == "vgpo",
        roles=perception.name == "srpo", seed=perception.seed, step=step, focus=focus,
    )


def rollout_metrics(responses: RolloutBatch, anchors: RolloutBatch) -> dict[str, float]:
    """Reward and length statistics of the trained-on responses; the anchors' share of generated tokens."""
    out = {
        "critic/score/mean": float(np.mean(responses.rewards)),
        "critic/score/max": float(np.max(responses.rewards)),
        "critic/score/min": float(np.min(responses.rewards)),
        "response_length/mean": float(np.mean(responses.response_lengths)),
        "response_length/clip_ratio": float(np.mean(responses.truncated)),
    }
    for key, values in responses.reward_extras.items():
        out[f"reward/{key}"] = float(np.mean(values))
    total_tokens = responses.response_lengths.sum() + anchors.response_lengths.sum()
    out["mars/anchor_token_share"] = float(anchors.response_lengths.sum() / max(total_tokens, 1))
    return out
