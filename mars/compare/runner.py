"""Running a comparison: every arm x seed as its own training run, one after the other, resumably.

Run ``ARM_sSEED`` lives in ``OUT/runs/ARM_sSEED/`` (its ``trainer.experiment_name`` and ``default_local_dir``), so
``mars/training/run_dir.py`` guards each one: a complete run is reported and not rerun, an interrupted one resumes
from its checkpoint, and a folder that holds other settings stops the comparison (a new ``--out`` is the way out).
Seeds go in the outer loop, so an interrupted comparison already has whole seeds to pair.

Wall time is measured here and kept in ``OUT/runs.json`` (summed over the invocations that trained a run); the
shared SFT warm start is built before the clock starts, so the first arm of a seed does not pay for the others.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from mars.compare.arms import Arm, anchors_per_prompt, fill_placeholders, resolved_overrides
from mars.config.compose import DEFAULT_CONFIG
from mars.training.checkpoint import write_text_atomic

RUNS = "runs.json"


def run_name(arm: Arm, seed: int) -> str:
    return f"{arm.name}_s{seed}"


def resolve_arm(config_name: str, overrides: Sequence[str], arm: Arm, write=print) -> Arm:
    """The arm with n and K filled in (read from the config and data the arm trains on)."""
    import logging

    from mars.config.compose import compose_config
    from mars.data.samples import training_samples
    from mars.training.embedded import prepare_embedded

    scoring = logging.getLogger("mars.training.scoring")
    level = scoring.level
    scoring.setLevel(logging.ERROR)  # each run's own composition says what it adjusts
    try:
        base = compose_config(config_name, [*overrides, *resolved_overrides(arm)])
    finally:
        scoring.setLevel(level)
    prepare_embedded(base, write)  # K is read from the data, which the embedded default builds on first use
    n, k = int(base.actor_rollout_ref.rollout.n), anchors_per_prompt(training_samples(base), base.mars)
    return fill_placeholders(arm, n, k)


def run_config(config_name: str, overrides: Sequence[str], arm: Arm, seed: int, out_dir: Path):
    from mars.config.compose import compose_config

    name = run_name(arm, seed)
    return compose_config(config_name, [*overrides, *arm.overrides, f"data.seed={seed}",
                                        f"trainer.experiment_name={name}",
                                        f"trainer.default_local_dir={out_dir / 'runs' / name}"])


def load_runs(out_dir: Path) -> dict[str, Any]:
    path = out_dir / RUNS
    return json.loads(path.read_text()) if path.exists() else {}


def run_comparison(
    out_dir: str | Path,
    arms: Sequence[Arm],
    seeds: Sequence[int],
    overrides: Sequence[str] = (),
    config_name: str = DEFAULT_CONFIG,
    write: Callable[[str], None] = print,
    step_lines: bool = True,
    train: bool = True,
) -> dict[str, Any]:
    """Train what is missing, then write the comparison folder (``summarize``); returns the summary.
    ``train=False``: only write the folder from the runs already complete (a comparison stopped early)."""
    from mars.compare.summary import write_comparison
    from mars.training.embedded import prepare_embedded
    from mars.engines import run_training
    from mars.training.run_dir import absolutize_paths, read_result
    from mars.training.step import TooManyGenerationBatches
    from mars.hf.warm_start import warm_started_model

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = load_runs(out_dir)
    arms = [resolve_arm(config_name, overrides, arm, write) for arm in arms]
    plan = [(seed, arm) for seed in seeds for arm in arms] if train else []
    started = time.perf_counter()
    summary = write_comparison(out_dir, arms, seeds, runs) if not train else {}
    for i, (seed, arm) in enumerate(plan, 1):
        cfg = run_config(config_name, overrides, arm, seed, out_dir)
        prepare_embedded(cfg, write)
        name = run_name(arm, seed)
        record = runs.setdefault(name, {"arm": arm.name, "seed": seed, "wall_s": None})  # None: not trained here
        record.update(run_dir=str(cfg.trainer.default_local_dir), overrides=arm.overrides)
        before = read_result(cfg.trainer.default_local_dir)
        write(f"[compare] run {i}/{len(plan)}: {arm.label} ({arm.name}), seed {seed}, "
              f"{time.perf_counter() - started:.0f} s into the comparison")
        prefix = f"  [{name}] "
        run_write = (lambda s: write(prefix + s)) if step_lines else (lambda s: None)
        if before is None:  # cached per seed: built once, outside the run's clock (absolute paths: the run's key)
            absolutize_paths(cfg)
            warm_started_model(cfg, run_write)
        t0 = time.perf_counter()
        try:
            result = run_training(cfg, write=run_write)
        except TooManyGenerationBatches as exc:  # DAPO found no signal: a result of the arm, not a crash of all
            record.update(status="failed", error=str(exc))
            write(f"[compare] {name} failed: {exc}")
        else:
            trained = before is None or read_result(result.run_dir) != before
            if trained:
                record["wall_s"] = float(record.get("wall_s") or 0.0) + time.perf_counter() - t0
            record.update(status="complete", steps=result.steps)
            text = "trained" if trained else "already complete, not rerun"
            if result.val_before is not None and result.val_after is not None:
                text += f": validation reward {result.val_before:.3f} -> {result.val_after:.3f}"
            if record.get("wall_s") is not None:
                text += f" ({record['wall_s']:.0f} s of training wall time)"
            write(f"[compare] {name} {text}")
        write_text_atomic(out_dir / RUNS, json.dumps(runs, indent=1))
        summary = write_comparison(out_dir, arms, seeds, runs)  # after every run: a partial comparison is readable
    write(f"[compare] comparison written to {out_dir} (summary.json, table.md, curves.png)")
    return summary
