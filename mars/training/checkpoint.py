"""Checkpoints written atomically and found again for resuming (verl's layout: ``global_step_N/`` and
``latest_checkpointed_iteration.txt`` in ``trainer.default_local_dir``).

A checkpoint is written into a temporary folder and renamed into place only when complete, and the pointer file
is replaced atomically after that: a crash while saving leaves the last good checkpoint and its pointer intact.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

POINTER = "latest_checkpointed_iteration.txt"
ENGINE_STATE = "engine_state.pt"
TRAINER_STATE = "trainer_state.json"


def write_text_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_checkpoint(root: str | Path, step: int, engine_state: dict[str, Any], trainer_state: dict[str, Any],
                    keep: int | None = None) -> Path:
    """``root/global_step_{step}`` with the engine's and the trainer's state; then the pointer; then pruning."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"global_step_{step}"
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".global_step_{step}."))
    try:
        torch.save(engine_state, tmp / ENGINE_STATE)
        write_text_atomic(tmp / TRAINER_STATE, json.dumps(trainer_state, indent=2))
        if final.exists():  # re-saving the same step (e.g. after a resume): swap, never delete first
            old = final.with_name(final.name + ".old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    write_text_atomic(root / POINTER, str(step))
    if keep is not None and keep > 0:
        steps = sorted(int(p.name.rsplit("_", 1)[1]) for p in root.glob("global_step_*") if p.name.rsplit("_", 1)[1].isdigit())
        for old_step in steps[:-keep]:
            shutil.rmtree(root / f"global_step_{old_step}", ignore_errors=True)
    return final


def latest_checkpoint(root: str | Path) -> Path | None:
    """The checkpoint the pointer names, if it exists and is complete."""
    root = Path(root)
    pointer = root / POINTER
    if not pointer.exists():
        return None
    step = pointer.read_text().strip()
    path = root / f"global_step_{step}"
    return path if (path / ENGINE_STATE).exists() and (path / TRAINER_STATE).exists() else None


def load_checkpoint(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    path = Path(path)
    engine_state = torch.load(path / ENGINE_STATE, map_location="cpu", weights_only=False)
    trainer_state = json.loads((path / TRAINER_STATE).read_text())
    return engine_state, trainer_state
