"""The machine: accelerators, CUDA and the driver, NCCL, free disk, CPUs and memory, and a Ray cluster already
running. Nothing here starts Ray or imports torch (torch's view comes from ``probe.py`` in a child process)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from mars.doctor.procs import Outcome, last_lines
from mars.doctor.report import Check

CHECKPOINT_GIB = 36  # a 3B model's FSDP checkpoint with its fp32 weights and Adam state (12 bytes per parameter)


def probe_info(env: dict[str, str], timeout: float = 180.0) -> dict | str:
    """torch's view of the machine (``probe.py info``), or the error that stopped it."""
    try:
        done = subprocess.run([sys.executable, "-m", "mars.doctor.probe", "info"], capture_output=True, text=True,
                              env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"torch did not answer within {timeout:.0f} s (CUDA initialisation hanging?)"
    if done.returncode != 0:
        return " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:]) or f"exit code {done.returncode}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def nvidia_smi() -> dict:
    """The driver's view: GPU count, driver version and the newest CUDA it runs ({} without an NVIDIA driver)."""
    if shutil.which("nvidia-smi") is None:
        return {}
    try:
        header = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=60).stdout
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    driver = re.search(r"Driver Version:\s*([\d.]+)", header)
    cuda = re.search(r"CUDA Version:\s*([\d.]+)", header)
    return {"gpus": sum(line.startswith("GPU ") for line in listing.splitlines()),
            "driver": driver.group(1) if driver else None, "cuda": cuda.group(1) if cuda else None}


def _as_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version)[:2])


def check_accelerators(info: dict | str, smi: dict, used: int) -> Check:
    """What the smoke test and a GPU run will train on; a GPU the driver sees but torch does not is the usual
    failure of a new node (a CPU build of torch, or a CUDA build newer than the driver)."""
    if isinstance(info, str):
        return Check("accelerators", "fail", f"torch does not start: {info}", fix="pip install -e .")
    devices = info["devices"]
    if not devices:
        if smi.get("gpus"):
            build = f"CUDA {info['cuda_build']} build" if info["cuda_build"] else "a CPU build"
            return Check("accelerators", "fail", f"the driver sees {smi['gpus']} GPU(s), torch {info['torch']} "
                         f"({build}) sees none (the driver runs CUDA <= {smi.get('cuda')})",
                         fix="a torch build for this driver's CUDA (pip install torch==2.11.0 --index-url "
                             "https://download.pytorch.org/whl/cuXYZ) or a newer NVIDIA driver")
        return Check("accelerators", "warn", "no GPU: the smoke test trains on the CPU (a GPU run needs CUDA GPUs)")
    kinds = Counter((d["name"], d["memory_gib"], d["capability"], d["bf16"]) for d in devices)
    text = "; ".join(f"{n} x {name} ({mem} GiB, compute {cap}{', bf16' if bf16 else ', no native bf16'})"
                     for (name, mem, cap, bf16), n in kinds.items())
    text += f"; the doctor uses {used} (--gpus)" if used < len(devices) else ""
    if not all(d["bf16"] for d in devices[:max(used, 1)]):
        return Check("accelerators", "warn", f"{text}: the engines train in bf16 autocast, which needs compute "
                     "capability 8.0 or newer (A100, H100, ...)", fix="GPUs of compute capability >= 8.0")
    return Check("accelerators", "pass", text)


def check_cuda(info: dict | str, smi: dict) -> Check:
    """torch's CUDA build against what the driver runs: a build newer than the driver finds no GPU."""
    if isinstance(info, str):
        return Check("cuda", "skip", "torch does not start (see accelerators)")
    build = info["cuda_build"]
    if not smi:
        return Check("cuda", "skip", f"no NVIDIA driver (nvidia-smi not found); torch {info['torch']} is "
                     + (f"a CUDA {build} build" if build else "a CPU build"))
    text = f"torch built for CUDA {build or '(none: CPU build)'}, driver {smi.get('driver')} runs CUDA <= " \
        f"{smi.get('cuda')}"
    if build and smi.get("cuda") and _as_tuple(build) > _as_tuple(smi["cuda"]):
        return Check("cuda", "fail", text, fix=f"an NVIDIA driver for CUDA {build}, or a torch build for CUDA "
                     f"{smi['cuda']} (https://pytorch.org/get-started/locally/)")
    return Check("cuda", "fail" if not build else "pass", text,
                 fix=None if build else "a CUDA build of torch (https://pytorch.org/get-started/locally/)")


def check_nccl(info: dict | str, used: int) -> Check:
    if isinstance(info, str) or not info["nccl"]:
        return Check("nccl", "skip", "no NCCL in this torch build")
    if used == 0:
        return Check("nccl", "skip", f"NCCL {info['nccl']} (no GPU to use it)")
    return Check("nccl", "pass", f"NCCL {info['nccl']}")


