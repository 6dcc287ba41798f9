"""A run directory belongs to one configuration.

``prepare_run_dir(cfg)`` runs before anything is trained, for both engines, on ``trainer.default_local_dir``:

- no ``config.yaml`` there, or one of a run that stopped before logging anything (a check refused its data, model
  or settings): a new run; the config is written.
- a ``config.yaml`` that differs from the new config in a key outside ``ALLOWED_ON_RESUME``: stop with
  ``RunDirConflict``, naming the keys and the two ways out: a new ``trainer.experiment_name`` (a new directory), or
  ``trainer.resume_mode=disable`` (verl's "train from scratch": the directory's previous outputs are removed).
- the same configuration (up to ``ALLOWED_ON_RESUME``) and a ``result.json`` whose step reaches the steps asked
  for: the run is complete; its result is printed and nothing is rewritten.
- otherwise: a resume (or a fresh start when no checkpoint was saved yet); ``config.yaml`` is rewritten when an
  allowed key changed (e.g. more steps), so the directory always describes its run.

First of all, the process takes the folder's lock (``.mars.lock``, an advisory ``flock`` held until the process
ends, with the holder's pid and host written in it): a second process on the same folder stops at once. The
operating system drops the lock when its holder dies, so a crashed run never leaves a stale one (on file systems
without ``flock``, e.g. some NFS mounts, the lock is not enforced).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from omegaconf import OmegaConf

from mars.training.checkpoint import POINTER, latest_checkpoint, write_text_atomic

CONFIG = "config.yaml"
RESULT = "result.json"
# keys that may change between a run and its resume: how long it runs, how often it saves, validates and logs, and
# how Ray is started (the cluster is the machine's, not the run's)
ALLOWED_ON_RESUME = (
    "trainer.total_training_steps",
    "trainer.total_epochs",
    "trainer.save_freq",
    "trainer.test_freq",
    "trainer.logger",
    "trainer.resume_mode",
    "trainer.resume_from_path",
    "trainer.max_actor_ckpt_to_keep",
    "trainer.max_critic_ckpt_to_keep",
    "trainer.val_before_train",
    "trainer.log_val_generations",
    "trainer.cpu_threads",
    "mars.log_generations",
    "mars.plots",
    "mars.val_views",
    "mars.sft_warmup.cache_dir",
    "ray_kwargs",
)
# what a run writes into its directory: removed when the user starts over (anything else is left alone)
RUN_OUTPUTS = (CONFIG, RESULT, POINTER, "metrics.jsonl", "training.png", "huggingface", "global_step_*")


class RunDirConflict(ValueError):
    """The run directory holds a run of another configuration, or another process is running in it."""


LOCK = ".mars.lock"
_locks: dict[str, Any] = {}  # folder -> its open lock file, held for the life of the process


def lock_run_dir(path: Path) -> None:
    """Take ``path``'s lock for this process (module docstring); ``RunDirConflict`` naming the holder if taken."""
    import fcntl

    path.mkdir(parents=True, exist_ok=True)
    key = str(path.resolve())
    if key in _locks:
        return
    handle = open(path / LOCK, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise RunDirConflict(
            f"{path} is in use by {holder}: two runs in one folder would log every step twice. Wait for it to "
            "end (or stop it), or give this run its own folder with trainer.experiment_name=NAME.") from None
    except OSError:  # a file system without flock: run unlocked rather than not at all
        _locks[key] = handle
        return
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    handle.flush()
    _locks[key] = handle


@dataclass
class RunDir:
    path: Path
    status: str  # "new" | "resume" | "complete"
    checkpoint_step: int = 0  # the latest complete checkpoint (0: none)
    changed: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # allowed keys that changed: old, new
    result: dict[str, Any] | None = None  # result.json of a complete run


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as dotted keys; lists are values."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        out.update(flatten(value, name) if isinstance(value, dict) and value else {name: value})
    return out


def config_text(cfg: Any) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True)


