"""``python -m mars.doctor.probe info`` | ``python -m mars.doctor.probe allreduce RANKS [nccl|gloo]``

What torch sees of the machine, printed as one JSON line, in a child process: the doctor never imports torch
itself (a torch that fails to import, or hangs in CUDA initialisation, becomes a failed check instead of a crashed
doctor, and the doctor's own process holds no CUDA context while the smoke test trains).
"""

from __future__ import annotations

import json
import socket
import sys
import time

ALLREDUCE_MIB = 64
ALLREDUCE_ITERS = 10


def info() -> dict:
    """torch's version and CUDA build, the visible GPUs (name, memory, compute capability, native bf16) and NCCL."""
    import torch

    out = {"torch": torch.__version__, "cuda_build": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
           "devices": [], "nccl": None}
    if out["cuda_available"]:
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            out["devices"].append({"name": p.name, "memory_gib": round(p.total_memory / 2**30, 1),
                                   "capability": f"{p.major}.{p.minor}", "bf16": p.major >= 8})
    try:
        version = torch.cuda.nccl.version()
        out["nccl"] = ".".join(map(str, version)) if isinstance(version, tuple) else str(version)
    except Exception:  # a CPU build has no NCCL
        pass
    return out


def _rank(rank: int, world: int, port: int, backend: str) -> None:
    import torch
    import torch.distributed as dist

    device = torch.device("cuda", rank) if backend == "nccl" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            device_id=device if device.type == "cuda" else None)  # NCCL: no guessing of the GPU
    x = torch.full((ALLREDUCE_MIB * 2**20 // 4,), float(rank + 1), device=device)
    dist.all_reduce(x)  # the first call builds the communicator: not timed
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    correct = bool((x == world * (world + 1) / 2).all())
    start = time.perf_counter()
    for _ in range(ALLREDUCE_ITERS):
        dist.all_reduce(x)
    sync()
    seconds = (time.perf_counter() - start) / ALLREDUCE_ITERS
    bus_gbs = 2 * (world - 1) / world * x.numel() * 4 / seconds / 1e9  # nccl-tests' bus bandwidth
    if rank == 0:
        print(json.dumps({"ranks": world, "backend": backend, "correct": correct, "mib": ALLREDUCE_MIB,
                          "ms": round(seconds * 1e3, 2), "bus_gbs": round(bus_gbs, 1)}), flush=True)
    dist.destroy_process_group()


def allreduce(world: int, backend: str = "nccl") -> None:
    """An all-reduce of 64 MiB over ``world`` GPUs with NCCL, one process each: correct sum and bus bandwidth
    (``gloo``: the same on the CPU, which is how this code is tested without GPUs)."""
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_rank, args=(world, port, backend), nprocs=world, join=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["info"]:
        print(json.dumps(info()))
    elif sys.argv[1:2] == ["allreduce"] and len(sys.argv) in (3, 4):
        allreduce(int(sys.argv[2]), *sys.argv[3:])
    else:
        raise SystemExit(__doc__.splitlines()[0])
