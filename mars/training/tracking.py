"""Metrics: a JSONL file in the run folder (appended, survives crashes), a short console line per step, and verl's
``Tracking`` for every other ``trainer.logger`` backend (tensorboard, wandb, mlflow, ...)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from mars.training.checkpoint import write_text_atomic

CONSOLE_KEYS = (
    ("critic/score/mean", "reward"),
    ("mars/anchor_reward", "anchor"),
    ("mars/information_gain", "gain"),
    ("mars/signal_mars_only", "mars-only"),
    ("val/reward", "val"),
    ("response_length/mean", "len"),
    ("timing_s/step", "s"),
)


def anchor_signal_line(history: list[dict[str, float]]) -> str | None:
    """One line for the end of a run: did the anchors change the training signal? (None without anchors.)

    MARS-only signal: a group whose G answers all scored the same (GRPO trains nothing on it) while a mono-source
    answer scored differently, so MARS pushes the whole group up or down (mars/advantage/diagnostics.py)."""
    steps = [h for h in history if h.get("step", 0) > 0 and "mars/signal_mars_only" in h and "mars/anchor_reward" in h]
    if not steps:
        return None
    shares = [h["mars/signal_mars_only"] for h in steps]
    gains = [h["mars/information_gain"] for h in steps if "mars/information_gain" in h]
    gain = sum(gains) / len(gains) if gains else 0.0
    with_signal = sum(s > 0 for s in shares)
    if not with_signal:
        return (f"anchors: no MARS-only signal in {len(steps)} steps: the mono-source answers scored like the fused "
                f"ones (mean information gain {gain:+.3f}), so MARS trained like GRPO; docs/compare.md shows a "
                "setting where they differ")
    return (f"anchors: MARS-only signal on {with_signal} of {len(steps)} steps (mean {sum(shares) / len(shares):.2f} "
            f"of groups: the group's answers agreed, so GRPO had nothing to train, but a mono-source answer scored "
            f"differently); mean information gain {gain:+.3f} ({'fused beats' if gain > 0 else 'fused trails'} the "
            "mono-source answers)")


class MetricsLog:
    def __init__(self, run_dir: str | Path, cfg: Any):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        backends = [b for b in cfg.trainer.logger if b not in ("console", "file")]
        self.console = "console" in cfg.trainer.logger
        self.tracking = None
        if backends:
            from omegaconf import OmegaConf
            from verl.utils.tracking import Tracking

            self.tracking = Tracking(
                project_name=cfg.trainer.project_name, experiment_name=cfg.trainer.experiment_name,
                default_backend=backends, config=OmegaConf.to_container(cfg, resolve=True),
            )

    def truncate_after(self, step: int, write=print) -> None:
        """On resume, drop the lines of steps the crashed run logged after its last checkpoint (they are redone);
        ``step=-1`` for a run that starts over. A torn last line (a crash or a full disk while appending) belongs to
        a step that was never checkpointed: it is dropped with a note."""
        truncate_metrics(self.path, step, write)

    def log(self, metrics: dict[str, float], step: int, write=print) -> None:
        clean = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)}
        with self.path.open("a") as f:
            f.write(json.dumps({"step": step, **clean}) + "\n")
        if self.console:
            write(console_line({"step": step, **clean}))
        if self.tracking is not None:
            self.tracking.log(data=clean, step=step)

    def history(self) -> list[dict[str, float]]:
        return read_history(self.path.parent)


def truncate_metrics(path: Path, step: int, write=print) -> None:
    """``MetricsLog.truncate_after`` on a ``metrics.jsonl`` file."""
    if path.exists():
        entries, torn = parse_metrics(path)
        if torn:
            write(f"{path}: dropped a torn last line (a step logged while the run died; it is redone)")
        keep = [json.dumps(entry) for entry in entries if entry.get("step", 0) <= step]
        write_text_atomic(path, "".join(line + "\n" for line in keep))


def console_line(entry: dict[str, float]) -> str:
    """The short line a logged step prints (``trainer.logger`` with ``console``)."""
    shown = " ".join(f"{label} {entry[key]:.3f}" for key, label in CONSOLE_KEYS if key in entry)
    return f"step {int(entry['step'])}: {shown}"


def parse_metrics(path: Path) -> tuple[list[dict[str, float]], bool]:
    """The entries of a ``metrics.jsonl`` and whether its last line was torn (and left out). A bad line before the
    last is not a crash's trace: it stops with the file and the line number."""
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    entries = []
    for number, line in enumerate(lines, 1):
        try:
            entry = json.loads(line)
            if not isinstance(entry, dict) or "step" not in entry:
                raise ValueError("not a step's metrics")
        except ValueError as exc:
            if number == len(lines):
                return entries, True
            raise ValueError(f"{path}, line {number}: {exc}; fix or remove that line") from None
        entries.append(entry)
    return entries, False


def read_history(run_dir: str | Path) -> list[dict[str, float]]:
    """Every logged line of a run folder's ``metrics.jsonl`` (no logger backend is started to read it); a torn last
    line is left out."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    return parse_metrics(path)[0]