def check_allreduce(used: int, run: Callable[[list[str], str, float], Outcome], backend: str = "nccl") -> Check:
    """Two ranks, one GPU each, NCCL: what every multi-GPU step of the verl engine does first. ``run`` runs the
    probe as a logged child (argv, name, timeout)."""
    if used < 2:
        return Check("nccl all-reduce", "skip", f"{used} GPU(s): a two-rank all-reduce needs 2")
    outcome = run([sys.executable, "-m", "mars.doctor.probe", "allreduce", "2", backend], "allreduce", 180.0)
    lines = last_lines(outcome.log, 40)
    result = next((json.loads(line) for line in reversed(lines) if line.startswith('{"ranks"')), None)
    fix = ("rerun with NCCL_DEBUG=INFO to see where it stops; NCCL_P2P_DISABLE=1 tells whether peer-to-peer "
           "transfers are the cause")
    if outcome.code != 0 or result is None:
        why = "timed out" if outcome.code is None else f"exit code {outcome.code}"
        return Check("nccl all-reduce", "fail", f"2 ranks: {why}: {' | '.join(lines[-3:])} (log: {outcome.log})",
                     seconds=outcome.seconds, fix=fix)
    text = f"2 ranks, {result['mib']} MiB: {result['ms']} ms, bus bandwidth {result['bus_gbs']} GB/s"
    if not result["correct"]:
        return Check("nccl all-reduce", "fail", f"{text}, WRONG SUM", seconds=outcome.seconds, fix=fix)
    return Check("nccl all-reduce", "pass", text + ", sum correct", seconds=outcome.seconds)


def check_disk(out: Path) -> Check:
    """Free space where the runs write: the smoke test needs little, a long run's checkpoints need a lot."""
    where = next(p for p in [out, *out.parents] if p.exists())
    free = shutil.disk_usage(where).free / 2**30
    text = f"{free:.1f} GiB free in {where}"
    if free < 2:
        return Check("disk", "fail", text, fix="free space, or --out on another disk")
    if free < CHECKPOINT_GIB:
        return Check("disk", "warn", f"{text}: one checkpoint of a 3B model with its optimizer state takes about "
                     f"{CHECKPOINT_GIB} GiB", fix="trainer.default_local_dir on a bigger disk, "
                     "trainer.max_actor_ckpt_to_keep=1")
    return Check("disk", "pass", text)


def _meminfo() -> dict[str, float]:
    try:
        text = Path("/proc/meminfo").read_text()
    except OSError:
        return {}
    return {k: int(v) / 2**20 for k, v in re.findall(r"^(\w+):\s+(\d+) kB", text, re.MULTILINE)}


def check_cpus() -> Check:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    mem = _meminfo()
    text = f"{usable} usable of {os.cpu_count()} CPUs"
    if mem:
        text += f"; memory {mem.get('MemAvailable', 0):.0f} of {mem.get('MemTotal', 0):.0f} GiB available"
    return Check("cpu", "pass", text)


def ray_temp_dir() -> Path:
    """Where ``ray start`` records the cluster ``ray.init()`` joins (Ray's own rule: RAY_TMPDIR, TMPDIR, /tmp)."""
    base = os.environ.get("RAY_TMPDIR") or (os.environ.get("TMPDIR") if sys.platform.startswith("linux") else None)
    return Path(base or "/tmp") / "ray"


def running_gcs_addresses() -> set[str]:
    """The GCS addresses of the raylets running on this machine (their command lines; Linux /proc)."""
    found = set()
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            args = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if args and args[0].endswith("raylet"):
            found |= {a.split("=", 1)[1] for a in args if a.startswith("--gcs-address=")}
    return found


def ray_cluster() -> tuple[str | None, str]:
    """The cluster a Ray run would join, and why: RAY_ADDRESS, or the one ``ray start`` recorded (ray.init()
    without an address joins it); (None, what was seen) when a run starts its own."""
    if os.environ.get("RAY_ADDRESS"):
        return os.environ["RAY_ADDRESS"], "RAY_ADDRESS is set"
    running = running_gcs_addresses()
    recorded_file = ray_temp_dir() / "ray_current_cluster"
    recorded = recorded_file.read_text().strip() if recorded_file.exists() else None
    if recorded and recorded in running:
        return recorded, f"started by ray start (recorded in {recorded_file})"
    seen = f"{len(running)} Ray instance(s) of other programs running, not joined" if running else "none running"
    if recorded:
        seen += f"; {recorded_file} names {recorded}, where no raylet runs (a stale record: ray stop clears it)"
    return None, seen


def check_ray() -> Check:
    """A verl run joins a running cluster instead of starting its own: say which, before it surprises anyone."""
    address, why = ray_cluster()
    if address is None:
        return Check("ray cluster", "pass", f"{why}: a verl run starts its own Ray and stops it at the end")
    if why == "RAY_ADDRESS is set":
        return Check("ray cluster", "pass", f"RAY_ADDRESS={address}: a verl run joins that cluster (MARS ships its "
                     "code to it); the smoke test does not run verl there")
    return Check("ray cluster", "warn", f"a cluster at {address}, {why}: ray.init() would join it, but MARS ships "
                 "its code only with RAY_ADDRESS; the smoke test does not run verl there",
                 fix=f"RAY_ADDRESS={address} to join it on purpose, or ray stop")
