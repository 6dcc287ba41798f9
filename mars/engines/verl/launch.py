"""Starting a MARS run on Ray: the device settings, the checks, the model, Ray, verl's ``run_ppo``, the summary.

    run(config)
      1. the machine: the rollout backend, and on a CPU the settings verl needs (``device_settings``); MARS's checks
      2. the run directory (one configuration: a conflict stops here), then the warm-started model
         (``mars.sft_warmup``; cached, shared with the local engine), the data files' check, verl's ``validate_config``
      3. Ray: a local cluster started here (always shut down: at the end, on an error, Ctrl-C or SIGTERM), or the
         cluster ``RAY_ADDRESS`` names, joined with MARS's code shipped to it
      4. verl's ``run_ppo`` with ``MarsTaskRunner``: worker groups, datasets, ``MarsRayPPOTrainer.fit``
      5. the summary both engines print and write (``mars.training.summary``)

verl's ``TaskRunner.run`` builds ``RayPPOTrainer`` by name, so ``MarsTaskRunner`` reuses its parent
``BaseTaskRunner``'s role and resource-pool set-up and builds ``MarsRayPPOTrainer`` instead.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path
from typing import Any, Iterator

from verl.trainer.main_ppo_v0 import BaseTaskRunner

from mars.engines.verl.checks import check_data_files, check_verl_config


class MarsTaskRunner(BaseTaskRunner):
    """Runs in a Ray actor: worker roles, datasets, the MARS trainer, ``fit``."""

    def add_actor_rollout_worker(self, config: Any):
        """verl's actor/rollout/ref role, played by MARS's subclass of verl's worker (it adds the perception pass,
        ``mars.engines.verl.perception``)."""
        import ray
        from verl.trainer.ppo.utils import Role
        from verl.workers.engine_workers import ActorRolloutRefWorker

        from mars.engines.verl.perception import MarsActorRolloutRefWorker

        actor_cls, group_cls = super().add_actor_rollout_worker(config)
        if actor_cls is not ActorRolloutRefWorker:
            raise RuntimeError(f"verl's actor worker is {actor_cls.__name__}, not ActorRolloutRefWorker: MARS's "
                               "perception pass extends the latter (is the pinned verl installed?)")
        for role in (Role.ActorRollout, Role.ActorRolloutRef):
            if role in self.role_worker_mapping:
                self.role_worker_mapping[role] = ray.remote(MarsActorRolloutRefWorker)
        return MarsActorRolloutRefWorker, group_cls

    def run(self, config: Any) -> None:
        from omegaconf import OmegaConf
        from verl.trainer.ppo.utils import create_rl_dataset, create_rl_sampler
        from verl.utils.config import omega_conf_to_dataclass
        from verl.utils.dataset.rl_dataset import collate_fn
        from verl.workers.config import HFModelConfig

        from mars.engines.verl.ray_trainer import MarsRayPPOTrainer

        OmegaConf.resolve(config)
        _, worker_group_cls = self.add_actor_rollout_worker(config)
        self.add_critic_worker(config)
        self.add_reward_model_resource_pool(config)
        self.add_teacher_model_resource_pool(config)
        validate_quietly(config)

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


# ---------------------------------------------------------------------------------------------------- Ray


PLUGIN_MODULE = "mars.verl_plugin"


def shipped_packages() -> list[str]:
    """The directories of MARS's packages, which Ray copies to every node of a cluster it joins."""
    import mars
    import utils

    return [str(Path(mars.__file__).parent), str(Path(utils.__file__).parent)]


