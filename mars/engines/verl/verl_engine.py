"""The verl engine: the step's engine interface on a verl ``RayPPOTrainer``'s worker groups.

    generate           ONE call of verl's agent-loop manager (vLLM or SGLang servers) for rollouts and anchors;
                       anchors are greedy through verl's per-row ``__do_sample__`` flag
    score              the rewards verl's reward loop computed while generating (``rm_scores``, with the custom
                       reward function and the configured reward manager, e.g. DAPO's overlong shaping)
    compute_log_probs  verl's actor / reference worker groups (FSDP), on rows balanced across data-parallel ranks;
                       with a perception method, MARS's worker method beside it (``perception.py``)
    update_policy      verl's actor update (its policy loss, KL loss, loss aggregation, mini-batches); with PAPO,
                       its term added to verl's loss inside the workers (``papo.py``)

Rows keep the step's order at every interface: verl's sequence-length balancing reorders a batch in place, so it
is applied to a copy that carries an explicit row index, and results are put back in the step's order. Only
multi-source rows ever reach the worker groups; anchors are generated and scored, never trained on.

The rollout servers share the GPUs with training (verl's hybrid engine): they sleep before the first training call
of a step and get the new weights after the update (``sync_weights``, called by the trainer after checkpointing).
Between DAPO's generation batches they stay awake.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from verl import DataProto

from mars.engines.verl.generation import (
    check_prompts_follow_requests,
    generation_batch,
    join_request_fields,
    rollout_batch,
)
from mars.training.interface import PerceptionLoss, PerceptionRequest, PolicyBatch, RolloutBatch, RolloutRequest

ROW_INDEX_KEY = "mars_row"  # position of a row in the step's order, carried through verl's batch balancing
CALL_STRIDE = 1_000_000  # request numbers of one generation call: call * CALL_STRIDE + row + 1


def timing_key(key: str) -> str:
    """verl's agent-loop timing key, relabelled where its meaning differs under MARS: the "slowest" row is picked
    among every row of the call, so it can be an anchor or a copy padding the call, not a trained rollout."""
    return key.replace("agent_loop/slowest/", "agent_loop/slowest_of_all_rows/", 1)


class VerlEngine:
    """Implements ``mars.training.interface.Engine`` with a verl ``RayPPOTrainer`` (see the module docstring)."""

    def __init__(self, trainer: Any):
        self.trainer = trainer
        self.config = trainer.config
        self.rollout_awake = False
        self.last_update: DataProto | None = None  # the rows of the last update, for verl's data metrics
        self._metrics: dict[str, float] = {}  # verl-side metrics of the current step (balance, entropy, timing)
        self._old_log_prob_extras: dict[str, torch.Tensor] = {}  # sum_pi_squared / routed_experts, step order
        self.validating = False  # set around the per-view validation's generation (MarsRayPPOTrainer._validate)
        self._calls: dict[int, int] = {}  # generation calls made at each global step (the hf rollout's request seeds)
        self._geometry = None  # the processor's black patch row, merge and patch size, for altered views
        self._papo_installed = False  # whether the actor workers' loss has PAPO's term
        self._focus_probe = None  # the validation prompts with regions, encoded, for focus_metrics

    # ------------------------------------------------------------------------------------------ rollout servers

    def sync_weights(self) -> None:
        """Push the actor's weights to the rollout servers and wake them (verl: ``update_weights``)."""
        self.trainer.checkpoint_manager.update_weights(self.trainer.global_steps)
        self.rollout_awake = True

    def _sleep_rollout(self) -> None:
        if self.rollout_awake:
            self.trainer.checkpoint_manager.sleep_replicas()
            self.rollout_awake = False

    # ------------------------------------------------------------------------------------------ generation

    def generate(self, requests: Sequence[RolloutRequest], max_new_tokens: int) -> RolloutBatch:
        from verl.protocol import pad_dataproto_to_divisor, unpad_dataproto

        rollout = self.config.actor_rollout_ref.rollout
        if int(max_new_tokens) != int(rollout.response_length):
            raise ValueError(
                f"the step asks for {max_new_tokens} new tokens but verl generates actor_rollout_ref.rollout."
                f"response_length={rollout.response_length}: keep it equal to data.max_response_length"
            )
        self._check_sampling(requests)
        generation = generation_batch(requests)
        if str(rollout.name) == "hf":
            # verl's full_determinism names each request det-<priority>; numbered by step and call, every row's
            # sampling seed in the hf server is a function of (seed, step, call, row) only
            step = int(self.trainer.global_steps)
            call = self._calls[step] = self._calls.get(step, -1) + 1
            generation.non_tensor_batch["priority"] = np.arange(len(generation), dtype=np.int64) + 1 + call * CALL_STRIDE
        # the agent-loop manager splits a request evenly over its workers: pad with copies, drop their outputs
        padded, pad_size = pad_dataproto_to_divisor(generation, int(rollout.agent.num_workers))
        padded.meta_info = {"global_steps": self.trainer.global_steps}
        if self.validating:  # verl's agent loop then decodes with rollout.val_kwargs and records nothing for training
            padded.meta_info["validate"] = True
        if not self.rollout_awake:
            self.sync_weights()
        output = unpad_dataproto(self.trainer.async_rollout_manager.generate_sequences(padded), pad_size)
        for key, value in (output.meta_info.pop("timing", None) or {}).items():
            self._metrics[timing_key(key)] = float(value)
        data = join_request_fields(output, generation)
        check_prompts_follow_requests(requests, data)
        return rollout_batch(requests, data, self.trainer.tokenizer, int(rollout.response_length))

    def _check_sampling(self, requests: Sequence[RolloutRequest]) -> None:
        """verl decodes every sampled row of a request with the rollout config's temperature and top_p; greedy rows
        are switched per row. A request that needs other sampling settings cannot be served in one call."""
        rollout = self.config.actor_rollout_ref.rollout
        wanted = (float(rollout.temperature), float(rollout.top_p))
        for request in requests:
            if request.sampling.do_sample and (request.sampling.temperature, request.sampling.top_p) != wanted:
                raise ValueError(
                    f"a {'anchor' if request.is_anchor else 'rollout'} asks for sampling at temperature="
                    f"{request.sampling.temperature}, top_p={request.sampling.top_p}, but verl samples every row of a "
                    f"generation call at actor_rollout_ref.rollout.temperature/top_p={wanted}: sampled anchors "
                    f"(mars.anchor.do_sample=true) must use the rollout's temperature and top_p"
                )

    # ------------------------------------------------------------------------------------------ rewards

    def score(self, rows: RolloutBatch, shaping: bool = True) -> None:
        """Read the rewards verl computed for every row (anchors too); a colocated reward model is run here."""
        from verl.trainer.ppo.reward import extract_reward

        overlong = (self.config.reward.get("reward_kwargs", None) or {}).get("overlong_buffer_cfg", None)
        if not shaping and overlong is not None and overlong.get("enable", False):
            raise NotImplementedError(
                "verl's reward manager applies DAPO's overlong shaping to every row; validation runs through verl's "
                "own _validate, not through this engine"
            )
        data = rows.payload.data
        if "rm_scores" not in data.batch.keys():
            if not self.trainer.use_rm:
                raise RuntimeError(
                    "verl's rollout returned no rm_scores: the reward loop did not score the rows. Check "
                    "reward.custom_reward_function.path and the reward loop workers' logs"
                )
            self._sleep_rollout()  # a colocated reward model needs the rollout servers' GPU memory
            data.union(self.trainer._compute_reward_colocate(data))
        reward_tensor, extras = extract_reward(data)
        rows.rewards = reward_tensor.sum(dim=-1).double().cpu().numpy()
        rows.reward_extras = {}
        for key, values in extras.items():
            try:
                numbers = np.asarray(values, dtype=np.float64)
            except (TypeError, ValueError):
                continue  # a non-numeric part (e.g. a string label) is kept in the payload, not logged
            if numbers.shape == (len(rows),):
                rows.reward_extras[key] = numbers

    # ------------------------------------------------------------------------------------------ log-probs

    def response_mask(self, rows: RolloutBatch) -> torch.Tensor:
        return rows.payload.data.batch["response_mask"].float()

    def _training_data(self, rows: RolloutBatch) -> DataProto:
        """A copy of the rows' DataProto (new containers, shared tensors) with the meta_info verl's workers read."""
        data = rows.payload.data
        if rows.is_anchor.any():
            raise ValueError("anchors are never trained on: pass the multi-source rows only")
        images_seqlens = []
        for inputs in data.non_tensor_batch.get("multi_modal_inputs", []):
            if isinstance(inputs, dict) and "images_seqlens" in inputs:
                images_seqlens += torch.as_tensor(inputs["images_seqlens"]).tolist()
        meta_info = {
            "reward_extra_keys": list(data.meta_info.get("reward_extra_keys", [])),
            "global_token_num": torch.sum(data.batch["attention_mask"], dim=-1).tolist(),
            "images_seqlens": images_seqlens,
            "temperature": self.config.actor_rollout_ref.rollout.temperature,  # log-probs at the sampling temperature
        }
        return DataProto(batch=data.batch.clone(recurse=False), non_tensor_batch=dict(data.non_tensor_batch),
                         meta_info=meta_info)

    def _balanced(self, data: DataProto) -> tuple[DataProto, np.ndarray]:
        """verl's sequence-length balancing across data-parallel ranks (``trainer.balance_batch``), on ``data`` in
        place; returns it and, for every position, the row it came from."""
        rows = np.arange(len(data))
        if not self.config.trainer.get("balance_batch", True):
            return data, rows
        data.non_tensor_batch[ROW_INDEX_KEY] = rows
        metrics: dict[str, float] = {}
        self.trainer._balance_batch(data, metrics=metrics)
        self._metrics.update(metrics)
        return data, data.non_tensor_batch.pop(ROW_INDEX_KEY)

    @staticmethod
    def _in_step_order(values: torch.Tensor, order: np.ndarray) -> torch.Tensor:
        out = torch.empty_like(values)
        out[torch.as_tensor(order, dtype=torch.long)] = values
        return out

    def compute_log_probs(self, rows: RolloutBatch, model: str = "actor") -> torch.Tensor:
        from verl.trainer.ppo.core_algos import agg_loss

        data, order = self._balanced(self._training_data(rows))
        self._sleep_rollout()
        if model == "actor":
            output, mfu = self.trainer._compute_old_log_prob(data)
            actor = self.config.actor_rollout_ref.actor
            entropy = agg_loss(
                loss_mat=output.batch["entropys"], loss_mask=data.batch["response_mask"],
                loss_agg_mode=actor.loss_agg_mode, loss_scale_factor=actor.get("loss_scale_factor", None),
            )
            self._metrics.update({"actor/entropy": float(entropy.detach().item()), "perf/mfu/actor_infer": mfu})
            log_probs = output.batch["old_log_probs"]
            self._debug_metrics(data, log_probs)
            # verl's update reads these from the same rows (router replay, the variance-proxy metrics)
            self._old_log_prob_extras = {
                key: self._in_step_order(output.batch[key], order)
                for key in ("sum_pi_squared", "routed_experts") if key in output.batch.keys()
            }
        elif model == "ref":
            if not self.trainer.use_reference_policy:
                raise RuntimeError("no reference policy: set actor_rollout_ref.actor.use_kl_loss=true")
            log_probs = self.trainer._compute_ref_log_prob(data).batch["ref_log_prob"]
        else:
            raise ValueError(f"model must be 'actor' or 'ref', got {model!r}")
        return self._in_step_order(log_probs.float(), order)

    def compute_log_probs_with_signals(self, rows: RolloutBatch, request: PerceptionRequest):
        """verl's old log-probs, then the perception pass on the actor workers (``mars.engines.verl.perception``)."""
        from mars.engines.verl.perception import gather_results, rows_as_prompt_inputs, split_job
        from mars.hf.focus import answer_token_masks, focus_job, with_focus_defaults
        from mars.hf.perception import image_geometry, response_roles

        log_probs = self.compute_log_probs(rows, "actor")
        data = rows.payload.data
        prompts, responses, positions = rows_as_prompt_inputs(data, int(self.trainer.processor.image_token_id))
        width = int(data.batch["response_mask"].shape[1])
        extra = {}
        if request.roles:
            extra["roles"] = response_roles(responses, self.trainer.tokenizer, width)
        focus = focus_job(self.trainer.tokenizer, request.focus)
        if not request.views and not request.similarity and not focus:
            return log_probs, with_focus_defaults(extra, request, len(rows))
        if self._geometry is None:
            self._geometry = image_geometry(self.trainer.processor.image_processor)
        rollout = self.config.actor_rollout_ref.rollout
        common = {"width": width, "pad_id": int(self.trainer.tokenizer.pad_token_id or 0),
                  "temperature": float(rollout.temperature) or 1.0, "geometry": self._geometry}
        job = {
            **common, "prompts": prompts, "responses": responses, "sources": rows.row_sources(),
            "group_ids": [str(g) for g in rows.group_ids],
            "micro_batch": int(rollout.get("log_prob_micro_batch_size_per_gpu", 0) or 0),
            "views": tuple(request.views), "similarity": request.similarity, "seed": request.seed,
            "step": request.step, "position_ids": positions, "focus": focus,
        }
        ranks = int(self.trainer.actor_rollout_wg.world_size)
        jobs, n = split_job(job, ranks)
        self._sleep_rollout()
        signals = gather_results(self.trainer.actor_rollout_wg.compute_perception_signals(jobs), n)
        signals.pop("log_probs", None)
        asked = list(request.focus.causal_rows) if focus else []
        if asked:  # Faithful-MR1's causal maps: the asked rows, shared equally between the ranks
            causal = {**common, "cells": focus.cells, "prompts": [prompts[i] for i in asked],
                      "responses": [responses[i] for i in asked], "position_ids": [positions[i] for i in asked],
                      "answer_masks": list(answer_token_masks([responses[i] for i in asked], self.trainer.tokenizer,
                                                              width))}
            jobs, n = split_job(causal, ranks)
            signals.update(gather_results(self.trainer.actor_rollout_wg.compute_causal_maps(jobs), n))
        return log_probs, with_focus_defaults({**signals, **extra}, request, len(rows))

    def focus_metrics(self, samples, token: str, layer: int) -> dict[str, float]:
        """Faithful-MR1's ``perception/focus_in_box`` and its uniform share on ``samples`` (those with regions, up
        to 64), on the actor workers (``compute_focus_metrics``); empty when the model has no focus token."""
        from mars.hf.focus import as_metrics, focus_probe
        from mars.perception.focus import focus_token_id
        from mars.processing import ImageCache, MultimodalEncoder

        tokenizer, processor = self.trainer.tokenizer, self.trainer.processor
        focus_id = focus_token_id(tokenizer, token)
        if focus_id is None:
            return {}
        if self._focus_probe is None:  # the validation prompts do not change: encoded once
            self._focus_probe = focus_probe(samples, MultimodalEncoder(processor),
                                            ImageCache(processor.image_processor),
                                            int(processor.image_processor.merge_size))
        prompts, masks = self._focus_probe
        if not prompts:
            return {}
        job = {"prompts": prompts, "masks": masks, "focus_id": focus_id, "layer": int(layer),
               "pad_id": int(tokenizer.pad_token_id or 0)}
        self._sleep_rollout()
        return as_metrics(self.trainer.actor_rollout_wg.compute_focus_metrics(job)[0])

    # ------------------------------------------------------------------------------------------ update

    def update_policy(self, batch: PolicyBatch) -> dict[str, float]:
        """verl's actor update on the rows with the step's advantages; returns the step's verl-side metrics."""
        from verl.utils.metric import reduce_metrics

        from mars.training.step import outcome_rewards

        data = self._training_data(batch.rows)
        mask = data.batch["response_mask"]
        scores = outcome_rewards(batch.rows.rewards, mask.float())
        data.batch["token_level_scores"] = scores
        data.batch["token_level_rewards"] = scores  # KL in the reward is refused by the config check
        data.batch["old_log_probs"] = batch.old_log_probs.float()
        data.batch["advantages"] = batch.advantages.float()
        data.batch["returns"] = batch.advantages.float()  # what verl's outcome estimators return
        if batch.ref_log_probs is not None:
            data.batch["ref_log_prob"] = batch.ref_log_probs.float()
        extras, self._old_log_prob_extras = self._old_log_prob_extras, {}
        for key, values in extras.items():
            if len(values) != len(data):
                raise RuntimeError(f"{key} of the old-log-prob call has {len(values)} rows, the update {len(data)}")
            data.batch[key] = values
        metrics = self._rollout_correction(data)
        if batch.perception_loss is not None:
            self._install_papo(batch.perception_loss, data, batch.rows)
        data, _ = self._balanced(data)  # advantages travel with their rows
        self._sleep_rollout()
        output = self.trainer._update_actor(data)
        for key, value in reduce_metrics(output.meta_info["metrics"]).items():
            # verl prefixes every actor metric with actor/; PAPO's keep the perception/ name of the local engine
            metrics[key.removeprefix("actor/") if key.startswith("actor/perception/") else key] = value
        self.last_update = data
        metrics, self._metrics = {**self._metrics, **metrics}, {}
        return metrics

    def _install_papo(self, papo: PerceptionLoss, data: DataProto, rows: RolloutBatch) -> None:
        """PAPO's term in the actor workers' loss (``mars.engines.verl.papo``), and each row's mask seed and image
        sources in the update batch, so the workers mask the same patches as the local engine."""
        from mars.engines.verl.papo import PapoSetup, add_mask_fields
        from mars.hf.perception import image_geometry

        if self._geometry is None:
            self._geometry = image_geometry(self.trainer.processor.image_processor)
        actor = self.config.actor_rollout_ref.actor
        scale = actor.get("loss_scale_factor", None)
        setup = PapoSetup(papo.view, self._geometry, float(papo.kl_coef), float(papo.entropy_coef),
                          str(actor.loss_agg_mode), None if scale is None else float(scale))
        if not self._papo_installed:  # the settings are the run's: once is enough
            self.trainer.actor_rollout_wg.set_papo_loss(setup)
            self._papo_installed = True
        add_mask_fields(data, [str(g) for g in rows.group_ids], rows.row_sources(), papo.seed, papo.step)

    def _debug_metrics(self, data: DataProto, old_log_probs: torch.Tensor) -> None:
        """verl's rollout-versus-actor probability difference (``training/rollout_probs_diff_*``), where the rollout
        returned its log-probs; over the trained rows only (anchors have no actor log-probs)."""
        if "rollout_log_probs" not in data.batch.keys():
            return
        from verl.utils.debug.metrics import calculate_debug_metrics

        probe = DataProto(batch=data.batch.clone(recurse=False))
        probe.batch["old_log_probs"] = old_log_probs.float()
        self._metrics.update(calculate_debug_metrics(probe))

    def _rollout_correction(self, data: DataProto) -> dict[str, float]:
        """verl's rollout-correction weights (decoupled mode), computed where verl's trainer computes them."""
        config = self.config.algorithm.get("rollout_correction", None)
        if config is None or "rollout_log_probs" not in data.batch.keys() or config.get("bypass_mode", False):
            return {}
        from verl.trainer.ppo.rollout_corr_helper import compute_rollout_correction_and_add_to_batch

        _, metrics = compute_rollout_correction_and_add_to_batch(data, config)  # updates data in place
        return dict(metrics)
