"""What the verl engine needs from the machine it starts on: the rollout backend, and on a CPU the settings verl needs.

On a machine without an accelerator the verl engine runs on MARS's CPU platform (``cpu_platform``) with these
settings, applied to the config before anything starts and printed in one line:

    trainer.device=cpu                    verl's platform is ``cpu`` in every Ray process (VERL_PLATFORM)
    actor/ref strategy=fsdp2              FSDP1 refuses CPU parameters (``device_id`` + ``sync_module_states``)
    attn_implementation=sdpa              flash-attention needs CUDA
    use_remove_padding=false              the remove-padding path needs flash-attention
    use_torch_compile=false               compiling a tiny model costs more than it saves
    actor/ref mixed_precision             float32 parameters in FSDP (verl's default is bf16), as the local engine
      .param_dtype=fp32                   on a CPU: bf16 log-probs near -8 step by 1/16, which zeroes PAPO's KL
                                          and coarsens every ratio; most CPUs have no fast bf16 either
    rollout.name=hf                       when none was named (vLLM and SGLang need a GPU); the hf rollout runs
                                          one model per trainer rank: tensor/data/pipeline parallel sizes 1, and
                                          full_determinism (each row's sampling seeded by step, call and row)
    agent/reward/dataloader workers=1/1/0 one process each: a few cores, no oversubscription

On GPU nodes nothing is changed; only a rollout backend that is not installed is refused, before Ray starts.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from omegaconf import open_dict

from mars.data.samples import run_seed
from mars.engines.verl.checks import VerlConfigError

GPU_ROLLOUTS = {"vllm": "vllm", "sglang": "sglang", "trtllm": "tensorrt_llm"}


class RolloutBackendError(VerlConfigError):
    """The rollout backend asked for cannot run on this machine; the message names the setting and the fix."""


def has_accelerator() -> bool:
    import torch

    return torch.cuda.is_available() or (hasattr(torch, "npu") and torch.npu.is_available())


def rollout_name(cfg: Any) -> str | None:
    from omegaconf import OmegaConf

    rollout = cfg.actor_rollout_ref.rollout
    return None if OmegaConf.is_missing(rollout, "name") or rollout.name is None else str(rollout.name)


def check_rollout_backend(cfg: Any, accelerator: bool) -> None:
    """Refuse a rollout backend that cannot run here, naming the setting and the alternative."""
    name = rollout_name(cfg)
    if name in GPU_ROLLOUTS and not accelerator:
        raise RolloutBackendError(
            f"actor_rollout_ref.rollout.name={name}: {name} needs a GPU and this machine has none. Use "
            "actor_rollout_ref.rollout.name=hf (transformers on the CPU, for debugging) or run on a GPU node"
        )
    if name in GPU_ROLLOUTS and importlib.util.find_spec(GPU_ROLLOUTS[name]) is None:
        raise RolloutBackendError(
            f"actor_rollout_ref.rollout.name={name}: {name} is not installed. Install it with "
            f"pip install -e \".[{name}]\", or use actor_rollout_ref.rollout.name=hf (transformers, slow but "
            "no extra install)"
        )


def apply_device_settings(cfg: Any, write=print) -> bool:
    """Check the rollout backend; on a machine without an accelerator, set what verl needs on a CPU (module doc).
    Returns whether the run is on the CPU."""
    accelerator = has_accelerator() and str(cfg.trainer.get("device", "auto")) != "cpu"
    if not accelerator and rollout_name(cfg) is None:
        with open_dict(cfg):
            cfg.actor_rollout_ref.rollout.name = "hf"
    check_rollout_backend(cfg, accelerator)
    if rollout_name(cfg) == "hf":  # one model per trainer rank (see hf_rollout.replica)
        with open_dict(cfg):
            for key in ("tensor_model_parallel_size", "data_parallel_size", "pipeline_model_parallel_size"):
                cfg.actor_rollout_ref.rollout[key] = 1
            # request ids det-<row> from verl's agent loop: the hf server seeds each row from them (reproducible runs)
            cfg.actor_rollout_ref.rollout.full_determinism = True
            cfg.actor_rollout_ref.rollout.seed = run_seed(cfg)  # the run's seed, as the local engine samples with
    if accelerator:
        return False
    settings = {
        "trainer.device": "cpu",
        "actor_rollout_ref.actor.strategy": "fsdp2",
        "actor_rollout_ref.ref.strategy": "fsdp2",
        "actor_rollout_ref.model.override_config.attn_implementation": "sdpa",
        "actor_rollout_ref.model.use_remove_padding": False,
        "actor_rollout_ref.actor.fsdp_config.mixed_precision.param_dtype": "fp32",
        "actor_rollout_ref.ref.fsdp_config.mixed_precision.param_dtype": "fp32",
        "actor_rollout_ref.actor.use_torch_compile": False,
        "actor_rollout_ref.ref.use_torch_compile": False,
        "actor_rollout_ref.rollout.agent.num_workers": 1,
        "reward.num_workers": 1,
        "data.dataloader_num_workers": 0,
    }
    changed = []
    with open_dict(cfg):
        for key, value in settings.items():
            node, leaf = _parent(cfg, key)
            if node.get(leaf) != value:
                node[leaf] = value
                changed.append(f"{key}={value}")
    write("verl engine on the CPU (no GPU found): " + (", ".join(changed) or "settings already CPU-ready")
          + f"; rollout {rollout_name(cfg)}, {int(cfg.trainer.n_gpus_per_node) * int(cfg.trainer.nnodes)} logical "
          "GPU(s) in Ray, gloo")
    return True


def _parent(cfg: Any, dotted: str) -> tuple[Any, str]:
    *path, leaf = dotted.split(".")
    node = cfg
    for part in path:
        if node.get(part) is None:
            node[part] = {}
        node = node[part]
    return node, leaf
