"""verl's DataProto trainer with MARS's training step.

verl 0.9.1's ``main_ppo`` runs, by default (``trainer.use_v1=true``), the v1 trainer (``verl.trainer.ppo.v1``:
``PPOTrainerSync``), whose data lives in a TransferQueue (``KVBatchMeta``) and whose step samples a replay buffer;
it has no place for rows that are generated and scored but not trained on. Its ``trainer.use_v1=false`` path runs
``RayPPOTrainer`` (``verl.trainer.ppo.ray_trainer``), which drives the same worker groups, agent loop, reward loop
and checkpoint engine with ``DataProto`` batches. MARS subclasses that one.

``RayPPOTrainer.fit`` is a single loop with no per-step hook, so ``fit`` is overridden: each step is
``mars.training.step.train_step(VerlEngine(self), ...)``; checkpoints and resume (``_save_checkpoint``,
``_load_checkpoint``, with the dataloader's state), validation (``_validate``), weight sync to the rollout servers,
verl's data/timing/throughput metrics, rollout dumps and the ``Tracking`` logger are verl's own methods.
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch

from verl.trainer.ppo.ray_trainer import RayPPOTrainer

from mars.engines.verl.samples import expected_num_images, samples_from_batch
from mars.engines.verl.verl_engine import VerlEngine
from mars.training.prompts import DataExhausted, PromptStream

PROMPTS_FILE = "mars_prompts.json"  # in each global_step_N folder: the batches drawn up to that checkpoint


def verl_prompt_stream(dataloader: Any, expected_images: int | None = None, batches: int = 0,
                       max_epochs: int | None = None) -> PromptStream:
    """The step's ``next_prompts`` over verl's dataloader (see ``mars.training.prompts``)."""
    return PromptStream(lambda epoch, skip: iter(dataloader), len(dataloader), max_epochs, batches,
                        convert=lambda batch: samples_from_batch(batch, expected_images))


def quiet(line: str) -> None:
    """Where the task runner's step lines go: nowhere, the driver prints them from ``metrics.jsonl``."""


