"""Checkpoints written atomically and found again for resuming (verl's layout: ``global_step_N/`` and
``latest_checkpointed_iteration.txt`` in ``trainer.default_local_dir``).

The local engine writes a checkpoint into a temporary folder and renames it into place only when complete, and
replaces the pointer file atomically after that: a crash while saving leaves the last good checkpoint and its
pointer intact. The verl engine's checkpoints are verl's own (``global_step_N/actor/`` shards and ``data.pt``,
written in place, the pointer written by verl); MARS adds the manifest when verl's save has returned.

Each complete checkpoint carries ``manifest.json`` (size and SHA-256 of every file in it), written last. On resume
the pointer's checkpoint is verified against it; one that fails (truncated, flipped bytes, a file missing, no
manifest where its neighbours have one: a save that never finished), or a missing or garbled pointer, falls back to
the newest checkpoint that verifies, saying which and why (``prepare_resume`` also points the pointer file there,
for verl's own resume); checkpoint folders of which none verifies stop the run (``CheckpointError``) rather than
starting over. Leftovers of interrupted saves (temporary folders, ``.old`` folders, pointer temporaries) are
removed by ``clean_leftovers``.
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


VERL_DATALOADER = "data.pt"  # verl's trainer saves its dataloader's state in every checkpoint folder


def is_verl_checkpoint(folder: Path) -> bool:
    """verl's layout (``actor/`` shards, ``data.pt``) rather than the local engine's two files."""
    return (folder / "actor").is_dir() or (folder / VERL_DATALOADER).is_file()


def write_manifest(folder: str | Path) -> None:
    """``manifest.json``: the size and SHA-256 of every file in the checkpoint, written last (a checkpoint without
    it is partial)."""
    folder = Path(folder)
    paths = [path for path in sorted(folder.rglob("*")) if path.is_file() and path.name != MANIFEST]
    files = {path.relative_to(folder).as_posix(): {"size": path.stat().st_size, "sha256": digest}
             for path, digest in zip(paths, file_digests(paths))}
    write_text_atomic(folder / MANIFEST, json.dumps({"files": files}, indent=2))


def file_digests(paths: list[Path]) -> list[str]:
    """SHA-256 of each file, several at once (hashlib releases the GIL: a checkpoint's shards, one per rank, are
    hashed in parallel rather than one after another)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1, len(paths)))) as pool:
        return list(pool.map(file_digest, paths))


def verify_checkpoint(folder: Path, manifests_expected: bool = False) -> str | None:
    """None when ``folder`` is a complete checkpoint whose files match its manifest; else why not, in words.
    Without a manifest, a verl checkpoint is accepted unless ``manifests_expected`` (its neighbours have one: this
    one's save never finished); a local one when its two files are readable (both: written by an older MARS)."""
    if is_verl_checkpoint(folder):
        if not (folder / "actor").is_dir():
            return ("no actor/ shards (verl removes them from the checkpoints older than "
                    "trainer.max_actor_ckpt_to_keep allows, and keeps data.pt)")
        if not (folder / MANIFEST).is_file():
            return "no manifest.json: its save did not finish" if manifests_expected else None
        return verify_against_manifest(folder)
    missing = [name for name in (ENGINE_STATE, TRAINER_STATE) if not (folder / name).is_file()]
    if missing:
        return f"{', '.join(missing)} missing"
    if not (folder / MANIFEST).is_file():  # written by a MARS before manifests (renamed into place: complete)
        try:
            json.loads((folder / TRAINER_STATE).read_text())
        except ValueError:
            return f"{TRAINER_STATE} is unreadable"
        return None if (folder / ENGINE_STATE).stat().st_size > 0 else f"{ENGINE_STATE} is empty"
    return verify_against_manifest(folder)


def verify_against_manifest(folder: Path) -> str | None:
    try:
        files = json.loads((folder / MANIFEST).read_text())["files"]
    except (ValueError, KeyError, TypeError):
        return "manifest.json is unreadable"
    for name, expected in files.items():  # sizes first: cheap, and a truncated file needs no checksum
        path = folder / name
        size = path.stat().st_size if path.is_file() else -1
        if size != expected.get("size"):
            return f"{name} has {size} bytes, the manifest says {expected.get('size')} (truncated?)"
    names = list(files)
    for name, digest in zip(names, file_digests([folder / name for name in names])):
        if digest != files[name].get("sha256"):
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
    """Steps of the ``global_step_N`` folders in ``root`` (either engine's), newest first."""
    if not root.is_dir():
        return []
    return sorted((int(m.group(1)) for p in root.iterdir() if p.is_dir() and (m := STEP_DIR.match(p.name))),
                  reverse=True)


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
    manifests_expected = any((root / f"global_step_{step}" / MANIFEST).is_file() for step in steps)
    for step in order:
        folder = root / f"global_step_{step}"
        problem = verify_checkpoint(folder, manifests_expected)
        if problem is None:
            if not (folder / MANIFEST).is_file():
                notes.append(f"{folder.name} has no manifest (an older MARS, or verl's asynchronous saving, wrote "
                             "it): resumed without verifying it")
            if notes:
                notes.append(f"resuming from {folder.name}, the newest checkpoint that verifies")
            return folder, notes
        notes.append(f"{folder.name} cannot be resumed from: {problem}")
    if order:
        raise CheckpointError(
            f"{root} has checkpoints but none can be resumed from:\n  " + "\n  ".join(notes)
            + "\nMove them away to keep them, or start over in this folder with trainer.resume_mode=disable.")
    return None, notes


def prepare_resume(root: str | Path) -> tuple[Path | None, list[str]]:
    """``find_checkpoint``, and the pointer file made to name what it found when it named something else (verl's
    resume reads the pointer): the same notes, plus one when the pointer was rewritten."""
    root = Path(root)
    folder, notes = find_checkpoint(root)
    if folder is not None:
        step = folder.name.rsplit("_", 1)[1]
        pointer = root / POINTER
        if not pointer.is_file() or pointer.read_text(errors="replace").strip() != step:
            write_text_atomic(pointer, step)
            notes.append(f"{POINTER} now names step {step}")
    return folder, notes


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
