"""The training run, top to bottom: data, run directory, warm start, engine, validation, steps, checkpoints, final
model, plots, result.

    mars train                                   # the embedded default (tiny model, synthetic data, CPU)
    mars train preset=dapo trainer.total_training_steps=20
    mars train --config-name mars_trainer data.train_files=... actor_rollout_ref.model.path=...
"""

from __future__ import annotations

import logging
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from mars.data.check import check_prompt_lengths
from mars.trainer.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from mars.trainer.dataset import DataExhausted, PromptSample, PromptSampler, load_samples
from mars.trainer.engine import RolloutRequest, Sampling
from mars.trainer.plots import plot_run
from mars.trainer.progress import Progress, quiet_library_bars
from mars.trainer.rewards import resolve_reward_config
from mars.trainer.run_dir import prepare_run_dir, record_result
from mars.trainer.step import StepSettings, train_step
from mars.trainer.tracking import MetricsLog, anchor_signal_line
from mars.trainer.warm_start import run_seed, training_samples, warm_started_model

logger = logging.getLogger(__name__)


@dataclass
class RunResult:
    run_dir: Path
    steps: int
    val_before: float | None
    val_after: float | None
    model_dir: Path
    plot: Path | None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def step_seed(seed: int, step: int) -> int:
    """Every step reseeds from (seed, step), so a resumed run continues exactly as an uninterrupted one."""
    return (seed * 1_000_003 + step) % 2**63


def make_engine(cfg: Any, total_steps: int, model_path: str | None = None, write=print):
    engine = str(cfg.trainer.engine)
    if engine == "local":
        from mars.engines.local import LocalEngine

        return LocalEngine(cfg, total_steps, model_path, write)
    raise ValueError(f"trainer.engine={engine!r}: the run loop here drives the local engine; the verl engine runs "
                     "through verl's trainer (`mars train trainer.engine=verl` or `python -m mars.main_ppo`)")


