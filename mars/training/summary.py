"""The end of a run, the same on both engines: read back from the run folder, so a resumed run is summed up whole.

    validation reward: 1.202 before training -> 1.486 after 10 steps
    validation accuracy per view (step 0 -> step 10): fused 0.70 -> 0.99, visible 0.43 -> 0.51, infrared 0.99 -> 0.99; ...
    anchors: MARS-only signal on 10 of 10 steps (...)
    policy saved to RUN/huggingface; plots in RUN/training.png

``result.json`` is written last: a folder with it holds a complete run (``mars.training.run_dir``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mars.training.plots import plot_run
from mars.training.run_dir import record_result
from mars.training.tracking import anchor_signal_line, read_history


@dataclass
class RunResult:
    run_dir: Path
    steps: int
    val_before: float | None
    val_after: float | None
    model_dir: Path | None  # the final policy as a Hugging Face folder (the verl engine leaves FSDP checkpoints)
    plot: Path | None


def result_of(run_dir: str | Path, result: dict[str, Any]) -> RunResult:
    """A ``RunResult`` from a run folder's ``result.json``."""
    model_dir, plot = result.get("model_dir"), result.get("plot")
    return RunResult(Path(run_dir), int(result["step"]), result.get("val_before"), result.get("val_after"),
                     Path(model_dir) if model_dir else None, Path(plot) if plot else None)


def view_line(history: list[dict[str, float]]) -> str | None:
    """Does seeing more mean knowing more, in one line: validation accuracy fused and per source, first -> last
    validation, and the interference rate (None without per-view validation)."""
    val = [h for h in history if "val/view/fused/accuracy" in h]
    if not val:
        return None
    first, last = val[0], val[-1]
    names = [k.split("/")[2] for k in last if k.startswith("val/view/") and k.endswith("/accuracy")]

    def change(key: str) -> str:
        return f"{first.get(key, float('nan')):.2f} -> {last[key]:.2f}" if len(val) > 1 else f"{last[key]:.2f}"

    when = f"step {first['step']} -> step {last['step']}" if len(val) > 1 else f"step {last['step']}"
    views = ", ".join(f"{name} {change(f'val/view/{name}/accuracy')}" for name in names)
    return (f"validation accuracy per view ({when}): {views}; fused wrong while a source alone was right: "
            f"{change('val/interference_rate')} of the prompts")


def summarize_run(cfg: Any, run_dir: str | Path, steps: int | None = None, write=print, engine: str = "local",
                  model_dir: str | Path | None = None) -> RunResult:
    """Plots, the closing lines and ``result.json`` of a finished run, from its ``metrics.jsonl``. ``steps``: the last
    trained step (default: the last logged one); ``model_dir``: where the engine saved the final policy, if it did."""
    run_dir = Path(run_dir)
    history = read_history(run_dir)  # not a MetricsLog: that would start the run's wandb/tensorboard loggers again
    steps = max((h["step"] for h in history), default=0) if steps is None else steps
    plot = plot_run(history, run_dir / "training.png") if cfg.mars.get("plots", True) and history else None
    val = [(h["step"], h["val/reward"]) for h in history if "val/reward" in h]
    before = next((v for s, v in val if s == 0), None)
    after = val[-1][1] if val and val[-1][0] > 0 else None
    if before is not None and after is not None:
        write(f"validation reward: {before:.3f} before training -> {after:.3f} after {steps} steps")
    views = view_line(history)
    if views:
        write(views)
    signal = anchor_signal_line(history)
    if signal:
        write(signal)
    where = (f"policy saved to {model_dir}" if model_dir is not None
             else f"run folder {run_dir}: metrics.jsonl, checkpoints global_step_N/")
    write(where + (f"; plots in {plot}" if plot else ""))
    result = {"step": steps, "val_before": before, "val_after": after, "engine": engine,
              "model_dir": str(model_dir) if model_dir is not None else None, "plot": str(plot) if plot else None}
    if (run_dir / f"global_step_{steps}").is_dir():
        result["checkpoint"] = str(run_dir / f"global_step_{steps}")
    record_result(run_dir, result)
    return result_of(run_dir, result)
