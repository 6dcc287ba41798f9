"""Checkpoints written atomically and found again for resuming (verl's layout: ``global_step_N/`` and
``latest_checkpointed_iteration.txt`` in ``trainer.default_local_dir``).

A checkpoint is written into a temporary folder and renamed into place only when complete, and the pointer file
is replaced atomically after that: a crash while saving leaves the last good checkpoint and its pointer intact.
Each complete checkpoint carries ``manifest.json`` (size and SHA-256 of each file). On resume the pointer's
checkpoint is verified against it; one that fails (truncated, flipped bytes, a file missing), or a missing or
garbled pointer, falls back to the newest checkpoint that verifies, saying which and why; checkpoint folders of
which none verifies stop the run (``CheckpointError``) rather than starting over. Leftovers of interrupted saves
(temporary folders, ``.old`` folders, pointer temporaries) are removed by ``clean_leftovers``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

POINTER = "latest_checkpointed_iteration.txt"
ENGINE_STATE = "engine_state.pt"
TRAINER_STATE = "trainer_state.json"
MANIFEST = "manifest.json"
STEP_DIR = re.compile(r"^global_step_(\d+)$")


class CheckpointError(ValueError):
    """Checkpoints are there but none can be resumed from; the message names each one and why."""


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(folder: Path) -> None:
    """``manifest.json``: the size and SHA-256 of each state file, written last (a checkpoint without it is partial)."""
    files = {name: {"size": (folder / name).stat().st_size, "sha256": file_digest(folder / name)}
             for name in (ENGINE_STATE, TRAINER_STATE)}
    write_text_atomic(folder / MANIFEST, json.dumps({"files": files}, indent=2))


def verify_checkpoint(folder: Path) -> str | None:
    """None when ``folder`` is a complete checkpoint whose files match its manifest; else why not, in words."""
    missing = [name for name in (ENGINE_STATE, TRAINER_STATE) if not (folder / name).is_file()]
    if missing:
        return f"{', '.join(missing)} missing"
    if not (folder / MANIFEST).is_file():  # written by a MARS before manifests (renamed into place: complete)
        try:
            json.loads((folder / TRAINER_STATE).read_text())
        except ValueError:
            return f"{TRAINER_STATE} is unreadable"
        return None if (folder / ENGINE_STATE).stat().st_size > 0 else f"{ENGINE_STATE} is empty"
    try:
        files = json.loads((folder / MANIFEST).read_text())["files"]
    except (ValueError, KeyError, TypeError):
        return "manifest.json is unreadable"
    for name, expected in files.items():
        path = folder / name
        size = path.stat().st_size if path.is_file() else -1
        if size != expected.get("size"):
            return f"{name} has {size} bytes, the manifest says {expected.get('size')} (truncated?)"
        if file_digest(path) != expected.get("sha256"):
            return f"{name} does not match its checksum (corrupted)"
    return None


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
        write_manifest(tmp)
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


def checkpoint_steps(root: Path) -> list[int]:
    """Steps of the local engine's ``global_step_N`` folders in ``root``, newest first (verl's own checkpoints,
    with their ``actor/`` shards, are verl's to find)."""
    if not root.is_dir():
        return []
    return sorted((int(m.group(1)) for p in root.iterdir()
                   if p.is_dir() and (m := STEP_DIR.match(p.name)) and not (p / "actor").is_dir()), reverse=True)


def find_checkpoint(root: str | Path) -> tuple[Path | None, list[str]]:
    """The checkpoint to resume from and a note per checkpoint passed over: the pointer's if it verifies, else the
    newest one that does. (None, notes) without checkpoints; ``CheckpointError`` when there are some and none
    verifies (the run must not silently start over)."""
    root = Path(root)
    steps = checkpoint_steps(root)
    notes: list[str] = []
    pointed = None
    pointer = root / POINTER
    if pointer.exists():
        text = pointer.read_text(errors="replace").strip()
        if text.isdigit():
            pointed = int(text)
        elif steps:
            notes.append(f"{pointer} is garbled ({text[:20]!r}): looking at the checkpoints themselves")
    elif steps:
        notes.append(f"{pointer} is missing: looking at the checkpoints themselves")
    order = ([pointed] if pointed in steps else []) + [s for s in steps if s != pointed]
    if pointed is not None and pointed not in steps and steps:
        notes.append(f"the pointer names step {pointed}, which has no checkpoint folder")
    for step in order:
        folder = root / f"global_step_{step}"
        problem = verify_checkpoint(folder)
        if problem is None:
            if not (folder / MANIFEST).is_file():
                notes.append(f"{folder.name} has no manifest (an older MARS wrote it): resumed without verifying it")
            if notes:
                notes.append(f"resuming from {folder.name}, the newest checkpoint that verifies")
            return folder, notes
        notes.append(f"{folder.name} cannot be resumed from: {problem}")
    if order:
        raise CheckpointError(
            f"{root} has checkpoints but none can be resumed from:\n  " + "\n  ".join(notes)
            + "\nMove them away to keep them, or start over in this folder with trainer.resume_mode=disable.")
    return None, notes


def latest_checkpoint(root: str | Path) -> Path | None:
    """The checkpoint a resume starts from (``find_checkpoint``, without its notes)."""
    return find_checkpoint(root)[0]


def clean_leftovers(root: str | Path) -> list[str]:
    """Remove what interrupted saves leave behind (temporary checkpoint folders, ``.old`` swaps, temporaries of
    atomically written files); returns their names."""
    root = Path(root)
    removed = []
    if not root.is_dir():
        return removed
    for path in root.iterdir():
        temporary_dir = path.is_dir() and (path.name.startswith(".global_step_") or
                                           (path.name.startswith("global_step_") and path.name.endswith(".old")))
        temporary_file = path.is_file() and path.name.startswith(".") and any(
            path.name.startswith(f".{name}.") for name in (POINTER, "metrics.jsonl", "config.yaml", "result.json"))
        if temporary_dir:
            shutil.rmtree(path, ignore_errors=True)
        elif temporary_file:
            path.unlink(missing_ok=True)
        if temporary_dir or temporary_file:
            removed.append(path.name)
    return removed


def load_checkpoint(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    path = Path(path)
    engine_state = torch.load(path / ENGINE_STATE, map_location="cpu", weights_only=False)
    trainer_state = json.loads((path / TRAINER_STATE).read_text())
    return engine_state, trainer_state
