"""Benchmark: `mars eval sources` (every question fused and per source) against plain inference of the fused prompts.

    python benchmarks/bench_eval_sources.py [--questions 48] [--batch-size 8] [--max-new-tokens 32] [--repeats 2]

Both run side by side in one process on the same tiny model (random init, built into a temporary directory; no
download) and the same synthetic visible + infrared questions (K = 2 sources): the per-source path answers
K + 1 = 3 views of each question, the views of a batch of questions in one generate call. Greedy decoding to a
fixed number of new tokens (no EOS: a random-init model would stop at random places), so both paths generate the
same number of tokens per prompt. Reported: seconds per question of each (the best of ``--repeats``), the ratio
(target: at most K + 1) and the load average.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from types import SimpleNamespace

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from mars.data.synth.build import synthesize  # noqa: E402
from mars.inference import HFGenerator, to_messages  # noqa: E402
from mars.models import build_tiny_model  # noqa: E402
from mars.per_source import answer_views, load_items  # noqa: E402
from timing import best_time  # noqa: E402  (benchmarks/timing.py)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the stand-in EOS id below (-1: never generated) is on purpose
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = build_tiny_model(tmp / "model", seed=0)
        # no EOS: both paths decode exactly max_new_tokens per prompt
        model_cfg = (Path(model) / "generation_config.json")
        if model_cfg.exists():
            model_cfg.unlink()
        synthesize("ir_presence", str(tmp / "data"), args.questions * 10, seed=0, val_frac=0.1, test_frac=0.0)
        items = load_items(tmp / "data" / "val.parquet")[: args.questions]
        generator = HFGenerator(str(model))
        generator.eos_ids = {-1}

        def fused_only():
            for start in range(0, len(items), args.batch_size):
                generator.generate([to_messages(i) for i in items[start : start + args.batch_size]],
                                   args.max_new_tokens)

        import mars.inference as inference

        inference.HFGenerator = lambda path: generator  # the same loaded model for both paths
        options = SimpleNamespace(backend="hf", batch_size=args.batch_size, max_new_tokens=args.max_new_tokens)
        views = lambda: answer_views(str(model), items, "duplicate", options)  # noqa: E731
        fused_s = best_time(fused_only, args.repeats) / len(items)
        views_s = best_time(views, args.repeats) / len(items)
    load = os.getloadavg()
    print(f"{len(items)} questions, K = 2 sources, batch {args.batch_size}, {args.max_new_tokens} new tokens, "
          f"1 torch thread, load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}")
    print(f"fused prompts only (qwen_inference.sh):   {1000 * fused_s:8.1f} ms per question")
    print(f"fused + each source (mars eval sources):  {1000 * views_s:8.1f} ms per question")
    print(f"ratio: {views_s / fused_s:.2f}x for 3 views (target: at most K + 1 = 3)")


if __name__ == "__main__":
    main()
