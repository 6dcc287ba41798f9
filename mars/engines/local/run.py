"""The local engine's run, top to bottom: data, run directory, warm start, engine, validation, steps, checkpoints,
final model, summary. ``trainer.engine=local`` (the default) runs it; ``mars.engines`` picks it.

    mars train                                   # the embedded default (tiny model, synthetic data, CPU)
    mars train preset=dapo trainer.total_training_steps=20
    mars train --config-name mars_trainer data.train_files=... actor_rollout_ref.model.path=...
"""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mars.data.samples import load_samples, run_seed, training_samples
from mars.engines.local.local_engine import LocalEngine
from mars.hf.warm_start import focus_settings, warm_started_model
from mars.training.checkpoint import clean_leftovers, find_checkpoint, load_checkpoint, save_checkpoint
from mars.training.preflight import base_tokenizer_and_processor, check_before_warm_start, skipping_length_limit
from mars.training.progress import Progress, quiet_library_bars
from mars.training.prompts import DataExhausted, PromptSampler
from mars.training.run_dir import absolutize_paths, prepare_run_dir
from mars.training.settings import StepSettings
from mars.training.step import train_step
from mars.training.summary import RunResult, result_of, summarize_run
from mars.training.tracking import MetricsLog
from mars.training.validation import validate

logger = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def step_seed(seed: int, step: int) -> int:
    """Every step reseeds from (seed, step), so a resumed run continues exactly as an uninterrupted one."""
    return (seed * 1_000_003 + step) % 2**63


def total_training_steps(cfg: Any, n_train: int) -> int:
    if cfg.trainer.get("total_training_steps"):
        return int(cfg.trainer.total_training_steps)
    return max(int(cfg.trainer.total_epochs) * (n_train // int(cfg.data.train_batch_size)), 1)


def focus_metrics(engine: LocalEngine, val: list, cfg: Any) -> dict[str, float]:
    """With Faithful-MR1's anchoring stage (``mars.sft_warmup.focus``): where the focus token looks, at every
    validation (``LocalEngine.focus_metrics``)."""
    focus = focus_settings(cfg)
    return engine.focus_metrics(val, focus["token"], focus["layer"]) if focus else {}


def run(cfg: Any, write=print) -> RunResult:
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    quiet_library_bars()
    seed = run_seed(cfg)
    seed_everything(seed)
    absolutize_paths(cfg)

    processor = base_tokenizer_and_processor(cfg)[1]
    too_long = skipping_length_limit(cfg, processor)  # mars.on_bad_row=skip: prompts too long are skipped too
    train = training_samples(cfg, too_long)
    val = (load_samples(cfg.data.val_files, str(cfg.mars.on_bad_row), length_limit=too_long)
           if cfg.data.get("val_files") else [])
    max_val = int(cfg.data.get("val_max_samples", -1) or -1)
    val = val[:max_val] if max_val > 0 else val
    total = total_training_steps(cfg, len(train))
    run = prepare_run_dir(cfg, write, total_steps=total)  # stops here when the directory holds another run
    run_dir = run.path
    if run.status == "complete":
        return result_of(run_dir, run.result)
    # enough prompts, perception settings the data and model allow, every prompt and variant fits: before the warm
    # start (a 100k-character prompt would exhaust its memory)
    check_before_warm_start(cfg, len(train), processor)

    # the run ends at trainer.total_training_steps or after trainer.total_epochs passes over the data, whichever
    # comes first (verl's rule; DAPO draws several batches per step)
    sampler = PromptSampler(train, int(cfg.data.train_batch_size), seed, bool(cfg.data.get("shuffle", True)),
                            max_epochs=int(cfg.trainer.total_epochs) if cfg.trainer.get("total_epochs") else None)
    leftovers = clean_leftovers(run_dir)
    if leftovers:
        write(f"removed what an interrupted save left in {run_dir}: {', '.join(sorted(leftovers))}")
    checkpoint = None
    if run.status == "resume":
        checkpoint, notes = find_checkpoint(run_dir)
        for note in notes:
            write(note)
    if cfg.trainer.get("resume_from_path"):
        checkpoint = Path(cfg.trainer.resume_from_path)
    # a checkpoint holds the weights (and the reference's); a new run starts from the cached warm start
    start_from = None if checkpoint is not None else warm_started_model(cfg, write)
    engine = LocalEngine(cfg, total, start_from, write)
    settings = StepSettings.from_config(cfg)
    log = MetricsLog(run_dir, cfg)
    show = int(cfg.mars.get("log_generations", 0))

    start, val_before = 0, None
    if checkpoint is not None:
        engine_state, trainer_state = load_checkpoint(checkpoint)
        engine.load_state_dict(engine_state)
        sampler.load_state_dict(trainer_state["sampler"])
        start, val_before = int(trainer_state["step"]), trainer_state.get("val_before")
        log.truncate_after(start, write)
        write(f"resumed from {checkpoint} (step {start} of {total})")
    else:
        log.truncate_after(-1, write)  # a fresh start in a folder whose first attempt died before its first checkpoint
        if cfg.trainer.get("val_before_train", True) and val:
            metrics = {**validate(engine, val, cfg, show, write), **focus_metrics(engine, val, cfg)}
            val_before = metrics["val/reward"]
            log.log(metrics, 0, write)

    test_freq, save_freq = int(cfg.trainer.test_freq), int(cfg.trainer.save_freq)
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
            metrics.update(focus_metrics(engine, val, cfg))
        log.log(metrics, step, write)
        bar.update()
        if (save_freq > 0 and step % save_freq == 0) or step == total:
            trainer_state = {"step": step, "sampler": sampler.state_dict(), "seed": seed, "val_before": val_before}
            save_checkpoint(run_dir, step, engine.state_dict(), trainer_state,
                            keep=cfg.trainer.get("max_actor_ckpt_to_keep"))
            saved = step
    bar.close()

    model_dir = run_dir / "huggingface"
    write_model_atomically(engine, model_dir)
    return summarize_run(cfg, run_dir, total, write, engine="local", model_dir=model_dir)


def write_model_atomically(engine: LocalEngine, model_dir: Path) -> None:
    """The final policy into a temporary folder, renamed into place when complete: a full disk or a kill while it
    is written never leaves a ``huggingface/`` folder that looks complete."""
    import shutil
    import tempfile

    tmp = Path(tempfile.mkdtemp(dir=model_dir.parent, prefix=f".{model_dir.name}."))
    try:
        engine.save_pretrained(str(tmp))
        if model_dir.exists():
            shutil.rmtree(model_dir)
        os.replace(tmp, model_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
