"""verl's DataProto trainer with MARS's training step.

verl 0.9.1's ``main_ppo`` runs, by default (``trainer.use_v1=true``), the v1 trainer (``verl.trainer.ppo.v1``:
``PPOTrainerSync``), whose data lives in a TransferQueue (``KVBatchMeta``) and whose step samples a replay buffer;
it has no place for rows that are generated and scored but not trained on. Its ``trainer.use_v1=false`` path runs
``RayPPOTrainer`` (``verl.trainer.ppo.ray_trainer``), which drives the same worker groups, agent loop, reward loop
and checkpoint engine with ``DataProto`` batches. MARS subclasses that one.

``RayPPOTrainer.fit`` is a single loop with no per-step hook, so ``fit`` is overridden: each step is
``mars.trainer.step.train_step(VerlEngine(self), ...)``; checkpoints and resume (``_save_checkpoint``,
``_load_checkpoint``, with the dataloader's state), validation (``_validate``), weight sync to the rollout servers,
verl's data/timing/throughput metrics, rollout dumps and the ``Tracking`` logger are verl's own methods.
"""

from __future__ import annotations

from typing import Any

from verl.trainer.ppo.ray_trainer import RayPPOTrainer

from mars.engines.verl.engine import VerlEngine
from mars.engines.verl.samples import VerlPromptSample, expected_num_images, samples_from_batch


class PromptStream:
    """The step's ``next_prompts``: batches of verl's train dataloader, across epochs.

    DAPO's dynamic sampling draws several batches per step; the dataloader's own state (saved in every verl
    checkpoint) says where the next one starts, so a resumed run continues with the next unseen batch."""

    def __init__(self, dataloader: Any, expected_images: int | None = None, epoch: int = 0):
        self.dataloader = dataloader
        self.expected_images = expected_images
        self.epoch = epoch
        self._batches = None

    def __call__(self) -> list[VerlPromptSample]:
        if self._batches is None:
            self._batches = iter(self.dataloader)
        try:
            batch = next(self._batches)
        except StopIteration:
            self.epoch += 1
            self._batches = iter(self.dataloader)
            batch = next(self._batches)
        return samples_from_batch(batch, self.expected_images)


class MarsRayPPOTrainer(RayPPOTrainer):
    """``RayPPOTrainer`` whose step is MARS's ``train_step`` (rollouts and anchors in one generation request)."""

    engine: VerlEngine

    def fit(self) -> None:
        from tqdm import tqdm
        from verl.utils.tracking import Tracking

        from mars.trainer.step import StepSettings

        if self._dump_executor._shutdown:
            self._init_dump_executor()
        config = self.config
        tracking = Tracking(
            project_name=config.trainer.project_name,
            experiment_name=config.trainer.experiment_name,
            default_backend=config.trainer.logger,
            config=_plain(config),
        )
        self.global_steps = 0
        self._load_checkpoint()  # sets global_steps and the dataloader's position when resuming
        self.engine = VerlEngine(self)
        self.engine.sync_weights()

        if config.trainer.get("val_before_train", True):
            metrics = self._validate()
            tracking.log(data=metrics, step=self.global_steps)
            if config.trainer.get("val_only", False):
                self._shutdown_dump_executor()
                return

        settings = StepSettings.from_config(config)
        steps_per_epoch = max(len(self.train_dataloader), 1)
        epoch = self.global_steps // steps_per_epoch
        prompts = PromptStream(self.train_dataloader, expected_num_images(config.mars), epoch)
        progress = tqdm(total=self.total_training_steps, initial=self.global_steps, desc="Training Progress")
        self.max_steps_duration = 0.0
        self.global_steps += 1
        while self.global_steps <= self.total_training_steps:
            self._finish_async_checkpoints(blocking=False)
            metrics = self.run_step(prompts, settings)
            tracking.log(data=metrics, step=self.global_steps)
            progress.update(1)
            self.global_steps += 1
        self._finish_async_checkpoints(blocking=True)
        progress.close()
        self._shutdown_dump_executor()

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
        )
        from verl.utils.checkpoint.checkpoint_manager import should_save_ckpt_esi
        from verl.utils.debug import marked_timer

        from mars.trainer.step import train_step

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


def _plain(config: Any) -> Any:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(config, resolve=True)
