"""Every launch script's command line composes into a config that verl's own validation accepts.

Each script runs for real with a stand-in Python that records its argument list (the script's argument and
environment checks, paths made absolute, the override list exactly as it would reach Python). The overrides are then
composed in-process the way the entry point's ``@hydra.main`` composes them (same config module and name), and the
config goes through verl's ``validate_config``, the dataclass conversions verl's workers do (actor, rollout with
its agent-loop and checkpoint-engine sections, algorithm; the model section too, against a tiny local model) and
MARS's own check. The two reference command lines also run end to end with ``--cfg job`` in a real Python, and what
Hydra prints there must equal the in-process composition.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("verl")

REPO = Path(__file__).resolve().parents[1]
GRPO_SCRIPTS = [
    "examples/grpo_trainer/run_qwen2_5_vl-3b.sh",
    "examples/grpo_trainer/run_qwen2_5_vl-7b.sh",
    "examples/grpo_trainer/run_qwen3_vl-4b.sh",
    "examples/grpo_trainer/run_qwen3_vl-8b.sh",
    "examples/grpo_trainer/run_qwen2_5_vl-7b_multinode.sh",
]
DAPO_SCRIPTS = [
    "recipe/dapo/run_dapo_qwen2.5_3b.sh",
    "recipe/dapo/run_dapo_qwen2.5_7b.sh",
    "recipe/dapo/run_dapo_qwen3_vl_4b.sh",
]
# (engine, dataset, reward file, NUM_IMAGE) per script: both engines, both rewards, a fixed count and `any`
ARGUMENTS = {
    "examples/grpo_trainer/run_qwen2_5_vl-3b.sh": ("vllm", "llvip", "utils/reward_score/grounding.py", "2"),
    "examples/grpo_trainer/run_qwen2_5_vl-7b.sh": ("sglang", "spatialqa", "utils/reward_score/vqa.py", "2"),
    "examples/grpo_trainer/run_qwen3_vl-4b.sh": ("vllm", "nuscenes", "utils/reward_score/vqa.py", "6"),
    "examples/grpo_trainer/run_qwen3_vl-8b.sh": ("vllm", "llvip", "utils/reward_score/grounding.py", "2"),
    "examples/grpo_trainer/run_qwen2_5_vl-7b_multinode.sh": ("vllm", "llvip", "utils/reward_score/grounding.py", "2"),
    "recipe/dapo/run_dapo_qwen2.5_3b.sh": ("vllm", "llvip", "utils/reward_score/grounding.py", "2"),
    "recipe/dapo/run_dapo_qwen2.5_7b.sh": ("sglang", "ocrvqa", "utils/reward_score/vqa.py", "any"),
    "recipe/dapo/run_dapo_qwen3_vl_4b.sh": ("vllm", "llvip", "utils/reward_score/grounding.py", "2"),
}
MODEL_SECTION_CHECKED = "examples/grpo_trainer/run_qwen2_5_vl-3b.sh"  # its MODEL_PATH is the tiny local model


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """The layout the scripts expect ($DATA_DIR/$DATASET/{train,val}.parquet); composing never reads the files."""
    root = tmp_path_factory.mktemp("data")
    for dataset in {args[1] for args in ARGUMENTS.values()}:
        (root / dataset).mkdir()
        (root / dataset / "train.parquet").write_bytes(b"")
        (root / dataset / "val.parquet").write_bytes(b"")
    return root


def script_env(data_dir: Path, model: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TRAIN_FILE", "VAL_FILE", "NNODES", "N_GPUS")}
    env.update({"PYTHON": sys.executable, "MODEL_PATH": model, "DATA_DIR": str(data_dir), "RAY_ADDRESS": "auto"})
    env.update(extra)
    return env


ENTRY_POINTS = ("mars.main_ppo", "recipe.dapo.main_dapo")
REFERENCE_SCRIPTS = ["examples/grpo_trainer/run_qwen2_5_vl-3b.sh", "recipe/dapo/run_dapo_qwen2.5_3b.sh"]


@pytest.fixture(scope="module")
def recording_python(tmp_path_factory):
    """A `python` that writes its arguments, NUL-separated, to stdout instead of running anything."""
    path = tmp_path_factory.mktemp("bin") / "python"
    path.write_text('#!/bin/sh\nfor arg in "$@"; do printf \'%s\\0\' "$arg"; done\n')
    path.chmod(0o755)
    return path


def script_args(script: str) -> list[str]:
    return [*ARGUMENTS[script], "trainer.total_epochs=2"]


def script_model(script: str, tiny_model_dir) -> str:
    return str(tiny_model_dir) if script == MODEL_SECTION_CHECKED else "Qwen/Qwen2.5-VL-3B-Instruct"


def python_argv(script, data_dir, recording_python, tiny_model_dir) -> list[str]:
    """The argument list the script hands to Python (run from outside the repository)."""
    result = subprocess.run(
        ["sh", str(REPO / script), *script_args(script)], cwd=data_dir, capture_output=True, text=True, timeout=60,
        env=script_env(data_dir, script_model(script, tiny_model_dir), PYTHON=str(recording_python)),
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split("\0")[:-1]


def compose_like_entry_point(argv: list[str]):
    """``python -m MODULE OVERRIDES...`` composed in-process with the module's own config name."""
    import importlib

    from hydra import compose, initialize_config_module

    assert argv[0] == "-m" and argv[1] in ENTRY_POINTS, argv[:2]
    module = importlib.import_module(argv[1])
    with initialize_config_module(config_module="mars.config", version_base=None):
        return compose(config_name=module.CONFIG_NAME, overrides=argv[2:])


