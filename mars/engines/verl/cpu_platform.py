"""A CPU platform for verl 0.9.1: verl's Ray worker groups, FSDP2 and the ``hf`` rollout on a machine without GPUs.

verl picks its device through ``verl.plugin.platform`` (``PlatformRegistry``; ``VERL_PLATFORM`` overrides the
detection). It ships CUDA, NPU and ROCm; this module registers ``cpu`` through that public hook. It is imported by
MARS's ``verl.plugins`` entry point, so every process that imports verl (the driver, the task runner, every worker)
knows it, and detection probes it last: with no accelerator found, verl runs on the CPU.

What else the CPU needs, and what ``activate()`` does in each process that runs on this platform:
  - Ray counts logical GPUs (``ray.init(num_gpus=N)``): verl's resource pools ask for ``{"GPU": 1}`` per worker, and
    ``ray_resource_name`` stays ``GPU``, so the same pools, placement groups and worker groups are built.
  - verl builds the process group backend as ``cpu:gloo,<device>:<backend>``; on the CPU that is
    ``cpu:gloo,cpu:gloo``, which torch rejects: the duplicate is removed before torch sees it.
  - verl registers its FSDP engine for ``cuda`` and ``npu`` only: it is registered for ``cpu`` too; the reference's
    CPU-offload policy pins memory (CUDA only): on the CPU it keeps its parameters where they are, unpinned.
The settings the CPU needs in the config (fsdp2, sdpa, no remove-padding, the ``hf`` rollout) are the engine's job:
``mars.engines.verl.device_settings``.
"""

from __future__ import annotations

import contextlib
import os
import types
from typing import Any

import torch
from verl.plugin.platform import PlatformBase, PlatformRegistry

PLATFORM_NAME = "cpu"


def _no_op(*args: Any, **kwargs: Any) -> None:
    return None


def _cpu_device_module() -> types.ModuleType:
    """A stand-in for ``torch.cuda``: what verl calls on ``get_torch_device()`` (memory stats, seeds, rng state,
    caches, streams) answered for the CPU."""
    module = types.ModuleType("mars_cpu_device")
    module.is_available = lambda: True
    module.device_count = lambda: 1
    module.current_device = lambda: "cpu"
    module.set_device = _no_op
    module.synchronize = _no_op
    module.empty_cache = _no_op
    module.manual_seed = torch.manual_seed
    module.manual_seed_all = torch.manual_seed
    module.get_rng_state = torch.get_rng_state
    module.set_rng_state = torch.set_rng_state
    module.memory_allocated = lambda *a, **k: 0
    module.memory_reserved = lambda *a, **k: 0
    module.max_memory_allocated = lambda *a, **k: 0
    module.max_memory_reserved = lambda *a, **k: 0
    module.reset_peak_memory_stats = _no_op
    module.mem_get_info = lambda *a, **k: (0, 0)
    module.memory_stats = lambda *a, **k: {}
    module.get_device_name = lambda *a, **k: "cpu"
    module.is_initialized = lambda: True
    module.Stream = lambda *a, **k: None
    module.current_stream = lambda *a, **k: types.SimpleNamespace(synchronize=_no_op, wait_stream=_no_op)
    module.stream = lambda *a, **k: contextlib.nullcontext()
    module.Event = lambda *a, **k: types.SimpleNamespace(record=_no_op, synchronize=_no_op, wait=_no_op)
    module.amp = torch.amp
    return module


@PlatformRegistry.register(platform=PLATFORM_NAME)
class PlatformCPU(PlatformBase):
    """verl's device interface answered for the CPU (no profiler, no IPC, gloo for collectives)."""

    _module = _cpu_device_module()

    @property
    def device_name(self) -> str:
        return "cpu"

    @property
    def vendor_name(self) -> str:
        return "cpu"

    @property
    def device_module(self) -> types.ModuleType:
        return self._module

    def is_available(self) -> bool:
        return True

    def is_platform_available(self, use_smi_check: bool = False) -> bool:
        return True  # probed after verl's own platforms: chosen only when no accelerator answered

    def current_device(self) -> str:  # type: ignore[override]
        return "cpu"  # verl moves tensors with .to(get_device_id()): an index would mean cuda:N

    def device_count(self) -> int:
        return 1

    def set_device(self, device_index: int) -> None:
        return None

    def synchronize(self, device_index: int | None = None) -> None:
        return None

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def manual_seed_all(self, seed: int) -> None:
        torch.manual_seed(seed)

    def set_allocator_settings(self, settings: str) -> None:
        return None

    def empty_cache(self) -> None:
        return None

    def get_device_capability(self, device_index: int = 0) -> tuple[int | None, int | None]:
        return (None, None)

    def communication_backend_name(self) -> str:
        return "gloo"

    def visible_devices_envvar(self) -> str:
        return "CUDA_VISIBLE_DEVICES"  # Ray sets it for logical GPUs; nothing on the CPU reads it

    @contextlib.contextmanager
    def nvtx_range(self, msg: str):
        yield

    def profiler_start(self) -> None:
        return None

    def profiler_stop(self) -> None:
        return None

    def ray_resource_name(self) -> str:
        return "GPU"  # Ray's logical GPUs: verl's resource pools are built exactly as on a GPU node

    def ray_noset_envvars(self) -> list[str]:
        return []

    def is_ipc_supported(self) -> bool:
        return False

    def cudart(self) -> Any:
        return None


def _dedupe_backend(backend: str | None) -> str | None:
    """``cpu:gloo,cpu:gloo`` -> ``cpu:gloo`` (torch refuses a device named twice)."""
    if not backend or "," not in backend:
        return backend
    return ",".join(dict.fromkeys(part.strip() for part in backend.split(",")))


_activated = False


def activate() -> None:
    """The CPU's shims, once per process: the process-group backend string, the FSDP engine's device list, the
    reference's offload policy."""
    global _activated
    if _activated:
        return
    _activated = True
    import torch.distributed as dist

    original = dist.init_process_group

    def init_process_group(*args: Any, backend: str | None = None, **kwargs: Any):
        return original(*args, backend=_dedupe_backend(backend), **kwargs)

    dist.init_process_group = init_process_group
    _fit_fsdp_engine_to_cpu()


def _fit_fsdp_engine_to_cpu() -> None:
    from verl.workers.engine import EngineRegistry
    from verl.workers.engine.fsdp import transformer_impl as fsdp

    class CPUOffloadWithoutPinning(fsdp.CPUOffloadPolicy):
        """verl offloads the forward-only reference with ``pin_memory=True``; pinning needs CUDA. On the CPU the
        parameters already live in host memory, so the policy is kept and the pinning dropped."""

        def __init__(self, pin_memory: bool = False):
            super().__init__(pin_memory=False)

    fsdp.CPUOffloadPolicy = CPUOffloadWithoutPinning

    for model_type, cls in (("language_model", fsdp.FSDPEngineWithLMHead), ("value_model", fsdp.FSDPEngineWithValueHead)):
        EngineRegistry.register(model_type=model_type, backend=["fsdp", "fsdp2"], device=["cpu"])(cls)


def activate_if_requested() -> bool:
    """Activate the shims in a process started with ``VERL_PLATFORM=cpu`` (the engine sets it for every Ray process
    when there is no accelerator)."""
    if os.environ.get("VERL_PLATFORM", "").strip().lower() != PLATFORM_NAME:
        return False
    activate()
    return True
