"""What the verl engine refuses before anything starts, each with the fix in its message.

These are the settings under which MARS's step would silently compute something else than verl's trainer would:
it never computes a critic, KL inside the reward, or log-probs from the rollout engine (bypass mode), and it
samples with the rollout's settings.
"""

from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf

from mars.config.compose import ConfigError
from mars.engines.verl.samples import expected_num_images
from mars.training.settings import AnchorSettings


class VerlConfigError(ConfigError):
    """A setting the MARS verl engine does not support; the message names the key and the fix."""


def check_verl_config(cfg: Any) -> None:
    """Raise ``VerlConfigError`` for a config the verl engine cannot run as asked."""
    problems = []
    if str(cfg.trainer.get("engine", "verl")) != "verl":
        problems.append(
            f"trainer.engine={cfg.trainer.engine}: this entry point runs the verl engine (trainer.engine=verl); "
            "for the local engine use `mars train`"
        )
    if cfg.trainer.get("use_v1", False):
        problems.append(
            "trainer.use_v1=true: MARS runs on verl's DataProto trainer (RayPPOTrainer, trainer.use_v1=false); the v1 "
            "TransferQueue trainer has no place for anchor rows"
        )
    if str(cfg.algorithm.adv_estimator) in ("gae",) or cfg.critic.get("enable", None):
        problems.append(
            f"algorithm.adv_estimator={cfg.algorithm.adv_estimator} / critic.enable: the MARS step uses outcome "
            "estimators (mars, grpo, ...) and trains no critic"
        )
    if cfg.algorithm.get("use_kl_in_reward", False):
        problems.append(
            "algorithm.use_kl_in_reward=true: MARS normalises the task rewards of rollouts and anchors together; use "
            "the KL loss instead (actor_rollout_ref.actor.use_kl_loss=true)"
        )
    correction = cfg.algorithm.get("rollout_correction", None)
    if correction is not None and correction.get("bypass_mode", False):
        problems.append(
            "algorithm.rollout_correction.bypass_mode=true is not supported: the step recomputes old log-probs"
        )
    rollout = cfg.actor_rollout_ref.rollout
    if int(rollout.response_length) != int(cfg.data.max_response_length):
        problems.append(
            f"actor_rollout_ref.rollout.response_length={rollout.response_length} differs from "
            f"data.max_response_length={cfg.data.max_response_length}: keep them equal"
        )
    anchor = AnchorSettings.from_config(cfg).sampling
    if anchor.do_sample and (anchor.temperature, anchor.top_p) != (float(rollout.temperature), float(rollout.top_p)):
        problems.append(
            "mars.anchor.do_sample=true with a temperature/top_p other than the rollout's: verl samples every row of "
            "one generation call alike; set mars.anchor.temperature/top_p to actor_rollout_ref.rollout's"
        )
    if str(cfg.mars.get("on_bad_row", "error")) != "error":
        problems.append(
            f"mars.on_bad_row={cfg.mars.on_bad_row}: the verl engine reads the parquet files through verl's dataset, "
            "which cannot skip rows; fix the rows `mars data check FILE` lists (skipping works on the local engine, "
            "trainer.engine=local)"
        )
    problems += micro_batch_problems(cfg)
    try:
        expected_num_images(cfg.mars)
    except ValueError as exc:
        problems.append(str(exc))
    if problems:
        raise VerlConfigError("the MARS verl engine cannot run this config:\n  - " + "\n  - ".join(problems))


def micro_batch_problems(cfg: Any) -> list[str]:
    """verl's workers split each rank's rows into log-prob micro-batches and stop (an assertion, at the first step,
    after minutes of start-up) when the micro-batch size does not divide them; verl's own config check misses it."""
    ar = cfg.actor_rollout_ref
    if ar.actor.get("use_dynamic_bsz", False):
        return []
    world = int(cfg.trainer.n_gpus_per_node) * int(cfg.trainer.nnodes)
    rows = int(cfg.data.train_batch_size) * int(ar.rollout.n)
    if world <= 0 or rows % world:
        return []  # verl's validate_config names this one
    per_rank = rows // world
    keys = ["actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu"]
    if ar.actor.get("use_kl_loss", False):
        keys.append("actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu")
    problems = []
    for key in keys:
        micro = OmegaConf.select(cfg, key)
        if micro and per_rank % int(micro):
            divisors = [d for d in range(1, per_rank + 1) if per_rank % d == 0]
            problems.append(
                f"{key}={micro} does not divide the {per_rank} rows each of the {world} trainer rank(s) computes "
                f"log-probs for (data.train_batch_size x actor_rollout_ref.rollout.n / GPUs = {rows} / {world}): "
                f"verl's workers stop at the first step; use one of {divisors}"
            )
    return problems


def check_data_files(cfg: Any) -> None:
    """Run the dataset checker (headers only, no full decode) on the train and val files before Ray starts.

    A bad row would otherwise surface as an assertion inside verl's dataset, deep in a run; this names the file,
    the row and the fix, like ``mars data check``."""
    from mars.data.check import check_dataset
    from mars.data.samples import BadDataError

    for key in ("train_files", "val_files"):
        files = cfg.data.get(key)
        for path in [files] if isinstance(files, str) else list(files or []):
            report = check_dataset(str(path), decode=False)
            if not report.ok:
                raise BadDataError(f"data.{key}: {path} has bad rows:\n{report.summary()}\n"
                                   f"(fix them; `mars data check {path}` lists every one)")