class MarsRayPPOTrainer(RayPPOTrainer):
    """``RayPPOTrainer`` whose step is MARS's ``train_step`` (rollouts and anchors in one generation request)."""

    engine: VerlEngine

    def __init__(self, config: Any, *args: Any, **kwargs: Any):
        from mars.training.preflight import check_prompt_lengths

        super().__init__(config, *args, **kwargs)
        # launch.run checked before the warm start and Ray; a trainer built another way checks here
        check_prompt_lengths(config, self.tokenizer, self.processor)

    def fit(self) -> None:
        from tqdm import tqdm
        from verl.utils.skip.skip_manager import SkipManager

        from mars.training.settings import StepSettings
        from mars.training.tracking import MetricsLog

        if self._dump_executor._shutdown:
            self._init_dump_executor()
        config = self.config
        # the run folder's metrics.jsonl and the short console line, as the local engine writes them; verl's
        # Tracking for every other trainer.logger backend (tensorboard, wandb, ...)
        tracking = MetricsLog(config.trainer.default_local_dir, config)
        self.global_steps = 0
        self._load_checkpoint()  # sets global_steps and the dataloader's position when resuming
        tracking.truncate_after(self.global_steps)  # steps logged after the last checkpoint are redone
        self.engine = VerlEngine(self)
        self.engine.sync_weights()

        if config.trainer.get("val_before_train", True) and self.global_steps == 0:  # as the local engine: not on resume
            metrics = self._validate()
            tracking.log(metrics, self.global_steps, quiet)
            if config.trainer.get("val_only", False):
                self._shutdown_dump_executor()
                return

        settings = StepSettings.from_config(config)
        self.prompts = prompts = self._prompt_stream()
        SkipManager.init(config)  # verl's rollout-skip hooks, stepped as verl's fit steps them
        progress = tqdm(total=self.total_training_steps, initial=self.global_steps, desc="Training Progress")
        self.max_steps_duration = 0.0
        self.global_steps += 1
        while self.global_steps <= self.total_training_steps:
            self._finish_async_checkpoints(blocking=False)
            SkipManager.set_step(self.global_steps)
            try:
                metrics = self.run_step(prompts, settings)
            except DataExhausted as exhausted:  # total_epochs bounds the run before total_training_steps
                progress.write(f"{exhausted}: the run ends after step {self.global_steps - 1} of "
                               f"{self.total_training_steps} (step {self.global_steps} is not trained)")
                break
            tracking.log(metrics, self.global_steps, quiet)  # the driver prints the line (launch.echo_steps)
            progress.update(1)
            self.global_steps += 1
        self._finish_async_checkpoints(blocking=True)
        progress.close()
        self._shutdown_dump_executor()

    def _prompt_stream(self) -> PromptStream:
        """verl's train dataloader as the step's prompt stream, from where the data stands: the batches drawn before
        the checkpoint resumed from (0 on a fresh run). The dataloader's own state (restored by ``_load_checkpoint``)
        says which batch comes next, so each epoch is simply a new pass over it."""
        return verl_prompt_stream(self.train_dataloader, expected_num_images(self.config.mars),
                                  getattr(self, "_resumed_batches", 0), int(self.config.trainer.total_epochs))

    def _save_checkpoint(self) -> None:
        """verl's checkpoint, plus the number of batches drawn (DAPO draws several per step), then the manifest that
        marks it complete (``mars.training.checkpoint``; verl writes in place, so a stale manifest of the same
        step goes first). With ``actor.checkpoint.async_save`` the shards are still being written when verl's save
        returns: no manifest then, and a resume takes such checkpoints unverified."""
        from mars.training.checkpoint import MANIFEST, write_manifest

        folder = os.path.join(self.config.trainer.default_local_dir, f"global_step_{self.global_steps}")
        os.makedirs(folder, exist_ok=True)
        if os.path.exists(os.path.join(folder, MANIFEST)):
            os.remove(os.path.join(folder, MANIFEST))
        prompts = getattr(self, "prompts", None)
        if prompts is not None:
            with open(os.path.join(folder, PROMPTS_FILE), "w") as f:
                json.dump({"batches": prompts.batches}, f)
        super()._save_checkpoint()
        if not self.config.actor_rollout_ref.actor.get("checkpoint", {}).get("async_save", False):
            write_manifest(folder)

    def _load_checkpoint(self) -> None:
        """verl's resume, then the dataloader's position restored unconditionally: verl skips it when the step number
        is a multiple of the epoch's batches, which under dynamic sampling says nothing about the data's position."""
        super()._load_checkpoint()
        self._resumed_batches = 0
        if self.global_steps == 0:
            return
        folder = self._checkpoint_folder()
        data = os.path.join(folder, "data.pt")
        if os.path.exists(data):
            self.train_dataloader.load_state_dict(torch.load(data, weights_only=False))
        saved = os.path.join(folder, PROMPTS_FILE)
        if os.path.exists(saved):
            with open(saved) as f:
                self._resumed_batches = int(json.load(f)["batches"])
        else:  # a checkpoint of an older MARS: one batch per step
            self._resumed_batches = self.global_steps

    def _checkpoint_folder(self) -> str:
        """The global_step_N folder verl's _load_checkpoint resumed from."""
        trainer = self.config.trainer
        if trainer.resume_mode == "resume_path":
            return os.path.abspath(str(trainer.resume_from_path))
        return os.path.join(os.path.abspath(str(trainer.default_local_dir)), f"global_step_{self.global_steps}")

    def _val_metrics_update(self, data_sources, sample_uids, reward_extra_infos_dict, sample_turns):
        """verl's validation metrics plus the keys the local engine logs (``mars.training.validation``), so both
        engines' run folders carry the same ones."""
        from mars.training.validation import validation_metrics

        metrics = super()._val_metrics_update(data_sources, sample_uids, reward_extra_infos_dict, sample_turns)
        metrics.update(validation_metrics(None, reward_extra_infos_dict))
        return metrics

    def _validate(self, merged: bool = False):
        """verl's validation, plus the accuracy per view the local engine logs (``mars.val_views``): the validation
        prompts and their mono-source variants answered through the engine in one call; with Faithful-MR1's anchoring,
        where the focus token looks (``perception/focus_in_box``). verl's reward manager
        shapes every row it scores (DAPO's overlong penalty), which the view accuracies, read from the reward's
        accuracy/IoU parts, do not use."""
        from mars.training.validation import is_view_metric, validate

        from mars.hf.warm_start import focus_settings

        metrics = super()._validate(merged=merged)
        engine = getattr(self, "engine", None)
        focus = focus_settings(self.config)
        if engine is None or not (self.config.mars.get("val_views", True) or focus):
            return metrics
        expected = expected_num_images(self.config.mars)
        samples = [s for batch in self.val_dataloader for s in samples_from_batch(batch, expected)]
        if self.config.mars.get("val_views", True):
            engine.validating = True
            try:
                views = validate(engine, samples, self.config, shaping=True)
            finally:
                engine.validating = False
            metrics.update({key: value for key, value in views.items() if is_view_metric(key)})
        if focus:  # Faithful-MR1's anchoring: where the focus token looks
            metrics.update(engine.focus_metrics(samples, focus["token"], focus["layer"]))
        return metrics

    def _finish_async_checkpoints(self, blocking: bool) -> None:
        """Completes checkpoints saved with actor.checkpoint.async_save, where the worker group supports it."""
        finalize = getattr(self.actor_rollout_wg, "async_calls_finalize_fn_exec", None)
        if finalize is not None:
            finalize(blocking=blocking)

    def run_step(self, prompts: PromptStream, settings: Any) -> dict[str, float]:
        """One step: MARS's train_step, then verl's checkpoint, weight sync, validation and metrics."""
        from verl.trainer.ppo.metric_utils import (
            compute_data_metrics,
            compute_throughout_metrics,
            compute_timing_metrics,
            compute_variance_proxy_metrics,
        )
        from verl.utils.checkpoint.checkpoint_manager import should_save_ckpt_esi
        from verl.utils.debug import marked_timer

        from mars.training.step import train_step

        trainer_cfg = self.config.trainer
        step = self.global_steps
        is_last_step = step >= self.total_training_steps
        profiled = step in (self.config.global_profiler.get("steps", None) or [])
        self._start_profiling(profiled)
        step_metrics = train_step(self.engine, prompts, step, settings)
        timing_raw = {k[len("timing_s/"):]: v for k, v in step_metrics.items() if k.startswith("timing_s/")}
        self.max_steps_duration = max(self.max_steps_duration, timing_raw.get("step", 0.0))

        close_to_expiry = should_save_ckpt_esi(
            max_steps_duration=self.max_steps_duration, redundant_time=trainer_cfg.esi_redundant_time
        )
        if trainer_cfg.save_freq > 0 and (is_last_step or step % trainer_cfg.save_freq == 0 or close_to_expiry):
            with marked_timer("save_checkpoint", timing_raw):
                self._save_checkpoint()  # before the weight sync, while the rollout servers sleep (as verl does)
        with marked_timer("update_weights", timing_raw):
            self.engine.sync_weights()

        metrics: dict[str, float] = {}
        if trainer_cfg.test_freq > 0 and (is_last_step or step % trainer_cfg.test_freq == 0):
            with marked_timer("testing", timing_raw):
                metrics.update(self._validate())
        self._stop_profiling(profiled, run_command=profiled and is_last_step)

        batch = self.engine.last_update
        if batch is not None:
            metrics.update(compute_data_metrics(batch=batch, use_critic=False))
            metrics.update(compute_timing_metrics(batch=batch, timing_raw=timing_raw))
            grad_norm = step_metrics.get("actor/grad_norm", None)  # needs sum_pi_squared from the old log-probs
            metrics.update(compute_variance_proxy_metrics(batch=batch, gradient_norm=grad_norm))
            if not is_last_step and hasattr(self.train_dataset, "on_batch_end"):
                self.train_dataset.on_batch_end(batch=batch)  # verl's hook for datasets that change while training
            if "step" in timing_raw:
                n_gpus = self.resource_pool_manager.get_n_gpus()
                metrics.update(compute_throughout_metrics(batch=batch, timing_raw=timing_raw, n_gpus=n_gpus))
            rollout_data_dir = trainer_cfg.get("rollout_data_dir", None)
            if rollout_data_dir:
                extra_keys = batch.meta_info.get("reward_extra_keys", []) or []
                extras = {k: batch.non_tensor_batch[k] for k in extra_keys if k in batch.non_tensor_batch}
                self._log_rollout_data(batch, extras, timing_raw, rollout_data_dir)
        metrics.update(step_metrics)  # the step's own numbers win where both name one (same rows)
        metrics.update({"training/global_step": step, "training/epoch": prompts.epoch})
        return metrics