@pytest.fixture(scope="module")
def printed(data_dir, tiny_model_dir):
    """The reference scripts run end to end with `--cfg job` in a real Python (in parallel): rc, stdout, stderr."""
    running = {
        script: subprocess.Popen(
            ["sh", str(REPO / script), *script_args(script), "--cfg", "job"], cwd=data_dir,
            env=script_env(data_dir, script_model(script, tiny_model_dir)),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for script in REFERENCE_SCRIPTS
    }
    results = {}
    for script, process in running.items():
        stdout, stderr = process.communicate(timeout=180)
        results[script] = (process.returncode, stdout, stderr)
    return results


@pytest.fixture(scope="module")
def configs(data_dir, recording_python, tiny_model_dir):
    return {script: compose_like_entry_point(python_argv(script, data_dir, recording_python, tiny_model_dir))
            for script in ARGUMENTS}


def verl_accepts(cfg) -> None:
    """verl's validate_config, and the dataclasses verl builds from these sections when it starts."""
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import omega_conf_to_dataclass, validate_config
    from verl.workers.config import RolloutConfig

    from mars.engines.verl.checks import check_verl_config

    check_verl_config(cfg)
    validate_config(cfg, use_reference_policy=need_reference_policy(cfg), use_critic=need_critic(cfg))
    rollout = omega_conf_to_dataclass(cfg.actor_rollout_ref.rollout)
    assert isinstance(rollout, RolloutConfig)
    omega_conf_to_dataclass(cfg.actor_rollout_ref.rollout.checkpoint_engine)
    omega_conf_to_dataclass(cfg.algorithm)


def common_expectations(cfg, script) -> None:
    engine, dataset, reward, num_image = ARGUMENTS[script]
    assert cfg.algorithm.adv_estimator == "mars"
    assert cfg.trainer.engine == "verl" and cfg.trainer.use_v1 is False
    assert cfg.actor_rollout_ref.rollout.name == engine
    assert Path(cfg.data.train_files).name == "train.parquet" and Path(cfg.data.train_files).parent.name == dataset
    assert cfg.reward.custom_reward_function.path == str(REPO / reward)  # absolute: Ray workers load it by path
    assert str(cfg.mars.expected_num_images) == num_image
    assert cfg.actor_rollout_ref.rollout.limit_images == (6 if num_image == "any" else int(num_image))
    assert cfg.trainer.total_epochs == 2  # the trailing override reached Hydra


@pytest.mark.parametrize("script", GRPO_SCRIPTS)
def test_grpo_script_composes_a_valid_config(configs, script):
    cfg = configs[script]
    verl_accepts(cfg)
    common_expectations(cfg, script)
    actor, rollout = cfg.actor_rollout_ref.actor, cfg.actor_rollout_ref.rollout
    # SPEC §2, GRPO
    assert actor.optim.lr == 1e-6 and rollout.n == 14 and rollout.temperature == 1.0 and rollout.top_p == 0.9
    assert actor.use_kl_loss and actor.kl_loss_type == "low_var_kl" and actor.kl_loss_coef == 0.001
    assert actor.loss_agg_mode == "token-mean" and actor.clip_ratio == 0.2
    assert cfg.data.train_batch_size == 128 and actor.ppo_mini_batch_size == 32
    assert not cfg.algorithm.filter_groups.enable
    if script.endswith("multinode.sh"):
        assert cfg.trainer.nnodes == 2


@pytest.mark.parametrize("script", DAPO_SCRIPTS)
def test_dapo_script_composes_a_valid_config(configs, script):
    cfg = configs[script]
    verl_accepts(cfg)
    common_expectations(cfg, script)
    actor, rollout = cfg.actor_rollout_ref.actor, cfg.actor_rollout_ref.rollout
    # SPEC §2, DAPO
    assert actor.clip_ratio_low == 0.2 and actor.clip_ratio_high == 0.28 and actor.clip_ratio_c == 10.0
    assert actor.loss_agg_mode == "token-mean" and not actor.use_kl_loss and not cfg.algorithm.use_kl_in_reward
    overlong = cfg.reward.reward_kwargs.overlong_buffer_cfg
    assert overlong.enable and overlong.len == 4096 and overlong.penalty_factor == 1.0
    assert cfg.reward.reward_manager.name == "dapo"
    assert cfg.reward.reward_kwargs.max_resp_len == cfg.data.max_response_length > overlong.len
    groups = cfg.algorithm.filter_groups
    assert groups.enable and groups.metric == "seq_reward" and groups.max_num_gen_batches == 10
    assert cfg.mars.filter_mode == "mars"
    assert rollout.n == 12 and cfg.data.train_batch_size == 16
    assert actor.optim.lr == 1e-6 and actor.optim.lr_warmup_steps == 10 and actor.optim.weight_decay == 0.1


def test_model_section_builds_verl_model_config(configs, tiny_model_dir):
    """The model keys the scripts set are ones verl's HFModelConfig takes (loaded from a tiny local model)."""
    from verl.utils.config import omega_conf_to_dataclass

    cfg = configs[MODEL_SECTION_CHECKED]
    assert cfg.actor_rollout_ref.model.path == str(tiny_model_dir)
    model = omega_conf_to_dataclass(cfg.actor_rollout_ref.model)
    assert model.processor is not None and model.tokenizer is not None


@pytest.mark.parametrize("script", REFERENCE_SCRIPTS)
def test_reference_command_line_prints_its_config(printed, configs, script):
    """`sh SCRIPT vllm llvip utils/reward_score/grounding.py 2 --cfg job` in a real Python prints the config,
    with `adv_estimator: mars` under `algorithm`, equal to the in-process composition the other tests check."""
    from omegaconf import OmegaConf

    returncode, stdout, stderr = printed[script]
    assert returncode == 0, stderr[-3000:]
    algorithm = stdout.split("\nalgorithm:\n", 1)[1].split("\n\n", 1)[0]
    assert "  adv_estimator: mars" in algorithm.splitlines()
    assert OmegaConf.to_container(OmegaConf.create(stdout)) == OmegaConf.to_container(configs[script])


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        ((), {}, "usage: sh"),
        (("vllm", "llvip", "utils/reward_score/grounding.py", "2"), {"MODEL_PATH": ""}, "MODEL_PATH is not set"),
        (("vllm", "llvip", "utils/reward_score/grounding.py", "2"), {"DATA_DIR": ""}, "DATA_DIR is not set"),
        (("vllm", "missing", "utils/reward_score/grounding.py", "2"), {}, "missing/train.parquet not found"),
        (("hf", "llvip", "utils/reward_score/grounding.py", "2"), {}, "ENGINE must be vllm or sglang"),
        (("vllm", "llvip", "utils/reward_score/nope.py", "2"), {}, "reward file"),
        (("vllm", "llvip", "utils/reward_score/grounding.py", "two"), {}, "NUM_IMAGE must be"),
    ],
)
def test_script_errors_are_clear(data_dir, args, env, message):
    result = subprocess.run(
        ["sh", str(REPO / "examples/grpo_trainer/run_qwen2_5_vl-3b.sh"), *args],
        env=script_env(data_dir, "Qwen/Qwen2.5-VL-3B-Instruct", **env), capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_multinode_script_needs_a_ray_cluster(data_dir):
    result = subprocess.run(
        ["sh", str(REPO / "examples/grpo_trainer/run_qwen2_5_vl-7b_multinode.sh"), "vllm", "llvip",
         "utils/reward_score/grounding.py", "2"],
        env=script_env(data_dir, "Qwen/Qwen2.5-VL-7B-Instruct", RAY_ADDRESS=""), capture_output=True, text=True,
        timeout=30,
    )
    assert result.returncode == 2 and "RAY_ADDRESS is not set" in result.stderr
