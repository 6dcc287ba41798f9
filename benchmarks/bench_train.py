"""Benchmark: a new user's first `mars train`, on a quiet machine and beside one CPU-bound process.

    python benchmarks/bench_train.py [--short] [--threads 1,0] [--busy 1]

Each measurement is the whole command (`python -m mars.cli train`) in a fresh working directory: synthetic data,
tiny model, warm start, RL steps, checkpoints, plots; nothing cached. For each `trainer.cpu_threads` value
(0 = torch's default, one thread per core) it runs quiet, then beside `--busy` busy-loop processes, and prints the
times and the ratio busy/quiet side by side. Targets on 2 cores: under 120 s quiet, busy within 1.5x of quiet.
`--short` is the issue's short run (8 steps, a 40-step warm start). The machine's load average is printed before
and after: other jobs on a shared machine change both columns.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BUSY = "while True: pass"


def load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def run_train(threads: int, extra: list[str]) -> float:
    """Seconds of one `mars train` in a fresh directory."""
    with tempfile.TemporaryDirectory(prefix="mars-bench-train-") as work:
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "mars.cli", "train", f"trainer.cpu_threads={threads}", *extra],
                             cwd=work, env=env, capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        if out.returncode != 0:
            raise SystemExit(f"mars train failed:\n{out.stderr[-3000:]}")
        final = [line for line in out.stdout.splitlines() if line.startswith("validation reward")]
        print(f"    {elapsed:.1f} s, load average now {load()} ({final[-1] if final else 'no validation line'})",
              flush=True)
        return elapsed


def beside_busy(n: int, fn):
    procs = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(n)]
    try:
        time.sleep(1.0)
        return fn()
    finally:
        for p in procs:
            p.kill()
            p.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--short", action="store_true", help="8 RL steps after a 40-step warm start")
    parser.add_argument("--threads", default="1", help="comma-separated trainer.cpu_threads values (0: torch's default)")
    parser.add_argument("--busy", type=int, default=1, help="CPU-bound processes beside the busy run")
    args = parser.parse_args()
    extra = ["trainer.total_training_steps=8", "mars.sft_warmup.steps=40"] if args.short else []

    print(f"cores: {os.cpu_count()}, load average before: {load()}", flush=True)
    rows = []
    for threads in (int(t) for t in args.threads.split(",")):
        print(f"trainer.cpu_threads={threads}: quiet ...", flush=True)
        quiet = run_train(threads, extra)
        print(f"trainer.cpu_threads={threads}: beside {args.busy} busy process(es) ...", flush=True)
        busy = beside_busy(args.busy, lambda: run_train(threads, extra))
        rows.append((threads, quiet, busy))
    print(f"load average after: {load()}")
    print(f"\n{'cpu_threads':>12} {'quiet s':>9} {'busy s':>9} {'busy/quiet':>11}   targets: quiet < 120 s, busy/quiet <= 1.5")
    for threads, quiet, busy in rows:
        print(f"{threads:>12} {quiet:>9.1f} {busy:>9.1f} {busy / quiet:>11.2f}")


if __name__ == "__main__":
    main()
