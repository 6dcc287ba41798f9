"""The CPU platform for verl and the settings the verl engine applies on a machine without a GPU, without Ray.

Each check that depends on verl's platform singleton runs in a fresh Python (the platform is resolved once per
process), exactly as a Ray worker starts: ``VERL_PLATFORM=cpu`` in its environment, then ``import verl``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("verl")

from mars.engines.verl.checks import VerlConfigError, check_verl_config  # noqa: E402
from mars.engines.verl.device_settings import RolloutBackendError, apply_device_settings  # noqa: E402
from mars.config.compose import compose_config  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def python(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env}, cwd=REPO)


def test_a_ray_worker_on_the_cpu_platform():
    """What every Ray process of a CPU run does on start: verl's platform is ours, devices and the process group
    work on the CPU, and verl's FSDP engine is registered for it."""
    done = python("""
import socket, torch, torch.distributed as dist
import verl
from verl.utils.device import get_device_name, get_device_id, get_nccl_backend, get_torch_device
from verl.workers.engine import EngineRegistry
from verl.workers.engine.fsdp import transformer_impl as fsdp
print("device", get_device_name(), get_device_id(), get_nccl_backend())
get_torch_device().manual_seed(3); get_torch_device().empty_cache(); print("memory", get_torch_device().memory_allocated())
print("moved", torch.ones(2).to(get_device_id()).device)
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
dist.init_process_group(backend=f"cpu:gloo,{get_device_name()}:{get_nccl_backend()}", rank=0, world_size=1,
                        init_method=f"tcp://127.0.0.1:{port}")
t = torch.ones(3); dist.all_reduce(t); print("allreduce", t.tolist())
print("fsdp", EngineRegistry.get_engine_cls("language_model", "fsdp2").__name__)
print("offload pinned", fsdp.CPUOffloadPolicy(pin_memory=True).pin_memory)
""", VERL_PLATFORM="cpu")
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "device cpu cpu gloo" in out and "memory 0" in out and "moved cpu" in out
    assert "allreduce [1.0, 1.0, 1.0]" in out  # the backend string cpu:gloo,cpu:gloo worked
    assert "offload pinned False" in out and "fsdp FSDPEngineWithLMHead" in out


def test_without_the_shims_torch_refuses_verls_backend_string():
    done = python("""
import socket, torch.distributed as dist
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
dist.init_process_group(backend="cpu:gloo,cpu:gloo", rank=0, world_size=1, init_method=f"tcp://127.0.0.1:{port}")
""")
    assert done.returncode != 0  # the duplicate device is why activate() dedupes it


def test_the_hf_rollout_is_registered_in_every_verl_process():
    done = python("""
import verl
from verl.workers.rollout.replica import get_rollout_replica_class
from verl.workers.rollout.base import get_rollout_class
print(get_rollout_replica_class("hf").__name__, get_rollout_class("hf", "async").__name__)
""")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "HFReplica HFServerAdapter" in done.stdout


def verl_cfg(*overrides):
    return compose_config("embedded", ["trainer.engine=verl", *overrides])


def test_cpu_settings_are_applied_and_printed():
    cfg, lines = verl_cfg(), []
    assert apply_device_settings(cfg, write=lines.append) is True
    assert cfg.trainer.device == "cpu"
    assert cfg.actor_rollout_ref.actor.strategy == "fsdp2" and cfg.actor_rollout_ref.ref.strategy == "fsdp2"
    assert cfg.actor_rollout_ref.model.override_config.attn_implementation == "sdpa"
    assert cfg.actor_rollout_ref.model.use_remove_padding is False
    assert cfg.actor_rollout_ref.rollout.name == "hf"  # none was named
    assert cfg.actor_rollout_ref.rollout.tensor_model_parallel_size == 1
    assert cfg.actor_rollout_ref.rollout.agent.num_workers == 1 and cfg.reward.num_workers == 1
    assert len(lines) == 1 and lines[0].startswith("verl engine on the CPU")


@pytest.mark.parametrize("name", ["vllm", "sglang"])
def test_a_gpu_rollout_on_a_cpu_machine_stops_with_the_alternative(name):
    with pytest.raises(RolloutBackendError) as err:
        apply_device_settings(verl_cfg(f"actor_rollout_ref.rollout.name={name}"), write=lambda *_: None)
    assert f"actor_rollout_ref.rollout.name={name}" in str(err.value)
    assert "actor_rollout_ref.rollout.name=hf" in str(err.value)


def test_a_micro_batch_that_does_not_divide_the_rows_is_refused_before_ray():
    cfg = verl_cfg("actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=32")  # 8 prompts x 6 = 48 rows
    with pytest.raises(VerlConfigError, match="log_prob_micro_batch_size_per_gpu=32 does not divide the 48 rows"):
        check_verl_config(cfg)
    check_verl_config(verl_cfg())  # the embedded default divides


def test_mars_train_refuses_vllm_here_before_starting_anything(tmp_path):
    done = subprocess.run([sys.executable, "-m", "mars.cli", "train", "trainer.engine=verl",
                           "actor_rollout_ref.rollout.name=vllm", "mars.embedded.num=20"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 2
    assert "actor_rollout_ref.rollout.name=vllm" in done.stderr and "Traceback" not in done.stderr
    assert "Ray" not in done.stdout and "SFT warm start" not in done.stdout  # stopped before the warm start and Ray