def ray_init_kwargs(config: Any, on_cpu: bool, joining: bool = False) -> dict[str, Any]:
    """``ray.init`` arguments: verl's runtime environment and ``ray_kwargs.ray_init``, plus
      - in every Ray process, MARS's verl plugin through ``VERL_USE_EXTERNAL_MODULES`` (verl imports it on
        ``import verl``), so the estimator, the hf rollout and the verl fixes exist even on a node where the
        package's entry points are not installed;
      - when joining a cluster (``RAY_ADDRESS``): the ``mars`` and ``utils`` packages as ``py_modules``, so every
        node runs the driver's code (verl and the other dependencies must be installed there);
      - on a CPU: logical GPUs (verl's resource pools ask for one per worker), enough logical CPUs for every actor,
        the CPU platform and ``trainer.cpu_threads`` torch threads per process (default 1: no oversubscription)."""
    from omegaconf import OmegaConf
    from verl.trainer.constants_ppo import get_ppo_ray_runtime_env

    init = OmegaConf.to_container(config.ray_kwargs.get("ray_init", {}), resolve=True) or {}
    runtime_env = OmegaConf.to_container(
        OmegaConf.merge(get_ppo_ray_runtime_env(config), init.pop("runtime_env", {}) or {}), resolve=True)
    env = runtime_env.setdefault("env_vars", {})
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    modules = [m for m in (env.get("VERL_USE_EXTERNAL_MODULES") or "").split(",") if m]
    env["VERL_USE_EXTERNAL_MODULES"] = ",".join(dict.fromkeys([*modules, PLUGIN_MODULE]))
    if joining:
        runtime_env["py_modules"] = list(dict.fromkeys([*(runtime_env.get("py_modules") or []), *shipped_packages()]))
        init.pop("num_cpus", None)  # a running cluster has its resources
    if on_cpu:
        gpus = int(config.trainer.n_gpus_per_node) * int(config.trainer.nnodes)
        threads = str(int(config.trainer.get("cpu_threads", 1) or 1))
        env.update({"VERL_PLATFORM": "cpu", "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads})
        if not joining:
            init.setdefault("num_gpus", gpus)
            if init.get("num_cpus") is None:
                init["num_cpus"] = max(os.cpu_count() or 1, 4 * gpus + 8)  # logical: actors, not cores
    if init.get("num_cpus") is None:
        init.pop("num_cpus", None)
    runtime_env = {k: v for k, v in runtime_env.items() if v is not None}
    return {**init, "runtime_env": runtime_env}


@contextlib.contextmanager
def ray_cluster(config: Any, on_cpu: bool, write=print) -> Iterator[bool]:
    """Connect to Ray: start a local cluster, or join the one ``RAY_ADDRESS`` names (shipping MARS's code to it).
    The connection is closed on every way out (the end, an error, Ctrl-C, SIGTERM): a cluster started here stops
    with it, so no Ray process outlives the run; a joined cluster keeps running. Yields whether it started Ray."""
    import ray

    if ray.is_initialized():
        yield False
        return
    joining = bool(os.environ.get("RAY_ADDRESS"))
    kwargs = ray_init_kwargs(config, on_cpu, joining)
    if on_cpu:
        os.environ["VERL_PLATFORM"] = "cpu"  # the driver too
    ray.init(**kwargs)
    previous = signal.getsignal(signal.SIGTERM)

    def terminate(signum, frame):  # SIGTERM ends the run like Ctrl-C: through the finally below
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, terminate)
    cut_short = False
    try:
        yield not joining
    except BaseException:
        cut_short = True
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
        if joining:  # the cluster is someone else's: only this connection ends
            ray.shutdown()
        else:
            if cut_short:  # said only when the wait may be felt; after a run it would print above its last lines,
                write("shutting down Ray ...")  # which reach this process from the workers a moment later
            shutdown_ray(kill_after=SHUTDOWN_GRACE_S, write=write)


SHUTDOWN_GRACE_S = 60.0


def shutdown_ray(kill_after: float, write=print) -> None:
    """``ray.shutdown()`` of a cluster started here, bounded: a watchdog kills this process's children (the GCS, the
    raylet and through it the workers) if the shutdown has not returned after ``kill_after`` seconds (a worker stuck
    in start-up when Ctrl-C came), so an interrupted run neither hangs nor leaves Ray behind."""
    import threading

    import ray

    def kill_children() -> None:
        import psutil  # a dependency of Ray

        children = psutil.Process().children(recursive=True)
        write(f"Ray did not shut down within {kill_after:g} s: stopping its {len(children)} processes")
        for child in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()

    watchdog = threading.Timer(kill_after, kill_children)
    watchdog.daemon = True
    watchdog.start()
    try:
        ray.shutdown()
    finally:
        watchdog.cancel()


# ---------------------------------------------------------------------------------------------------- the run


def prepare_config(config: Any, write=print) -> bool:
    """Step 1 of ``run``: the machine's settings and MARS's checks, and the absolute paths Ray's workers need, all in
    ``config`` (so ``config.yaml`` records what runs). Returns whether the run is on the CPU."""
    from omegaconf import open_dict

    from mars.engines.verl.device_settings import apply_device_settings
    from mars.perception.methods import perception_settings
    from mars.training.run_dir import absolutize_paths

    with open_dict(config):
        on_cpu = apply_device_settings(config, write)  # first: a backend that cannot run here stops at once
        check_verl_config(config)
        papo = perception_settings(config)
        if papo.name == "papo" and papo.entropy_coef != 0:  # its entropy terms need verl's entropies, with gradient
            config.actor_rollout_ref.actor.calculate_entropy = True
        absolutize_paths(config)  # Ray workers do not share the driver's working directory
        config.trainer.default_local_dir = os.path.abspath(str(config.trainer.default_local_dir))
        config.trainer.experiment_name = str(config.trainer.experiment_name)  # MARS's resolver stays in this process
    if not on_cpu:
        from verl.utils.device import auto_set_device

        auto_set_device(config)
    return on_cpu


def validate_quietly(config: Any) -> None:
    """verl's ``validate_config`` without its success line (said to every run); a bad value still raises verl's
    error. Its notice that MARS's estimators need no critic is silenced in every process (``mars.verl_plugin``)."""
    import io

    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    with contextlib.redirect_stdout(io.StringIO()):
        validate_config(config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))