def total_training_steps(cfg: Any, n_train: int) -> int:
    if cfg.trainer.get("total_training_steps"):
        return int(cfg.trainer.total_training_steps)
    return max(int(cfg.trainer.total_epochs) * (n_train // int(cfg.data.train_batch_size)), 1)


def validate(engine, samples: Sequence[PromptSample], cfg: Any, show: int = 0, write=print) -> dict[str, float]:
    """Greedy (``rollout.val_kwargs``) answers to the validation prompts: mean reward and its parts."""
    val_kwargs = cfg.actor_rollout_ref.rollout.val_kwargs
    sampling = Sampling(do_sample=bool(val_kwargs.do_sample), temperature=float(val_kwargs.temperature),
                        top_p=float(val_kwargs.top_p))
    requests = [RolloutRequest(s.messages, f"val{i}", sampling, sample=s) for i, s in enumerate(samples)]
    rows = engine.generate(requests, int(cfg.data.max_response_length))
    engine.score(rows, shaping=False)
    metrics = {"val/reward": float(np.mean(rows.rewards))}
    for key, values in rows.reward_extras.items():
        if key not in ("reward_error", "coord_error", "error"):
            metrics[f"val/{key}"] = float(np.mean(values))
    for text, sample, reward in list(zip(rows.texts, rows.samples, rows.rewards))[:show]:
        write(f"  [val] reward {reward:.3f} | truth {sample.ground_truth} | answer {text[:200]!r}")
    return metrics


def absolutize_paths(cfg: Any) -> None:
    """Local paths of the model and the data as absolute paths, so the saved config works from anywhere (merge)."""
    model = cfg.actor_rollout_ref.model
    if os.path.exists(str(model.path)):
        model.path = os.path.abspath(str(model.path))
    for key in ("train_files", "val_files"):
        files = cfg.data.get(key)
        if isinstance(files, str) and os.path.exists(files):
            cfg.data[key] = os.path.abspath(files)
        elif files is not None and not isinstance(files, str):
            cfg.data[key] = [os.path.abspath(f) if os.path.exists(f) else f for f in files]


def run_training(cfg: Any, write=print) -> RunResult:
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    quiet_library_bars()
    seed = run_seed(cfg)
    seed_everything(seed)
    absolutize_paths(cfg)
    resolve_reward_config(cfg)  # the reward the run uses, in its config.yaml (the engine would fill it in later)

    train = training_samples(cfg)
    val = load_samples(cfg.data.val_files, str(cfg.mars.on_bad_row)) if cfg.data.get("val_files") else []
    max_val = int(cfg.data.get("val_max_samples", -1) or -1)
    val = val[:max_val] if max_val > 0 else val
    total = total_training_steps(cfg, len(train))
    run = prepare_run_dir(cfg, write, total_steps=total)  # stops here when the directory holds another run
    run_dir = run.path
    if run.status == "complete":
        r = run.result
        plot = Path(r["plot"]) if r.get("plot") else None
        return RunResult(run_dir, int(r["step"]), r.get("val_before"), r.get("val_after"), Path(r["model_dir"]), plot)

    # the run ends at trainer.total_training_steps or after trainer.total_epochs passes over the data, whichever
    # comes first (verl's rule; DAPO draws several batches per step)
    sampler = PromptSampler(train, int(cfg.data.train_batch_size), seed, bool(cfg.data.get("shuffle", True)),
                            max_epochs=int(cfg.trainer.total_epochs) if cfg.trainer.get("total_epochs") else None)
    checkpoint = latest_checkpoint(run_dir) if run.status == "resume" else None
    if cfg.trainer.get("resume_from_path"):
        checkpoint = Path(cfg.trainer.resume_from_path)
    # a checkpoint holds the weights (and the reference's); a new run starts from the cached warm start
    start_from = None if checkpoint is not None else warm_started_model(cfg, write)
    engine = make_engine(cfg, total, start_from, write)
    check_prompt_lengths(cfg, engine.tokenizer, engine.processor)  # every prompt and variant fits, before step 1
    settings = StepSettings.from_config(cfg)
    log = MetricsLog(run_dir, cfg)
    show = int(cfg.mars.get("log_generations", 0))

    start, val_before = 0, None
    if checkpoint is not None:
        engine_state, trainer_state = load_checkpoint(checkpoint)
        engine.load_state_dict(engine_state)
        sampler.load_state_dict(trainer_state["sampler"])
        start, val_before = int(trainer_state["step"]), trainer_state.get("val_before")
        log.truncate_after(start)
        write(f"resumed from {checkpoint} (step {start} of {total})")
    else:
        log.truncate_after(0)  # a fresh start in a directory whose first attempt died before its first checkpoint
        if cfg.trainer.get("val_before_train", True) and val:
            metrics = validate(engine, val, cfg, show, write)
            val_before = metrics["val/reward"]
            log.log(metrics, 0, write)

    test_freq, save_freq = int(cfg.trainer.test_freq), int(cfg.trainer.save_freq)
    val_after = None
    bar = Progress(total, "training", initial=start, write=write, lines=0)  # off a terminal the step lines suffice
    saved = start
    for step in range(start + 1, total + 1):
        torch.manual_seed(step_seed(seed, step))
        try:
            metrics = train_step(engine, sampler.next_batch, step, settings)
        except DataExhausted as exhausted:
            write(f"{exhausted}: the run ends after step {step - 1} of {total}")
            total = step - 1
            if saved != total:  # the last trained step is kept
                trainer_state = {"step": total, "sampler": sampler.state_dict(), "seed": seed, "val_before": val_before}
                save_checkpoint(run_dir, total, engine.state_dict(), trainer_state,
                                keep=cfg.trainer.get("max_actor_ckpt_to_keep"))
            break
        metrics["training/epoch"] = float(sampler.epoch)  # passes over the data so far, counted in batches drawn
        if val and ((test_freq > 0 and step % test_freq == 0) or step == total):
            metrics.update(validate(engine, val, cfg, show if step == total else 0, write))
            val_after = metrics["val/reward"]
        log.log(metrics, step, write)
        bar.update()
        if (save_freq > 0 and step % save_freq == 0) or step == total:
            trainer_state = {"step": step, "sampler": sampler.state_dict(), "seed": seed, "val_before": val_before}
            save_checkpoint(run_dir, step, engine.state_dict(), trainer_state,
                            keep=cfg.trainer.get("max_actor_ckpt_to_keep"))
            saved = step
    bar.close()

    model_dir = run_dir / "huggingface"
    engine.save_pretrained(str(model_dir))
    plot = plot_run(log.history(), run_dir / "training.png") if cfg.mars.get("plots", True) else None
    if val_after is None:  # resumed after the last validation: the logged one
        val_after = next((h["val/reward"] for h in reversed(log.history()) if "val/reward" in h and h["step"] > 0), None)
    if val_before is not None and val_after is not None:
        write(f"validation reward: {val_before:.3f} before training -> {val_after:.3f} after {total} steps")
    signal = anchor_signal_line(log.history())  # what the anchors changed, in one line (issue 12)
    if signal:
        write(signal)
    write(f"policy saved to {model_dir}" + (f"; plots in {plot}" if plot else ""))
    record_result(run_dir, {"step": total, "val_before": val_before, "val_after": val_after,
                            "model_dir": str(model_dir), "plot": str(plot) if plot else None})
    return RunResult(run_dir, total, val_before, val_after, model_dir, plot)
