"""Starting a MARS run on Ray: the config checks, then verl's ``run_ppo`` with MARS's task runner.

verl's ``run_ppo(config, task_runner_class)`` starts (or joins) the Ray cluster with verl's runtime environment and
runs ``task_runner_class.run(config)`` in a Ray actor. verl's own ``TaskRunner.run`` builds ``RayPPOTrainer``
by name, so ``MarsTaskRunner`` reuses its parent ``BaseTaskRunner``'s role and resource-pool set-up and builds
``MarsRayPPOTrainer`` instead.
"""

from __future__ import annotations

from typing import Any

from verl.trainer.main_ppo_v0 import BaseTaskRunner

from mars.engines.verl.checks import check_data_files, check_verl_config


class MarsTaskRunner(BaseTaskRunner):
    """Runs in a Ray actor: worker roles, datasets, the MARS trainer, ``fit``."""

    def run(self, config: Any) -> None:
        from pprint import pprint

        from omegaconf import OmegaConf
        from verl.trainer.ppo.utils import create_rl_dataset, create_rl_sampler, need_critic, need_reference_policy
        from verl.utils.config import omega_conf_to_dataclass, validate_config
        from verl.utils.dataset.rl_dataset import collate_fn
        from verl.workers.config import HFModelConfig

        from mars.advantage.verl_estimator import register
        from mars.engines.verl.trainer import MarsRayPPOTrainer

        register()  # the plugin entry point does it on `import verl`; this raises if it failed
        pprint(OmegaConf.to_container(config, resolve=True))
        OmegaConf.resolve(config)
        _, worker_group_cls = self.add_actor_rollout_worker(config)
        self.add_critic_worker(config)
        self.add_reward_model_resource_pool(config)
        self.add_teacher_model_resource_pool(config)
        validate_config(config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))

        model_config: HFModelConfig = omega_conf_to_dataclass(config.actor_rollout_ref.model)
        tokenizer, processor = model_config.tokenizer, model_config.processor
        datasets = {}
        for split, files in (("train", config.data.train_files), ("val", config.data.val_files)):
            datasets[split] = create_rl_dataset(
                files, config.data, tokenizer, processor, is_train=split == "train",
                max_samples=config.data.get(f"{split}_max_samples", -1),
            )
            check_dataset_images(datasets[split], config, f"{split} data ({files})")

        trainer = MarsRayPPOTrainer(
            config=config,
            tokenizer=tokenizer,
            processor=processor,
            role_worker_mapping=self.role_worker_mapping,
            resource_pool_manager=self.init_resource_pool_mgr(config),
            ray_worker_group_cls=worker_group_cls,
            train_dataset=datasets["train"],
            val_dataset=datasets["val"],
            collate_fn=collate_fn,
            train_sampler=create_rl_sampler(config.data, datasets["train"]),
        )
        trainer.init_workers()
        trainer.fit()


def check_dataset_images(dataset: Any, config: Any, where: str) -> None:
    """``mars.expected_num_images`` against every row of a dataset, before any worker starts."""
    from mars.engines.verl.samples import check_image_counts, dataset_image_counts, expected_num_images

    expected = expected_num_images(config.mars)
    counts = dataset_image_counts(dataset) if expected is not None else None
    if counts is not None:
        check_image_counts(counts, expected, where)


def run(config: Any) -> None:
    """Check the config (ours, then verl's), then train on Ray."""
    import ray
    from verl.trainer.main_ppo import run_ppo
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config
    from verl.utils.device import auto_set_device

    auto_set_device(config)
    check_verl_config(config)
    check_data_files(config)
    validate_config(config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))
    run_ppo(config, task_runner_class=ray.remote(MarsTaskRunner))
