"""Benchmark: a training step of each perception-aware method against plain GRPO on the local engine.

    python benchmarks/bench_perception.py [--steps 6] [--n 6] [--batch 8] [--response-length 48]

Five engines start from the same tiny model (random init, no download) and see the same prompts with the same
per-step seeds; before every step each engine is put back to the starting weights, so every arm generates the same
rollouts, and the arms alternate step by step so machine noise hits them alike. Reported: the median step time of
each arm, its ratio to GRPO (targets: VGPO <= 1.10x, one extra forward (VPPO; PAPO's forward carries gradient)
<= 1.6x; SRPO's two no-gradient forwards and Faithful-MR1's causal maps have none), the old-log-prob and update
phases, and the memory a step needs, measured in a fresh process per arm
(the peak resident memory during one step above the memory held before it, Linux only), and what each arm adds to
GRPO's. ``perception.log_sources`` is off here: its one
no-gradient pass per source is an option, not part of a method's cost.

Faithful-MR1 at its most expensive: its causal maps are computed for each group with a correct answer, and a random
model answers nothing correctly, so its arm scores every answer correct (a constant reward: every group gets a map,
``cells^2 + 1`` copies of its prompt in one forward) and reads the focus attention at a token of the vocabulary the
random model has (it has no ``<Focus>``; the attention rows cost the same wherever the token is).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

METHODS = ("none", "vgpo", "vppo", "papo", "srpo", "faithful_mr1")
CONSTANT_REWARD = "def score(data_source, solution_str, ground_truth, extra_info=None, **kwargs):\n    return 1.0\n"


def build(work: Path):
    from mars.data.synth.build import synthesize
    from mars.models.tiny import build_tiny_model

    model = work / "model"
    if not model.exists():
        build_tiny_model(model, seed=0)
        synthesize("ir_grounding", str(work / "data"), 64, seed=0)
    return model


def arm(method: str, model: Path, work: Path, args, steps: int):
    from mars.config.compose import compose_config, finalize_config
    from mars.data.samples import load_samples
    from mars.engines.local import LocalEngine
    from mars.training.prompts import PromptSampler
    from mars.training.settings import StepSettings

    extra = []
    if method == "faithful_mr1":  # every group with a causal map (module docstring)
        (work / "constant_reward.py").write_text(CONSTANT_REWARD)
        extra = [f"reward.custom_reward_function.path={work / 'constant_reward.py'}",
                 "reward.custom_reward_function.name=score", "mars.sft_warmup.focus.token=the"]
    cfg = finalize_config(compose_config("mars_trainer", [*extra,
        f"actor_rollout_ref.model.path={model}", "algorithm.adv_estimator=grpo", f"perception={method}",
        "perception.log_sources=false", f"data.train_batch_size={args.batch}", f"actor_rollout_ref.rollout.n={args.n}",
        f"data.max_response_length={args.response_length}", "actor_rollout_ref.actor.ppo_mini_batch_size=4",
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=16", "actor_rollout_ref.actor.use_kl_loss=false",
        "trainer.device=cpu", "trainer.cpu_threads=1",
    ]))
    engine = LocalEngine(cfg, steps, write=lambda *a, **k: None)
    samples = load_samples(str(work / "data" / "train.parquet"))
    return dict(engine=engine, settings=StepSettings.from_config(cfg), sampler=PromptSampler(samples, args.batch, seed=0),
                start=copy.deepcopy(engine.state_dict()), times=[], old=[], update=[], maps=[])


def run_step(run, step: int) -> None:
    from mars.engines.local.run import step_seed
    from mars.training.step import train_step

    run["engine"].load_state_dict(run["start"])
    torch.manual_seed(step_seed(0, step))
    metrics = train_step(run["engine"], run["sampler"].next_batch, step, run["settings"])
    run["times"].append(metrics["timing_s/step"])
    run["old"].append(metrics["timing_s/old_log_prob"])
    run["update"].append(metrics["timing_s/update_actor"])
    run["maps"].append(metrics.get("perception/faithful/causal_maps", 0.0))


def status_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def child(method: str, work: Path, args) -> None:
    """One arm in this fresh process: a warm-up step, then the peak resident memory of a second step above what the
    process held before it (Linux: the high-water mark is reset through /proc/self/clear_refs); prints KiB."""
    run = arm(method, build(work), work, args, 2)
    run_step(run, 0)
    Path("/proc/self/clear_refs").write_text("5")
    before = status_kib("VmRSS")
    run_step(run, 1)
    print(json.dumps({"step_peak_kib": status_kib("VmHWM") - before}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--n", type=int, default=6)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--response-length", type=int, default=48)
    parser.add_argument("--child", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(1)
    if args.child:
        child(args.child, Path(args.work), args)
        return

    work = Path(tempfile.mkdtemp(prefix="mars-bench-perception-"))
    model = build(work)
    runs = {method: arm(method, model, work, args, args.steps) for method in METHODS}
    for step in range(args.steps + 1):  # step 0 warms every arm up and is not counted
        for run in runs.values():
            run_step(run, step)
    load = os.getloadavg()

    memory = {}
    for method in METHODS:
        out = subprocess.run([sys.executable, __file__, "--child", method, "--work", str(work),
                              f"--n={args.n}", f"--batch={args.batch}", f"--response-length={args.response_length}"],
                             capture_output=True, text=True, check=True)
        memory[method] = json.loads(out.stdout.strip().splitlines()[-1])["step_peak_kib"] / 1024

    median = {m: {k: statistics.median(r[k][1:]) for k in ("times", "old", "update")} for m, r in runs.items()}
    base = median["none"]["times"]
    targets = {"vgpo": 1.10, "vppo": 1.6, "papo": 1.6}
    print(f"local engine, tiny Qwen2.5-VL, CPU, 1 thread: {args.batch} prompts x n={args.n}, visible + infrared, "
          f"{args.response_length} new tokens max; median of {args.steps} steps per arm, arms alternating; "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"  {'arm':<12} {'step s':>8} {'ratio':>7} {'target':>7} {'old-log-prob s':>15} {'update s':>9} "
          f"{'step peak MiB':>14} {'added MiB':>10}")
    for method in METHODS:
        m = median[method]
        target = f"<= {targets[method]:.2f}" if method in targets else ""
        print(f"  {method if method != 'none' else 'grpo':<12} {m['times']:>8.3f} {m['times'] / base:>7.3f} "
              f"{target:>7} {m['old']:>15.3f} {m['update']:>9.3f} {memory[method]:>14.1f} "
              f"{memory[method] - memory['none']:>10.1f}")
    maps = statistics.median(runs["faithful_mr1"]["maps"][1:])
    print(f"  faithful_mr1: {maps:.0f} causal maps a step (of {args.batch} prompts), "
          f"{runs['faithful_mr1']['settings'].perception.cells ** 2 + 1} copies each")


if __name__ == "__main__":
    main()
