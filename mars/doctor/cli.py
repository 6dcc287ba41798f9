"""usage: mars doctor [--json REPORT.json] [--quick] [--no-smoke] [--gpus N] [--model PATH] [--out DIR]

The self-test to run on a new node before a long GPU run. It checks
  the stack     Python, torch (and its CUDA build), torchvision, transformers, verl, ray, hydra-core, qwen-vl-utils,
                peft, vllm, sglang, flash-attn against the versions pyproject.toml pins (missing optional ones: skip)
  the machine   GPUs (memory, compute capability, bf16), CUDA and driver, NCCL and a two-rank all-reduce, free
                disk, CPUs and memory, a Ray cluster already running (nothing is started)
  a smoke test  on the embedded default's tiny model and data (built locally, nothing downloaded): 2 RL steps of
                the local engine on the best device, a checkpoint, a resume, merge, batched inference and
                evaluation, then 1 step of the verl engine (vLLM or SGLang on a GPU, the hf rollout on a CPU)
and prints a table (check, status pass/warn/fail/skip, time, detail); each failure names its fix.

  --json FILE   also write the report as JSON ({"checks": [{"name", "status", "detail", "seconds"}], ...})
  --quick       the smoke test without the verl engine
  --no-smoke    the stack and machine checks only (a few seconds)
  --gpus N      use at most N GPUs (0: the CPU only)
  --model PATH  also answer a few generated questions with your model (a Qwen2.5-VL or Qwen3-VL folder)
  --out DIR     where the doctor works (default outputs/doctor): each run in a folder of its own, the tiny model,
                data and warm start in DIR/cache for the next run; nothing outside DIR is written or removed

Exit code 0 when nothing failed, 1 otherwise.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from mars.doctor import machine, smoke, stack
from mars.doctor.procs import run_logged
from mars.doctor.report import Check, exit_code, summary, table, timed, write_json


def parse(argv: list[str]) -> dict:
    opts = {"json": None, "quick": False, "no_smoke": False, "gpus": None, "model": None, "out": "outputs/doctor"}
    it = iter(argv)
    for arg in it:
        name, eq, value = arg.partition("=")
        if name in ("--json", "--gpus", "--model", "--out"):
            value = value if eq else next(it, None)
            if value is None:
                raise ValueError(f"{name} needs a value")
            opts[name[2:]] = value
        elif arg in ("--quick", "--no-smoke"):
            opts[arg[2:].replace("-", "_")] = True
        else:
            raise ValueError(f"unknown argument {arg} (mars doctor --help lists the options)")
    if opts["model"] is not None and not (Path(opts["model"]) / "config.json").exists():
        raise ValueError(f"--model {opts['model']}: no config.json there (a local Hugging Face folder of a "
                         "Qwen2.5-VL or Qwen3-VL model)")
    if opts["gpus"] is not None:
        if not opts["gpus"].isdigit():
            raise ValueError(f"--gpus {opts['gpus']}: a number of GPUs (0 for the CPU only)")
        opts["gpus"] = int(opts["gpus"])
    return opts


def repository_root() -> Path:
    """The checkout the running ``mars`` package belongs to (its scripts/ and evaluation/ are the smoke test's)."""
    import mars

    return Path(mars.__file__).resolve().parent.parent


def new_run_dir(out: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run, n = out / stamp, 1
    while run.exists():
        n += 1
        run = out / f"{stamp}-{n}"
    run.mkdir(parents=True)
    return run


def child_env(root: Path, visible: str | None) -> dict[str, str]:
    """The children's environment: this checkout's ``mars`` first, no model hub, unbuffered logs, the GPUs used."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(root), *filter(None, [env.get("PYTHONPATH")])])
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
    if visible is not None:
        env["CUDA_VISIBLE_DEVICES"] = visible
    return env


def visible_devices(limit: int | None, count: int) -> str | None:
    """CUDA_VISIBLE_DEVICES for ``--gpus N``: the first N of those visible now (None: leave it as it is)."""
    if limit is None:
        return None
    current = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [d.strip() for d in current.split(",") if d.strip()] if current is not None else list(map(str, range(count)))
    return ",".join(ids[:limit])


def say(check: Check) -> None:
    print(f"  {check.status:<4}  {check.name}: {check.text()[:150]}", file=sys.stderr, flush=True)


def machine_checks(opts: dict, root: Path, run: Path, token: str) -> tuple[list[Check], int, str | None]:
    """The machine's rows, the number of GPUs the doctor uses, and CUDA_VISIBLE_DEVICES for the children."""
    start = time.monotonic()
    info = machine.probe_info(child_env(root, None))
    smi = machine.nvidia_smi()
    count = len(info["devices"]) if isinstance(info, dict) else 0
    used = count if opts["gpus"] is None else min(opts["gpus"], count)
    visible = visible_devices(opts["gpus"], count)
    probe_s = time.monotonic() - start
    rows = [machine.check_accelerators(info, smi, used), machine.check_cuda(info, smi),
            machine.check_nccl(info, used)]
    for row in rows:
        row.seconds = probe_s / len(rows)
    env = child_env(root, visible)

    def run_probe(argv: list[str], name: str, timeout: float):
        return run_logged(argv, run / "logs" / f"{name}.log", env, run, timeout, f"{token}:{name}")

    rows += timed(machine.check_allreduce, used, run_probe)
    rows += timed(machine.check_disk, run) + timed(machine.check_cpus) + timed(machine.check_ray)
    return rows, used, visible


def smoke_checks(opts: dict, root: Path, run: Path, used: int, visible: str | None, token: str) -> list[Check]:
    env = child_env(root, visible)
    state = smoke.Smoke(root, run, Path(opts["out"]).resolve() / "cache", env, "cuda" if used else "cpu")
    env["PATH"] = os.pathsep.join([str(smoke.python_shim(state)), env.get("PATH", "")])
    if not (root / "scripts" / "merge.sh").exists():
        return [Check("smoke", "skip", f"{root} is not a checkout of the repository (no scripts/merge.sh)",
                      fix="run mars doctor from a checkout (git clone, pip install -e .)")]
    parts = smoke.local_parts(state)
    model = Path(opts["model"]).resolve() if opts["model"] else None
    if model is not None:
        parts += smoke.model_parts(state, model)
    rows = []
    for part in parts:
        print(f"running {part.title} ...", file=sys.stderr, flush=True)
        rows.append(smoke.run_part(part, state, token))
        say(rows[-1])
    joins, _ = machine.ray_cluster()
    rollout, why = smoke.verl_rollout(state.device, opts["quick"], joins is not None)
    if rollout is None:
        verl = Check("smoke: verl", "skip", f"not run: {why}")
    else:
        part = smoke.verl_part(state, rollout)
        print(f"running {part.title} ...", file=sys.stderr, flush=True)
        verl = smoke.run_part(part, state, token)
        say(verl)
    return rows + [verl, smoke.ray_leftovers_check(verl)]


def doctor(opts: dict, argv: list[str]) -> int:
    """The checks in order (stack, machine, smoke test), the table, the JSON; the exit code."""
    start = time.monotonic()
    root = repository_root()
    run = new_run_dir(Path(opts["out"]).resolve())
    token = f"{os.getpid()}-{run.name}"
    print(f"mars doctor: working in {run}", file=sys.stderr, flush=True)
    checks = timed(stack.stack_checks, root)
    rows, used, visible = machine_checks(opts, root, run, token)
    checks += rows
    for check in checks:
        say(check)
    if not opts["no_smoke"]:
        checks += smoke_checks(opts, root, run, used, visible, token)
    seconds = time.monotonic() - start
    print("\n" + table(checks) + "\n\n" + summary(checks, seconds))
    info = {"out": str(run), "device": "cuda" if used else "cpu", "gpus_used": used, "argv": argv}
    write_json(run / "report.json", checks, seconds, info)
    if opts["json"]:
        write_json(Path(opts["json"]), checks, seconds, info)
    return exit_code(checks)


def stop(signum, frame):
    """SIGTERM ends the doctor as Ctrl-C does: the running part and what it started are stopped first."""
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0
    try:
        opts = parse(argv)
    except ValueError as exc:
        print(f"mars doctor: {exc}", file=sys.stderr)
        return 2
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        return doctor(opts, argv)
    except KeyboardInterrupt:
        print("\nmars doctor: interrupted (the part that was running and its processes are stopped)", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
