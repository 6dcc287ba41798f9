"""The end of a run, the same on both engines: read back from the run folder, so a resumed run is summed up whole.

    validation reward: 1.202 before training -> 1.486 after 10 steps
    validation accuracy per view (step 0 -> step 10): fused 0.70 -> 0.99, visible 0.43 -> 0.51, infrared 0.99 -> 0.99; ...
    anchors: MARS-only signal on 10 of 10 steps (...)
    focus token: attention inside the boxes 0.71 -> 0.72 (uniform 0.29); causal-map bonus ...   (Faithful-MR1)
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


def focus_line(history: list[dict[str, float]]) -> str | None:
    """Faithful-MR1 in one line: where the focus token looked (first -> last validation) and, under
    ``perception=faithful_mr1``, the bonus correct answers earned and whether it told a group's answers apart."""
    val = [h for h in history if "perception/focus_in_box" in h]
    bonus = [h for h in history if "perception/faithful/bonus" in h]
    if not val and not bonus:
        return None
    parts = []
    if val:
        first, last = val[0]["perception/focus_in_box"], val[-1]["perception/focus_in_box"]
        looked = f"{first:.2f} -> {last:.2f}" if len(val) > 1 else f"{last:.2f}"
        parts.append(f"attention inside the boxes {looked} (uniform {val[-1]['perception/focus_in_box_uniform']:.2f})")
    if bonus:
        mean = sum(h["perception/faithful/bonus"] for h in bonus) / len(bonus)
        spread = sum(h.get("perception/faithful/bonus_spread", 0.0) for h in bonus) / len(bonus)
        parts.append(f"causal-map bonus of correct answers {mean:.3f} of perception.focus_reward on average, spread "
                     f"within a group {spread:.3f}" + (" (it cannot tell a group's correct answers apart)"
                                                       if spread < 1e-3 else ""))
    return "focus token: " + "; ".join(parts)


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
    for line in (anchor_signal_line(history), focus_line(history)):
        if line:
            write(line)
    where = (f"policy saved to {model_dir}" if model_dir is not None
             else f"run folder {run_dir}: metrics.jsonl, checkpoints global_step_N/")
    write(where + (f"; plots in {plot}" if plot else ""))
    result = {"step": steps, "val_before": before, "val_after": after, "engine": engine,
              "model_dir": str(model_dir) if model_dir is not None else None, "plot": str(plot) if plot else None}
    if (run_dir / f"global_step_{steps}").is_dir():
        result["checkpoint"] = str(run_dir / f"global_step_{steps}")
    record_result(run_dir, result)
    return result_of(run_dir, result)
