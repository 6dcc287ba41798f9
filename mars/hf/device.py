"""Where a Hugging Face model runs in this process: the device, torch's CPU threads, the compute dtype."""

from __future__ import annotations

from typing import Any

import torch


def autocast_for(device: torch.device):
    """bf16 compute on CUDA; fp32 on the CPU (fp32 master weights everywhere: AdamW on bf16 weights drifts)."""
    if device.type != "cuda":
        return torch.autocast("cpu", enabled=False)
    return torch.autocast(device.type, dtype=torch.bfloat16)


_threads_reported: set[int] = set()


def set_cpu_threads(cfg: Any, device: torch.device, write=print) -> int | None:
    """torch's intra-op threads on the CPU: ``trainer.cpu_threads`` (default 1; 0 keeps torch's default).

    A tiny model's kernels are too small to split: extra threads only add synchronisation, and on a shared machine
    a thread per core oversubscribes as soon as anything else runs (measured on 2 cores: 67 s quiet but 174 s
    beside one busy process with 2 threads; 91 s and 89 s with 1; benchmarks/bench_train.py). Raise it for a
    bigger model on a machine of its own. Printed once per process and value."""
    if device.type != "cpu":
        return None
    default = torch.get_num_threads() if not _threads_reported else None
    wanted = int(cfg.trainer.get("cpu_threads", 1) or 0)
    if wanted > 0:
        torch.set_num_threads(wanted)
    n = torch.get_num_threads()
    if n not in _threads_reported:
        _threads_reported.add(n)
        note = f" (torch's default here: {default})" if default is not None and default != n else ""
        write(f"local engine on the CPU: {n} torch thread{'s' if n != 1 else ''}{note}; trainer.cpu_threads=N changes it")
    return n


def resolve_device(name: str) -> torch.device:
    if name in ("auto", None):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "npu":
        raise ValueError("the local engine runs on cpu or cuda; use trainer.engine=verl for NPUs")
    return torch.device(name)