def run(config: Any, write=print):
    """Train on Ray (see the module docstring); returns the run's ``mars.training.summary.RunResult``."""
    import ray
    from omegaconf import open_dict
    from verl.trainer.main_ppo import run_ppo

    from mars.hf.warm_start import warm_started_model
    from mars.training.preflight import check_before_warm_start
    from mars.training.run_dir import prepare_run_dir
    from mars.training.summary import result_of, summarize_run
    from mars.training.tracking import truncate_metrics

    on_cpu = prepare_config(config, write)
    run_dir = prepare_run_dir(config, write)  # before any training: another run's directory stops here
    if run_dir.status == "complete":
        return result_of(run_dir.path, run_dir.result)
    check_before_warm_start(config)  # what would stop the warm start, or verl inside Ray (an empty dataloader)
    resumed_step = choose_checkpoint(config, run_dir.path, write) if run_dir.status == "resume" else -1
    # steps logged after the checkpoint are redone (the task runner would drop them too, once it runs)
    truncate_metrics(run_dir.path / "metrics.jsonl", resumed_step, write)
    with open_dict(config):  # the folder's config.yaml names the base model; the warm start is derived from it
        config.actor_rollout_ref.model.path = warm_started_model(config, write)
    check_data_files(config)
    validate_quietly(config)
    console = "console" in config.trainer.logger
    with ray_cluster(config, on_cpu, write), echo_steps(run_dir.path / "metrics.jsonl", resumed_step,
                                                        write if console else (lambda line: None)):
        run_ppo(config, task_runner_class=ray.remote(MarsTaskRunner))
    return summarize_run(config, run_dir.path, write=write, engine="verl")


@contextlib.contextmanager
def echo_steps(path: Path, after: int, write=print, every: float = 0.5) -> Iterator[None]:
    """Each step's short line, printed by this process from ``metrics.jsonl`` as the task runner (a Ray actor)
    appends to it, for the steps after ``after``: in order, and all of them before the run's closing lines (a Ray
    worker's own output reaches the driver late, and what is in flight when Ray shuts down never does)."""
    import threading

    from mars.training.tracking import console_line, parse_metrics

    last = [after]
    stop = threading.Event()

    def echo() -> None:
        try:  # a line still being written is left out as torn: it is read again next time
            entries = parse_metrics(path)[0] if path.exists() else []
        except (OSError, ValueError):
            return
        for entry in entries:
            if int(entry["step"]) > last[0]:
                write(console_line(entry))
                last[0] = int(entry["step"])

    def follow() -> None:
        while not stop.wait(every):
            echo()

    thread = threading.Thread(target=follow, name="mars-echo-steps", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        echo()


def choose_checkpoint(config: Any, run_dir: Path, write=print) -> int:
    """Before Ray: what interrupted saves left is removed, and verl's resume (``resume_mode=auto``: the pointer file's
    checkpoint) is pointed at the newest checkpoint that verifies against its manifest, with a note for each one
    passed over; none verifying stops here (``CheckpointError``), a ``resume_from_path`` that fails too. Returns
    the step resumed from (-1: none, the run starts at step 0)."""
    from mars.training.checkpoint import CheckpointError, clean_leftovers, prepare_resume, verify_checkpoint

    leftovers = clean_leftovers(run_dir)
    if leftovers:
        write(f"removed what an interrupted save left in {run_dir}: {', '.join(sorted(leftovers))}")
    mode = str(config.trainer.get("resume_mode", "auto"))
    folder = None
    if mode == "resume_path" and config.trainer.get("resume_from_path"):
        folder = Path(str(config.trainer.resume_from_path))
        problem = verify_checkpoint(folder) if folder.is_dir() else "no such folder"
        if problem is not None:
            raise CheckpointError(f"trainer.resume_from_path={folder} cannot be resumed from: {problem}")
    elif mode == "auto":
        folder, notes = prepare_resume(run_dir)
        for note in notes:
            write(note)
    return int(folder.name.rsplit("_", 1)[1]) if folder is not None else -1


def run_entry_point(config: Any) -> None:
    """``python -m mars.main_ppo`` / ``python -m recipe.dapo.main_dapo``: the config Hydra composed goes through what
    ``mars train``'s composition does (``finalize_config``), then ``run``; a refused setting is one message, exit 2."""
    import sys

    from mars.config.compose import ConfigError, finalize_config
    from mars.data.samples import BadDataError
    from mars.training.checkpoint import CheckpointError
    from mars.training.run_dir import RunDirConflict
    from mars.training.settings import SettingsError

    try:
        run(finalize_config(config))
    except (ConfigError, BadDataError, RunDirConflict, SettingsError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
