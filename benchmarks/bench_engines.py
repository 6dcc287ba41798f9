"""Benchmark: the same `mars train` on the local engine and on the verl engine (Ray, FSDP2, hf rollout), side by side.

    python benchmarks/bench_engines.py [--steps N] [KEY=VALUE ...]

Both runs use one fresh working directory: the embedded default's data, tiny model and supervised warm start are
built once, before either timed run, so both start from the same cached warm start and the times compare the RL
runs (validation, steps, checkpoints, plots). The verl time includes starting Ray and verl's workers. It prints both
wall times and their ratio; extra arguments are Hydra overrides given to both runs. The machine's load average is
printed before and after: other jobs on a shared machine change both columns.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time


def load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def train(work: str, *overrides: str) -> tuple[float, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "mars.cli", "train", *overrides], cwd=work, env=env,
                         capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"mars train {' '.join(overrides)} failed:\n{out.stderr[-4000:]}")
    final = [line for line in out.stdout.splitlines() if line.startswith("validation reward")]
    return elapsed, final[-1] if final else "no validation line"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10, help="RL steps of both runs (the embedded default: 10)")
    args, overrides = parser.parse_known_args()
    common = [f"trainer.total_training_steps={args.steps}", *overrides]
    with tempfile.TemporaryDirectory(prefix="mars-bench-engines-") as work:
        print(f"load average before: {load()}", flush=True)
        # builds the data, the model and the cached warm start; trains one step (not timed)
        train(work, *common, "trainer.total_training_steps=1", "trainer.experiment_name=prepare")
        local, local_val = train(work, *common, "trainer.experiment_name=local")
        print(f"local engine: {local:7.1f} s   ({local_val})", flush=True)
        verl, verl_val = train(work, *common, "trainer.engine=verl", "trainer.experiment_name=verl")
        print(f"verl engine:  {verl:7.1f} s   ({verl_val})", flush=True)
        print(f"verl / local: {verl / local:.2f}x   ({args.steps} steps; load average after: {load()})")


if __name__ == "__main__":
    main()
