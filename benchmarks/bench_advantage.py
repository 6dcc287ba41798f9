"""Benchmark: the vectorised MARS advantage against a per-group Python loop of the same formula.

    python benchmarks/bench_advantage.py [--repeats 5]

Both run side by side in one process on the same batches (prompts x rollouts responses, 2 anchors per prompt,
uuid-string group ids as verl uses); we report the best of several runs of each and their ratio. verl's own
(loop-based) ``grpo`` on the same responses is shown for scale.
"""

from __future__ import annotations

import argparse
import uuid

import numpy as np
import torch

from mars import compute_mars_advantage
from mars.advantage.reference import mars_advantage_loop
from timing import best_time  # benchmarks/timing.py (the script's folder is on sys.path)


def make_batch(prompts: int, rollouts: int, anchors: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    uids = np.array([str(uuid.UUID(int=int(rng.integers(0, 2**62)))) for _ in range(prompts)], dtype=object)
    group_ids = np.repeat(uids, rollouts)
    anchor_ids = np.repeat(uids, anchors)
    scores = rng.choice([0.0, 0.25, 0.5, 0.75, 1.0, 1.75], size=len(group_ids))
    anchor_scores = rng.choice([0.0, 0.5, 1.0], size=len(anchor_ids))
    return scores, group_ids, anchor_scores, anchor_ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)  # the advantage runs on the driver; one thread keeps the comparison fair

    from verl.trainer.ppo.core_algos import compute_grpo_outcome_advantage

    print(f"{'batch':>14} {'rows':>7} {'vectorised':>11} {'loop':>10} {'speed-up':>9} {'verl grpo':>10}")
    for prompts, rollouts in [(128, 14), (1024, 16)]:
        scores, gids, a_scores, a_gids = make_batch(prompts, rollouts, anchors=2)
        vec = lambda: compute_mars_advantage(scores, gids, a_scores, a_gids)  # noqa: E731
        loop = lambda: mars_advantage_loop(scores.tolist(), gids, a_scores.tolist(), a_gids)  # noqa: E731
        assert np.allclose(vec().numpy(), loop(), atol=1e-9), "the two implementations disagree"
        rewards = torch.tensor(scores, dtype=torch.float32).unsqueeze(-1)
        grpo = lambda: compute_grpo_outcome_advantage(rewards, torch.ones_like(rewards), gids)  # noqa: E731
        t_vec, t_loop, t_grpo = (best_time(f, args.repeats) for f in (vec, loop, grpo))
        print(
            f"{prompts:>6} x {rollouts:<5} {len(scores) + len(a_scores):>7} {t_vec * 1e3:>9.2f}ms "
            f"{t_loop * 1e3:>8.2f}ms {t_loop / t_vec:>8.1f}x {t_grpo * 1e3:>8.2f}ms"
        )


if __name__ == "__main__":
    main()
