"""Benchmark: a training step of GRPO+MARS against plain GRPO on the local engine, same seed and data.

    python benchmarks/bench_step.py [--steps 6] [--n 6] [--batch 8] [--response-length 48]

Both engines start from the same tiny model and see the same prompts with the same per-step seeds; steps
alternate between the two so machine noise hits both alike. Reported: median step time of each, their ratio
(target: at most 1 + K/n with K anchors and n rollouts per prompt), the share of MARS's step time spent on anchors
((T_mars - T_grpo) / T_mars) and the anchors' share of generated tokens.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch

from mars.data.synth.build import synthesize
from mars.engines.local import LocalEngine
from mars.models.tiny import build_tiny_model
from mars.config.compose import compose_config
from mars.data.samples import load_samples
from mars.training.prompts import PromptSampler
from mars.engines.local.run import step_seed
from mars.training.settings import StepSettings
from mars.training.step import train_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--n", type=int, default=6)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--response-length", type=int, default=48)
    args = parser.parse_args()
    torch.set_num_threads(max(torch.get_num_threads(), 1))

    work = Path(tempfile.mkdtemp(prefix="mars-bench-"))
    model = build_tiny_model(work / "model", seed=0)
    synthesize("ir_grounding", str(work / "data"), 64, seed=0)
    samples = load_samples(str(work / "data" / "train.parquet"))

    runs = {}
    for estimator in ("mars", "grpo"):
        cfg = compose_config("mars_trainer", [
            f"actor_rollout_ref.model.path={model}", f"algorithm.adv_estimator={estimator}",
            f"data.train_batch_size={args.batch}", f"actor_rollout_ref.rollout.n={args.n}",
            f"data.max_response_length={args.response_length}", "actor_rollout_ref.actor.ppo_mini_batch_size=4",
            "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=16", "trainer.device=cpu",
        ])
        runs[estimator] = dict(engine=LocalEngine(cfg, args.steps), settings=StepSettings.from_config(cfg),
                               sampler=PromptSampler(samples, args.batch, seed=0), times=[], share=[])

    for step in range(args.steps + 1):  # step 0 warms up both
        for run in runs.values():
            torch.manual_seed(step_seed(0, step))
            metrics = train_step(run["engine"], run["sampler"].next_batch, step, run["settings"])
            if step > 0:
                run["times"].append(metrics["timing_s/step"])
                run["share"].append(metrics["mars/anchor_token_share"])

    k = 2  # visible + infrared: two anchors per prompt
    t_mars, t_grpo = (statistics.median(runs[e]["times"]) for e in ("mars", "grpo"))
    print(f"local engine, tiny Qwen2.5-VL, CPU: {args.batch} prompts x n={args.n}, K={k} anchors, "
          f"{args.response_length} new tokens max, median of {args.steps} steps")
    print(f"  GRPO       step {t_grpo:.3f} s")
    print(f"  GRPO+MARS  step {t_mars:.3f} s")
    print(f"  ratio {t_mars / t_grpo:.3f} (target <= 1 + K/n = {1 + k / args.n:.3f})")
    print(f"  share of the MARS step spent on anchors: {(t_mars - t_grpo) / t_mars:.1%}; "
          f"anchors' share of generated tokens: {statistics.mean(runs['mars']['share']):.1%}")


if __name__ == "__main__":
    main()
