"""Metrics: a JSONL file in the run folder (appended, survives crashes), a short console line per step, and verl's
``Tracking`` for every other ``trainer.logger`` backend (tensorboard, wandb, mlflow, ...)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from mars.trainer.checkpoint import write_text_atomic

CONSOLE_KEYS = (
    ("critic/score/mean", "reward"),
    ("mars/anchor_reward", "anchor"),
    ("mars/information_gain", "gain"),
    ("mars/signal_mars_only", "mars-only"),
    ("val/reward", "val"),
    ("response_length/mean", "len"),
    ("timing_s/step", "s"),
)


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

    def truncate_after(self, step: int) -> None:
        """On resume, drop the lines of steps the crashed run logged after its last checkpoint (they are redone)."""
        if self.path.exists():
            keep = [line for line in self.path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
            write_text_atomic(self.path, "".join(line + "\n" for line in keep))

    def log(self, metrics: dict[str, float], step: int, write=print) -> None:
        clean = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)}
        with self.path.open("a") as f:
            f.write(json.dumps({"step": step, **clean}) + "\n")
        if self.console:
            shown = " ".join(f"{label} {clean[key]:.3f}" for key, label in CONSOLE_KEYS if key in clean)
            write(f"step {step}: {shown}")
        if self.tracking is not None:
            self.tracking.log(data=clean, step=step)

    def history(self) -> list[dict[str, float]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line]