def config_differences(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Dotted key -> (old value, new value) for every key whose value differs or exists on one side only (a key
    absent on one side and null on the other is no difference: a setting added later with no effect by default)."""
    missing = "<absent>"
    a, b = flatten(old), flatten(new)
    return {k: (a.get(k, missing), b.get(k, missing)) for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)}


def _allowed(key: str, allowed: Sequence[str]) -> bool:
    return any(key == a or key.startswith(a + ".") for a in allowed)


def _follows(raw_value: Any, allowed: Sequence[str]) -> bool:
    """A value interpolated only from allowed keys (``${trainer.n_gpus_per_node}``, ``${oc.select:KEY,default}``)
    may change with them."""
    refs = re.findall(r"\$\{(?:oc\.select:)?([^},:]+)", raw_value) if isinstance(raw_value, str) else []
    return bool(refs) and all(_allowed(ref, allowed) for ref in refs)


def _total_steps(cfg: Any) -> int | None:
    total = cfg.trainer.get("total_training_steps")
    return int(total) if total else None


def read_result(path: str | Path) -> dict[str, Any] | None:
    path = Path(path) / RESULT
    return json.loads(path.read_text()) if path.exists() else None


def record_result(path: str | Path, result: dict[str, Any]) -> None:
    """The last thing a finished run writes: ``{"step": N, ...}`` (validation rewards, where the model is)."""
    write_text_atomic(Path(path) / RESULT, json.dumps(result, indent=1, default=str))


def describe_result(run: RunDir) -> str:
    r = run.result or {}
    text = f"{run.path} is a complete run ({r.get('step')} steps)"
    if r.get("val_before") is not None and r.get("val_after") is not None:
        text += f": validation reward {r['val_before']:.3f} before training -> {r['val_after']:.3f} after"
    if r.get("model_dir"):
        text += f"; policy in {r['model_dir']}"
    return text + ". Nothing was trained or rewritten; raise trainer.total_training_steps to train it further."


def never_started(path: Path) -> bool:
    """A folder whose run wrote its ``config.yaml`` and stopped before logging anything (a check refused its data,
    model or settings): another configuration may take it over."""
    return not (path / "metrics.jsonl").exists() and not any(path.glob("global_step_*")) \
        and not (path / RESULT).exists()


def clear_run_outputs(path: Path) -> list[str]:
    removed = []
    for pattern in RUN_OUTPUTS:
        for p in sorted(path.glob(pattern)):
            shutil.rmtree(p) if p.is_dir() else p.unlink()
            removed.append(p.name)
    return removed


def prepare_run_dir(cfg: Any, write=print, engine_keys_ignored: Sequence[str] = (),
                    total_steps: int | None = None) -> RunDir:
    """Check ``trainer.default_local_dir`` against ``cfg`` (see the module docstring) and say what the run will do.

    ``engine_keys_ignored``: more dotted keys (or prefixes) that may differ on resume, e.g. an engine's resources.
    ``total_steps``: the steps this run trains (default ``trainer.total_training_steps``), to recognise a complete
    run. Raises ``RunDirConflict``; writes ``config.yaml`` for a new run and after a resume's allowed changes."""
    path = Path(cfg.trainer.default_local_dir)
    lock_run_dir(path)
    total = total_steps if total_steps is not None else _total_steps(cfg)
    text = config_text(cfg)
    new = OmegaConf.to_container(OmegaConf.create(text))
    if (path / CONFIG).exists() and str(cfg.trainer.get("resume_mode", "auto")) == "disable":
        removed = clear_run_outputs(path)
        write(f"starting over in {path} (trainer.resume_mode=disable): removed the previous run's "
              f"{', '.join(removed)}")
    if (path / CONFIG).exists() and never_started(path):  # stopped by a check before training: nothing to keep
        if (path / CONFIG).read_text() != text:
            write(f"{path} held the config of a run that never began training: replaced by this run's")
        (path / CONFIG).unlink()
    if not (path / CONFIG).exists():
        path.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path / CONFIG, text)
        return RunDir(path, "new")

    old = OmegaConf.to_container(OmegaConf.load(path / CONFIG))
    allowed = (*ALLOWED_ON_RESUME, *engine_keys_ignored)
    diffs = config_differences(old, new)
    raw = flatten(OmegaConf.to_container(cfg, resolve=False))
    conflicts = {k: v for k, v in diffs.items() if not _allowed(k, allowed) and not _follows(raw.get(k), allowed)}
    if conflicts:
        shown = "\n".join(f"  {k}: {a!r} there, {b!r} now" for k, (a, b) in list(conflicts.items())[:12])
        more = f"\n  ... and {len(conflicts) - 12} more" if len(conflicts) > 12 else ""
        raise RunDirConflict(
            f"{path} holds a run with other settings ({len(conflicts)} differing key"
            f"{'s' if len(conflicts) != 1 else ''}):\n{shown}{more}\n"
            "A run directory belongs to one configuration. Either give this run its own directory with a new "
            "trainer.experiment_name=NAME (or trainer.default_local_dir=DIR), or start over in this one with "
            "trainer.resume_mode=disable (removes its previous checkpoints, metrics, plots and model). Keys that may "
            f"change on resume: {', '.join(allowed)}."
        )
    checkpoint = latest_checkpoint(path)
    step = int(checkpoint.name.rsplit("_", 1)[1]) if checkpoint is not None else 0
    result = read_result(path)
    if result is not None and total is not None and int(result.get("step", -1)) >= total:
        run = RunDir(path, "complete", step, result=result)
        write(describe_result(run))
        return run
    if diffs:
        write_text_atomic(path / CONFIG, text)
        write(f"resuming {path} with changed settings: "
              + ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in diffs.items()))
    return RunDir(path, "resume", step, changed=diffs)


def absolutize_paths(cfg: Any) -> None:
    """Local paths of the model and the data as absolute paths, so the saved config works from anywhere (merge, Ray
    workers, a resume from another directory)."""
    model = cfg.actor_rollout_ref.model
    if os.path.exists(str(model.path)):
        model.path = os.path.abspath(str(model.path))
    for key in ("train_files", "val_files"):
        files = cfg.data.get(key)
        if isinstance(files, str) and os.path.exists(files):
            cfg.data[key] = os.path.abspath(files)
        elif files is not None and not isinstance(files, str):
            cfg.data[key] = [os.path.abspath(f) if os.path.exists(f) else f for f in files]
